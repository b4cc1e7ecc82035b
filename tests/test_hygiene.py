"""User names never meet the generated code's own names (issue 18's hygiene rule):
every name a template uses beside the user's is reserved for that kind, and a formula
that uses one is refused in one line (symdl/hygiene.py)."""

from __future__ import annotations

import ast
import dataclasses
import functools
from collections.abc import Mapping

import pytest
import sympy as sp

from symdl import hygiene
from symdl.backends.numba.lowering import plan
from symdl.codegen import FormulaModule, builtin_modules, render
from symdl.errors import FormulaError
from symdl.formula import RESERVED_NAMES, AxisReduction, Batch, Elementwise, Param, Reduction

x, y, g, b2 = sp.symbols("x y g b2", real=True)
mx, sq, k = sp.symbols("mx sq k", real=True)


def _samples() -> list:
    """One formula of each kind that the library lacks a second example of."""
    u, v = sp.symbols("u_in v_in", real=True)
    return [
        Elementwise("scaled", "S", "Scaled", ".", inputs=[u, v], params=[Param("k", 2.0)],
                    outputs={"z": Param("k").symbol * u * v}, backward=True),
        Batch("centred", "S", "Centred", ".", inputs=[u], features=[v],
              stats={"mu": u}, outputs={"z": v * (u - sp.Symbol("mu", real=True))}),
        Reduction("agree", "S", "Agree", ".", inputs=[u, v],
                  sums={"both": u * v, "one": u}, outputs={"ratio": sp.Symbol("both", real=True)
                                                          / sp.Symbol("one", real=True)}),
        AxisReduction("normed", "S", "Normed", ".", inputs=[u], weights=[v],
                      params=[Param("k", 2.0)],
                      stats={"mx": ("max", u), "sq": ("sum", sp.exp(u - mx))},
                      outputs={"z": v * sp.exp(u - mx) / sq, "r": (sp.log(sq) + mx) * k},
                      backward=True),
    ]


def _rendered() -> list[tuple[FormulaModule, dict[str, str]]]:
    mods = builtin_modules() + [FormulaModule("samples", "S", "samples.py", _samples())]
    return [(m, render([m])) for m in mods]


def test_every_name_a_template_uses_is_reserved_for_its_kind():
    """Renders every kind; each name in a kernel's functions that is not the user's
    (nor prefixed from one, nor a module global) must be in hygiene.RESERVED, so that
    a template edit that adds a local cannot silently capture a user's name."""
    missing = {}
    for m, files in _rendered():
        tree = ast.parse(files[f"kernels/{m.name}.py"])
        kernels = sorted(m.kernels, key=lambda k: len(k.name), reverse=True)
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
            k = next((k for k in kernels
                      if fn.name == k.name or fn.name.startswith(f"_{k.name}_")), None)
            if k is None:
                continue
            f = next(f for f in m.formulas if f.name == k.name)
            mine = hygiene.user_names(f) | set(k.arrays) | set(k.outputs) | {
                p.name for p in k.params} | set(f.expressions()) | {"m"}
            for node in ast.walk(fn):
                name = (node.id if isinstance(node, ast.Name)
                        else node.arg if isinstance(node, ast.arg) else None)
                if (not name or name.startswith("_") or name in mine
                        or name in RESERVED_NAMES
                        or any(name == f"{p}_{u}" for p in hygiene.PREFIXES for u in mine)):
                    continue
                if not hygiene.reserved_for(k.template, {name}):
                    missing.setdefault(hygiene.template_key(k.template), set()).add(name)
    assert not missing, f"add these to symdl.hygiene.RESERVED: {missing}"


def _generate(formula) -> None:
    render([FormulaModule("user", "S", "user.py", [formula])])


def test_a_batch_input_named_like_the_tile_width_is_refused():
    """It was overwritten by the kernel's column-tile width: wrong numbers, no error."""
    w, gamma = sp.symbols("w gamma", real=True)
    f = Batch("norm_w", "S", "N", ".", inputs=[w], features=[gamma], stats={"mu": w},
              outputs={"z": gamma * (w - sp.Symbol("mu", real=True))})
    with pytest.raises(FormulaError, match=r"'w' is a local of the generated code.*rename"):
        _generate(f)


