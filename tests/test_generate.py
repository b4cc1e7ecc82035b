"""symdl generate: up to date, deterministic, guarded by --check, and following edits."""

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symdl.cli import main
from symdl.codegen import builtin_modules, render

ROOT = Path(__file__).resolve().parent.parent


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_check_passes_on_the_checkout(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["generate", "--check"]) == 0


def test_check_fails_after_a_hand_edit(tmp_path, capsys):
    out = tmp_path / "gen"
    shutil.copytree(ROOT / "generated", out, ignore=shutil.ignore_patterns("build"))
    target = out / "kernels" / "activations.py"
    target.write_text(target.read_text().replace("= _vtanh(x)", "= _vtanh(x) * T(1.0001)"))
    assert main(["generate", "--check", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "kernels/activations.py" in printed and "symdl generate" in printed
    assert "-        a_y[i] = _vtanh(x) * T(1.0001)" in printed  # a unified diff
    assert main(["generate", "--out", str(out)]) == 0
    assert main(["generate", "--check", "--out", str(out)]) == 0


def test_render_is_deterministic_across_processes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        env = {**os.environ, "PYTHONHASHSEED": str(len(str(d)))}
        subprocess.run([sys.executable, "-m", "symdl.cli", "generate", "--out", str(d)],
                       check=True, env=env, capture_output=True)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert render(builtin_modules()) == render(builtin_modules())


def test_generate_rewrites_only_what_changed(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generate", "--out", str(out)]) == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.py")}
    capsys.readouterr()
    assert main(["generate", "--out", str(out)]) == 0
    assert "wrote" not in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("*.py")}


def test_fingerprint_shortcut_still_sees_a_hand_edit(tmp_path, capsys):
    """The no-change shortcut trusts its record only while the files match it."""
    out = tmp_path / "gen"
    assert main(["generate", "--out", str(out)]) == 0
    assert main(["generate", "--check", "--out", str(out)]) == 0
    assert "nothing changed" in capsys.readouterr().out
    target = out / "kernels" / "linalg.py"
    target.write_text(target.read_text() + "# edited by hand\n")
    assert main(["generate", "--check", "--out", str(out)]) == 1
    assert "kernels/linalg.py" in capsys.readouterr().out
    target.unlink()
    assert main(["generate", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and target.exists()


def test_editing_a_formula_changes_kernel_derivative_and_sheet(tmp_path):
    """The edit test of the foundation issue: sigmoid -> 1/(1+exp(-2x))."""
    src = (ROOT / "symdl/library/activations.py").read_text()
    edited = src.replace('outputs={"y": 1 / (1 + sp.exp(-x))}',
                         'outputs={"y": 1 / (1 + sp.exp(-2 * x))}')
    assert edited != src
    formulas = tmp_path / "my_activations.py"
    formulas.write_text(edited)
    out = tmp_path / "mypkg"
    assert main(["generate", "--formulas", str(formulas), "--out", str(out)]) == 0
    mod = _import(out / "kernels" / "my_activations.py", "edited_activations")
    x = np.linspace(-5, 5, 41)
    y = mod.sigmoid(x)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-2 * x)), rtol=1e-15)
    np.testing.assert_allclose(mod.sigmoid_backward(y, np.ones_like(y)), 2 * y * (1 - y),
                               rtol=1e-15)
    sheet = (out / "sheet" / "my_activations.tex").read_text()
    assert r"e^{- 2 x}" in sheet
    assert r"2 y \left(1 - y\right)" in sheet
    # The untouched formula (tanh) comes out exactly as in the built-in module.
    builtin = (ROOT / "generated/kernels/activations.py").read_text()
    tanh_block = builtin[builtin.index("# ---- tanh (map)"):builtin.index("# ---- tanh_backward")]
    assert tanh_block in (out / "kernels" / "my_activations.py").read_text()


USER_FORMULAS = '''
import sympy as sp
from symdl.formula import Elementwise

x = sp.Symbol("x", real=True)
softplus = Elementwise("softplus", "Mine", "Softplus", "A smooth ReLU.", inputs=[x],
                       outputs={"y": sp.log(1 + sp.exp(x))}, backward=True)
FORMULAS = [softplus]
'''


