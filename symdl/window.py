"""SymPy nodes for window reductions (pooling): a maximum over index limits.

``sp.Sum`` is the reduction of an average pool; ``MaxOver`` is its counterpart with
``sp.Max`` as the operator. Both carry their operator in ``reduction_op`` so that the
derivation (``symdl.derive``) and the lowering treat them alike: a fold with the
operator's identity as the start value.
"""

from __future__ import annotations

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits
from sympy.logic.boolalg import BooleanFunction


class MaxOver(ExprWithLimits):
    """max over the limits of ``function``: MaxOver(x[s*i + a], (a, 0, f - 1))."""

    def _latex(self, printer) -> str:
        ranges = r"\\".join(rf"{printer._print(lo)} \leq {printer._print(v)} \leq "
                            rf"{printer._print(hi)}" for v, lo, hi in self.limits)
        return rf"\max_{{\substack{{{ranges}}}}} {printer._print(self.function)}"


class isnan(BooleanFunction):  # noqa: N801 (named as math.isnan, which it prints as)
    """True where the argument is NaN (printed as ``math.isnan``); never evaluated."""

    def _numbacode(self, printer) -> str:
        return f"math.isnan({printer._print(self.args[0])})"


def reduction_op(node: sp.Expr):
    """The associative operator of a window reduction node (Add for Sum, Max for MaxOver)."""
    if isinstance(node, sp.Sum):
        return sp.Add
    if isinstance(node, MaxOver):
        return sp.Max
    raise TypeError(f"not a window reduction: {node!r}")


def window_nodes(expr: sp.Expr) -> list[sp.Expr]:
    """The window reductions (Sum or MaxOver nodes) in an expression."""
    return sorted(expr.atoms(sp.Sum) | expr.atoms(MaxOver), key=sp.default_sort_key)
