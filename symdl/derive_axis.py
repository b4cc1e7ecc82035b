"""The backward pass of an ``AxisReduction``, derived by SymPy through its statistics.

Reverse mode over one row (the elements along the axis): the adjoint of the last
statistic first. A statistic S_k = sum_j t_k(j) (or its mean, max, min) receives
    adj(S_k) = sum_j sum_o dy_o(j) dg_o/dS_k      (the per-element outputs g_o)
             + sum_r dr_r dh_r/dS_k                (the per-row outputs h_r)
             + sum_{m > k} adj(S_m) sum_j dt_m/dS_k   (later statistics that use it)
and an input x receives, element by element,
    dx(j) = sum_o dy_o(j) dg_o/dx + sum_k adj(S_k) dt_k/dx  (/ n for a mean).
Each sum over j that depends on the element is one more statistic of the backward
kernel, so the backward kernel is itself an ``AxisReduction``.

A max (or min) shares its adjoint evenly among the elements where it is attained
(PyTorch's amax); when it only shifts the others (softmax's max), its adjoint is
zero, and SymPy proves that here, so that no such sum is computed:
the sums it depends on are rewritten through the statistics they equal
(sum_j -exp(x_j - m) = -s), and the row's terms collected into one sum that simplifies
to 0.
"""

from __future__ import annotations

import sympy as sp

from .derive import backward_name, local_derivative
from .errors import FormulaError
from .formula_axis import AxisReduction


def _unique(name: str, taken: set[str]) -> str:
    k = 0
    while f"{name}{k}" in taken:
        k += 1
    taken.add(f"{name}{k}")
    return f"{name}{k}"


class _Row:
    """The per-row sums the backward pass needs, as new sum statistics."""

    def __init__(self, fwd: AxisReduction, per_element: set[sp.Symbol], taken: set[str]):
        self.fwd, self.per_element, self.taken = fwd, per_element, taken
        self.sums: dict[sp.Symbol, sp.Expr] = {}  # symbol -> per-element term
        self.stats = dict(zip(fwd.stat_symbols(), fwd.stats.values(), strict=True))

    def total(self, term: sp.Expr) -> sp.Expr:
        """sum_j term(j), as a row-level expression."""
        term = sp.sympify(term)
        if term == 0:
            return sp.S.Zero
        if not term.free_symbols & self.per_element:
            return self.fwd.count * term
        known = self._as_statistic(term)
        if known is not None:
            return known
        for sym, t in self.sums.items():
            if sp.simplify(t - term) == 0:
                return sym
        sym = sp.Symbol(_unique("sum", self.taken), real=True)
        self.sums[sym] = term
        return sym

    def _as_statistic(self, term: sp.Expr) -> sp.Expr | None:
        """c * S_m when term = c * t_m with c the same for every element (S_m a sum or a
        mean of the terms t_m): sum_j dt/dm of softmax's exp(x - m) is -s."""
        # The parts the same for every element add n times themselves (2 mu - 2 x: 2 n mu).
        const, varying = sp.expand(term).as_independent(*self.per_element, as_Add=True)
        for sym, (op, t) in self.stats.items():
            if op not in ("sum", "mean"):
                continue
            c = sp.simplify(varying / t)
            if not c.free_symbols & self.per_element:
                return (c * sym * (self.fwd.count if op == "mean" else 1)
                        + self.fwd.count * const)
        return None

    def vanishes(self, adjoint: sp.Expr) -> bool:
        """Whether a row-level adjoint, linear in the new sums, is zero: its terms are
        gathered into one sum over the row, whose term SymPy simplifies to 0."""
        sums = [s for s in self.sums if adjoint.has(s)]
        expanded = sp.expand(adjoint)
        if sums and sp.Poly(expanded, *sums).total_degree() > 1:
            return False
        term = sp.expand(expanded.subs({s: 0 for s in sums})) / self.fwd.count
        for s in sums:
            term += expanded.coeff(s) * self.sums[s]
        return sp.simplify(term) == 0


