"""Lowering: a formula -> the plain data a template needs (names, printed statements).

This is the "how" stage between the symbolic "what" (``symdl.formula``) and the
templates. Every arithmetic string produced here comes from ``NumbaPrinter`` applied
to a (stabilized, CSE'd) SymPy expression; the templates add only structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .formula import (
    ARG_CHECKS,
    Contraction,
    Elementwise,
    Formula,
    MaskedElementwise,
    Param,
    Reduction,
    ScalarFunction,
)
from .printers import IndexPrinter, numba_code, scalar_code, word_code
from .stable import stabilize


@dataclass
class Statement:
    """``target = value``, both printed."""

    target: str
    value: str


@dataclass
class KernelPlan:
    """Everything a Numba template needs to print one kernel."""

    name: str
    kind: str
    template: str
    doc: str
    hash: str
    arrays: list[str]
    params: list[Param] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)
    domains: dict[str, str] = field(default_factory=dict)
    body: list[Statement] = field(default_factory=list)
    finish: list[Statement] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _cse_statements(named: dict[str, sp.Expr], target) -> list[Statement]:
    """Stabilize, then common-subexpression-eliminate, then print."""
    names = list(named)
    exprs = [stabilize(e) for e in named.values()]
    temps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_c"), order="canonical")
    body = [Statement(str(s), numba_code(e)) for s, e in temps]
    body += [Statement(target(n), numba_code(e)) for n, e in zip(names, reduced, strict=True)]
    return body


def _docstring(f: Formula, signature_note: str) -> str:
    lines = [f"{f.title}. {f.doc}", "", signature_note]
    for k, e in f.expressions().items():
        lines.append(f"    {k} = {sp.sstr(e)}")
    return "\n".join(lines)


def plan_elementwise(f: Elementwise) -> KernelPlan:
    kind = "update" if f.updates else "map"
    return KernelPlan(
        name=f.name,
        kind=kind,
        template="numba/elementwise.py.j2",
        doc=_docstring(f, "Computed element by element (any shape):"),
        hash=f.content_hash(),
        arrays=[s.name for s in f.inputs],
        params=list(f.params),
        outputs=list(f.outputs),
        updates=list(f.updates),
        domains=dict(f.domains),
        body=_cse_statements(f.results(), lambda n: f"a_{n}[i]"),
    )


def plan_reduction(f: Reduction) -> KernelPlan:
    sums = list(f.sums)
    return KernelPlan(
        name=f.name,
        kind="reduction",
        template="numba/reduction.py.j2",
        doc=_docstring(f, "Sums over 1-D arrays of one length, then:"),
        hash=f.content_hash(),
        arrays=[s.name for s in f.inputs],
        outputs=list(f.outputs),
        domains=dict(f.domains),
        body=_cse_statements(dict(f.sums), lambda n: f"s_{n}"),
        finish=_cse_statements(dict(f.outputs), lambda n: n),
        extra={"sums": sums, "count": f.count.name},
    )


def plan_contraction(f: Contraction) -> KernelPlan:
    """Loop nest from index notation: output indices outside, summations inside."""
    ip = IndexPrinter()
    out_idx = list(f.output.indices)
    # Bind every range symbol to an array dimension where an index appears alone.
    dims: dict[str, tuple[str, int]] = {}
    shapes: dict[str, str] = {}  # argument -> Python literal of its dims
    for name in f.arg_order:
        ixs = [ix for ix in f.expr.atoms(sp.Indexed) if ix.base.name == name]
        shape = []
        for pos, idx in enumerate(ixs[0].indices):
            size = ip.doprint(idx.upper + 1) if isinstance(idx, sp.Idx) else None
            shape.append(size)
            if size is not None and size not in dims:
                dims[size] = (name, pos)
        shapes[name] = repr(shape)
    loops = [(ip.doprint(ix.label), ip.doprint(ix.lower), ip.doprint(ix.upper + 1))
             for ix in out_idx]
    accumulators = []
    value = f.expr
    for k, s in enumerate(sorted(f.expr.atoms(sp.Sum), key=sp.default_sort_key)):
        acc = sp.Symbol(f"_acc{k}")
        limits = [(ip.doprint(v), ip.doprint(lo), ip.doprint(hi + 1)) for v, lo, hi in s.limits]
        accumulators.append({"name": acc.name, "limits": limits,
                             "term": numba_code(stabilize(s.function))})
        value = value.xreplace({s: acc})
    out_name = f.output.base.name
    return KernelPlan(
        name=f.name,
        kind="contraction",
        template="numba/contraction.py.j2",
        doc=_docstring(f, "In index notation:"),
        hash=f.content_hash(),
        arrays=list(f.arg_order),
        outputs=[out_name],
        body=[Statement(f"a_{out_name}[{', '.join(v for v, _, _ in loops)}]",
                        numba_code(stabilize(value)))],
        extra={"dims": dims, "shapes": shapes, "loops": loops,
               "out_shape": [hi for _, _, hi in loops], "accumulators": accumulators},
    )


def plan_scalar(f: ScalarFunction) -> KernelPlan:
    """A plain Python function: argument checks, printed outputs, conditions, branches."""
    to_args = {a.symbol: sp.Symbol(a.name, **a.symbol.assumptions0) for a in f.args}
    outputs = {}
    for k, e in f.outputs.items():
        if f.integer and not e.is_integer:
            e = sp.floor(e)  # exact when the argument checks make it an integer
        outputs[k] = e.xreplace(to_args)
    fields = list(f.outputs) + (["diagnosis", "advice"] if f.branches else [])
    result = "".join(w.capitalize() for w in f.name.split("_")) + "Result"
    return KernelPlan(
        name=f.name,
        kind="scalar",
        template="numba/scalar.py.j2",
        doc=_docstring(f, "Computed in plain Python (exact integers):" if f.integer
                       else "Computed in plain Python:"),
        hash=f.content_hash(),
        arrays=[],
        outputs=list(f.outputs),
        body=[Statement(k, scalar_code(e)) for k, e in outputs.items()],
        extra={
            "args": [{"name": a.name, "default": None if a.default is None else repr(a.default),
                      "check": a.check, "meaning": ARG_CHECKS[a.check]} for a in f.args],
            "requires": [(scalar_code(c.xreplace(to_args)), repr(m)) for c, m in f.requires],
            "branches": [(scalar_code(b.condition.xreplace(to_args)), repr(b.diagnosis),
                          repr(tuple(b.advice))) for b in f.branches],
            "otherwise": (repr(f.otherwise[0]), repr(tuple(f.otherwise[1]))),
            "fields": fields,
            "result": result if len(fields) > 1 else None,
            "names": [a.name for a in f.args] + list(f.outputs),
        },
    )


def _word_statements(named: dict[str, sp.Expr], prefix: str) -> list[Statement]:
    """CSE'd unsigned 64-bit statements (no float rewrites: they would break wrapping)."""
    temps, reduced = sp.cse(list(named.values()), symbols=sp.numbered_symbols(prefix),
                            order="canonical")
    body = [Statement(str(t), word_code(e)) for t, e in temps]
    return body + [Statement(n, word_code(e)) for n, e in zip(named, reduced, strict=True)]


