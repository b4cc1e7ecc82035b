"""The formula sheet: printed from SymPy, and it compiles to a PDF."""

import os
import shutil
import subprocess
import sys

import pytest

from symdl.cli import main
from symdl.codegen import builtin_modules, render


def test_sheet_holds_definitions_and_derived_results():
    tex = render(builtin_modules())["sheet/symdl.tex"]
    assert r"y = \frac{1}{1 + e^{- x}}" in tex
    assert r"\frac{\partial y}{\partial x} = y \left(1 - y\right) \derived" in tex
    assert r"\frac{\partial y}{\partial x} = 1 - y^{2} \derived" in tex
    assert r"{y}_{i} = \sum_{j=0}^{n - 1} {A}_{i,j} {x}_{j}" in tex
    activations = tex.split(r"\section{")[1]
    assert activations.count(r"\addplot") == 4  # sigmoid, tanh and their derivatives


def test_adam_is_laid_out_as_the_paper_lists_it_with_the_seed_errors_noted():
    tex = render(builtin_modules())["sheet/symdl.tex"]
    adam = tex[tex.index(r"\subsection*{Adam}"):tex.index(r"\subsection*{RMSProp")]
    loop = adam[adam.index(r"\textbf{while}"):adam.index(r"\textbf{end while}")]
    # The iteration, its gradient, then the formula's own steps, printed from SymPy.
    assert r"$t \leftarrow t + 1$" in loop
    assert r"\frac{d}{d \theta} f{\left(\theta \right)}" in loop
    assert r"\hat{m} \leftarrow \frac{m_{t}}{1 - \beta_{1}^{t}}" in loop
    assert r"$m \leftarrow 0$" in adam and r"\textbf{return} $\theta$" in adam
    # The seed's two errors, named where they are corrected, as an erratum to that source.
    assert "Erratum to the source cheat sheet (symdl's seed, dl-cheatsheet.txt" in adam
    assert r"$\epsilon$ = 1e-9 where the paper says 1e-8" in adam
    assert "with a minus sign" in adam
    assert "RMSProp also lacks a bias-correction term" in adam


def test_plot_points_come_from_the_formula():
    import math

    tex = render(builtin_modules())["sheet/symdl.tex"]
    line = next(ln for ln in tex.splitlines() if ln.startswith(r"\addplot[thick, blue]"))
    first = line.split("{", 1)[1].split(")")[0].lstrip("(")
    x, y = map(float, first.split(","))
    assert x == -6.0 and abs(y - 1 / (1 + math.exp(6))) < 1e-6


def test_sheet_compiles_to_pdf(tmp_path, capsys):
    have_tex = shutil.which("latexmk") and shutil.which("pdflatex")
    if not have_tex:
        if os.environ.get("CI"):
            pytest.fail("CI must install TeX (see .ci/run): the sheet test may not skip there")
        pytest.skip("TeX is not installed (apt-get install texlive-latex-base latexmk ...)")
    run = subprocess.run([sys.executable, "-m", "symdl.cli", "sheet", "--pdf", "--out",
                          str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    pdf = tmp_path / "sheet" / "build" / "symdl.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf.stat().st_size > 20_000


def test_sheet_without_tex_says_how_to_install(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no latexmk on this PATH
    run = subprocess.run([sys.executable, "-m", "symdl.cli", "sheet", "--pdf", "--out",
                          str(tmp_path)], capture_output=True, text=True, env=env)
    assert run.returncode == 1
    assert "apt-get install" in run.stderr


def test_sheet_leaves_the_kernels_alone(tmp_path, monkeypatch):
    """`symdl sheet` writes sheet/ only: it must not prune the generated kernels."""
    assert main(["generate", "--out", str(tmp_path)]) == 0
    kernels = sorted(p.name for p in (tmp_path / "kernels").glob("*.py"))
    monkeypatch.setenv("PATH", "")  # no TeX needed: the PDF step fails, the sources stay
    main(["sheet", "--out", str(tmp_path)])
    assert sorted(p.name for p in (tmp_path / "kernels").glob("*.py")) == kernels
    assert (tmp_path / "sheet" / "symdl.tex").exists()


def test_defaults_and_integer_domains_follow_the_formula():
    # A kernel's defaults are printed from its Param objects, and an integer parameter's
    # least value is where SymPy finds a denominator vanishing: edit the formula (m - 3)
    # and the sheet, the wrapper's check and verify's samples follow.
    import sympy as sp

    from symdl.backends.numba.lowering import plan
    from symdl.derive import least_count
    from symdl.formula import Elementwise, Param
    from symdl.sheet import entry

    x, k, m = sp.symbols("x k m", real=True)
    f = Elementwise("scaled", "S", "Scaled", "x scaled in place.", inputs=[x],
                    params=[Param("m", None, "count"), Param("k", 0.25, "any")],
                    updates={"x": k * x / (m - 3)})
    e = entry(f, [])
    assert e.defaults == ["k = 0.25"]
    assert e.conditions == [r"m \in \mathbb{Z},\ m \geq 4"]
    assert least_count(f, "m") == 4 and plan(f).least == {"m": 4}


def test_prose_on_the_sheet_quotes_derived_values_not_typed_ones():
    # The note on the non-saturating GAN cost gives the gradients' limits where D(G(z))
    # -> 0 as SymPy takes them from the derived gradients; the optimizers' defaults
    # appear once, printed from the Params.
    tex = render(builtin_modules())["sheet/symdl.tex"]
    assert "gradient with respect to the logit tends to 0, while the non-saturating one " \
           "tends to -1" in tex
    assert r"Defaults: $\mathrm{lr} = 0.001$, $\beta_{1} = 0.9$, $\beta_{2} = 0.999$" in tex
    assert r"Defined where $t \in \mathbb{Z},\ t \geq 1$" in tex
    assert r"Defined where $m \in \mathbb{Z},\ m \geq 2$" in tex
