"""The web page (`symdl sheet --html`): self-contained, MathML printed from SymPy, SVG
plots, each formula linked to its kernel; loaded in a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from symdl.codegen import builtin_modules, render
from symdl.html import prose_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# The plots' stroke colours (symdl.html.STROKES): blue for y, red for its derivative.
BLUE, RED = (0x1F, 0x4F, 0xD1), (0xD1, 0x2F, 0x1F)


def symdl(*args: str) -> None:
    run = subprocess.run([sys.executable, "-m", "symdl.cli", *args], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """generate + sheet --html into one output folder: kernels/ and sheet/symdl.html."""
    out = tmp_path_factory.mktemp("site")
    symdl("generate", "--out", str(out))
    symdl("sheet", "--html", "--out", str(out))
    return out


def test_page_is_self_contained(site):
    text = (site / "sheet" / "symdl.html").read_text(encoding="utf-8")
    assert "<script" not in text and "<link" not in text and "@import" not in text
    # Nothing fetched from anywhere: no src attribute and no url() at all; links only to
    # the kernels' source beside the page.
    assert not re.search(r"\ssrc=|url\(", text)
    assert set(re.findall(r'href="([^"#]*)', text)) <= {
        f"../kernels/{m.name}.py" for m in builtin_modules()}


def test_every_equation_of_the_sheet_is_mathml(site):
    text = (site / "sheet" / "symdl.html").read_text(encoding="utf-8")
    tex = render(builtin_modules())["sheet/symdl.tex"]
    assert text.count('<math display="block">') == tex.count(r"\begin{equation*}")
    # Printed by SymPy's MathML printer with the sheet's conventions: a word upright
    # (one <mi>), a visible product beside it, Heaviside as H, the authored order.
    assert "<mi>lr</mi><mo>&#xB7;</mo>" in text
    assert "<mi>H</mi>" in text and "&#920;" not in text
    assert "<msub><mi>x</mi><mi>i</mi></msub><mo>-</mo><mi>mean</mi>" in text


def test_each_formula_links_to_the_kernel_it_generates(site):
    text = (site / "sheet" / "symdl.html").read_text(encoding="utf-8")
    links = re.findall(r'<a href="\.\./kernels/(\w+)\.py#:~:text=def%20(\w+)\(">', text)
    names = {f.name for m in builtin_modules() for f in m.formulas}
    assert {name for _, name in links} == names
    for module, name in links:
        assert f"def {name}(" in (site / "kernels" / f"{module}.py").read_text()


def test_prose_is_escaped_and_names_are_symbols():
    shown = prose_html("<script>alert(1)</script> & `rho`\nnext")
    assert shown.startswith("&lt;script&gt;alert(1)&lt;/script&gt; &amp; <math>")
    assert "&#961;" in shown and "\n" not in shown


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr",
           "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def test_page_loads_without_console_errors(site, tmp_path):
    page = (site / "sheet" / "symdl.html").as_uri()
    run = chromium("--dump-dom", page, profile=tmp_path / "profile")
    assert "<h1>symdl formula sheet</h1>" in run.stdout
    # Chromium logs every console message and failed load as CONSOLE / net:: lines.
    assert not [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln or "net::ERR" in ln]


# Run in a copy of the page (the page itself has no script): what the browser made of
# each <math> element and each plot.
PROBE = """<script>
window.addEventListener("load", () => {
  const maths = [...document.querySelectorAll("math")];
  const drawn = maths.filter(m => m instanceof MathMLElement
    && m.getBoundingClientRect().width > 0 && m.getBoundingClientRect().height > 0);
  const lines = [...document.querySelectorAll("svg polyline")];
  const plotted = lines.filter(p => p.getBBox().width > 100);
  document.getElementById("probe").textContent = JSON.stringify({
    math: maths.length, drawn: drawn.length, errors: document.querySelectorAll("merror").length,
    polylines: lines.length, plotted: plotted.length});
});
</script><pre id="probe"></pre></body>"""


def test_every_formula_renders_as_mathml(site, tmp_path):
    text = (site / "sheet" / "symdl.html").read_text(encoding="utf-8")
    probe = site / "sheet" / "probe.html"
    probe.write_text(text.replace("</body>", PROBE), encoding="utf-8")
    run = chromium("--dump-dom", probe.as_uri(), profile=tmp_path / "profile")
    result = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', run.stdout).group(1))
    assert result["math"] == text.count("<math") > 200
    assert result["drawn"] == result["math"] and result["errors"] == 0
    assert result["polylines"] == text.count("<polyline") and result["plotted"] > 0


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (RGB or RGBA bytes) of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def test_png_reader_on_a_known_image(tmp_path):
    # A 2 x 1 RGB image, red then blue, with the Sub filter: as zlib and struct write it.
    raw = bytes([1, 255, 0, 0, 1, 0, 255])  # filter 1: the second pixel is a delta
    def chunk(kind, body):
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    (tmp_path / "t.png").write_bytes(png)
    assert png_pixels(tmp_path / "t.png") == (2, 1, [bytes([255, 0, 0, 0, 0, 255])])


def count_near(rows: list[bytes], bpp: int, rgb: tuple[int, int, int], tol: int = 40) -> int:
    return sum(1 for row in rows for i in range(0, len(row), bpp)
               if all(abs(row[i + k] - rgb[k]) <= tol for k in range(3)))


def test_screenshot_shows_the_plots(site, tmp_path):
    shot = tmp_path / "page.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,1200", "--hide-scrollbars",
             (site / "sheet" / "symdl.html").as_uri(), profile=tmp_path / "profile")
    width, height, rows = png_pixels(shot)
    bpp = len(rows[0]) // width
    assert (width, height) == (1000, 1200)
    # The sigmoid's plot is on the first screen: its blue curve and red derivative
    # (thousands of pixels; the kernel links are a darker, thinner blue).
    assert count_near(rows, bpp, BLUE, tol=30) > 500
    assert count_near(rows, bpp, RED, tol=30) > 300
