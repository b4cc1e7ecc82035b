"""Front-end: an ``AxisReduction`` as IR stages over the elements of one row.

The iteration space is (rows, j): j runs along the reduced axis, rows over every
other position. Each statistic is a ``Reduction`` over j (sum, max, min; a mean is a
sum divided by n), computed in order, each pass able to use the statistics before it
(sums independent of one another share a pass);
then one ``Pointwise`` stage computes the per-element outputs, and the per-row outputs
follow from the statistics alone.
"""

from __future__ import annotations

import sympy as sp

from ..formula_axis import AxisReduction
from . import nodes

ROWS = nodes.Axis("rows", sp.Symbol("_rows", integer=True, nonnegative=True))
ALONG = nodes.Axis("j", AxisReduction.count)


def stages(f: AxisReduction) -> tuple[list[nodes.Reduction], nodes.Pointwise | None,
                                        dict[str, sp.Expr]]:
    """(one reduction per statistic, the per-element outputs, the per-row outputs)."""
    loads = (*f.inputs, *f.weights)
    params = (*(p.symbol for p in f.params), f.count)
    # Consecutive sums that do not use one another share one pass over the row (a
    # derived backward's four sums: one read of x and dy instead of four); a max or a
    # min keeps a pass of its own.
    groups: list[dict[str, tuple[str, sp.Expr]]] = []
    for k, (op, term) in f.stats.items():
        last = groups[-1] if groups else {}
        if (op in ("sum", "mean") and last
                and all(o in ("sum", "mean") for o, _ in last.values())
                and not term.free_symbols & {sp.Symbol(n, real=True) for n in last}):
            last[k] = (op, term)
        else:
            groups.append({k: (op, term)})
    reductions = [
        nodes.Reduction(name=", ".join(g), space=(ROWS, ALONG), reduced=(ALONG.name,),
                        loads=loads, params=params, accumulators=g,
                        finish={k: sp.Symbol(k, real=True) / f.count if op == "mean"
                                else sp.Symbol(k, real=True) for k, (op, _) in g.items()},
                        count=f.count)
        for g in groups]
    elem = {k: f.outputs[k] for k in f.element_outputs()}
    pointwise = (nodes.Pointwise(name=f.name, space=(ROWS, ALONG), loads=loads,
                                 params=params, outputs=elem) if elem else None)
    return reductions, pointwise, {k: f.outputs[k] for k in f.row_outputs()}
