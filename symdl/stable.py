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
        return _overflow_free_logistic(u)

    return expr.replace(is_logistic, rewrite)


def _overflow_free_logistic(u: sp.Expr) -> sp.Expr:
    """1/(1 + exp(u)), as a branch on the sign of u."""
    z = sp.exp(-sp.Abs(u))  # in (0, 1]: one exp, never overflows
    return sp.Piecewise((z / (1 + z), u > 0), (1 / (1 + z), True))


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


class _Sigmoid(sp.Function):
    """1/(1 + exp(-u)), kept whole through the other rewrites; ``_logistic`` prints it
    without overflow at the end."""

    nargs = 1


def _one_plus_exp(e: sp.Expr) -> sp.Expr | None:
    """u if e is 1 + exp(u), else None."""
    if e.is_Add and len(e.args) == 2 and sp.S.One in e.args:
        (ex,) = [a for a in e.args if a != 1]
        if isinstance(ex, sp.exp):
            return ex.args[0]
    return None


def _logistic_powers(expr: sp.Expr) -> sp.Expr:
    """exp(k*u) / (1 + exp(u))**n -> sigmoid(u)**k * sigmoid(-u)**(n - k), for integers
    0 <= k <= n.

    The derivatives of logistic curves (SiLU's, a sigmoid with a temperature) come out
    of SymPy in this shape: at large |u| it is inf/inf; as a product of logistic
    functions, each in (0, 1], it never overflows. Runs before SymPy's own
    simplifications, which would merge the terms into one fraction again.
    """

    def rewrite(e: sp.Expr) -> sp.Expr | None:
        if not e.is_Mul:
            return None
        factors = list(e.args)
        changed = False
        for i, a in enumerate(factors):
            if not (a.is_Pow and a.exp.is_Integer and a.exp < 0):
                continue
            u = _one_plus_exp(a.base)
            if u is None:
                continue
            n, k = int(-a.exp), 0
            for j, b in enumerate(factors):
                ratio = sp.cancel(b.args[0] / u) if isinstance(b, sp.exp) else None
                if ratio is not None and ratio.is_Integer and 0 < ratio <= n:
                    k, factors[j] = int(ratio), sp.S.One
                    break
            factors[i] = _Sigmoid(u) ** k * _Sigmoid(-u) ** (n - k)
            changed = True
        return sp.Mul(*factors) if changed else None

    return expr.replace(lambda e: rewrite(e) is not None, rewrite)


def _over_logistic(expr: sp.Expr) -> sp.Expr:
    """(a + b*exp(u)) / (1 + exp(u)) -> a/(1 + exp(u)) + b*exp(u)/(1 + exp(u)), so that
    ``_logistic_powers`` sees each term: the gradient of a cross-entropy on logits
    comes out of SymPy as one such fraction, inf*0 = NaN at u = 800."""

    def split(e: sp.Expr):
        if not e.is_Mul:
            return None
        us = [_one_plus_exp(a.base) for a in e.args
              if a.is_Pow and a.exp.is_Integer and a.exp < 0]
        for a in e.args:
            if a.is_Add and any(isinstance(f, sp.exp) and u is not None
                                and sp.cancel(f.args[0] / u).is_Integer
                                for t in a.args for f in sp.Mul.make_args(t) for u in us):
                return a
        return None

    def rewrite(e: sp.Expr) -> sp.Expr:
        a = split(e)
        rest = e / a
        return sp.Add(*[rest * t for t in a.args])

    return expr.replace(lambda e: split(e) is not None, rewrite)


class erfc(sp.erfc):  # noqa: N801  (printed by the name of SymPy's own erfc)
    """SymPy's erfc without its rewrite of erfc(-u) as 2 - erfc(u): that rewrite
    brings back the cancellation the stable form removes."""

    @classmethod
    def eval(cls, arg):
        return None


def _one_plus_special(expr: sp.Expr) -> sp.Expr:
    """c + c*erf(u) -> c*erfc(-u); c + c*tanh(u) -> 2c*sigmoid(2u);
    c - c*tanh(u)**2 -> 4c*sigmoid(2u)*sigmoid(-2u) (and with the signs flipped).

    GELU's 1 + erf(x/sqrt(2)) cancels to nothing for large negative x, and
    1 - tanh(u)**2 for large |u|; erfc and logistic functions keep every digit."""

    def rewrite(e: sp.Expr) -> sp.Expr | None:
        if not e.is_Add:
            return None
        const = sp.Add(*[a for a in e.args if a.is_Number])
        if const == 0:
            return None
        for t in e.args:
            c, f = t.as_coeff_Mul()
            rest = e - const - t
            if isinstance(f, sp.erf | sp.tanh) and abs(c) == abs(const):
                u = (c / const) * f.args[0]  # const*(1 + f(u))
                return rest + const * (erfc(-u) if isinstance(f, sp.erf)
                                       else 2 * _Sigmoid(2 * u))
            if f.is_Pow and f.exp == 2 and isinstance(f.base, sp.tanh) and c == -const:
                u = f.base.args[0]
                return rest + 4 * const * _Sigmoid(2 * u) * _Sigmoid(-2 * u)
        return None

    return expr.replace(lambda e: rewrite(e) is not None, rewrite)


