"""The formula sheet: SymPy objects -> LaTeX context, and the PDF build.

The template ``templates/latex/sheet.tex.j2`` holds the layout; every equation and
every plotted point comes from here, printed or evaluated from SymPy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from .derive import least_count
from .errors import FormulaError
from .formula import (
    Algorithm,
    BatchGradient,
    BatchMap,
    BatchReduction,
    Contraction,
    Correlation,
    Elementwise,
    Formula,
    MaskedElementwise,
    Network,
    Reduction,
    ScalarFunction,
    Window,
)
from .mathml import Partial
from .printers import SheetLatexPrinter, latex, tex_escape
from .stable import stabilize

TEX_INSTALL_HINT = (
    "TeX is not installed, so the PDF cannot be built. On Debian/Ubuntu:\n"
    "  sudo apt-get install -y texlive-latex-base texlive-latex-recommended "
    "texlive-pictures latexmk lmodern\n"
    "The LaTeX source is ready to compile elsewhere."
)

PLOT_SAMPLES = 49


@dataclass
class Equation:
    """One line of the sheet, printed (lhs, rhs, label: LaTeX) and as the SymPy objects
    it was printed from (``math``: the sides, joined by ``op``; ``label_parts``: prose
    strings and SymPy objects), from which the web page prints MathML."""

    lhs: str
    rhs: str
    op: str = "="
    label: str = ""
    math: tuple = ()
    label_parts: tuple = ()
    grads: frozenset[str] = frozenset()


@dataclass
class Entry:
    title: str
    doc: str
    definitions: list[Equation] = field(default_factory=list)
    derived: list[Equation] = field(default_factory=list)
    stable: list[Equation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plot: dict | None = None
    conditions: list[str] = field(default_factory=list)
    flowchart: dict | None = None
    algorithm: dict | None = None
    distributions: list[str] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)  # "$symbol$: its doc"
    formula: Formula | None = None  # what the entry was printed from (the web page's prose)
    kernels: list[str] = field(default_factory=list)  # the kernels it generates


# A backquoted name in prose is a symbol, printed like the formulas: `beta1` -> beta_1.
SYMBOL_REF = re.compile(r"`([A-Za-z][A-Za-z0-9_]*)`")


def prose(text: str) -> str:
    """User prose (titles, docs, notes, labels) -> LaTeX text that shows it literally.

    Every character TeX would act on is escaped (so ``\\input{f}`` or ``\\write18`` is
    printed, never run), line breaks become spaces (a blank line would end a paragraph
    inside a ``\\section`` argument), quotes are paired, and a backquoted name such as
    ```delta_l``` is printed as the symbol (``\\delta_{l}``), by the sheet's printer.
    """
    if not isinstance(text, str):
        raise TypeError(f"sheet prose must be a str, got {type(text).__name__}: {text!r}")
    parts = SYMBOL_REF.split(text)
    return "".join(f"${_prose_symbol(part)}$" if k % 2 else tex_escape(part)
                   for k, part in enumerate(parts))


def _prose_symbol(name: str) -> str:
    """A name in prose: ``dy`` or ``df_i`` (d and one letter) is a gradient, as in the
    formulas (``d y``, ``d f_i``); any other name prints as the formulas print it."""
    grads = frozenset({name}) if re.fullmatch(r"d[A-Za-z](_\w+)?", name) else frozenset()
    return latex(sp.Symbol(name), grads)


def _sym(name: str, grads: frozenset[str]) -> str:
    return latex(sp.Symbol(name), grads)


def _samples(expr: sp.Expr, x: sp.Symbol, lo: float, hi: float) -> list[tuple[float, float]]:
    """Points of expr on [lo, hi], evaluated by SymPy (rounded as the sheet prints them)."""
    pts = []
    for k in range(PLOT_SAMPLES):
        xv = sp.Rational(lo) + (sp.Rational(hi) - sp.Rational(lo)) * k / (PLOT_SAMPLES - 1)
        pts.append((round(float(xv), 4), round(float(expr.subs(x, xv).evalf(20)), 6)))
    return pts


def _points(expr: sp.Expr, x: sp.Symbol, lo: float, hi: float) -> str:
    """Sample points of expr, evaluated by SymPy (deterministic text)."""
    return " ".join(f"({a:.4f},{b:.6f})" for a, b in _samples(expr, x, lo, hi))


def _curve(label: str, label_math: sp.Basic | str, style: str, expr: sp.Expr, x: sp.Symbol,
           lo: float, hi: float) -> dict:
    """A plotted curve: its TeX label, the label for the web page (a SymPy object, or
    prose), its style and its samples."""
    samples = _samples(expr, x, lo, hi)
    return {"label": label, "label_math": label_math, "style": style, "samples": samples,
            "points": " ".join(f"({a:.4f},{b:.6f})" for a, b in samples)}


def _equations(f: Formula, grads: frozenset[str], stable: bool) -> list[Equation]:
    if isinstance(f, Contraction):
        # Show i, j rather than SymPy's Idx with its range attached.
        plain = {ix: sp.Symbol(ix.label.name) for ix in f.expr.atoms(sp.Idx) | set(
            f.output.indices)}
        exprs = {f.output.xreplace(plain): f.expr.xreplace(plain)}
    elif isinstance(f, Reduction):
        i = sp.Symbol("i")
        exprs = {sp.Symbol(k): sp.Sum(e.subs({s: sp.Indexed(s.name, i) for s in f.inputs}),
                                      (i, 1, f.count)) for k, e in f.sums.items()}
        exprs |= {sp.Symbol(k): e for k, e in f.outputs.items()}
    else:
        exprs = {sp.Symbol(k): e for k, e in f.expressions().items()}
    # An in-place update is an assignment, in the order the algorithm performs it.
    op = r"\leftarrow" if isinstance(f, Elementwise) and f.updates else "="
    out = []
    for lhs, e in exprs.items():
        if stable:
            s = stabilize(e)
            if s == e:
                continue
            e = s
        out.append(Equation(latex(lhs, grads), latex(e, grads), op, math=(lhs, e), grads=grads))
    return out


@dataclass(frozen=True)
class Plot:
    """A plot of a sheet section (``PLOTS`` in a formula module): curves given as SymPy
    expressions in x, sampled by SymPy; ``caption`` and curve labels are prose."""

    caption: str
    x: sp.Symbol
    domain: tuple[float, float]
    curves: list[tuple[str, sp.Expr]]
    legend: str = "north west"
    ylabel: str = ""

    def __post_init__(self) -> None:
        # The position goes into pgfplots' options: only its own words may reach TeX.
        if self.legend not in LEGEND_POSITIONS:
            raise ValueError(f"Plot legend must be one of {sorted(LEGEND_POSITIONS)}, "
                             f"got {self.legend!r}")


LEGEND_POSITIONS = frozenset({"north west", "north east", "south west", "south east",
                              "outer north east"})
PLOT_STYLES = ["blue", "red, dashed", "black, dotted", "green!50!black, dashdotted"]


def section_plot(p: Plot) -> dict:
    """The template context of a section plot."""
    lo, hi = p.domain
    return {"x": latex(p.x), "legend": p.legend, "caption": prose(p.caption),
            "ylabel": prose(p.ylabel), "curves": [
        _curve(rf"\text{{{prose(label)}}}", label, PLOT_STYLES[k % len(PLOT_STYLES)], expr, p.x,
               lo, hi) for k, (label, expr) in enumerate(p.curves)],
        "x_math": p.x, "ylabel_text": p.ylabel, "caption_text": p.caption}


def _indexed(batches, i: sp.Symbol) -> dict:
    """x -> x_i for every input of every batch (how the sheet writes one element)."""
    return {s: sp.Indexed(s.name, i) for b in batches for s in b.inputs}


def _algorithm(a: Algorithm, body: list[Equation]) -> dict:
    """The iteration's lines: assignments printed from SymPy, around the formula's."""
    def assign(items) -> list[str]:
        return [rf"{latex(k)} \leftarrow {latex(v)}" for k, v in items.items()]

    return {"require": prose(a.require), "init": assign(a.init),
            "until": prose(a.until),
            "body": assign(a.each) + [f"{d.lhs} {d.op} {d.rhs}" for d in body],
            "returns": latex(a.returns)}


def batch_entry(f: BatchReduction, derived: list[Formula]) -> Entry:
    """Costs over batches: each output as means/sums written out, then its gradients."""
    i = sp.Symbol("i")
    elem = _indexed(f.batches, i)
    sums = {s: sp.Sum(e.xreplace(elem), (i, 1, f.batches[f.sum_batch(k)].count))
            for (k, e), s in zip(f.sums.items(), f.sum_symbols(), strict=True)}
    e = Entry(prose(f.title), prose(f.doc), notes=[prose(n) for n in f.notes], formula=f,
              kernels=[f.name, *(d.name for d in derived)])
    e.definitions = [Equation(_sym(k, frozenset()), latex(v.xreplace(sums)),
                              math=(sp.Symbol(k), v.xreplace(sums))) for k, v in f.outputs.items()]
    ((jname, _),) = f.outputs.items() if len(f.outputs) == 1 else ((None, None),)
    for s in f.sums.values():
        st = stabilize(s)
        if st != s:
            e.stable.append(Equation(latex(s), latex(st), math=(s, st)))
    for d in derived:
        if not isinstance(d, BatchMap):
            continue
        for k, g in d.outputs.items():
            x = sp.Symbol(d.of[k], real=True)
            lhs = rf"\frac{{\partial {_sym(jname, frozenset())}}}{{\partial {latex(elem[x])}}}"
            wrt = Partial(sp.Symbol(jname), elem[x])
            e.derived.append(Equation(lhs, latex(g.xreplace(elem)),
                                      math=(wrt, g.xreplace(elem))))
            st = stabilize(g)
            if st != g:
                e.stable.append(Equation(lhs, latex(st.xreplace(elem)),
                                         math=(wrt, st.xreplace(elem))))
    return e


def entry(f: Formula, derived: list[Formula]) -> Entry:
    """The sheet entry of a formula and the formulas derived from it."""
    if isinstance(f, BatchReduction):
        return batch_entry(f, derived)
    grads = frozenset(s.name for d in derived for s in getattr(d, "inputs", ())
                      if s.name.startswith("d")) | frozenset(
        k for d in derived for k in d.expressions() if k.startswith("d"))
    e = Entry(prose(f.title), prose(f.doc), notes=[prose(n) for n in f.notes], formula=f,
              kernels=[f.name, *(d.name for d in derived)])
    # The kernel's defaults, from the same Param objects that print its signature.
    e.defaults = [f"{_sym(p.name, frozenset())} = {latex(sp.Float(p.default))}"
                  for p in getattr(f, "params", ()) if p.default is not None]
    e.parameters = [f"${_sym(p.name, frozenset())}$: {prose(p.doc)}"
                    for p in getattr(f, "params", ()) if p.doc]
    # Integer parameters: where the formula is defined, as SymPy finds it.
    e.conditions = [rf"{_sym(p.name, frozenset())} \in \mathbb{{Z}},\ "
                    rf"{_sym(p.name, frozenset())} \geq {least_count(f, p.name)}"
                    for p in getattr(f, "params", ()) if p.check == "count"]
    if isinstance(f, ScalarFunction):
        return _scalar_entry(f, e)
    if isinstance(f, MaskedElementwise):
        return _masked_entry(f, e)
    if isinstance(f, Window):
        return _window_entry(f, derived, e)
    if isinstance(f, Correlation):
        return _correlation_entry(f, derived, e)
    if isinstance(f, Network):
        return _network_entry(f, e, derived)
    e.definitions = _equations(f, grads, stable=False)
    if isinstance(f, Elementwise):
        e.derived += _special_case_equations(f)
        if f.algorithm:
            e.algorithm = _algorithm(f.algorithm, e.definitions)
    for d in derived:
        if isinstance(f, Elementwise) and f.backward and d.inputs[0].name in f.outputs:
            # The local derivative dy/dx, read off the backward formula dx = dy * (dy/dx)
            # (a backward written in the output y; one from the inputs shows itself).
            ((xname, dx),) = d.outputs.items()
            y, dy = d.inputs
            e.derived.append(Equation(rf"\frac{{\partial {latex(y)}}}{{\partial {xname[1:]}}}",
                                      latex(dx / dy),
                                      math=(Partial(y, sp.Symbol(xname[1:])), dx / dy)))
        e.derived += _equations(d, grads, stable=False)
        e.derived += _vanished_equations(d)
    for g in [f, *derived]:
        e.stable += _equations(g, grads, stable=True)
    if isinstance(f, Elementwise) and f.plot:
        (x,) = f.inputs
        ((yname, fx),) = f.outputs.items()
        # Parameters are plotted at their defaults (the kernel's own defaults).
        fx = fx.subs({p.symbol: p.default for p in f.params if p.default is not None})
        unset = sorted(s.name for s in fx.free_symbols - {x})
        if unset:
            raise FormulaError(f"{f.name}: the plot needs a value for {', '.join(unset)}: "
                               f"give the parameter(s) a default")
        lo, hi = f.plot
        e.plot = {"x": latex(x), "curves": [
            _curve(_sym(yname, grads), sp.Symbol(yname), "blue", fx, x, lo, hi),
            _curve(rf"\partial {_sym(yname, grads)} / \partial {latex(x)}",
             Partial(sp.Symbol(yname), x), "red, dashed", sp.diff(fx, x), x, lo, hi),
        ], "x_math": x, "ylabel_text": "", "caption_text": ""}
    return e


def _vanished_equations(d: Formula) -> list[Equation]:
    """Sums of a batch backward pass that SymPy proved zero (so no kernel sums them)."""
    if not isinstance(d, BatchGradient) or not d.vanished:
        return []
    i = sp.Symbol("i")
    out = []
    for summand in d.vanished.values():
        total = sp.Sum(summand.subs({s: sp.Indexed(s.name, i) for s in d.arrays}), (i, 1, d.count))
        why = ("" if out else "The chain rule also gives this sum, zero by the definition of "
               "the mean (substituted by SymPy), so the kernel does not compute it:")
        out.append(Equation(latex(total), latex(sp.S.Zero), label=why,
                            math=(total, sp.S.Zero), label_parts=(why,) if why else ()))
    return out


def _special_case_equations(f: Elementwise) -> list[Equation]:
    """Each special case's results, substituted by SymPy (what its core computes)."""
    out = []
    for case in f.special_cases:
        given = ", ".join(f"{latex(s)} = {latex(v)}" for s, v in case.substitutions().items())
        untouched = ", ".join(f"`{u}`" for u in case.untouched)  # printed as symbols
        kept = f" ({untouched} left untouched)" if case.untouched else ""
        label = f"Special case ${given}${prose(kept)}: {prose(case.why)}."
        parts = ("Special case ", *[sp.Eq(s, v, evaluate=False) for s, v in
                                    case.substitutions().items()], f"{kept}: {case.why}.")
        for k, expr in f.special_results(case).items():
            first = not out
            out.append(Equation(latex(sp.Symbol(k, real=True)), latex(expr), r"\leftarrow",
                                label if first else "", math=(sp.Symbol(k), expr),
                                label_parts=parts if first else ()))
    return out


