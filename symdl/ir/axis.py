"""Front-end: an ``AxisReduction`` as IR stages over the elements of one row.

The iteration space is (rows, j): j runs along the reduced axis, rows over every
other position. Each statistic is a ``Reduction`` over j (sum, max, min; a mean is a
sum divided by n), computed in order, each pass able to use the statistics before it;
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
    reductions = [
        nodes.Reduction(name=k, space=(ROWS, ALONG), reduced=(ALONG.name,), loads=loads,
                        params=params, accumulators={k: (op, term)},
                        finish={k: sp.Symbol(k, real=True) / f.count if op == "mean"
                                else sp.Symbol(k, real=True)},
                        count=f.count)
        for k, (op, term) in f.stats.items()]
    elem = {k: f.outputs[k] for k in f.element_outputs()}
    pointwise = (nodes.Pointwise(name=f.name, space=(ROWS, ALONG), loads=loads,
                                 params=params, outputs=elem) if elem else None)
    return reductions, pointwise, {k: f.outputs[k] for k in f.row_outputs()}
