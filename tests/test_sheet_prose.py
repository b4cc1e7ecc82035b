"""Prose reaches TeX as text (issue 16, the TeX side): a formula file whose titles,
docs, notes, parameter docs, flowchart and plot texts are TeX commands still builds a
sheet that shows them literally and never runs them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from symdl.sheet import prose

# Each of these does something in TeX when it is not escaped: input a file, run a
# shell command, start a comment, a parameter, math, a subscript, an alignment tab, a
# tie, a superscript, a line break; a blank line ends a paragraph (here inside the
# argument of \section). "{{ }}" is Jinja's variable syntax, <b> and &amp; HTML's.
HOSTILE = ("\\input{evil} \\write18{touch pwned} {{ x }} 100% #1 $a_b$ & ~ ^ \\\\ "
           "<b>bold</b> &amp; end\n\nof it")
SHOWN = HOSTILE.replace("\n", " ")  # a line break is shown as a space

FORMULA_FILE = f'''
import sympy as sp

from symdl.formula import (Algorithm, Arg, Branch, Elementwise, Param, ScalarFunction,
                           SpecialCase)
from symdl.sheet import Plot

H = {HOSTILE!r}
ONE_LINE = " ".join(H.splitlines())  # (a special case's why must be one line)
SECTION = H
x, k, theta, g = sp.symbols("x k theta g", real=True)
scale = Elementwise("hostile_scale", SECTION, H, H, inputs=[x],
                    params=[Param("k", 2.0, "any", H)], outputs={{"y": k * x}},
                    plot=(-1, 1), notes=(H,))
step = Elementwise("hostile_step", SECTION, "step " + H, H, inputs=[theta, g],
                   params=[Param("k", 0.5, "any", H)], updates={{"theta": theta - k * g}},
                   special_cases=[SpecialCase({{"k": 0}}, why=ONE_LINE)],
                   algorithm=Algorithm(require=H, init={{theta: 0}}, until=H, each={{}},
                                       returns=theta))
e1, e2 = sp.symbols("e1 e2", real=True)
recipe = ScalarFunction("hostile_recipe", SECTION, "recipe " + H, H,
                        args=[Arg("a", e1, doc=H), Arg("b", e2, doc=H)],
                        outputs={{"gap": e1 - e2}},
                        cases=((H, {{e2: 0}}),),
                        branches=(Branch(H, e1 > e2, H, (H,)),), otherwise=(H, (H,)))
FORMULAS = [scale, step, recipe]
PLOTS = [Plot(H, x, (-1, 1), [(H, x**2)], ylabel=H)]
'''


def symdl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "symdl.cli", *args], capture_output=True,
                         text=True, cwd=cwd)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_prose_escapes_every_character_tex_acts_on():
    tex = prose(HOSTILE)
    # Outside the escapes, no character TeX would act on is left.
    bare = re.sub(r"\\(textbackslash|textasciitilde|textasciicircum)\{\}|\\[&%$#_{}]", "",
                  tex)
    assert not set(bare) & set("\\{}$&#^_%~\n")
    assert "\n" not in tex


def test_backquoted_names_print_as_symbols():
    assert prose("with `rho` the rest") == r"with $\rho$ the rest"
    assert prose("weighted by `df_i`") == r"weighted by $\mathrm{d}f_{i}$"
    assert prose("`n_out` × `n_out`") == r"$n_{\mathrm{out}}$ $\times$ $n_{\mathrm{out}}$"


def test_prose_that_is_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="prose must be a str"):
        prose(3)


def test_hostile_prose_builds_and_shows_literally(tmp_path):
    if not (shutil.which("latexmk") and shutil.which("pdflatex") and shutil.which("pdftotext")):
        pytest.skip("TeX or poppler-utils is not installed")  # test_sheet fails in CI then
    formulas = tmp_path / "hostile.py"
    formulas.write_text(FORMULA_FILE, encoding="utf-8")
    out = tmp_path / "out"
    symdl("generate", "--formulas", str(formulas), "--out", str(out), cwd=tmp_path)
    # A file that \input{evil} would read, wherever TeX looks for it.
    for folder in (tmp_path, out / "sheet"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "evil.tex").write_text("INCLUDED-EVIL\n", encoding="utf-8")
    symdl("sheet", "--pdf", "--formulas", str(formulas), "--out", str(out), cwd=tmp_path)
    build = out / "sheet" / "build"
    text = subprocess.run(["pdftotext", str(build / "hostile.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    assert "INCLUDED-EVIL" not in text
    # Every file TeX opened (latexmk's recorder) is a TeX distribution file or the sheet.
    opened = re.findall(r"^INPUT (.*)$", (build / "hostile.fls").read_text(), re.M)
    assert not [p for p in opened if "evil" in p]
    assert not list(tmp_path.rglob("pwned"))
    # Shown literally: section and entry titles, docs, notes, parameter and argument
    # docs, the special case, the algorithm, the recipe's flowchart and case label,
    # the plot's caption and legend (the y label is drawn rotated: checked in the tex).
    assert squeeze(text).count(squeeze(SHOWN)) >= 20
    tex = (out / "sheet" / "hostile.tex").read_text(encoding="utf-8")
    assert f"ylabel={{{prose(HOSTILE)}}}" in tex
    # The header names the formula file's own module, not the built-in library's.
    assert "kernels/hostile.py" in squeeze(text) and "symdl.kernels" not in text
    # The same quality as the built-in sheet: long prose wraps, in flowchart boxes too.
    log = (build / "hostile.log").read_text(encoding="latin-1")
    assert not re.findall(r"^(?:Overfull|Underfull|Missing character).*$", log, re.M)
    # The cheat sheet prints the same prose: as safely, and as cleanly.
    symdl("sheet", "--pdf", "--layout", "cheatsheet", "--formulas", str(formulas), "--out",
          str(out), cwd=tmp_path)
    pdf = build / "hostile-cheatsheet-a4.pdf"
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "INCLUDED-EVIL" not in text and squeeze(text).count(squeeze(SHOWN)) >= 8
    opened = re.findall(r"^INPUT (.*)$", pdf.with_suffix(".fls").read_text(), re.M)
    assert not [p for p in opened if "evil" in p]
    log = pdf.with_suffix(".log").read_text(encoding="latin-1")
    assert not re.findall(r"^(?:Overfull|Underfull|Missing character).*$", log, re.M)


def test_hostile_prose_on_the_web_page_is_text(tmp_path):
    import html

    formulas = tmp_path / "hostile.py"
    formulas.write_text(FORMULA_FILE, encoding="utf-8")
    out = tmp_path / "out"
    symdl("generate", "--formulas", str(formulas), "--out", str(out), cwd=tmp_path)
    symdl("sheet", "--html", "--formulas", str(formulas), "--out", str(out), cwd=tmp_path)
    page = (out / "sheet" / "hostile.html").read_text(encoding="utf-8")
    assert "<b>" not in page and page.count(html.escape(SHOWN)) >= 15
    # Its kernels are the formula file's own module, linked beside the page.
    assert '<a href="../kernels/hostile.py#:~:text=def%20hostile_scale(">' in page
    assert "symdl.kernels" not in page


def test_plot_legend_position_is_checked():
    # The position goes into pgfplots' options unescaped: only its own words pass.
    import sympy as sp

    from symdl.sheet import Plot

    x = sp.Symbol("x")
    with pytest.raises(ValueError, match="legend"):
        Plot("c", x, (0, 1), [("x", x)], legend="north west]\\input{evil}")
