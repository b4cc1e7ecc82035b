"""The kernel IR (symdl.ir) and its passes, on their own, and the Numba backend's
printing of an IR block."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import sympy as sp

from symdl import ir
from symdl.backends.numba import pointwise_cores, print_block, select_functions
from symdl.formula import Elementwise, Param, Reduction
from symdl.ir import build
from symdl.vecmath import VecExp

x, y = sp.symbols("x y", real=True)
b = sp.Symbol("b", real=True)


def test_hoist_invariants_takes_the_largest_parameter_only_parts() -> None:
    e = x * (1 - b) ** 2 + y / (1 - b)
    pre, (out,) = ir.hoist_invariants([e], {b}, "_cp")
    values = {v for _, v in pre}
    assert values == {(1 - b) ** 2, 1 / (1 - b)}
    assert b not in out.free_symbols and {x, y} <= out.free_symbols
    # Substituting the temporaries back gives the expression again.
    assert sp.simplify(out.xreplace({s: v for s, v in pre}) - e) == 0


def test_schedule_places_each_temporary_at_its_level() -> None:
    c = sp.Symbol("c", real=True)  # a per-feature value (level 1)
    results = {ir.Element("u"): sp.exp(x * c) * (1 - b), ir.Element("v"): sp.exp(x * c) + x,
               ir.Local("s"): x * (1 - b)}
    block = ir.schedule(results, [{b}, {c}], lambda e: e,
                        accumulate=frozenset({ir.Local("s")}))
    level0, level1 = block.levels
    assert all(a.value.free_symbols <= {b} for a in level0) and level0
    assert not level1  # nothing depends on c alone
    ops = {a.target: a.op for a in block.body}
    assert ops[ir.Local("s")] == "+=" and ops[ir.Element("u")] == "="
    # exp(x c) is shared: computed once per point, as a temporary.
    temps = [a for a in block.body if isinstance(a.target, ir.Local)
             and a.target.name.startswith("_c")]
    assert [a.value for a in temps] == [sp.exp(x * c)]
    # The IR holds SymPy expressions, never printed text.
    assert all(isinstance(a.value, sp.Basic) for a in level0 + block.body)


def test_the_ir_knows_no_backend() -> None:
    """symdl/ir imports nothing target-specific (printers, vecmath, backends)."""
    for path in Path(ir.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not any(w in module for w in ("backends", "printers", "vecmath")), \
                    (path.name, module)


def test_backend_chooses_the_vectorizable_exp() -> None:
    assert select_functions(sp.exp(x) + 1) == VecExp(x) + 1


def test_front_ends_build_pointwise_and_reduction_nodes() -> None:
    lr = Param("lr", "learning rate")
    f = Elementwise("scaled", "T", "Scaled", "doc", inputs=(x,), params=(lr,),
                    outputs={"y": lr.symbol * x})
    k = build.pointwise(f)
    assert k.loads == (x,) and k.params == (lr.symbol,) and k.outputs == {"y": lr.symbol * x}
    assert pointwise_cores(k) == ["ser", "par", "stream"]  # two operations: memory-bound
    r = Reduction("mse", "T", "MSE", "doc", inputs=(x, y), sums={"e": (x - y) ** 2},
                  outputs={"mse": sp.Symbol("e", real=True) / Reduction.count})
    k = build.reduction(r)
    assert k.accumulators == {"e": ("sum", (x - y) ** 2)} and k.reduced == ("i",)


def test_coefficients_are_computed_in_float64_and_rounded_once() -> None:
    """1 - beta2 for beta2 = 0.9999 in float32: the printed coefficient, run as Python,
    equals float32(1 - 0.9999 in float64), not float32(1 - float32(0.9999))."""
    beta = sp.Symbol("beta", real=True)
    block = ir.schedule({ir.Element("u"): x * (1 - beta)}, [{beta}], select_functions)
    (pre,), body = print_block(block, {beta: sp.Symbol("p_beta")})
    env = {"T": np.float32, "np": np, "math": __import__("math"), "p_beta": 0.9999}
    for st in pre:
        exec(f"{st.target} = {st.value}", env)
    (coef,) = [st.target for st in pre if not st.target.startswith("_w")]
    assert env[coef] == np.float32(1 - 0.9999) != np.float32(1) - np.float32(0.9999)
    assert body[-1].target == "a_u[i]" and body[-1].array == "u"