def test_a_parameter_named_C_is_refused_not_a_compile_error():
    u, gamma = sp.symbols("u gamma", real=True)
    c = Param("C", 1.0)
    f = Batch("norm_c", "S", "N", ".", inputs=[u], features=[gamma], params=[c],
              stats={"mu": u}, outputs={"z": gamma * (u - sp.Symbol("mu", real=True)) * c.symbol})
    with pytest.raises(FormulaError, match="'C' is a local"):
        _generate(f)


@pytest.mark.parametrize("kind", ["elementwise", "batch", "reduction", "axis"])
def test_each_reserved_name_as_an_input_is_refused_in_one_line(kind):
    """Every reserved name of the kind, used as the user's input name."""
    key = kind
    for name in sorted(hygiene.RESERVED[key] - RESERVED_NAMES):
        s = sp.Symbol(name, real=True)
        other = sp.Symbol("q", real=True)
        with pytest.raises(FormulaError) as err:  # at construction, or at generation
            if kind == "elementwise":
                f = Elementwise("k1", "S", "K", ".", inputs=[s, other], outputs={"z": s * other})
            elif kind == "batch":
                f = Batch("k1", "S", "K", ".", inputs=[s], features=[other], stats={"mu": s},
                          outputs={"z": other * (s - sp.Symbol("mu", real=True))})
            elif kind == "reduction":
                f = Reduction("k1", "S", "K", ".", inputs=[s, other], sums={"t1": s * other},
                              outputs={"z": sp.Symbol("t1", real=True)})
            else:
                f = AxisReduction("k1", "S", "K", ".", inputs=[s, other],
                                  stats={"t1": ("sum", s * other)},
                                  outputs={"z": s * sp.Symbol("t1", real=True)})
            _generate(f)
        assert repr(name) in str(err.value), err.value
        assert "\n" not in str(err.value)


def test_a_name_that_is_the_generated_name_of_another_is_refused():
    """a_x is the array of x in the generated code: a user's a_x beside x is refused."""
    ax = sp.Symbol("a_x", real=True)
    f = Elementwise("k2", "S", "K", ".", inputs=[x, ax], outputs={"z": x + ax})
    with pytest.raises(FormulaError, match="'a_x' is the generated code's name for 'x'"):
        _generate(f)


def _renamed(v: object, old: str, new: str) -> object:
    """The formula (or part of it) as a user would write it with ``new`` for ``old``:
    symbols keep their assumptions, string names and keys follow, and dataclasses are
    built again through their constructors, so that their own checks run."""
    if isinstance(v, str):
        return new if v == old else v
    if isinstance(v, sp.Basic):
        return v.xreplace({a: sp.Symbol(new, **a.assumptions0) for a in v.atoms(sp.Symbol)
                           if a.name == old})
    if isinstance(v, Mapping):
        return type(v)((_renamed(k, old, new), _renamed(i, old, new)) for k, i in v.items())
    if isinstance(v, list | tuple):
        return type(v)(_renamed(i, old, new) for i in v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.replace(v, **{
            f.name: _renamed(getattr(v, f.name), old, new) for f in dataclasses.fields(v)
            if f.init and f.name not in ("name", "doc", "title", "section")})
    return v


@functools.cache
def _first_library_formula_of_each_kind() -> dict[str, object]:
    firsts = {}
    for m in builtin_modules():
        for f in m.formulas:
            if not getattr(f, "derived_from", None):
                firsts.setdefault(hygiene.template_key(plan(f).template), f)
    return firsts


@pytest.mark.parametrize("kind", ["contraction", "scalar", "window", "correlation", "masked",
                                  "batch_reduction", "network"])
def test_each_reserved_name_of_the_other_kinds_is_refused_in_one_line(kind):
    """The kinds above have no hand-written sample: their first library formula, with
    one of its names renamed to each reserved name of the kind in turn. The same
    renaming to a free name must generate, so that the refusal is the name's doing."""
    f = _first_library_formula_of_each_kind()[kind]
    old = sorted(hygiene.user_names(f))[0]
    _generate(_renamed(f, old, "q_free"))
    for name in sorted(hygiene.RESERVED[kind] - RESERVED_NAMES):
        with pytest.raises(FormulaError) as err:
            _generate(_renamed(f, old, name))
        assert repr(name) in str(err.value), err.value
        assert "\n" not in str(err.value)
