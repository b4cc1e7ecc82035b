"""Derivation: gradients by SymPy, rewritten in terms of the forward output.

This is where every derivative in symdl is taken. ``backward_formula`` turns a
forward formula y = f(x) into the formula of its backward kernel,
dx = dy * f'(x) with x eliminated in favour of y (sigmoid' -> y*(1-y)); no
derivative is written by hand anywhere in the project.
"""

from __future__ import annotations

import random

import sympy as sp

from .formula import Elementwise, FormulaError, MaskedElementwise


class DerivationError(FormulaError):
    """SymPy could not derive what a formula asks for."""


def _agrees(candidate: sp.Expr, target: sp.Expr, x: sp.Symbol, y: sp.Symbol, f: sp.Expr) -> bool:
    """Check numerically that candidate(y=f(x)) equals target(x) at a few points."""
    rng = random.Random(0)
    for _ in range(6):
        xv = sp.Float(rng.uniform(-2.5, 2.5), 30)
        yv = f.subs(x, xv).evalf(30)
        lhs = candidate.subs(y, yv).evalf(30)
        rhs = target.subs(x, xv).evalf(30)
        if not (lhs.is_real and rhs.is_real) or abs(lhs - rhs) > 1e-20 * (1 + abs(rhs)):
            return False
    return True


def in_terms_of_output(expr: sp.Expr, x: sp.Symbol, f: sp.Expr, y: sp.Symbol) -> sp.Expr:
    """Rewrite ``expr`` (a function of x) as a function of y = f(x) alone.

    A general mechanism, not a table: first substitute f(x) -> y where it appears
    literally (tanh' = 1 - tanh(x)**2); otherwise solve y = f(x) for x and
    substitute each branch. Every candidate is checked numerically, and the
    simplest correct one wins. Raises DerivationError if x cannot be eliminated.
    """
    candidates = []
    direct = sp.simplify(expr.subs(f, y))
    if x not in direct.free_symbols:
        candidates.append(direct)
    if not candidates:
        for branch in sp.solve(sp.Eq(y, f), x):
            for form in (sp.simplify(expr.subs(x, branch)),):
                for c in (form, sp.simplify(form.rewrite(sp.exp))):
                    if x not in c.free_symbols:
                        candidates.append(c)
    good = [c for c in candidates if _agrees(c, expr, x, y, f)]
    if not good:
        raise DerivationError(f"cannot express {expr} in terms of the output {y} = {f}")
    return min(good, key=lambda c: (sp.count_ops(c), sp.default_sort_key(c)))


def backward_formula(fwd: Elementwise) -> Elementwise:
    """The backward kernel's formula: dx = dy * dy/dx, in terms of the output y."""
    (x,) = fwd.inputs
    ((yname, f),) = fwd.outputs.items()
    y = sp.Symbol(yname, real=True)
    dy = sp.Symbol("d" + yname, real=True)
    dfdx = sp.diff(f, x)
    local = in_terms_of_output(dfdx, x, f, y)
    return Elementwise(
        name=f"{fwd.name}_backward",
        section=fwd.section,
        title=f"{fwd.title}: backward",
        doc=f"Gradient of {fwd.name} from its output: d{x.name} = d{yname} * d{yname}/d{x.name}.",
        inputs=(y, dy),
        outputs={"d" + x.name: dy * local},
        derived_from=fwd.name,
    )


def mask_expectations(f: MaskedElementwise) -> dict[bool, dict[str, tuple[sp.Expr, sp.Expr]]]:
    """Per variant and output: (the unevaluated expectation over the mask, its value).

    The mask symbol X becomes a ``sympy.stats`` Bernoulli(keep) random variable and
    SymPy takes the expectation: for dropout, the test-time output.
    """
    from sympy.stats import Bernoulli, E, Expectation

    m = f.mask
    rv = Bernoulli(m.symbol.name, m.keep)
    out = {}
    for v, outputs in f.variants.items():
        out[v] = {}
        for k, e in outputs.items():
            value = sp.simplify(E(e.subs(m.symbol, rv)))
            if value.atoms(sp.stats.rv.RandomSymbol):
                raise DerivationError(f"{f.name}: cannot take the expectation of {e}")
            out[v][k] = (Expectation(e.subs(m.symbol, rv)), value)
    return out


def inference_formula(f: MaskedElementwise) -> MaskedElementwise:
    """The test-time formula: each output replaced by its expectation over the mask."""
    expectations = mask_expectations(f)
    variants = {v: {k: value for k, (_, value) in outs.items()}
                for v, outs in expectations.items()}
    used = set().union(*(e.free_symbols for o in variants.values() for e in o.values()))
    used |= set().union(*(f.let[s].free_symbols for s in used if s in f.let))
    return MaskedElementwise(
        name=f"{f.name}_inference",
        section=f.section,
        title=f"{f.title}: inference",
        doc=f"Test-time {f.name}: the expected training output over the mask.",
        inputs=f.inputs,
        args=tuple(a for a in f.args if a.symbol in used),
        let={s: e for s, e in f.let.items() if s in used},
        flag=f.flag,
        flag_default=f.flag_default,
        variants=variants,
        derived_from=f.name,
    )


def expand_formulas(formulas: list) -> list:
    """The formulas of a module plus every formula derived from them, in order."""
    out = []
    for f in formulas:
        out.append(f)
        if isinstance(f, Elementwise) and f.backward:
            out.append(backward_formula(f))
        if isinstance(f, MaskedElementwise) and f.mask is not None:
            out.append(inference_formula(f))
    return out