def _word_names(symbols) -> dict:
    """LaTeX names for word-like symbols: avoidable_bias -> \\text{avoidable bias}.

    A name whose first part is one letter is a subscripted symbol (n_out -> n_{out})."""
    return {x: r"\text{" + x.name.replace("_", " ") + "}" for x in symbols
            if len(x.name.split("_")[0]) > 1}


def _arg_docs(args, tex) -> list[str]:
    """"$p$ (padding): padding on each side": the symbol, the Python name where it
    differs, and the argument's doc."""
    out = []
    for a in args:
        name = "" if a.name == a.symbol.name else rf" (\texttt{{{tex_escape(a.name)}}})"
        out.append(f"${tex(a.symbol)}${name}: {prose(a.doc)}")
    return [d for d, a in zip(out, args, strict=True) if a.doc]


def _scalar_entry(f: ScalarFunction, e: Entry) -> Entry:
    """Definitions, the special cases SymPy derives by substitution, conditions, and
    (for a recipe) the flowchart's text."""
    outs = f.output_symbols()
    names = _word_names([*outs.values(), *(a.symbol for a in f.args)])

    def tex(expr: sp.Basic) -> str:
        return latex(sp.factor_terms(expr), symbol_names=names)  # (f - 1)/2, not f/2 - 1/2

    e.parameters = _arg_docs(f.args, tex)
    for k, expr in f.outputs.items():
        e.definitions.append(Equation(tex(outs[k]), tex(expr),
                                      math=(outs[k], sp.factor_terms(expr))))
    for label, subs in f.cases:
        given = ", ".join(f"{tex(a)} = {tex(v)}" for a, v in subs.items())
        parts = (f"{label}: ", *[sp.Eq(a, sp.factor_terms(v), evaluate=False)
                                 for a, v in subs.items()])
        for k, expr in f.outputs.items():
            value = sp.simplify(expr.subs(subs))
            e.derived.append(Equation(tex(outs[k]), tex(value), label=f"{prose(label)}: ${given}$",
                                      math=(outs[k], sp.factor_terms(value)), label_parts=parts))
    e.conditions = [tex(c) for c, _ in f.requires]
    if f.branches:
        e.flowchart = {
            "decisions": [{"question": prose(b.question), "condition": tex(b.condition),
                           "diagnosis": prose(b.diagnosis),
                           "advice": [prose(a) for a in b.advice]} for b in f.branches],
            "otherwise": prose(f.otherwise[0]),
        }
    return e