def test_user_formula_file_gives_a_standalone_module(tmp_path):
    (tmp_path / "mine.py").write_text(USER_FORMULAS)
    out = tmp_path / "out"
    assert main(["generate", "--formulas", str(tmp_path / "mine.py"), "--out", str(out)]) == 0
    path = out / "kernels" / "mine.py"
    # The module and the package's runtime import Python's own modules, numba (and its
    # llvmlite), numpy, and (the module) the runtime beside it: never symdl.
    imports = set()
    for f in (path, out / "kernels" / "_runtime.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                imports |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imports.add(node.module.split(".")[0] if node.level == 0
                            else "." + (node.module or node.names[0].name))
    assert imports - set(sys.stdlib_module_names) == {"numba", "llvmlite", "numpy",
                                                       "._runtime"}
    mod = _import(path, "user_mine")
    x = np.array([-1e4, -30.0, 0.0, 30.0, 1e4])
    y = mod.softplus(x)
    assert np.all(np.isfinite(y)) and y[-1] == 1e4 and y[0] == 0.0
    dx = mod.softplus_backward(y, np.ones_like(y))
    with np.errstate(over="ignore"):  # exp(1e4) = inf is fine in the reference
        np.testing.assert_allclose(dx, 1 / (1 + np.exp(-x)), rtol=1e-15, atol=0)
    assert main(["verify", "--formulas", str(tmp_path / "mine.py"), "--out", str(out)]) == 0


