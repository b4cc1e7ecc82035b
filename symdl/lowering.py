"""Lowering: a formula -> the plain data a template needs (names, printed statements).

This is the "how" stage between the symbolic "what" (``symdl.formula``) and the
templates. Every arithmetic string produced here comes from ``NumbaPrinter`` applied
to a (stabilized, CSE'd) SymPy expression; the templates add only structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .formula import BatchMap, BatchReduction, Contraction, Elementwise, Formula, Param, Reduction
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


def _per_batch(f: BatchReduction | BatchMap, named: dict[str, sp.Expr], batch_of, target,
               key: str) -> tuple[list[dict], list[Statement]]:
    """The statements of each batch's loop: the expressions that belong to that batch."""
    batches, body = [], []
    for k, b in enumerate(f.batches):
        mine = {n: e for n, e in named.items() if batch_of(n) == k}
        stmts = _cse_statements(mine, target)
        body += stmts
        batches.append({"index": k, "count": b.count.name, "nonempty": b.nonempty,
                        "arrays": [s.name for s in b.inputs], key: list(mine), "body": stmts})
    return batches, body


def plan_batch_reduction(f: BatchReduction) -> KernelPlan:
    """One blocked-sum core per batch; the sums of a batch share its loop."""
    batches, body = _per_batch(f, dict(f.sums), f.sum_batch, lambda n: f"_t_{n}", "sums")
    return KernelPlan(
        name=f.name,
        kind="batch reduction",
        template="numba/batch_reduction.py.j2",
        doc=_docstring(f, "Sums over each batch (1-D arrays of one length), then:"),
        hash=f.content_hash(),
        arrays=[s.name for s in f.inputs],
        outputs=list(f.outputs),
        domains=dict(f.domains),
        body=body,
        finish=_cse_statements(dict(f.outputs), lambda n: n),
        extra={"batches": batches},
    )


def plan_batch_map(f: BatchMap) -> KernelPlan:
    """One elementwise core per batch, with the batch counts as scalar arguments."""
    batches, body = _per_batch(f, dict(f.outputs), f.output_batch, lambda n: f"a_{n}[i]",
                               "outputs")
    return KernelPlan(
        name=f.name,
        kind="batch map",
        template="numba/batch_map.py.j2",
        doc=_docstring(f, "Element by element over each batch (1-D arrays of one length):"),
        hash=f.content_hash(),
        arrays=[s.name for s in f.inputs],
        outputs=list(f.outputs),
        domains=dict(f.domains),
        body=body,
        extra={"batches": batches, "counts": [b.count.name for b in f.batches]},
    )


PLANNERS = {"elementwise": plan_elementwise, "reduction": plan_reduction,
            "contraction": plan_contraction, "batch_reduction": plan_batch_reduction,
            "batch_map": plan_batch_map}


def plan(f: Formula) -> KernelPlan:
    """The kernel plan of one formula."""
    return PLANNERS[f.kind](f)