def _masked_entry(f: MaskedElementwise, e: Entry) -> Entry:
    """Training outputs per variant, and their expectations over the mask (the test
    phase), both taken from SymPy (``sympy.stats`` in ``symdl.derive``)."""
    from .derive import mask_expectations

    m = f.mask
    e.parameters = _arg_docs(f.args, latex)
    for sym, expr in f.let.items():
        e.definitions.append(Equation(latex(sym), latex(expr), math=(sym, expr)))
    expectations = mask_expectations(f)
    for value, outputs in sorted(f.variants.items(), reverse=True):
        training = f"{f.flag}={value}, training"
        test = f"{f.flag}={value}: test phase, the expected training output"
        for k, expr in outputs.items():
            e.definitions.append(Equation(latex(sp.Symbol(k)), latex(expr), label=prose(training),
                                          math=(sp.Symbol(k), expr), label_parts=(training,)))
        for expectation, mean in expectations[value].values():
            e.derived.append(Equation(latex(expectation), latex(mean), label=prose(test),
                                      math=(expectation, mean), label_parts=(test,)))
    e.distributions = [rf"{latex(m.symbol)} \sim \operatorname{{Bernoulli}}\left("
                       rf"{latex(m.keep)}\right)"]
    return e


def _network_entry(f: Network, e: Entry, derived: list[Formula]) -> Entry:
    """The forward pass per sample, then the chain SymPy derived (shown for df = 1, the
    derivative of f itself), with the adjoints G_l substituted into the deltas."""
    printer = SheetLatexPrinter(order="none")  # keep 1 - A, not -A + 1
    tex = printer.doprint

    def mat(name: str) -> sp.MatrixSymbol:
        return sp.MatrixSymbol(name, 1, 1)

    def sym(name: str) -> str:
        return tex(mat(name))

    steps = f.steps()
    for k, layer in enumerate(f.layers, start=1):
        z = sp.Symbol("z", real=True)
        act = sp.Function(layer.activation.name)
        e.definitions.append(Equation(sym(f"Z{k}"), tex(steps[f"Z{k}"]),
                                      math=(mat(f"Z{k}"), steps[f"Z{k}"])))
        e.definitions.append(Equation(
            sym(f"A{k}"), tex(act(sp.Symbol(f"Z{k}"))),
            label=f"elementwise, with ${tex(act(z))} = "
                  f"{tex(steps[f'A{k}'].function(z))}$",
            math=(mat(f"A{k}"), act(sp.Symbol(f"Z{k}"))),
            label_parts=("elementwise, with ",
                         sp.Eq(act(z), steps[f"A{k}"].function(z), evaluate=False))))
    e.definitions.append(Equation(sym(f.output), tex(steps[f.output]),
                                  math=(mat(f.output), steps[f.output])))
    (grad,) = derived
    df = sp.Symbol(grad.seed, real=True)

    def unit_seed(v: sp.MatrixExpr) -> sp.MatrixExpr:  # df -> 1, dropping the factor 1
        return v.subs(df, 1).replace(
            lambda a: isinstance(a, sp.MatMul) and a.args[0] == 1,
            lambda a: a.func(*a.args[1:]) if len(a.args) > 2 else a.args[1])

    adjoints = {sp.MatrixSymbol(k, *v.shape): unit_seed(v) for k, v in grad.steps.items()
                if k.startswith("G")}

    def partial(name: str) -> str:
        wrt = f.sample if name == f.input else name
        return rf"\frac{{\partial {sym(f.output)}}}{{\partial {sym(wrt)}}}"

    def wrt(name: str) -> Partial:
        return Partial(mat(f.output), mat(f.sample if name == f.input else name))

    for k, v in grad.steps.items():
        v = unit_seed(v)
        if k.startswith("G"):
            lhs, math = partial("A" + k[1:]), (wrt("A" + k[1:]),)
        elif k.startswith("delta"):
            lhs, math = f"{sym(k)} = {partial('Z' + k[5:])}", (mat(k), wrt("Z" + k[5:]))
            v, label = _named_derivative(v.xreplace(adjoints), f.layers[int(k[5:]) - 1], tex)
            e.derived.append(Equation(lhs, tex(v), math=(*math, v), label=label[0],
                                      label_parts=label[1]))
            continue
        else:
            lhs, math = partial(k[1:]), (wrt(k[1:]),)
        e.derived.append(Equation(lhs, tex(v), math=(*math, v)))
    return e


