"""Numerically stable rewrites, applied to an expression just before it is printed.

The sheet prints the formula as defined; the kernels print the rewritten form. Every
rule is a SymPy -> SymPy rewrite (no string substitution), so the tests can check
that the rewrite is the same function as the definition.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.codegen.rewriting import optimize, optims_c99


def _logistic(expr: sp.Expr) -> sp.Expr:
    """1/(1 + exp(u)) -> a branch whose exp never overflows.

    For u > 0, exp(u) overflows long before the result underflows; with
    z = exp(-|u|) the same function is z/(1 + z) for u > 0 and 1/(1 + z) otherwise.
    """

    def is_logistic(e: sp.Expr) -> bool:
        if not (e.is_Pow and e.exp == -1 and e.base.is_Add and len(e.base.args) == 2):
            return False
        one, ex = sorted(e.base.args, key=lambda a: not a.is_Number)
        return one == 1 and isinstance(ex, sp.exp)

    def rewrite(e: sp.Expr) -> sp.Expr:
        u = next(a for a in e.base.args if isinstance(a, sp.exp)).args[0]
        z = sp.exp(-sp.Abs(u))  # in (0, 1]: one exp, never overflows
        return sp.Piecewise((z / (1 + z), u > 0), (1 / (1 + z), True))

    return expr.replace(is_logistic, rewrite)


def _softplus(expr: sp.Expr) -> sp.Expr:
    """log(1 + exp(u)) -> softplus without overflow (softplus, log-sigmoid).

    Runs before SymPy's c99 optimizations, which would otherwise turn
    -log(1 + exp(-x)) into x - log1p(exp(x)): a cancellation for large x.
    """

    def is_softplus(e: sp.Expr) -> bool:
        if isinstance(e, log1p):
            return isinstance(e.args[0], sp.exp)
        if isinstance(e, sp.log) and e.args[0].is_Add and len(e.args[0].args) == 2:
            one, ex = sorted(e.args[0].args, key=lambda a: not a.is_Number)
            return one == 1 and isinstance(ex, sp.exp)
        return False

    def rewrite(e: sp.Expr) -> sp.Expr:
        u = next(a for a in sp.preorder_traversal(e) if isinstance(a, sp.exp)).args[0]
        return sp.Max(u, 0) + log1p(sp.exp(-sp.Abs(u)))

    return expr.replace(is_softplus, rewrite)


def _one_minus_power(expr: sp.Expr) -> sp.Expr:
    """1 - b**t -> -expm1(t*log(b)) for a symbolic exponent t.

    Adam's bias correction 1 - beta2**t: beta2**t is near 1 for small t, and the
    subtraction turns its rounding error into tens of ULPs; expm1 keeps full accuracy
    (and b = 0 still gives 1, through log(0) = -inf).
    """

    def is_match(e: sp.Expr) -> bool:
        if not (e.is_Add and len(e.args) == 2 and sp.S.One in e.args):
            return False
        other = next(a for a in e.args if a != 1)
        coeff, rest = other.as_coeff_Mul()
        return coeff == -1 and rest.is_Pow and not rest.exp.is_Number

    def rewrite(e: sp.Expr) -> sp.Expr:
        power = next(a for a in e.args if a != 1).as_coeff_Mul()[1]
        return -expm1(power.exp * sp.log(power.base))

    return expr.replace(is_match, rewrite)


def _logistic_parts(e: sp.Expr) -> sp.Expr | None:
    """u if e is 1/(1 + exp(u)), else None."""
    if e.is_Pow and e.exp == -1 and e.base.is_Add and len(e.base.args) == 2:
        one, ex = sorted(e.base.args, key=lambda a: not a.is_Number)
        if one == 1 and isinstance(ex, sp.exp):
            return ex.args[0]
    return None


def _logistic_complement(expr: sp.Expr) -> sp.Expr:
    """1 - 1/(1 + exp(u)) and exp(u)/(1 + exp(u)) -> 1/(1 + exp(-u)).

    The same function, written as one logistic: 1 - sigmoid(l) then has no
    cancellation, and exp(u)/(1 + exp(u)) no inf/inf for large u.
    """

    def complement(e: sp.Expr) -> sp.Expr | None:
        if e.is_Add and len(e.args) == 2 and sp.S.One in e.args:
            (rest,) = [a for a in e.args if a != 1]
            u = _logistic_parts(-rest)
            return None if u is None else 1 / (1 + sp.exp(-u))
        if e.is_Mul:
            factors = list(e.args)
            for k, a in enumerate(factors):
                u = _logistic_parts(a)
                if u is not None and sp.exp(u) in factors:
                    factors[k] = 1 / (1 + sp.exp(-u))
                    factors.remove(sp.exp(u))
                    return sp.Mul(*factors)
        return None

    return expr.replace(lambda e: complement(e) is not None, complement)


def _log_of_power(expr: sp.Expr) -> sp.Expr:
    """log(b**e) -> e*log(b) for a positive base: log(sigmoid(l)) -> -log(1 + exp(-l)),
    which ``_softplus`` then recognizes (the identity holds because b > 0)."""

    def is_log_power(e: sp.Expr) -> bool:
        return (isinstance(e, sp.log) and e.args[0].is_Pow and e.args[0].base.is_positive
                and e.args[0].exp.is_real)

    return expr.replace(is_log_power, lambda e: e.args[0].exp * sp.log(e.args[0].base))


def _factor_in(expr: sp.Expr) -> sp.Expr:
    """Factor the polynomial factors of a product, to evaluate them without cancellation.

    1 - y**2 loses all its digits as y -> 1; (1 - y)*(1 + y) keeps them, because
    1 - y is exact there (Sterbenz).
    """
    if expr.is_Mul:
        return sp.Mul(*[_factor_in(a) for a in expr.args])
    syms = expr.free_symbols
    if syms and expr.is_Add and expr.is_polynomial(*syms):
        if sp.Poly(expr, *sorted(syms, key=sp.default_sort_key)).total_degree() >= 2:
            factored = _absorb_sign(sp.factor(expr))
            # Keep the definition's form unless factoring really splits it.
            return factored if factored.is_Mul or factored.is_Pow else expr
    return expr


def _absorb_sign(factored: sp.Expr) -> sp.Expr:
    """A negative coefficient taken into a linear factor: -(y - 1)*(y + 1) becomes
    (1 - y)*(y + 1).

    A negated product gives -0.0 where the polynomial has a zero: 1 - y**2 at y = 1
    is +0.0 (IEEE: x - x is +0), -(y - 1)*(y + 1) is -0.0. Flipping the factor whose
    constant term is negative (y - 1 -> 1 - y) keeps the zero +0.0, as the formula
    gives it, and leaves the other values unchanged.
    """
    coeff, rest = factored.as_coeff_Mul()
    if not coeff.is_negative:
        return factored
    factors = list(sp.Mul.make_args(rest))
    for k, f in enumerate(factors):
        if f.is_Add and f.as_coeff_Add()[0].is_negative:
            factors[k] = sp.expand(-f)
            return sp.Mul(-coeff, *factors)
    return factored


def stabilize(expr: sp.Expr) -> sp.Expr:
    """The form of ``expr`` that the kernels print: same function, better rounding."""
    if not isinstance(expr, sp.Expr):  # a condition (n_out >= 1): nothing to stabilize
        return expr
    expr = _factor_in(expr)
    expr = _logistic_complement(expr)
    expr = _log_of_power(expr)
    expr = _softplus(expr)
    expr = optimize(expr, optims_c99)  # log(1 + x) -> log1p(x), exp(x) - 1 -> expm1(x)
    # After SymPy's optimizations, which would restructure a product holding log(b).
    expr = _one_minus_power(expr)
    expr = _logistic(expr)
    return expr


__all__ = ["stabilize", "expm1", "log1p"]
