"""The kernel IR's nodes: what a kernel computes, in SymPy, before any printing.

A front-end (``symdl.ir.build``) turns a formula into one of two kernel nodes, after
Inductor's IR: a ``Pointwise`` kernel (each point of an iteration space computed on
its own) or a ``Reduction`` (accumulators combined over the points, then a scalar
finish). Their expressions stay SymPy expressions; the passes (``symdl.ir.passes``)
rewrite them into ``Block``s of ordered assignments, and a backend
(``symdl.backends.numba``) chooses function implementations, maps the iteration
space onto loops and prints. Nothing here knows about Numba, Python or a dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp


@dataclass(frozen=True)
class Axis:
    """A named axis of an iteration space; its extent is known at run time only."""

    name: str
    extent: sp.Symbol


@dataclass(frozen=True)
class Local:
    """A temporary or a kernel-level value, by name."""

    name: str


@dataclass(frozen=True)
class Element:
    """The element of output ``array`` at the current point of the iteration space."""

    array: str


@dataclass(frozen=True)
class Assign:
    """``target op value``: op is "=" (assignment) or "+=" (an accumulator's sum)."""

    target: Local | Element
    value: sp.Basic
    op: str = "="


@dataclass
class Block:
    """Ordered assignments split by loop level.

    ``levels[k]`` is computed once per iteration of the k-th enclosing loop (level 0:
    once per call, from the scalar parameters only; level 1: once per feature, ...);
    ``body`` once per point. Level 0 depends on the scalar parameters alone: a backend
    may compute it in its widest float type and round each value once (see
    ``symdl.backends.numba.printer``).
    """

    levels: list[list[Assign]]
    body: list[Assign]


@dataclass(frozen=True)
class Pointwise:
    """Each point of ``space`` computed on its own, from the inputs' elements there.

    ``loads`` are the input arrays (each point binds the symbol of the same name to
    that element), ``params`` scalar symbols, ``outputs`` (or ``updates``, written
    back into inputs) the values stored at each point, in terms of both.
    """

    name: str
    space: tuple[Axis, ...]
    loads: tuple[sp.Symbol, ...]
    params: tuple[sp.Symbol, ...]
    outputs: dict[str, sp.Expr]
    updates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reduction:
    """Accumulators over the points of ``reduced``, then scalar ``finish`` values.

    ``accumulators`` maps a name to (operation, per-point term); the operation is
    "sum" (a "max", "min" or compensated sum would be other values). ``order`` names
    how partial results combine: "blocked" means fixed-size blocks combined in a fixed
    order, so the result does not depend on the thread count. ``finish`` maps each
    output to its value in the accumulators, the parameters and ``count`` (the number
    of points reduced).
    """

    name: str
    space: tuple[Axis, ...]
    reduced: tuple[str, ...]
    loads: tuple[sp.Symbol, ...]
    params: tuple[sp.Symbol, ...]
    accumulators: dict[str, tuple[str, sp.Expr]]
    finish: dict[str, sp.Expr]
    count: sp.Symbol
    order: str = "blocked"
    checks: dict[str, str] = field(default_factory=dict)
