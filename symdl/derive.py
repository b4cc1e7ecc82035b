"""Derivation: gradients by SymPy, rewritten in terms of the forward output.

This is where every derivative in symdl is taken. ``backward_formula`` turns a
forward formula y = f(x) into the formula of its backward kernel,
dx = dy * f'(x) with x eliminated in favour of y (sigmoid' -> y*(1-y)); no
derivative is written by hand anywhere in the project.
"""

from __future__ import annotations

import random

import sympy as sp

from .formula import BatchMap, BatchReduction, Elementwise, FormulaError


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


def expand_formulas(formulas: list) -> list:
    """The formulas of a module plus every formula derived from them, in order."""
    out = []
    for f in formulas:
        out.append(f)
        if isinstance(f, Elementwise) and f.backward:
            out.append(backward_formula(f))
        if isinstance(f, BatchReduction) and f.gradient:
            out.append(gradient_formula(f))
    return out


def gradient_formula(f: BatchReduction) -> BatchMap:
    """The gradient kernel's formula: d output / d x_i for every input x of every batch.

    The output J is a function of the sums S_k = sum_i t_k(x_i), so by the chain rule
    dJ/dx_i = sum_k dJ/dS_k * dt_k/dx (x_i): SymPy takes both derivatives. dJ/dS_k
    must depend on the batch counts only (true of means and plain sums); a J that
    depends on its sums nonlinearly would need a second pass and is refused.
    """
    ((jname, J),) = f.outputs.items()
    outputs, of = {}, {}
    for batch in f.batches:
        for x in batch.inputs:
            grad = sp.S.Zero
            for (k, term), s in zip(f.sums.items(), f.sum_symbols(), strict=True):
                outer = sp.diff(J, s)
                if outer.free_symbols & set(f.sum_symbols()):
                    raise DerivationError(f"{f.name}: d{jname}/d{k} depends on the sums; "
                                          "only costs linear in their sums have a "
                                          "one-pass gradient kernel")
                if outer != 0 and x in term.free_symbols:
                    grad += outer * sp.simplify(sp.diff(term, x))
            outputs[f"grad_{x.name}"] = grad
            of[f"grad_{x.name}"] = x.name
    return BatchMap(
        name=f"{f.name}_grad",
        section=f.section,
        title=f"{f.title}: gradient",
        doc=f"Gradient of {f.name}: d{jname}/dx_i for each element of each input.",
        batches=f.batches,
        outputs=outputs,
        of=of,
        domains=dict(f.domains),
        derived_from=f.name,
    )