def axis_backward_formula(fwd: AxisReduction) -> AxisReduction:
    """``<name>_backward(inputs..., d<element outputs>..., row inputs...,
    d<row outputs>..., weights..., params, axis)``: the gradient of every input (per
    element), row input (summed along the axis) and weight (summed over the rows)."""
    if fwd.summed:
        raise FormulaError(f"{fwd.name}: backward=True is for formulas written by hand")
    taken = {*fwd.argument_names(), *fwd.stats, *fwd.outputs, fwd.count.name}
    grads = {o: sp.Symbol(f"d{o}", real=True) for o in fwd.outputs}
    results = [f"d{s.name}" for s in (*fwd.inputs, *fwd.row_inputs, *fwd.weights)]
    clash = sorted(taken & ({g.name for g in grads.values()} | set(results)))
    if clash:
        raise FormulaError(f"{fwd.name}: backward: gradient name(s) {clash} are taken by the "
                           "formula's own names")
    taken |= {g.name for g in grads.values()} | set(results)
    elem = fwd.element_outputs()
    per_element = {*fwd.inputs, *fwd.weights, *(grads[o] for o in elem)}
    row = _Row(fwd, per_element, taken)
    stats = list(zip(fwd.stat_symbols(), fwd.stats.values(), strict=True))
    adjoint: dict[sp.Symbol, sp.Expr] = {}
    selected: dict[sp.Symbol, sp.Expr] = {}  # a max's share of its gradient, per element
    for k in reversed(range(len(stats))):
        s, (op, _) = stats[k]
        total = row.total(sum((grads[o] * local_derivative(fwd.outputs[o], s) for o in elem),
                              sp.S.Zero))
        total += sum((grads[r] * local_derivative(fwd.outputs[r], s)
                      for r in fwd.row_outputs()), sp.S.Zero)
        for m in range(k + 1, len(stats)):
            sm, (op_m, term_m) = stats[m]
            dm = local_derivative(term_m, s)
            if dm == 0 or adjoint[sm] == 0:
                continue
            if op_m in ("max", "min"):
                raise FormulaError(f"{fwd.name}: backward: the {op_m} {sm.name!r} uses "
                                   f"{s.name!r}; a {op_m} of a statistic is not supported")
            total += adjoint[sm] * row.total(dm) / (fwd.count if op_m == "mean" else 1)
        if op in ("max", "min"):
            if row.vanishes(total):
                total = sp.S.Zero
            else:
                # PyTorch's amax/amin: the gradient is shared evenly by the elements
                # where the extremum is attained.
                term = stats[k][1][1]
                hit = sp.Piecewise((1, sp.Eq(term, s)), (0, True))
                ties = sp.Symbol(_unique("ties", taken), real=True)
                row.sums[ties] = hit
                selected[s] = hit / ties
        adjoint[s] = total
    outputs: dict[str, sp.Expr] = {}
    for x in (*fwd.inputs, *fwd.weights):
        g = sum((grads[o] * local_derivative(fwd.outputs[o], x) for o in elem), sp.S.Zero)
        for s, (op, term) in stats:
            if adjoint[s] != 0:
                share = selected.get(s, 1 / fwd.count if op == "mean" else 1)
                g += adjoint[s] * share * local_derivative(term, x)
        outputs[f"d{x.name}"] = g
    for r in fwd.row_inputs:
        # One value per row (batch norm's gamma along axis 0): every element's share,
        # summed along the row, and the row outputs' own.
        g = row.total(sum((grads[o] * local_derivative(fwd.outputs[o], r) for o in elem),
                          sp.S.Zero))
        g += sum((grads[h] * local_derivative(fwd.outputs[h], r) for h in fwd.row_outputs()),
                 sp.S.Zero)
        for s, (op, term) in stats:
            if adjoint[s] != 0:
                share = selected.get(s, 1 / fwd.count if op == "mean" else 1)
                g += adjoint[s] * row.total(share * local_derivative(term, r))
        outputs[f"d{r.name}"] = g
    # Only the sums an output still uses (a vanished max's sums are dropped).
    used = set().union(*(e.free_symbols for e in outputs.values()))
    for s in reversed(list(row.sums)):
        if s not in used:
            del row.sums[s]
        else:
            used |= row.sums[s].free_symbols
    return AxisReduction(
        backward_name(fwd.name), fwd.section, f"{fwd.title}: backward",
        f"Gradients of {fwd.name} with respect to "
        f"{', '.join(s.name for s in (*fwd.inputs, *fwd.row_inputs, *fwd.weights))}, "
        "derived by SymPy.",
        inputs=(*fwd.inputs, *(grads[o] for o in elem)),
        row_inputs=(*fwd.row_inputs, *(grads[r] for r in fwd.row_outputs())),
        weights=fwd.weights, params=fwd.params,
        stats={**fwd.stats, **{s.name: ("sum", t) for s, t in row.sums.items()}},
        outputs=outputs, summed=tuple(f"d{w.name}" for w in fwd.weights),
        derived_from=fwd.name)