@pytest.mark.parametrize("bad_name", ['x"); import os; ("', "_private", "class", "T"])
def test_formula_names_cannot_inject_code(tmp_path, bad_name, capsys):
    text = USER_FORMULAS.replace('Elementwise("softplus"', f"Elementwise({bad_name!r}")
    (tmp_path / "bad.py").write_text(text)
    assert main(["generate", "--formulas", str(tmp_path / "bad.py"),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "identifier" in err or "reserved" in err
    assert not (tmp_path / "o").exists()


def test_cli_list_and_show(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "sigmoid_backward" in listed and "derived from sigmoid" in listed
    assert main(["show", "sigmoid"]) == 0
    shown = capsys.readouterr().out
    assert "y = 1/(1 + exp(-x))" in shown and "dx = dy*y*(1 - y)" in shown
    assert main(["show", "rmsprop_step"]) == 0
    shown = capsys.readouterr().out
    assert "special case momentum = 0; momentum_buf left untouched" in shown
    assert "generated statements when momentum == 0.0:" in shown
    assert main(["show", "nonexistent"]) == 2


def test_verify_exits_nonzero_on_a_wrong_kernel(tmp_path, capsys):
    out = tmp_path / "gen"
    (tmp_path / "mine.py").write_text(USER_FORMULAS)
    assert main(["generate", "--formulas", str(tmp_path / "mine.py"), "--out", str(out)]) == 0
    target = out / "kernels" / "mine.py"
    text = target.read_text()
    assert "= _vlog1p(" in text
    target.write_text(text.replace("= _vlog1p(", "= T(1.000001)*_vlog1p("))
    assert main(["verify", "--formulas", str(tmp_path / "mine.py"), "--out", str(out)]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_a_file_no_longer_generated_is_stale_then_removed(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generate", "--out", str(out)]) == 0
    leftover = out / "kernels" / "renamed_away.py"
    leftover.write_text("# Generated by symdl from symdl/library/renamed_away.py with "
                        "templates/numba/module.py.j2.\n")  # (a module renamed since)
    mine = out / "kernels" / "handwritten.py"
    mine.write_text("x = 1\n")  # not ours: never touched
    assert main(["generate", "--check", "--out", str(out)]) == 1
    assert "renamed_away.py" in capsys.readouterr().out
    assert main(["generate", "--out", str(out)]) == 0
    assert not leftover.exists() and mine.exists()


def test_one_source_per_output_directory(tmp_path, capsys):
    # A formula file's output would replace the built-in library's package __init__ and
    # remove its modules (and the other way round): refused, nothing written.
    out = tmp_path / "gen"
    assert main(["generate", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (tmp_path / "mine.py").write_text(USER_FORMULAS)
    for command in ("generate", "sheet"):
        assert main([command, "--formulas", str(tmp_path / "mine.py"), "--out", str(out)]) == 2
        assert "was generated from the built-in library, not from mine.py" in \
            capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    mine = tmp_path / "mine_out"
    assert main(["generate", "--formulas", str(tmp_path / "mine.py"), "--out", str(mine)]) == 0
    assert main(["generate", "--out", str(mine)]) == 2


@pytest.mark.parametrize("text, message", [
    ("x = (\n", "mine.py:1: syntax error"),
    ("FORMULAS = 5\n", "FORMULAS must be a list of formulas"),
    ("import no_such_module_here\n", "ModuleNotFoundError while loading"),
])
def test_a_broken_formula_file_is_one_line(tmp_path, capsys, text, message):
    (tmp_path / "mine.py").write_text(text)
    for command in (["list"], ["generate", "--out", str(tmp_path / "o")]):
        assert main([*command, "--formulas", str(tmp_path / "mine.py")]) == 2
        assert message in capsys.readouterr().err


def test_cli_mistakes_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["generate", "--formulas", str(tmp_path / "nope.py"), "--out",
                 str(tmp_path / "o")]) == 2
    assert "nope.py does not exist" in capsys.readouterr().err
    (tmp_path / "mine.py").write_text(USER_FORMULAS)
    assert main(["verify", "--formulas", str(tmp_path / "mine.py")]) == 2
    assert "needs --out DIR" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["generate", "--formulas", str(tmp_path / "mine.py"), "--out",
                 str(tmp_path / "file")]) == 2
    assert "symdl:" in capsys.readouterr().err
    assert main(["show", "mlp_backward"]) == 0  # a network's matrix steps
    assert "content hash" in capsys.readouterr().out


SPECIAL_CASE_FORMULAS = '''
import sympy as sp
from symdl.formula import Elementwise, Param, SpecialCase

w, g, buf, lr, mu = sp.symbols("w g buf lr mu", real=True)
heavy_ball = Elementwise(
    "heavy_ball", "Mine", "Heavy ball", "SGD with momentum.", inputs=[w, g, buf],
    params=[Param("lr", 0.1, "nonnegative"), Param("mu", 0.0, "nonnegative")],
    updates={"w": w - lr * (mu * buf + g), "buf": mu * buf + g},
    special_cases=[SpecialCase({"mu": 0}, untouched=("buf",), why="no momentum")])
FORMULAS = [heavy_ball]
'''


def test_special_case_core_is_substituted_by_sympy_and_leaves_state_alone(tmp_path):
    (tmp_path / "hb.py").write_text(SPECIAL_CASE_FORMULAS)
    out = tmp_path / "out"
    assert main(["generate", "--formulas", str(tmp_path / "hb.py"), "--out", str(out)]) == 0
    text = (out / "kernels" / "hb.py").read_text()
    assert "def _heavy_ball_mu0_par(" in text and "if mu == 0.0:" in text
    mod = _import(out / "kernels" / "hb.py", "user_hb")
    rng = np.random.default_rng(5)
    for n in (10, 40_000):  # the serial and the parallel core
        w0, g, b0 = (rng.standard_normal(n) for _ in range(3))
        w, b = w0.copy(), b0.copy()
        mod.heavy_ball(w, g, b, lr=0.5)  # mu = 0: the special core
        np.testing.assert_array_equal(b, b0)
        np.testing.assert_array_equal(w, w0 - 0.5 * g)
        w, b = w0.copy(), b0.copy()
        mod.heavy_ball(w, g, b, lr=0.5, mu=0.25)  # the general core
        np.testing.assert_allclose(b, 0.25 * b0 + g, rtol=1e-15)
        np.testing.assert_allclose(w, w0 - 0.5 * (0.25 * b0 + g), rtol=1e-14, atol=1e-15)
    assert main(["verify", "--formulas", str(tmp_path / "hb.py"), "--out", str(out)]) == 0


@pytest.mark.parametrize("case, message", [
    ('SpecialCase({"nu": 0})', "unknown parameter"),
    ('SpecialCase({"mu": 0}, untouched=("g",))', "not an update"),
    ('SpecialCase({"mu": 0}, untouched=("w", "buf"))', "must leave an update"),
    ('SpecialCase({"mu": "zero"})', "not a finite number"),
    ('SpecialCase({"mu": float("inf")})', "not a finite number"),
    ('SpecialCase({})', "needs parameter values"),
    ('SpecialCase({"mu": 0}, why="two\\nlines")', "one-line why"),
])
def test_bad_special_cases_are_refused(case, message):
    from symdl.formula import FormulaError

    namespace: dict = {}
    text = SPECIAL_CASE_FORMULAS.replace(
        'SpecialCase({"mu": 0}, untouched=("buf",), why="no momentum")', case)
    with pytest.raises(FormulaError, match=message):
        exec(compile(text, "hb.py", "exec"), namespace)


def test_verify_a_derived_kernel_by_name(tmp_path, capsys):
    """`symdl verify softplus_backward` finds the forward formula it was derived from."""
    (tmp_path / "mine.py").write_text(USER_FORMULAS)
    out = tmp_path / "out"
    assert main(["generate", "--formulas", str(tmp_path / "mine.py"), "--out", str(out)]) == 0
    assert main(["verify", "--formulas", str(tmp_path / "mine.py"), "--out", str(out),
                 "softplus_backward"]) == 0
    printed = capsys.readouterr().out
    assert "softplus_backward" in printed and "softplus " not in printed
