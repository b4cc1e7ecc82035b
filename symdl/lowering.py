"""Lowering: a formula -> the plain data a template needs (names, printed statements).

This is the "how" stage between the symbolic "what" (``symdl.formula``) and the
templates. Every arithmetic string produced here comes from ``NumbaPrinter`` applied
to a (stabilized, CSE'd) SymPy expression; the templates add only structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .formula import Contraction, Elementwise, Formula, Param, Reduction
from .printers import IndexPrinter, numba_code
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
    pre: list[Statement] = field(default_factory=list)  # loop-invariant, before the loop
    finish: list[Statement] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _cse_statements(named: dict[str, sp.Expr], target) -> list[Statement]:
    """Stabilize, then common-subexpression-eliminate, then print."""
    pre, body = _hoisted_statements(named, target, invariant=set())
    return pre + body


def _hoisted_statements(named: dict[str, sp.Expr], target, invariant: set[sp.Symbol],
                        prefix: str = "_c") -> tuple[list[Statement], list[Statement]]:
    """CSE'd statements split into (loop-invariant, per-element).

    A temporary whose value depends only on ``invariant`` symbols (the scalar
    parameters, say 1 - beta1**t in Adam) is computed once before the loop instead of
    once per element.
    """
    names = list(named)
    exprs = [stabilize(e) for e in named.values()]
    pre, exprs = _extract_invariants(exprs, invariant, prefix + "p")
    known = set(invariant) | {sp.Symbol(s.target) for s in pre}
    temps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(prefix), order="canonical")
    body = []
    for sym, e in temps:
        if e.free_symbols <= known:
            known.add(sym)
            pre.append(Statement(str(sym), numba_code(e)))
        else:
            body.append(Statement(str(sym), numba_code(e)))
    body += [Statement(target(n), numba_code(e)) for n, e in zip(names, reduced, strict=True)]
    return pre, body


def _extract_invariants(exprs: list[sp.Expr], invariant: set[sp.Symbol], prefix: str
                        ) -> tuple[list[Statement], list[sp.Expr]]:
    """Replace the largest subexpressions that depend only on ``invariant`` symbols
    (not bare symbols or numbers) by temporaries, computed once before the loop."""
    if not invariant:
        return [], exprs
    found: dict[sp.Expr, sp.Symbol] = {}

    def visit(e: sp.Expr) -> sp.Expr:
        if e.is_Atom or isinstance(e, sp.logic.boolalg.Boolean) and not e.free_symbols:
            return e
        if e.free_symbols and e.free_symbols <= invariant and not isinstance(
                e, sp.Piecewise | sp.logic.boolalg.Boolean):
            if e not in found:
                found[e] = sp.Symbol(f"{prefix}{len(found)}")
            return found[e]
        if e.is_Mul or e.is_Add:
            # 2*lr*m/(1 - beta1**t): the invariant factors together form one temporary.
            inv = [a for a in e.args if a.free_symbols and a.free_symbols <= invariant]
            if len(inv) >= 2:
                rest = [a for a in e.args if a not in inv]
                return e.func(visit(e.func(*inv)), *[visit(a) for a in rest])
        return e.func(*[visit(a) for a in e.args])

    out = [visit(e) for e in exprs]
    return [Statement(str(s), numba_code(e)) for e, s in found.items()], out


def _docstring(f: Formula, signature_note: str) -> str:
    lines = [f"{f.title}. {f.doc}", "", signature_note]
    for k, e in f.expressions().items():
        lines.append(f"    {k} = {sp.sstr(e)}")
    return "\n".join(lines)


def plan_elementwise(f: Elementwise) -> KernelPlan:
    kind = "update" if f.updates else "map"
    pre, body = _hoisted_statements(f.results(), lambda n: f"a_{n}[i]",
                                    invariant={p.symbol for p in f.params})
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
        pre=pre,
        body=body,
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


PLANNERS = {"elementwise": plan_elementwise, "reduction": plan_reduction,
            "contraction": plan_contraction}


def plan(f: Formula) -> KernelPlan:
    """The kernel plan of one formula."""
    return PLANNERS[f.kind](f)