class Vanishing(sp.Function):
    """l*p, but 0 where l (a product of logistic factors) is 0, whatever p (inf: the
    limit is 0, the product NaN). A function, not a Piecewise: SymPy would call a
    product of positive factors never 0, where in floating point it underflows."""

    nargs = 2

    def _latex(self, printer) -> str:
        return printer._print(self.args[0] * self.args[1])

    def _mpmathcode(self, printer) -> str:  # exact arithmetic: the product itself
        return printer._print(self.args[0] * self.args[1])

    def _pythoncode(self, printer) -> str:  # floats: as the kernels compute it
        small, rest = (printer._print(a) for a in self.args)
        return f"(0.0 if ({small}) == 0 else ({small})*({rest}))"


def _vanishing(expr: sp.Expr) -> sp.Expr:
    """A product of logistic factors (or erfc, or a Gaussian) and factors that grow with
    the input -> 0 where the logistic part is 0.

    The derivatives of tanh-GELU (x*(1 + 3a x**2)*sigmoid(2u)*sigmoid(-2u)), Mish and
    SiLU multiply a polynomial that overflows (x**3 beyond 1e13 in float32, 1e103 in
    float64) by logistic factors that underflow to 0 much earlier: inf*0 = NaN, where
    the limit is 0. A NaN input still gives NaN (NaN == 0 is false)."""

    def is_logistic(a: sp.Expr) -> bool:
        if a.is_Pow and a.exp.is_positive:
            return is_logistic(a.base)
        if isinstance(a, sp.exp):  # a Gaussian, exp(-c*u**2)
            c, rest = a.args[0].as_coeff_Mul()
            return c.is_negative and rest.is_Pow and rest.exp == 2
        # (erfc: GELU's x*erfc(-x/sqrt(2))/2 at x = -inf)
        return isinstance(a, _Sigmoid | sp.erfc)

    def rewrite(e: sp.Expr) -> sp.Expr | None:
        if not e.is_Mul:
            return None
        logistic = [a for a in e.args if is_logistic(a)]
        rest = [a for a in e.args if not is_logistic(a)]
        # (a factor that can grow: a denominator such as a batch size 1/m cannot, and
        # the product keeps its division there)
        if not logistic or not any(a.free_symbols and not (a.is_Pow and a.exp.is_negative)
                                   for a in rest):
            return None
        return Vanishing(sp.Mul(*logistic), sp.Mul(*rest))

    return expr.replace(lambda e: rewrite(e) is not None, rewrite)


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


def _integer_linear(expr: sp.Expr) -> sp.Expr:
    """x/6 + 1/2 -> (x + 3)/6: a linear form with fractional coefficients, written with
    integer ones and one division, is exactly 0 where it should be (hard sigmoid's
    kink at x = -3; x*(1/6) + 0.5 gives 2.8e-17 there)."""

    def is_match(e: sp.Expr) -> bool:
        if not e.is_Add or not e.free_symbols:
            return False
        coeffs = [a.as_coeff_Mul()[0] for a in e.args]
        return (any(c.is_Rational and not c.is_Integer for c in coeffs)
                and all(c.is_Rational for c in coeffs)
                and all(a.is_Number or a.as_coeff_Mul()[1].is_Symbol for a in e.args))

    return expr.replace(is_match, sp.factor_terms)


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
    expr = _integer_linear(expr)
    expr = _logistic_complement(expr)
    expr = _over_logistic(expr)
    expr = _logistic_powers(expr)
    expr = _one_plus_special(expr)
    expr = _log_of_power(expr)
    expr = _softplus(expr)
    expr = optimize(expr, optims_c99)  # log(1 + x) -> log1p(x), exp(x) - 1 -> expm1(x)
    # After SymPy's optimizations, which would restructure a product holding log(b).
    expr = _one_minus_power(expr)
    expr = _logistic(expr)
    expr = _vanishing(expr)
    expr = expr.replace(lambda e: isinstance(e, _Sigmoid),
                        lambda e: _overflow_free_logistic(-e.args[0]))
    return expr


__all__ = ["stabilize", "expm1", "log1p"]
