"""Front-ends: formulas -> kernel IR nodes (``symdl.ir.nodes``).

Each formula kind that has moved onto the IR has one small function here. The
elementwise kinds build a ``Pointwise`` kernel over the flattened elements; sums over
all elements build a ``Reduction``.
"""

from __future__ import annotations

import sympy as sp

from ..formula import Elementwise, Reduction
from . import nodes

#: The flattened elements of an array of any shape, in C order.
ELEMENTS = nodes.Axis("i", sp.Symbol("_n", integer=True, nonnegative=True))


def pointwise(f: Elementwise, results: dict[str, sp.Expr] | None = None) -> nodes.Pointwise:
    """An elementwise formula as a pointwise kernel over its inputs' elements.

    ``results`` replaces the formula's results (a special case's cheaper core)."""
    return nodes.Pointwise(
        name=f.name, space=(ELEMENTS,), loads=tuple(f.inputs),
        params=tuple(p.symbol for p in f.params),
        outputs=dict(f.results() if results is None else results),
        updates=tuple(f.updates))


def reduction(f: Reduction) -> nodes.Reduction:
    """Sums over every element of the inputs, then the formula's outputs."""
    return nodes.Reduction(
        name=f.name, space=(ELEMENTS,), reduced=(ELEMENTS.name,), loads=tuple(f.inputs),
        params=tuple(p.symbol for p in f.params),
        accumulators={k: ("sum", e) for k, e in f.sums.items()},
        finish=dict(f.outputs), count=f.count, checks=dict(f.domains))
