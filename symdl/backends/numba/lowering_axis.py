"""Lowering of an ``AxisReduction``: IR stages (``symdl.ir.axis``) -> Numba statements.

Each stage's expressions go through the IR's schedule with three levels: the
parameters (once per call, in float64), the values known once per row (the
statistics so far, the per-row inputs, n), and the elements along the axis.
"""

from __future__ import annotations

import sympy as sp

from ... import ir
from ...formula_axis import AxisReduction
from ...ir.axis import stages
from . import element_target, print_block, select_functions

#: The value an accumulator starts from, per operation (printed by the template).
_INIT = {"sum": "T(0)", "mean": "T(0)", "max": "T(-math.inf)", "min": "T(math.inf)"}
_OP = {"sum": "+=", "mean": "+=", "max": "max", "min": "min"}


def _row_element(array: str) -> str:
    return f"_row_{array}[i]"


def _per_row_element(array: str) -> str:
    return f"a_{array}[_r]"


def _used(statements, names) -> list[str]:
    from .lowering import _names_used

    return _names_used(statements, names)


def _one_exp(e: sp.Expr) -> sp.Expr:
    """exp(x) exp(-m) back into exp(x - m): factoring splits a shifted exponential, and
    the split form overflows (exp(1000) exp(-1000) is inf * 0) where the shift was meant
    to keep it in range."""
    return sp.powsimp(e, combine="exp")


def _schedule(results: dict, params: set, row_known: set, prefix: str,
              element=element_target, accumulate: frozenset = frozenset()):
    block = ir.schedule(results, [params, row_known], select_functions, prefix,
                        post=_one_exp, accumulate=accumulate)
    wide = {p: sp.Symbol(f"p_{p.name}") for p in params}
    (pre, row), body = print_block(block, wide, element)
    return pre, row, body


def plan_axis_reduction(f: AxisReduction) -> dict:
    """The template's data: the statistics' passes, the per-element and per-row
    outputs, and the statements before the row loop (the parameters' coefficients)."""
    reductions, pointwise, row_outputs = stages(f)
    params = {p.symbol for p in f.params}
    row_known = {*f.row_inputs, f.count}
    loads = [s.name for s in (*f.inputs, *f.weights)]
    pre, passes = [], []
    for k, red in enumerate(reductions):
        ((name, (op, term)),) = red.accumulators.items()
        acc = ir.Local(f"_acc{k}")
        p, row, body = _schedule({acc: term}, params, row_known, f"_c{k}_",
                                 accumulate=frozenset({acc}))
        body[-1].op = _OP[op]
        stat = sp.Symbol(name, real=True)
        finish = red.finish[name].xreplace({stat: sp.Symbol(acc.name)})
        _, fin_row, fin = _schedule({ir.Local(name): finish}, params, row_known, f"_f{k}_")
        pre += p
        passes.append({"name": name, "op": op, "acc": acc.name, "init": _INIT[op],
                       "row": row, "body": body, "finish": fin_row + fin,
                       "loads": _used(body, loads)})
        row_known.add(stat)
    out_row, out_body = [], []
    if pointwise is not None:
        p, out_row, out_body = _schedule({ir.Element(o): e for o, e in pointwise.outputs.items()},
                                         params, row_known, "_co", _row_element)
        pre += p
    p, row_pre, row_body = _schedule({ir.Element(o): e for o, e in row_outputs.items()}, params,
                               row_known, "_cr", _per_row_element)
    pre += p
    return {"pre": pre, "extra": {
        "elem_in": [s.name for s in f.inputs], "row_in": [s.name for s in f.row_inputs],
        "weights": [s.name for s in f.weights], "elem_out": f.element_outputs(),
        "row_out": f.row_outputs(), "summed": list(f.summed), "stages": passes,
        "out_row": out_row, "out_body": out_body, "out_loads": _used(out_body, loads),
        "row_body": row_pre + row_body, "axis_default": -1}}