def _window_entry(f: Window, derived: list[Formula], e: Entry) -> Entry:
    """The window reduction, the output size (the CNN shape formula with p = 0) and
    SymPy's derivative with respect to one element v of a window."""
    e.definitions.append(Equation(latex(f.output), latex(f.expr), math=(f.output, f.expr)))
    n_out = sp.Symbol("n_out")
    size = "Output size along each axis (no padding):"
    e.definitions.append(Equation(latex(n_out), latex(f.out_size), label=size,
                                  math=(n_out, f.out_size), label_parts=(size,)))
    for d in derived:
        why = ("For one element `v` of a window, with `rho` the reduction of the window's "
               "other elements" + (" and H the Heaviside step" if d.local.has(sp.Heaviside)
                                   else "") + " (the gradient `dy` of each output "
               "flows back this way):")
        e.derived.append(Equation(
            rf"\frac{{\partial {latex(f.output)}}}{{\partial {latex(d.value)}}}",
            latex(d.local), label=prose(why), math=(Partial(f.output, d.value), d.local),
            label_parts=(why,)))
    return e


def _correlation_entry(f: Correlation, derived: list[Formula], e: Entry) -> Entry:
    """The layer in index notation, its output size, and SymPy's gradients (a delta
    left in a gradient marks where x's compound indices land)."""
    e.definitions.append(Equation(latex(f.output), latex(f.expr), math=(f.output, f.expr)))
    size = "Output size along each axis:"
    e.definitions.append(Equation(latex(sp.Symbol("n_out")), latex(f.out_size), label=size,
                                  math=(sp.Symbol("n_out"), f.out_size), label_parts=(size,)))
    for d in derived:
        for target, value in d.gradients.values():
            e.derived.append(Equation(latex(target), latex(value), math=(target, value)))
    return e


