"""The Numba backend's printer: IR blocks -> statements of Python source for Numba.

The expression printer itself is ``symdl.printers.NumbaPrinter`` (one ``_print_<Node>``
per node type); this module prints the IR's targets and the level structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ...ir.nodes import Assign, Block, Element
from ...printers import numba_code, wide_code


@dataclass
class Statement:
    """``target = value``, both printed. ``array`` names the output when the target is
    that output's element i (see ``element_target``): a template may then print the
    store another way (the streaming cores, with a non-temporal store)."""

    target: str
    value: str
    array: str = ""
    op: str = "="  # "+=" where a template accumulates (a reduction's sums)


def element_target(array: str) -> str:
    """How an output's element at the current point is written: a_<name>[i]."""
    return f"a_{array}[i]"


def print_assign(a: Assign, element=element_target) -> Statement:
    """One assignment; ``element`` prints an output element's target (by default
    ``element_target``; a kernel over rows indexes its row's view)."""
    if isinstance(a.target, Element):
        return Statement(element(a.target.array), numba_code(a.value), a.target.array, a.op)
    return Statement(a.target.name, numba_code(a.value), "", a.op)


def print_coefficients(assigns: list[Assign], wide: dict[sp.Symbol, sp.Symbol]
                       ) -> list[Statement]:
    """Loop-invariant coefficients computed in float64 from the parameters' float64
    values (``wide``: each parameter -> the name of that value), then each rounded once
    to the kernel's dtype T.

    A float32 kernel would otherwise round beta2 to float32 before 1 - beta2 (for
    0.9999 a relative error of 1.7e-4 in the g**2 term of Adam) and 1 - p to 0 for a
    dropout p just below 1; PyTorch computes such coefficients in double, too.
    """
    names = {k.name: v for k, v in wide.items()}  # by name: symbols may carry assumptions
    statements = []
    for a in assigns:
        rename = {s: names[s.name] for s in a.value.free_symbols if s.name in names}
        statements.append(Statement(f"_w{a.target.name}", wide_code(a.value.xreplace(rename))))
        names[a.target.name] = sp.Symbol(f"_w{a.target.name}")
    return statements + [Statement(a.target.name, f"T(_w{a.target.name})") for a in assigns]


def print_block(block: Block, wide: dict[sp.Symbol, sp.Symbol] | None = None,
                element=element_target) -> tuple[list[list[Statement]], list[Statement]]:
    """(statements per level, per-point statements); with ``wide``, level 0 is printed
    as float64 coefficients (``print_coefficients``)."""
    levels = [[print_assign(a, element) for a in level] for level in block.levels]
    if wide is not None and levels:
        levels[0] = print_coefficients(block.levels[0], wide)
    return levels, [print_assign(a, element) for a in block.body]
