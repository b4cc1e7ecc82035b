"""The formula sheet: printed from SymPy, and it compiles to a PDF."""

import os
import shutil

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
    # The seed's two errors, named where they are corrected.
    assert "eps = 1e-9 where the paper says 1e-8" in adam
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
    assert main(["sheet", "--pdf", "--out", str(tmp_path)]) == 0
    pdf = tmp_path / "sheet" / "build" / "symdl.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf.stat().st_size > 20_000


def test_sheet_without_tex_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no latexmk on this PATH
    assert main(["sheet", "--pdf", "--out", str(tmp_path)]) == 1
    assert "apt-get install" in capsys.readouterr().err


def test_sheet_leaves_the_kernels_alone(tmp_path, monkeypatch):
    """`symdl sheet` writes sheet/ only: it must not prune the generated kernels."""
    assert main(["generate", "--out", str(tmp_path)]) == 0
    kernels = sorted(p.name for p in (tmp_path / "kernels").glob("*.py"))
    monkeypatch.setenv("PATH", "")  # no TeX needed: the PDF step fails, the sources stay
    main(["sheet", "--out", str(tmp_path)])
    assert sorted(p.name for p in (tmp_path / "kernels").glob("*.py")) == kernels
    assert (tmp_path / "sheet" / "symdl.tex").exists()