def section(m, derived: dict[str, list[Formula]]) -> dict:
    """The template context of one formula module's section (``m``: a FormulaModule)."""
    return {"title": prose(m.title), "name": m.name, "entries": [
        entry(f, derived.get(f.name, [])) for f in m.formulas if not f.derived_from],
        "plots": [section_plot(p) for p in m.plots]}


def sheet_files(env, modules, sections: list[dict], sheet_name: str,
                title: str | None) -> dict[str, str]:
    """The sheet's LaTeX files, relative path -> text. The header names the module that
    holds the kernels: ``symdl.kernels`` for the built-in library, else the formula
    file's own module (``kernels/<name>.py``)."""
    builtin = all(m.source.startswith("symdl/library/") for m in modules)
    kernels = ["symdl.kernels"] if builtin else [f"kernels/{m.name}.py" for m in modules]
    if title is None:
        title = "symdl formula sheet" if builtin else f"{sheet_name}: formula sheet"
    # The source names go into a TeX comment line: one line, whatever the file name.
    sources = " ".join(", ".join(m.source for m in modules).split())
    context = dict(title=prose(title), source=sources, sections=sections,
                   kernels=[tex_escape(k) for k in kernels])
    files = {f"sheet/{sheet_name}.tex": env.get_template("latex/sheet.tex.j2").render(**context)}
    for paper in PAPERS:
        files[cheatsheet_path(sheet_name, paper)] = env.get_template(
            "latex/cheatsheet.tex.j2").render(paper=paper, **context)
    return files


