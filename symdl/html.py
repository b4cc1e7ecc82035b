"""The formula sheet as one self-contained web page (``symdl sheet --html``).

The same entries as the LaTeX sheet (``symdl.sheet``), printed from the same SymPy
objects: formulas as MathML (``symdl.mathml``), plots as inline SVG drawn from the
points SymPy sampled. No script, style sheet, font or image is loaded from anywhere.
"""

from __future__ import annotations

import html
from pathlib import Path

import jinja2
import sympy as sp
from markupsafe import Markup

from .mathml import mathml
from .sheet import SYMBOL_REF, Equation, section

# The plot's frame in SVG user units, and the curves' strokes (the LaTeX styles' twins).
PLOT_WIDTH, PLOT_HEIGHT, PLOT_MARGIN = 420, 200, 40
STROKES = {"blue": ("#1f4fd1", ""), "red, dashed": ("#d12f1f", "6 4"),
           "black, dotted": ("#000000", "2 3"),
           "green!50!black, dashdotted": ("#1f7f1f", "8 3 2 3")}


def _math(obj: sp.Basic, grads: frozenset[str] = frozenset(), block: bool = False) -> Markup:
    display = ' display="block"' if block else ""
    return Markup(f'<math{display}>{mathml(obj, grads)}</math>')


def prose_html(text: str) -> Markup:
    """User prose -> HTML: escaped (tags and entities are shown, not run), line breaks
    as spaces, a backquoted name as the symbol in MathML (as on the LaTeX sheet)."""
    if not isinstance(text, str):
        raise TypeError(f"sheet prose must be a str, got {type(text).__name__}: {text!r}")
    parts = SYMBOL_REF.split(" ".join(text.splitlines()))
    return Markup("".join(
        _math(sp.Symbol(p)) if k % 2 else html.escape(p) for k, p in enumerate(parts)))


def _label(parts: tuple) -> Markup:
    return Markup("").join(prose_html(p) if isinstance(p, str) else _math(p) for p in parts)


OPS = {"=": "=", r"\leftarrow": "\u2190"}


def _equation(d: Equation) -> dict:
    """An equation's MathML: its sides joined by its operator (a chain for a delta)."""
    op = f"<mo>{OPS[d.op]}</mo>"
    sides = [mathml(m, d.grads) for m in d.math]
    return {"math": Markup(f'<math display="block"><mrow>{op.join(sides)}</mrow></math>'),
            "label": _label(d.label_parts)}


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    step = (hi - lo) / (count - 1)
    return [lo + k * step for k in range(count)]


def svg_plot(plot: dict) -> dict:
    """The SVG of a plot: axes with ticks, one polyline per curve (the SymPy samples
    scaled into the frame), and the legend's labels in MathML."""
    xs = [x for c in plot["curves"] for x, _ in c["samples"]]
    ys = [y for c in plot["curves"] for _, y in c["samples"]]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:  # a constant: a band around it
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    w, h, m = PLOT_WIDTH, PLOT_HEIGHT, PLOT_MARGIN

    def px(x: float) -> float:
        return m + (x - x0) / (x1 - x0) * (w - 2 * m)

    def py(y: float) -> float:
        return h - m + (y - y0) / (y1 - y0) * -(h - 2 * m)

    curves = []
    for c in plot["curves"]:
        color, dash = STROKES.get(c["style"], ("#000000", ""))
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in c["samples"])
        label = c["label_math"]
        curves.append({"points": points, "color": color, "dash": dash, "label": (
            prose_html(label) if isinstance(label, str) else _math(label))})
    return {"width": w, "height": h, "left": m, "right": w - m, "top": m, "bottom": h - m,
            "xticks": [(px(t), f"{t:.3g}") for t in _ticks(x0, x1)],
            "yticks": [(py(t), f"{t:.3g}") for t in _ticks(y0, y1)],
            "curves": curves, "x": _math(plot["x_math"]),
            "ylabel": prose_html(plot["ylabel_text"]),
            "caption": prose_html(plot["caption_text"])}


def _entry(e, module: str, href: str) -> dict:
    f = e.formula
    return {
        "id": f.name, "title": prose_html(f.title), "doc": prose_html(f.doc),
        "notes": [prose_html(n) for n in f.notes],
        "parameters": [{"symbol": _math(p.symbol), "doc": prose_html(p.doc)}
                       for p in getattr(f, "params", ()) if p.doc]
        + [{"symbol": _math(a.symbol), "doc": prose_html(a.doc)}
           for a in getattr(f, "args", ()) if getattr(a, "doc", "")],
        "kernels": [{"name": k, "href": f"{href}#:~:text=def%20{k}("} for k in e.kernels],
        "module": module,
        "definitions": [_equation(d) for d in e.definitions],
        "derived": [_equation(d) for d in e.derived],
        "stable": [_equation(d) for d in e.stable],
        "plot": svg_plot(e.plot) if e.plot else None,
    }


def page(env: jinja2.Environment, modules, sheet_name: str, title: str | None = None) -> str:
    """The web page of these formula modules (``modules``: FormulaModule objects)."""
    builtin = all(m.source.startswith("symdl/library/") for m in modules)
    if title is None:
        title = "symdl formula sheet" if builtin else f"{sheet_name}: formula sheet"
    sections = []
    for m in modules:
        derived: dict = {}
        for f in m.formulas:
            if f.derived_from:
                derived.setdefault(f.derived_from, []).append(f)
        s = section(m, derived)
        module = f"symdl.kernels.{m.name}" if builtin else m.name
        # The kernels' source, relative to sheet/ where the page is written.
        href = f"../kernels/{m.name}.py"
        sections.append({
            "title": prose_html(m.title), "id": f"section-{m.name}",
            "entries": [_entry(e, module, href) for e in s["entries"]],
            "plots": [svg_plot(p) for p in s["plots"]]})
    return env.get_template("html/sheet.html.j2").render(
        title=title, sections=sections, source=", ".join(m.source for m in modules))


def environment(templates: Path) -> jinja2.Environment:
    """Jinja for HTML: every value escaped unless it is Markup (MathML printed here)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True,
                              autoescape=True)
