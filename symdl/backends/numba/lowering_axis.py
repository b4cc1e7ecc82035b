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


def _col_element(array: str) -> str:
    return f"a_{array}[_o, i, _cc]"


def _col_row_element(array: str) -> str:
    return f"a_{array}[_o, _cc]"


def _targets(statements) -> list[str]:
    return [s.target for s in statements if not s.array]


def _columns(passes: list[dict], row_in: list[str], out_row, out_body, row_body) -> dict:
    """The column layout's data (an axis that is not last, batch norm's axis 0): a
    tile of columns runs each pass with the columns innermost, so every value known
    once per row is kept per column, in an array ``_v_<name>`` of the tile's width.
    Each loop loads the ones its statements use and stores the ones it sets."""
    names = list(row_in)
    stages = []
    for st in passes:
        row_loads = _used(st["row"], names)
        names += [*_targets(st["row"]), *st["accs"]]
        body_loads = _used(st["body"], names)
        fin_loads = _used(st["finish"], names)
        names += _targets(st["finish"])
        stages.append({"row_loads": row_loads, "row_stores": _targets(st["row"]),
                       "body_loads": [n for n in body_loads if n not in st["accs"]],
                       "fin_loads": fin_loads, "fin_stores": _targets(st["finish"])})
    out_row_loads = _used(out_row, names)
    names += _targets(out_row)
    return {"stages": stages, "names": list(dict.fromkeys(names)),
            "out_row_loads": out_row_loads, "out_row_stores": _targets(out_row),
            "out_body_loads": _used(out_body, names), "out_body": out_body,
            "row_body_loads": _used(row_body, names), "row_body": row_body}


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
        names = list(red.accumulators)
        accs = {name: ir.Local(f"_acc{k}_{j}") for j, name in enumerate(names)}
        p, row, body = _schedule({accs[nm]: t for nm, (_, t) in red.accumulators.items()},
                                 params, row_known, f"_c{k}_",
                                 accumulate=frozenset(accs.values()))
        (op, _), *_ = red.accumulators.values()
        if op in ("max", "min"):  # (alone in its pass)
            body[-1].op = _OP[op]
        stats = {name: sp.Symbol(name, real=True) for name in names}
        finish = {ir.Local(nm): red.finish[nm].xreplace({stats[nm]: sp.Symbol(accs[nm].name)})
                  for nm in names}
        _, fin_row, fin = _schedule(finish, params, row_known, f"_f{k}_")
        pre += p
        passes.append({"name": red.name, "op": op, "accs": [a.name for a in accs.values()],
                       "init": _INIT[op], "row": row, "body": body, "finish": fin_row + fin,
                       "loads": _used(body, loads)})
        row_known |= set(stats.values())
    out_row, out_body, col_body = [], [], []
    if pointwise is not None:
        elem = {ir.Element(o): e for o, e in pointwise.outputs.items()}
        p, out_row, out_body = _schedule(elem, params, row_known, "_co", _row_element)
        pre += p
        col_body = _schedule(elem, params, row_known, "_co", _col_element)[2]
    rows = {ir.Element(o): e for o, e in row_outputs.items()}
    p, row_pre, row_body = _schedule(rows, params, row_known, "_cr", _per_row_element)
    pre += p
    col_row = sum(_schedule(rows, params, row_known, "_cr", _col_row_element)[1:], [])
    return {"pre": pre, "extra": {
        "elem_in": [s.name for s in f.inputs], "row_in": [s.name for s in f.row_inputs],
        "weights": [s.name for s in f.weights], "elem_out": f.element_outputs(),
        "row_out": f.row_outputs(), "summed": list(f.summed), "stages": passes,
        "out_row": out_row, "out_body": out_body, "out_loads": _used(out_body, loads),
        "row_body": row_pre + row_body, "axis_default": -1,
        "cols": _columns(passes, [s.name for s in f.row_inputs], out_row, col_body, col_row)}}