PAPERS = ("a4", "letter")  # the cheat sheet's paper sizes (landscape)


def cheatsheet_path(sheet_name: str, paper: str) -> str:
    """Where the compact layout on that paper is written, relative to the output."""
    if paper not in PAPERS:
        raise ValueError(f"paper must be one of {', '.join(PAPERS)}, got {paper!r}")
    return f"sheet/{sheet_name}-cheatsheet-{paper}.tex"


def build_pdf(tex_path: Path, quiet: bool = True) -> Path:
    """Compile the sheet with latexmk; raises RuntimeError with a plain message."""
    if shutil.which("latexmk") is None or shutil.which("pdflatex") is None:
        raise RuntimeError(TEX_INSTALL_HINT)
    tex_path = tex_path.resolve()
    build = tex_path.parent / "build"
    build.mkdir(exist_ok=True)
    cmd = ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
           f"-outdir={build}", tex_path.name]
    run = subprocess.run(cmd, cwd=tex_path.parent, capture_output=True, text=True)
    if run.returncode != 0:
        tail = "\n".join(run.stdout.splitlines()[-25:])
        raise RuntimeError(f"latexmk failed on {tex_path}:\n{tail}")
    return build / (tex_path.stem + ".pdf")


def _named_derivative(v: sp.MatrixExpr, layer, tex) -> tuple[sp.MatrixExpr, tuple]:
    """A delta whose activation derivative is applied to each element as a formula
    (ReLU's, GELU's: not a polynomial in A) shows it by name, relu'(Z1), defined in the
    label as relu'(z) = ...; returns (the delta, (LaTeX label, label parts))."""
    nodes = [a for a in sp.preorder_traversal(v) if isinstance(a, ElementwiseApplyFunction)]
    if not nodes:
        return v, ("", ())
    prime = sp.Function(f"{layer.activation.name}'")
    z = sp.Symbol("z", real=True)
    rule = sp.Eq(prime(z), nodes[0].function(z), evaluate=False)
    v = v.replace(lambda a: isinstance(a, ElementwiseApplyFunction),
                  lambda a: a.expr.applyfunc(prime))
    return v, (f"elementwise, with ${tex(rule.lhs)} = {tex(rule.rhs)}$",
               ("elementwise, with ", rule))
