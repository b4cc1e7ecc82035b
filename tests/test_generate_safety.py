"""`symdl generate` as a user runs it, in a fresh process: the README's examples work
verbatim, a formula file cannot inject code, user files are never lost, --check sees
every input, and every failure is one line (issue 16)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SYMDL = [sys.executable, "-m", "symdl.cli"]


def symdl(*args: str, cwd: Path, env: dict | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter, as a user's shell runs it."""
    return subprocess.run([*SYMDL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The failure is exit 2 with one `symdl: ...` line, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("symdl: ")
             and "deriving and printing" not in ln]
    assert len(lines) == 1, r.stderr
    return lines[0]


def write_formulas(path: Path, body: str) -> Path:
    path.write_text("import sympy as sp\nfrom symdl.formula import Elementwise, Param\n"
                    + textwrap.dedent(body))
    return path


SOFTPLUS = """
x = sp.Symbol("x", real=True)
FORMULAS = [Elementwise("softplus", "Mine", "Softplus", "A smooth ReLU.", inputs=[x],
                        outputs={"y": sp.log(1 + sp.exp(x))})]
"""


# -- 1. The README's examples, verbatim ---------------------------------------------

def _readme_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(python|bash)\n(.*?)```", text, flags=re.S)


def test_every_readme_example_runs_verbatim_in_a_fresh_process(tmp_path):
    """Python blocks that open with `# NAME.py` are files the reader creates; bash
    blocks run in the shell, except the two install commands at the top (CI runs
    those, see test_readme.py); then the other Python blocks run as they stand (a
    section may use what a later section generates)."""
    ran = 0
    blocks = _readme_blocks()
    files = [b for b in blocks if b[0] == "python" and re.fullmatch(
        r"# \w+\.py", b[1].splitlines()[0].strip())]
    for lang, block in files + [b for b in blocks if b[0] == "bash"] + [
            b for b in blocks if b[0] == "python" and b not in files]:
        first = block.splitlines()[0]
        if lang == "bash" and "pip install" in block:
            continue
        if lang == "python" and re.fullmatch(r"# \w+\.py", first.strip()):
            (tmp_path / first.strip()[2:]).write_text(block)
            continue
        cmd = (["bash", "-euo", "pipefail", "-c", block] if lang == "bash"
               else [sys.executable, "-c", block])
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PATH": f"{Path(sys.executable).parent}:"
                                                      f"{os.environ['PATH']}"})
        assert r.returncode == 0, f"README block failed:\n{block}\n{r.stderr[-3000:]}"
        ran += 1
    assert ran >= 4  # the kernels' tour, the formula file's generate and use, the GAN


def test_readme_formula_example_computes_what_it_says(tmp_path):
    """The README's own softplus file, generated and run in fresh processes: the
    derived backward is the logistic function (checked in mpmath)."""
    import mpmath

    block = next(b for lang, b in _readme_blocks() if b.startswith("# my_formulas.py"))
    (tmp_path / "my_formulas.py").write_text(block)
    r = symdl("generate", "--formulas", "my_formulas.py", "--out", "mypkg/", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    code = ("import numpy as np; from mypkg.kernels import softplus, softplus_backward;"
            "x = np.array([-20.0, -1.0, 0.0, 2.5, 30.0]); y = softplus(x);"
            "print(repr(y.tolist())); print(repr(softplus_backward(y, np.ones_like(y)).tolist()))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ys, dxs = (eval(line) for line in r.stdout.splitlines())
    for x, y, dx in zip([-20.0, -1.0, 0.0, 2.5, 30.0], ys, dxs, strict=True):
        exact_y = mpmath.log1p(mpmath.exp(x))
        exact_dx = 1 / (1 + mpmath.exp(-x))
        assert abs(y - exact_y) <= 4 * 2**-52 * abs(exact_y)
        # dx is computed from the rounded y: its relative error is at most about
        # |d(dx)/dy * y / dx| ulps of y, plus a few of its own.
        assert abs(dx - exact_dx) <= 64 * 2**-52 * abs(exact_dx), (x, dx)


# -- 2. Hostile prose --------------------------------------------------------------

HOSTILE = (r'''x\N{x}\x41 """; open("PWNED", "w"); """ {{ x }} {% x %} '''
           r'''\input{/etc/hostname} \write18{touch PWNED2}''' "\n"
           r'''second line\' ' \\ "''')


def test_hostile_prose_reaches_python_as_literals_and_runs_nothing(tmp_path):
    prose = repr(HOSTILE)
    write_formulas(tmp_path / "evil.py", f"""
        SECTION = {prose}
        x = sp.Symbol("x", real=True)
        lr = Param("lr", 0.5, doc={prose})
        FORMULAS = [Elementwise("scaled", {prose}, {prose}, {prose}, inputs=[x],
                                params=[lr], notes=({prose},),
                                outputs={{"y": lr.symbol * x}})]
        """)
    r = symdl("generate", "--formulas", "evil.py", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    code = ("import sys, numpy as np; sys.path.insert(0, 'out');"
            "import kernels.evil as m; print(repr(m.__doc__)); print(repr(m.scaled.__doc__));"
            "print(m.scaled(np.ones(3), 2.0).tolist())")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    module_doc, kernel_doc, values = r.stdout.splitlines()
    assert eval(module_doc).startswith(HOSTILE + ": kernels generated by symdl")
    # The literal text, every character of it (later lines indented as docstrings are).
    assert HOSTILE.replace("\n", "\n    ") in eval(kernel_doc)
    assert values == "[2.0, 2.0, 2.0]"
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()


def test_a_module_that_does_not_compile_is_never_written(tmp_path):
    """The generator compiles each rendered module first (here: a NUL byte in prose,
    which escaping turns into \\x00, so the module compiles and is written)."""
    from symdl.codegen import FormulaError, _check_compiles, docstring_escape

    with pytest.raises(FormulaError, match="does not compile"):
        _check_compiles('"""x"""\n"""', "kernels/m.py")
    for text in ['"', '""', '"""', '\\', '\\"""', 'a\x00b\r\n\u2028\ud800', 'end"']:
        literal = '"""' + docstring_escape(text) + '"""'
        assert eval(compile(literal, "t", "eval")) == text


# -- 3. User files in --out --------------------------------------------------------

def test_hand_written_files_are_never_overwritten_or_deleted(tmp_path):
    write_formulas(tmp_path / "mine.py", SOFTPLUS)
    kernels = tmp_path / "out" / "kernels"
    kernels.mkdir(parents=True)
    init = kernels / "__init__.py"
    init.write_text("# my own package init\nVALUE = 1\n")
    r = symdl("generate", "--formulas", "mine.py", "--out", "out", cwd=tmp_path)
    assert "was not generated by symdl" in one_line_error(r)
    assert init.read_text() == "# my own package init\nVALUE = 1\n"
    assert not (kernels / "mine.py").exists()  # nothing was written
    init.unlink()
    # A user's module that merely mentions symdl near its top stays.
    notes = kernels / "notes.py"
    notes.write_text("# my notes\n# Generated by symdl from mine.py, then edited by me\n")
    r = symdl("generate", "--formulas", "mine.py", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert notes.exists() and (kernels / "mine.py").exists()


def test_a_non_utf8_file_in_the_output_is_one_line_or_left_alone(tmp_path):
    write_formulas(tmp_path / "mine.py", SOFTPLUS)
    kernels = tmp_path / "out" / "kernels"
    kernels.mkdir(parents=True)
    (kernels / "latin.py").write_bytes(b"# caf\xe9 \xff\xfe\n")
    r = symdl("generate", "--formulas", "mine.py", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (kernels / "latin.py").read_bytes() == b"# caf\xe9 \xff\xfe\n"
    binary = tmp_path / "out2" / "kernels"
    binary.mkdir(parents=True)
    (binary / "__init__.py").write_bytes(b"\xff\xfe binary\n")
    r = symdl("generate", "--formulas", "mine.py", "--out", "out2", cwd=tmp_path)
    assert "was not generated by symdl" in one_line_error(r)
    assert (binary / "__init__.py").read_bytes() == b"\xff\xfe binary\n"


# -- 4. --check sees the modules a formula file imports ------------------------------

def test_check_sees_an_edit_to_an_imported_module(tmp_path):
    (tmp_path / "helper.py").write_text("import sympy as sp\n"
                                        "def curve(x):\n    return sp.tanh(x)\n")
    write_formulas(tmp_path / "uses.py", """
        from helper import curve
        x = sp.Symbol("x", real=True)
        FORMULAS = [Elementwise("act", "Mine", "Act", "From a helper.", inputs=[x],
                                outputs={"y": curve(x)})]
        """)
    r = symdl("generate", "--formulas", "uses.py", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert symdl("generate", "--check", "--formulas", "uses.py", "--out", "out",
                 cwd=tmp_path).returncode == 0
    time.sleep(0.01)
    (tmp_path / "helper.py").write_text("import sympy as sp\n"
                                        "def curve(x):\n    return sp.atan(x)\n")
    r = symdl("generate", "--check", "--formulas", "uses.py", "--out", "out", cwd=tmp_path)
    assert r.returncode == 1 and "stale" in r.stdout, r.stdout
    r = symdl("generate", "--formulas", "uses.py", "--out", "out", cwd=tmp_path)
    assert r.returncode == 0 and "kernels/uses.py" in r.stdout
    assert "atan" in (tmp_path / "out" / "kernels" / "uses.py").read_text()


# -- 5. Two runs on one output directory ----------------------------------------------

def test_concurrent_runs_on_one_output_never_both_succeed(tmp_path):
    write_formulas(tmp_path / "one.py", SOFTPLUS)
    write_formulas(tmp_path / "two.py", SOFTPLUS.replace('"softplus"', '"softplus2"'))
    for attempt in range(3):
        out = f"out{attempt}"
        procs = [subprocess.Popen([*SYMDL, "generate", "--formulas", name, "--out", out],
                                  cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for name in ("one.py", "two.py")]
        codes = [p.wait(timeout=300) for p in procs]
        assert sorted(codes) == [0, 2], codes
        winner = ("one", "two")[codes.index(0)]
        init = (tmp_path / out / "kernels" / "__init__.py").read_text()
        assert f'"{winner}"' in init.split("_KERNELS", 1)[1]
        listed = sorted(p.name for p in (tmp_path / out / "kernels").glob("*.py"))
        assert listed == ["__init__.py", "_runtime.py", f"{winner}.py"]
        runtime = (tmp_path / out / "kernels" / "_runtime.py").read_text()
        assert runtime.startswith(f"# Generated by symdl from {winner}.py with ")


# -- 6. One line, not a traceback ------------------------------------------------------

@pytest.mark.parametrize("make, expect", [
    (lambda d: [(d / "f.txt").write_text("x = 1\n"), "f.txt"][1], "must be a Python file"),
    (lambda d: (d / "adir").mkdir() or "adir", "is a directory"),
    (lambda d: "missing.py", "does not exist"),
])
def test_bad_formula_paths_get_one_line(tmp_path, make, expect):
    arg = make(tmp_path)
    for command in (["generate"], ["list"], ["show", "x"]):
        r = symdl(*command, "--formulas", arg, "--out", "out", cwd=tmp_path)
        assert expect in one_line_error(r)


# -- 7. Ordinary file modes ------------------------------------------------------------

def test_written_files_get_the_ordinary_mode(tmp_path):
    write_formulas(tmp_path / "mine.py", SOFTPLUS)
    r = subprocess.run(["sh", "-c", "umask 022 && exec \"$@\"", "sh", *SYMDL, "generate",
                        "--formulas", "mine.py", "--out", "out"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()
               and p.name != ".symdl.lock"]
    assert len(written) >= 3  # kernels, __init__, the sheet(s)
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


# -- 8. The built-in library's default output ------------------------------------------

def test_builtin_default_output_is_the_checkout_not_the_cwd(tmp_path):
    r = symdl("generate", "--check", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:]
    assert str(ROOT / "generated") in r.stdout
    assert not (tmp_path / "generated").exists()


# -- 10. Messages ---------------------------------------------------------------------

def test_a_param_symbol_without_real_true_is_explained(tmp_path):
    write_formulas(tmp_path / "wd.py", """
        p, g = sp.symbols("p g", real=True)
        wd = sp.Symbol("wd")
        FORMULAS = [Elementwise("decay", "Mine", "Decay", "Weight decay.", inputs=[p, g],
                                params=[Param("wd", 0.01)], outputs={"q": p - wd * g})]
        """)
    line = one_line_error(symdl("generate", "--formulas", "wd.py", "--out", "o",
                                cwd=tmp_path))
    assert "assumptions" in line and "sp.Symbol('wd', real=True)" in line


def test_sympy_errors_name_the_formula_and_the_step(tmp_path):
    write_formulas(tmp_path / "undef.py", """
        x = sp.Symbol("x", real=True)
        FORMULAS = [Elementwise("mystery", "Mine", "Mystery", "Undefined g.", inputs=[x],
                                outputs={"y": sp.Function("g")(x)})]
        """)
    line = one_line_error(symdl("generate", "--formulas", "undef.py", "--out", "o",
                                cwd=tmp_path))
    assert "formula 'mystery'" in line and "lowering" in line


def test_a_runaway_sympy_step_ends_within_its_budget(tmp_path):
    """A step that SymPy would work on for a long time (factoring a large expanded
    polynomial of three inputs while printing it) stops at the budget with one line."""
    write_formulas(tmp_path / "poly.py", """
        x, y, z = sp.symbols("x y z", real=True)
        big = sp.expand((x + 2*y + 3*z + 1)**12 * (x*y - z + 2)**10)
        FORMULAS = [Elementwise("bigpoly", "Mine", "P", "A large polynomial.",
                                inputs=[x, y, z], outputs={"w": big})]
        """)
    start = time.monotonic()
    r = symdl("generate", "--formulas", "poly.py", "--out", "o", cwd=tmp_path,
              env={"SYMDL_SYMPY_SECONDS": "3"}, timeout=120)
    line = one_line_error(r)
    assert "formula 'bigpoly'" in line and "more than 3 s" in line
    assert time.monotonic() - start < 60


def test_gelu_tanh_backward_no_longer_runs_away(tmp_path):
    """The tanh form of GELU with backward=True: SymPy's solver ran for over 20
    minutes looking for the derivative in terms of y. That search now has its own
    budget; past it, the backward takes x, and generation succeeds."""
    write_formulas(tmp_path / "gelu.py", """
        x = sp.Symbol("x", real=True)
        inner = sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 1000000) * x**3)
        FORMULAS = [Elementwise("gelu_tanh", "Mine", "GELU", "tanh form.", inputs=[x],
                                outputs={"y": x / 2 * (1 + sp.tanh(inner))}, backward=True)]
        """)
    start = time.monotonic()
    r = symdl("generate", "--formulas", "gelu.py", "--out", "o", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 120
    assert "def gelu_tanh_backward(x, dy, out=None)" in (
        tmp_path / "o" / "kernels" / "gelu.py").read_text()
