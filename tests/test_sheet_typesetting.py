"""The sheet as typeset: TeX's log, where the words land on the page, and how symbols
print. Each built sheet is made by the `symdl` command in a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

from symdl.codegen import builtin_modules, render
from symdl.printers import latex

HAVE_TEX = bool(shutil.which("latexmk") and shutil.which("pdflatex"))
HAVE_POPPLER = bool(shutil.which("pdftotext"))
# TeX's own threshold for these warnings is 0pt (\hfuzz is 0.1pt); the issue allows 1pt.
BOX_TOLERANCE_PT = 1.0
# microtype lets punctuation hang into the margin by design: at most about 0.7 of a
# comma's or quote's width, under 3pt at 10pt type. The Adam line that ran off the page
# overshot by about 100pt.
PROTRUSION_PT = 3.0
MARGIN_PT = 2 / 2.54 * 72  # geometry's margin=2cm


def needs_tex() -> None:
    if not (HAVE_TEX and HAVE_POPPLER):
        if os.environ.get("CI"):
            pytest.fail("CI must install TeX and poppler-utils (see .ci/run)")
        pytest.skip("TeX or poppler-utils is not installed")


def symdl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    run = subprocess.run([sys.executable, "-m", "symdl.cli", *args], capture_output=True,
                         text=True, cwd=cwd)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def full_sheet(tmp_path_factory) -> Path:
    """The built-in library's PDF, built once for this module's tests."""
    needs_tex()
    out = tmp_path_factory.mktemp("sheet")
    symdl("sheet", "--pdf", "--out", str(out))
    return out / "sheet" / "build" / "symdl.pdf"


def box_problems(log: str) -> list[str]:
    """Overfull boxes above the tolerance, any underfull box, and missing glyphs."""
    bad = []
    for m in re.finditer(r"^(Overfull|Underfull) \\[hv]box (.*)$", log, re.M):
        kind, rest = m.groups()
        size = re.search(r"\(([\d.]+)pt too (wide|high)\)", rest)
        if kind == "Underfull" or size is None or float(size.group(1)) > BOX_TOLERANCE_PT:
            bad.append(m.group(0))
    bad += re.findall(r"^Missing character.*$", log, re.M)
    return bad


def test_log_parser_finds_what_tex_reports():
    # The parser itself, on lines in TeX's own format.
    log = ("Overfull \\hbox (12.5pt too wide) in paragraph at lines 3--4\n"
           "Overfull \\hbox (0.4pt too wide) in paragraph at lines 5--6\n"
           "Underfull \\hbox (badness 10000) in paragraph at lines 7--8\n"
           "Missing character: There is no ^^A in font cmr10!\n")
    assert len(box_problems(log)) == 3


def test_full_sheet_log_has_no_bad_boxes_or_missing_characters(full_sheet):
    log = full_sheet.with_suffix(".log").read_text(encoding="latin-1")
    assert "Output written" in log
    assert box_problems(log) == []


def word_boxes(pdf: Path) -> list[tuple[int, float, float, float, str]]:
    """(page, page width, xMin, xMax, word) of every word, as pdftotext places them."""
    html = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    out = []
    for number, page in enumerate(html.split("<page ")[1:], start=1):
        width = float(re.search(r'width="([\d.]+)"', page).group(1))
        for m in re.finditer(r'xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)"[^>]*>([^<]*)<',
                             page):
            out.append((number, width, float(m.group(1)), float(m.group(2)), m.group(3)))
    return out


def words_outside_text(pdf: Path, margin: float = MARGIN_PT) -> list[str]:
    """Words whose box lies beyond the side margins (beyond protrusion)."""
    return [f"page {n}: {w!r} at x = {x0:.0f}..{x1:.0f}" for n, width, x0, x1, w in word_boxes(pdf)
            if x0 < margin - PROTRUSION_PT or x1 > width - margin + PROTRUSION_PT]


def test_nothing_runs_off_the_page(full_sheet):
    # TeX warns of nothing in a tabbing block (the Adam algorithm's line that ran off
    # the right edge): where the words land is read back from the PDF.
    assert words_outside_text(full_sheet) == []


def test_prose_has_real_quotes_and_arrows(full_sheet):
    text = subprocess.run(["pdftotext", str(full_sheet), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "\u201cvalid\u201d" in text and "\u201csame\u201d" in text  # opening, closing
    assert "\u00a1" not in text  # an OT1 "<" is an inverted exclamation mark
    assert "expm1" in text and "expm\u2081" not in text


MATH = re.compile(r"\\begin\{equation\*\}(.*?)\\end\{equation\*\}|(?<!\\)\$(.+?)(?<!\\)\$"
                  r"|^\\eq\{([^\n]*)\}$", re.S | re.M)  # \eq{...}: the cheat sheet's lines
# Arguments that are words by design: upright names, text, operator names.
WORD_ARGUMENT = re.compile(r"\\(?:mathrm|text|operatorname|texttt|textbf|textit|"
                           r"mathbb|begin|end|tag\*?)\{(?:[^{}]|\{[^{}]*\})*\}")


def italic_runs(tex: str) -> list[str]:
    """Runs of two or more italic letters in the sheet's math: a multi-letter name
    printed as a product of single letters (lr -> l r)."""
    runs = []
    for m in MATH.finditer(tex):
        math = m.group(1) or m.group(2) or m.group(3)
        bare = re.sub(r"\\[A-Za-z]+", " ", WORD_ARGUMENT.sub(" ", math))
        runs += re.findall(r"[A-Za-z]{2,}", bare)
    return runs


def unmarked_products(tex: str) -> list[str]:
    """An upright word directly followed by another factor, with no visible product
    between them (momentum momentum_buf, lr m-hat). \\mathrm{d} is the gradient prefix."""
    allowed = r"(?:right|cdot|end|tag|derived|leftarrow|geq|leq|in|times|quad|\\)"
    pattern = (r"\\mathrm\{(?!d\})[^{}]*\}\s*(?:[A-Za-z0-9(]|\{|\\(?!" + allowed + r"\b))")
    return [m.group(0) for m in MATH.finditer(tex) for m in re.finditer(pattern, m.group(0))]


def test_checks_catch_the_defects_the_issue_lists():
    # What the old printer wrote: the checks must see it.
    assert italic_runs(r"$lr \hat{m}$") == ["lr"]
    assert unmarked_products(r"$\mathrm{momentum} \mathrm{momentum}_{\mathrm{buf}}$")
    assert unmarked_products(r"$\mathrm{lr} \hat{m}$")
    assert not unmarked_products(r"$\mathrm{lr} \cdot \hat{m} + \mathrm{d}y$")


@pytest.mark.parametrize("layout", ["symdl.tex", "symdl-cheatsheet-a4.tex"])
def test_no_multi_letter_symbol_prints_as_a_product(layout):
    tex = render(builtin_modules())[f"sheet/{layout}"]
    assert italic_runs(tex) == []
    assert unmarked_products(tex) == []


def test_words_print_upright_with_a_visible_product():
    lr, mhat, eps, vhat, theta = sp.symbols("lr mhat eps vhat theta")
    momentum, momentum_buf, dy, y = sp.symbols("momentum momentum_buf dy y")
    assert latex(theta - lr * mhat / (sp.sqrt(vhat) + eps)) == (
        r"\theta - \frac{\mathrm{lr} \cdot \hat{m}}{\epsilon + \sqrt{\hat{v}}}")
    assert latex(momentum * momentum_buf) == r"\mathrm{momentum} \cdot \mathrm{momentum\_buf}"
    assert latex(dy * y * (1 - y), frozenset({"dy"})) == (
        r"\mathrm{d}y \cdot y \cdot \left(1 - y\right)")
    # No word, no dot: y (1 - y) stays as written.
    assert latex(y * (1 - y)) == r"y \left(1 - y\right)"


def test_sums_read_in_the_authored_order():
    n, p, f, s, x, mean = sp.symbols("n p f s x mean")
    assert latex(sp.floor((n + 2 * p - f) / s) + 1) == (
        r"\left\lfloor{\frac{n + 2 p - f}{s}}\right\rfloor + 1")
    assert latex(x - mean) == r"x - \mathrm{mean}"


def test_functions_print_by_their_names():
    from sympy.codegen.cfunctions import expm1, log1p

    x, rho = sp.symbols("x rho")
    assert latex(expm1(x)) == r"\operatorname{expm1}\left(x\right)"
    assert latex(log1p(x)) == r"\operatorname{log1p}\left(x\right)"
    # Heaviside is H, not theta (theta is the optimizers' parameters).
    assert latex(sp.Heaviside(x - rho)) == r"\operatorname{H}\left(x - \rho\right)"


def test_derived_marks_are_tags_not_glued_text():
    tex = render(builtin_modules())["sheet/symdl.tex"]
    assert r"\newcommand{\derived}{\tag*" in tex
    # A section of one formula does not repeat its title as a subsection.
    assert r"\subsection*{Matrix-vector product}" not in tex
    assert r"\section{Matrix-vector product}" in tex


# The cheat sheet: --layout cheatsheet --paper a4|letter.
PAPER_PT = {"a4": (841.89, 595.28), "letter": (792.0, 612.0)}  # landscape: width, height
CHEAT_MARGIN_PT = 9 / 25.4 * 72  # geometry's margin=9mm
CHEAT_SEP_PT = 5 / 25.4 * 72  # \columnsep=5mm


@pytest.fixture(scope="module", params=sorted(PAPER_PT))
def cheatsheet(request, tmp_path_factory) -> tuple[str, Path]:
    needs_tex()
    paper = request.param
    out = tmp_path_factory.mktemp(f"cheatsheet-{paper}")
    symdl("sheet", "--pdf", "--layout", "cheatsheet", "--paper", paper, "--out", str(out))
    return paper, out / "sheet" / "build" / f"symdl-cheatsheet-{paper}.pdf"


def test_cheatsheet_is_landscape_on_its_paper_in_at_most_four_pages(cheatsheet):
    paper, pdf = cheatsheet
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True,
                          check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    width, height = map(float, re.search(r"^Page size:\s+([\d.]+) x ([\d.]+)", info,
                                         re.M).groups())
    assert 1 <= pages <= 4
    assert (width, height) == pytest.approx(PAPER_PT[paper], abs=0.5)
    log = pdf.with_suffix(".log").read_text(encoding="latin-1")
    assert box_problems(log) == []


def test_cheatsheet_sets_three_columns_with_nothing_in_the_gutters(cheatsheet):
    paper, pdf = cheatsheet
    width = PAPER_PT[paper][0]
    column = (width - 2 * CHEAT_MARGIN_PT - 2 * CHEAT_SEP_PT) / 3
    gutters = [(CHEAT_MARGIN_PT + k * (column + CHEAT_SEP_PT) + column,
                CHEAT_MARGIN_PT + (k + 1) * (column + CHEAT_SEP_PT)) for k in (0, 1)]
    boxes = word_boxes(pdf)
    assert words_outside_text(pdf, CHEAT_MARGIN_PT) == []
    # No word reaches into a gutter (beyond protrusion), and every column holds words.
    across = [w for _, _, x0, x1, w in boxes for lo, hi in gutters
              if x1 > lo + PROTRUSION_PT and x0 < hi - PROTRUSION_PT]
    assert across == []
    starts = {k for _, _, x0, _, _ in boxes for k in range(3)
              if abs(x0 - (CHEAT_MARGIN_PT + k * (column + CHEAT_SEP_PT))) < PROTRUSION_PT}
    assert starts == {0, 1, 2}


def test_cheatsheet_holds_every_formula_its_gradient_and_stable_form():
    files = render(builtin_modules())
    full = files["sheet/symdl.tex"]
    equations = re.findall(r"\\begin\{equation\*\}\n(.*?)\n\\end\{equation\*\}", full, re.S)
    assert len(equations) > 100
    for paper in PAPER_PT:
        cheat = files[f"sheet/symdl-cheatsheet-{paper}.tex"]
        missing = [eq for eq in equations
                   if "\\eq{" + eq.removesuffix(r" \derived") + "}" not in cheat]
        assert missing == []
    assert r"\begin{multicols*}{3}" in cheat and "landscape" in cheat


def test_paper_without_the_cheatsheet_layout_is_refused(tmp_path):
    run = subprocess.run([sys.executable, "-m", "symdl.cli", "sheet", "--paper", "a4",
                          "--out", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and "--layout cheatsheet" in run.stderr
    assert not (tmp_path / "sheet").exists()


def test_prose_holds_no_raw_ascii_math():
    # Code names and ASCII math in the built-in prose (n_out x n_out, delta_l, A^[3],
    # sum_i): symbols are backquoted in the library and printed as the formulas are.
    tex = render(builtin_modules())["sheet/symdl.tex"]
    body = tex[tex.index(r"\begin{document}"):]
    text = re.sub(r"\\begin\{equation\*\}.*?\\end\{equation\*\}", "", body, flags=re.S)
    text = re.sub(r"(?<!\\)\$.+?(?<!\\)\$", "", text, flags=re.S)
    text = re.sub(r"\\texttt\{[^{}]*\}|coordinates \{[^}]*\}", "", text)  # Python names
    assert re.findall(r".{30}(?:\\_|\\textasciicircum|\b[A-Za-z] x [A-Za-z]\b).{10}", text) == []
    assert "rho" not in text and "<-" not in text
    assert r"ylabel={gradient of the cost}" in tex  # the GAN plot's y axis