def _masked_docstring(f: MaskedElementwise) -> str:
    lines = [f"{f.title}. {f.doc}", "", "Computed element by element (any shape):"]
    lines += [f"    {s} = {sp.sstr(e)}" for s, e in f.let.items()]
    for value, outputs in sorted(f.variants.items(), reverse=True):
        lines += [f"    {k} = {sp.sstr(e)}    ({f.flag}={value})" for k, e in outputs.items()]
    if f.mask is not None:
        m = f.mask
        lines.append(f"    {m.symbol} = 1 if u({m.seed}, {m.index}) < {m.keep} else 0, with u "
                     "a counter-based hash in [0, 1)")
    return "\n".join(lines)


def plan_masked(f: MaskedElementwise) -> KernelPlan:
    """One serial and one parallel core per variant; the mask is hashed per element."""
    m = f.mask
    variants = []
    for value, outputs in sorted(f.variants.items(), reverse=True):
        if m is not None:  # X, a bool in the kernel, selects the kept value
            outputs = {k: sp.piecewise_fold(e.subs(m.symbol, sp.Piecewise(
                (1, sp.Symbol(m.symbol.name)), (0, True)))) for k, e in outputs.items()}
        variants.append({"value": value, "tag": str(value).lower(),
                         "body": _cse_statements(outputs, lambda n: f"a_{n}[i]")})
    extra = {
        "args": [{"name": a.name, "check": a.check, "meaning": ARG_CHECKS[a.check],
                  "word": a.check == "seed"} for a in f.args],
        "flag": f.flag, "flag_default": repr(f.flag_default), "variants": variants,
        "let": [Statement(s.name, numba_code(e)) for s, e in f.let.items()],
        "mask": None,
    }
    if m is not None:
        u = sp.Symbol("_u")
        extra["mask"] = {
            "name": m.symbol.name, "index": m.index.name,
            "key": _word_statements(dict(m.key), "_k"),
            "hash": _word_statements({u.name: m.uniform}, "_h"),
            "keep": word_code(sp.StrictLessThan(u, m.keep)),
        }
    return KernelPlan(
        name=f.name,
        kind="masked",
        template="numba/masked.py.j2",
        doc=_masked_docstring(f),
        hash=f.content_hash(),
        arrays=[s.name for s in f.inputs],
        outputs=f.outputs(),
        extra=extra,
    )


PLANNERS = {"elementwise": plan_elementwise, "reduction": plan_reduction,
            "contraction": plan_contraction, "scalar": plan_scalar, "masked": plan_masked}


def plan(f: Formula) -> KernelPlan:
    """The kernel plan of one formula."""
    return PLANNERS[f.kind](f)
