"""Lowering: a formula -> the plain data a template needs (names, printed statements).

This is the "how" stage between the symbolic "what" (``symdl.formula``) and the
templates. Every arithmetic string produced here comes from ``NumbaPrinter`` applied
to a (stabilized, CSE'd) SymPy expression; the templates add only structure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from ... import ir
from ...bitops import Low32
from ...derive import activation_local, least_count, signed_zero_safe
from ...formula import (
    ARG_CHECKS,
    Batch,
    BatchGradient,
    BatchMap,
    BatchReduction,
    Contraction,
    Correlation,
    CorrelationGradient,
    Elementwise,
    Formula,
    FormulaError,
    MaskedElementwise,
    Network,
    NetworkGradient,
    Param,
    Reduction,
    ScalarFunction,
    SpecialCase,
    Window,
    WindowGradient,
)
from ...formula_axis import AxisReduction
from ...ir import Assign, Element, Local, build, schedule
from ...printers import IndexPrinter, numba_code, scalar_code, word_code
from ...stable import stabilize
from ...vecmath import ALGORITHMS, FORMATS
from . import (
    Statement,
    element_target,
    pointwise_cores,
    print_block,
    select_functions,
    streamable,
    wide_vectors,
)
from .lowering_axis import plan_axis_reduction
from .printer import print_coefficients

# The element store and the streaming decision are the Numba backend's (loops.py).
_element_store = element_target
_streamable = streamable


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
    least: dict[str, int] = field(default_factory=dict)  # integer params: least value


def _cse_statements(named: dict[str, sp.Expr], target, post=None) -> list[Statement]:
    """Stabilize (then ``post``, if given), common-subexpression-eliminate, print."""
    pre, body = _hoisted_statements(named, target, invariant=set(), post=post)
    return pre + body


def _hoisted_statements(named: dict[str, sp.Expr], target, invariant: set[sp.Symbol],
                        prefix: str = "_c", post=None, wide: dict | None = None
                        ) -> tuple[list[Statement], list[Statement]]:
    """Printed statements split into (loop-invariant, per-element).

    A temporary whose value depends only on ``invariant`` symbols (the scalar
    parameters, say 1 - beta1**t in Adam) is computed once before the loop instead of
    once per element. With ``wide`` (each parameter -> the name of its float64
    value), those temporaries are computed in float64 and rounded once
    (``symdl.backends.numba.printer.print_coefficients``).
    """
    (pre,), body = _leveled_statements(named, target, [invariant], prefix, post, wide)
    return pre, body


def _param_wide_names(params) -> dict[sp.Symbol, sp.Symbol]:
    """Each scalar parameter's float64 (or int64) value, as a kernel core receives it."""
    return {p.symbol: sp.Symbol(f"p_{p.name}") for p in params}


def _ir_target(target, name: str) -> Local | Element:
    """A kind's target (a function of the result's name, giving its printed form) as an
    IR target: an output element, or a named local."""
    return Element(name) if target is _element_store else Local(target(name))


def _leveled_statements(named: dict[str, sp.Expr], target, levels: list[set[sp.Symbol]],
                        prefix: str = "_c", post=None, wide: dict | None = None,
                        accumulate: frozenset[str] = frozenset()
                        ) -> tuple[list[list[Statement]], list[Statement]]:
    """The IR's schedule (``symdl.ir.passes.schedule``), printed by the Numba backend.

    levels[0] holds the scalars (computed once), levels[1] adds per-feature values
    (computed once per feature column), and so on; the rest is per element. Results
    named in ``accumulate`` are summed (+=).
    """
    targets = {_ir_target(target, n): e for n, e in named.items()}
    block = schedule(targets, levels, select_functions, prefix, post,
                     frozenset(Local(target(n)) for n in accumulate))
    return print_block(block, wide)


def vecmath_functions() -> list[dict]:
    """Each vectorizable function (symdl/vecmath.py), per float format, as statements."""
    out = []
    for _, name, algorithm in ALGORITHMS.values():
        impls = []
        for width, dtype in [(64, "float64"), (32, "float32")]:
            steps, result = algorithm(FORMATS[width])
            body = [Statement(str(s), IndexPrinter().doprint(e) if kind == "int"
                              else numba_code(e)) for s, e, kind in steps]
            impls.append({"name": f"_{name}_f{width}", "width": width, "dtype": dtype,
                          "body": body, "result": str(result)})
        out.append({"name": f"_{name}", "impls": impls})
    return out


def _checked(f: Elementwise | Reduction) -> dict[str, str]:
    """The input domains a wrapper checks: all but those the formula assumes."""
    assumed = getattr(f, "assumed", ())
    return {k: d for k, d in f.domains.items() if k not in assumed}


def _doc_expr(e: sp.Expr) -> str:
    """An expression for a docstring; a function applied to each element of a matrix
    (a network's activation) as its formula in the matrix's name, not a Lambda."""
    # (imported by name: sp.matrices.expressions.applyfunc is only an attribute once some
    # other code has imported it, and a formula file without a network imports nothing)
    if isinstance(e, ElementwiseApplyFunction):
        return f"{sp.sstr(e.function(sp.Symbol(sp.sstr(e.expr))))}, element by element"
    if isinstance(e, sp.HadamardProduct) and e.has(ElementwiseApplyFunction):
        # (a delta with a derivative applied to each element: G1*relu'(Z1) as its formula)
        return f"{sp.sstr(_element(e))}, element by element"
    return sp.sstr(e)


def _docstring(f: Formula, signature_note: str) -> str:
    lines = [f"{f.title}. {f.doc}", "", signature_note]
    for k, e in f.expressions().items():
        lines.append(f"    {k} = {_doc_expr(e)}")
    return "\n".join(lines)


def _pointwise_statements(k: ir.Pointwise) -> tuple[list[Statement], list[Statement]]:
    """A pointwise kernel's (coefficients, per-element statements): the parameters are
    known before the loop, and coefficients from them are computed in float64."""
    targets = {ir.Element(n): e for n, e in k.outputs.items()}
    block = schedule(targets, [set(k.params)], select_functions)
    (pre,), body = print_block(block, {p: sp.Symbol(f"p_{p.name}") for p in k.params})
    return pre, body


def _special_core(f: Elementwise, case: SpecialCase) -> dict:
    """A special case's core: its suffix, the wrapper's test, and its statements."""
    pre, body = _pointwise_statements(build.pointwise(f, f.special_results(case)))
    values = {k: float(v) for k, v in case.when.items()}
    suffix = "".join(f"_{k}{v:g}".replace(".", "p").replace("-", "m") for k, v in values.items())
    untouched = (f", {' and '.join(case.untouched)} is left untouched" if case.untouched
                 else "")
    return {"suffix": suffix, "why": case.why, "pre": pre, "body": body,
            "condition": " and ".join(f"{k} == {v!r}" for k, v in values.items()),
            "doc": f"With {', '.join(f'{k} = {v:g}' for k, v in values.items())}{untouched}: "
                   f"{case.why}."}


def plan_elementwise(f: Elementwise) -> KernelPlan:
    """Front-end: the formula as a ``Pointwise`` kernel; backend: its cores and
    statements."""
    kernel = build.pointwise(f)
    pre, body = _pointwise_statements(kernel)
    special = [_special_core(f, case) for case in f.special_cases]
    if len({sp_["suffix"] for sp_ in special}) != len(special):
        raise FormulaError(f"{f.name}: two special cases print to one core name")
    doc = _docstring(f, "Computed element by element (any shape):")
    return KernelPlan(
        name=f.name,
        kind="update" if f.updates else "map",
        template="numba/elementwise.py.j2",
        doc="\n".join([doc, *(s["doc"] for s in special)]),
        hash=f.content_hash(),
        arrays=[s.name for s in f.inputs],
        params=list(f.params),
        outputs=list(f.outputs),
        updates=list(f.updates),
        least={p.name: least_count(f, p.name) for p in f.params if p.check == "count"},
        domains=_checked(f),
        pre=pre,
        body=body,
        extra={"special": special, "stream": "stream" in pointwise_cores(kernel),
               "wide": wide_vectors(kernel.outputs)},
    )


def plan_reduction(f: Reduction) -> KernelPlan:
    """Front-end: the formula as a ``Reduction`` over every element; backend: the
    per-element accumulation (sums share their subexpressions: each is assigned once
    per element, the sums accumulate) and the scalar finish."""
    k = build.reduction(f)
    acc = {ir.Local(f"s_{n}"): term for n, (_, term) in k.accumulators.items()}
    (_,), body = print_block(schedule(acc, [set()], select_functions,
                                      accumulate=frozenset(acc)))
    (_,), finish = print_block(schedule({ir.Local(n): e for n, e in k.finish.items()},
                                        [set()], select_functions))
    return KernelPlan(
        name=f.name,
        kind="reduction",
        template="numba/reduction.py.j2",
        doc=_docstring(f, "Sums over all elements of arrays of one shape, then:" if f.any_shape
                       else "Sums over 1-D arrays of one length, then:"),
        hash=f.content_hash(),
        arrays=[s.name for s in k.loads],
        params=list(f.params),
        outputs=list(k.finish),
        domains=_checked(f),
        body=body,
        finish=finish,
        extra={"sums": list(k.accumulators), "count": k.count.name, "any_shape": f.any_shape},
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
    sums = sorted(f.expr.atoms(sp.Sum), key=sp.default_sort_key)
    for k, s in enumerate(sums):
        acc = sp.Symbol(f"_acc{k}")
        limits = [(ip.doprint(v), ip.doprint(lo), ip.doprint(hi + 1)) for v, lo, hi in s.limits]
        accumulators.append({"name": acc.name, "limits": limits,
                             "term": numba_code(stabilize(s.function))})
        value = value.xreplace({s: acc})
    out_name = f.output.base.name
    target = f"a_{out_name}[{', '.join(v for v, _, _ in loops)}]"
    return KernelPlan(
        name=f.name,
        kind="contraction",
        template="numba/contraction.py.j2",
        doc=_docstring(f, "In index notation:"),
        hash=f.content_hash(),
        arrays=list(f.arg_order),
        outputs=[out_name],
        body=[Statement(target, numba_code(stabilize(value)))],
        extra={"dims": dims, "shapes": shapes, "loops": loops,
               "out_shape": [hi for _, _, hi in loops], "accumulators": accumulators,
               "jam": _jammed_rows(f, sums, value)},
    )


#: Rows of the outermost output index that a contraction computes together (unroll
#: and jam): their sums share one inner loop, so a value they all use, x[j] of a
#: matrix-vector product, is loaded once for them. Measured on (3160, 3160) matvec,
#: 1, 2, 4, 8 rows: float64 2.3, 1.9, 1.7, 1.65 ms (NumPy's BLAS 1.9-2.4); float32
#: 1.1, 0.94, 0.74, 0.63 ms (NumPy 0.72-0.75).
JAM_ROWS = 8


def _jammed_rows(f: Contraction, sums: list[sp.Sum], value: sp.Expr) -> dict | None:
    """Row k of a block of JAM_ROWS (the outermost output index i -> i + k): each sum's
    term and the output's statement, with per-row accumulators _acc<n>_<k>. None when
    there is no sum, or a sum's range depends on that index."""
    if not sums or not f.output.indices:
        return None
    idx = f.output.indices[0]
    i = idx.label if isinstance(idx, sp.Idx) else idx
    if any(sp.Tuple(*lim[1:]).has(idx, i) for s in sums for lim in s.limits):
        return None
    ip = IndexPrinter()
    target, inner = f"a_{f.output.base.name}", [ip.doprint(ix.label) for ix in f.output.indices[1:]]
    rows = []
    for k in range(JAM_ROWS):
        shift = {idx: i + k}
        accs = {sp.Symbol(f"_acc{n}"): sp.Symbol(f"_acc{n}_{k}") for n in range(len(sums))}
        rows.append({
            "terms": [numba_code(stabilize(s.function.xreplace(shift))) for s in sums],
            "accumulators": [a.name for a in accs.values()],
            "store": Statement(f"{target}[{', '.join([ip.doprint(i + k), *inner])}]",
                               numba_code(stabilize(value.xreplace(accs).xreplace(shift)))),
        })
    lo, hi, block = idx.lower, idx.upper + 1, sp.Symbol("_block", integer=True)
    return {"rows": rows, "blocks": ip.doprint(sp.floor((hi - lo) / JAM_ROWS)),
            "first": ip.doprint(lo + JAM_ROWS * block),
            "rest": ip.doprint(hi - sp.Mod(hi - lo, JAM_ROWS))}


def _names_used(statements: list[Statement], names) -> list[str]:
    """The names (arrays, features) that printed statements refer to: a pass loads only
    those, so no pointer stream is opened for an array the pass does not use."""
    text = " ".join(st.value for st in statements)
    return [n for n in names if re.search(rf"\b{re.escape(n)}\b", text)]


def _factored_sums(sums: dict[str, sp.Expr], elements: set) -> tuple[dict, dict]:
    """Sum_i c*g_i = c * Sum_i g_i for a per-feature factor c: the factors leave the
    row loop, and sums of one element part g (up to sign) are accumulated once. The
    batch norm backward needs 3 running sums instead of 5: fewer streams, and a loop
    LLVM vectorizes. Returns ({sum name: g}, {original name: c * sum symbol})."""
    parts: dict[sp.Expr, str] = {}
    scaled: dict[str, sp.Expr] = {}
    for name, e in sums.items():
        c, g = sp.factor_terms(e).as_independent(*elements, as_Add=False)
        if g.could_extract_minus_sign():
            c, g = -c, -g
        parts.setdefault(g, f"_s{len(parts)}")
        scaled[name] = c * sp.Symbol(parts[g], real=True)
    return {n: g for g, n in parts.items()}, scaled


def _batch_pass_reduce(sums: dict[str, sp.Expr], finish: dict[str, sp.Expr],
                       scalars: set, features: set, elements: set) -> dict:
    """A pass that sums per-element terms per feature, then finishes per feature."""
    parts, scaled = _factored_sums(sums, elements)
    (scalar_pre, feature_pre), body = _leveled_statements(
        {f"_term{k}": e for k, e in enumerate(parts.values())}, lambda n: n,
        [scalars, features], prefix="_r")
    feature_pre = scalar_pre + feature_pre  # per feature: cheap, and keeps one loop
    finish_statements = _cse_statements(scaled, lambda n: n) + _cse_statements(
        finish, lambda n: n)
    return {"kind": "reduce", "feature_pre": feature_pre, "body": body,
            "sums": list(parts), "finish": finish_statements, "stores": list(finish)}


def _batch_pass_map(outputs: dict[str, sp.Expr], scalars: set, features: set) -> dict:
    """A pass that computes per-element outputs, row by row (o_<name> is the output
    row's slice of the column tile)."""
    (scalar_pre, feature_pre), body = _leveled_statements(
        outputs, lambda n: f"o_{n}[c]", [scalars, features], prefix="_m")
    feature_pre = scalar_pre + feature_pre  # per feature: cheap, and keeps one loop
    return {"kind": "map", "feature_pre": feature_pre, "body": body, "outputs": list(outputs)}


def _batch_uses(passes: list[dict], elem_in: list[str], feat_all: list[str]) -> None:
    """Record, per pass, the arrays its row loop and its per-feature parts read."""
    for ps in passes:
        ps["elem_used"] = _names_used(ps["body"], elem_in)
        ps["feat_used"] = _names_used(ps["body"], feat_all)
        ps["pre_used"] = _names_used(ps["feature_pre"], feat_all)
        targets = _names_used(ps["body"], [st.target for st in ps["feature_pre"]])
        ps["pf_used"] = [(k, st.target) for k, st in enumerate(ps["feature_pre"])
                         if st.target in targets]
        assigned = {st.target for st in ps.get("finish", [])}
        ps["finish_used"] = [n for n in _names_used(ps.get("finish", []), feat_all)
                             if n not in assigned]


def _batch_plan(f: Formula, elem_in, feat_in, elem_out, feat_out, locals_, passes,
                scalar_pre, note: str) -> KernelPlan:
    _batch_uses(passes, elem_in, feat_in + feat_out + locals_)
    return KernelPlan(
        name=f.name, kind=f.kind, template="numba/batch.py.j2",
        doc=_docstring(f, note), hash=f.content_hash(), arrays=elem_in + feat_in,
        params=list(f.params), outputs=elem_out + feat_out, pre=scalar_pre,
        # (Per-feature arrays only: C values, a cheap check.)
        domains={k: d for k, d in getattr(f, "domains", {}).items() if k in feat_in},
        extra={"elem_in": elem_in, "feat_in": feat_in, "elem_out": elem_out,
               "feat_out": feat_out, "locals": locals_, "passes": passes,
               "max_sums": max([len(p["sums"]) for p in passes if p["kind"] == "reduce"],
                               default=0)},
    )


def plan_batch(f: Batch) -> KernelPlan:
    """Forward: one reduction pass per statistic (each may use the earlier ones), then
    the outputs. The per-feature parts are hoisted out of the row loops."""
    if any(p.check == "count" for p in f.params):
        raise FormulaError(f"{f.name}: integer (count) parameters are for elementwise "
                           "formulas")
    scalars = {p.symbol for p in f.params} | {f.count}
    feats = set(f.features)
    passes = []
    for stat, term in f.stats.items():
        passes.append(_batch_pass_reduce({f"r_{stat}": term},
                                         {stat: sp.Symbol(f"r_{stat}", real=True) / f.count},
                                         scalars, feats, set(f.inputs)))
        feats.add(sp.Symbol(stat, real=True))
    passes.append(_batch_pass_map(dict(f.outputs), scalars, feats))
    return _batch_plan(f, [s.name for s in f.inputs], [s.name for s in f.features],
                       list(f.outputs), list(f.stats), [], passes, [],
                       "x of shape (m, C); per feature (column), over the batch (rows):")


def plan_batch_gradient(f: BatchGradient) -> KernelPlan:
    """Backward: one pass for every sum the chain rule needs, the per-feature finish
    (adjoints of the statistics, feature gradients), then the input gradients."""
    scalars = {p.symbol for p in f.params} | {f.count}
    feats = set(f.features)
    reduce = _batch_pass_reduce(dict(f.reductions), dict(f.finish), scalars, feats,
                                set(f.arrays))
    adjoints = [k for k in f.finish if k not in f.feature_outputs]
    feats |= {sp.Symbol(k, real=True) for k in adjoints}
    passes = [reduce, _batch_pass_map(dict(f.outputs), scalars, feats)]
    return _batch_plan(f, [s.name for s in f.arrays], [s.name for s in f.features],
                       list(f.outputs), list(f.feature_outputs), adjoints, passes, [],
                       "Derived by SymPy (chain rule through the batch means):")




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
                         "body": _cse_statements(outputs, _element_store)})
    extra = {
        "args": [{"name": a.name, "check": a.check, "meaning": ARG_CHECKS[a.check],
                  "word": a.check == "seed"} for a in f.args],
        "flag": f.flag, "flag_default": repr(f.flag_default), "variants": variants,
        # (in float64, rounded once: q = 1 - p must not round to 0 for p < 1)
        "let": print_coefficients([Assign(Local(str(k)), e) for k, e in f.let.items()],
                                  _param_wide_names(f.args)),
        "mask": None,
        "stream": m is None and all(_streamable(v) for v in f.variants.values()),
        # (the mask's counter-based hash is 20 rounds of integer work per element)
        "wide": m is not None or any(wide_vectors(v) for v in f.variants.values()),
    }
    if m is not None:
        u = sp.Symbol("_u")
        key, uniform, keep = dict(m.key), m.uniform, m.keep
        scale, word = uniform.as_coeff_Mul()
        keep_test = sp.StrictLessThan(u, keep)
        if word.is_integer and scale == sp.Rational(1, 2**32):
            # u = word / 2**32 with a 32-bit word: u < keep exactly when the word <=
            # ceiling(keep * 2**32) - 1, a threshold computed once, in [0, 2**32) for
            # keep in (0, 1]. The loop compares 32-bit words, converts nothing to float
            # (AVX2 converts no 64-bit integers) and keeps everything for keep = 1.
            t = sp.Symbol("_threshold", integer=True, nonnegative=True)
            # (from the float64 values of the let statements: see print_coefficients)
            wide_let = {sym: sp.Symbol(f"_w{sym}") for sym in f.let}
            key[t.name] = Low32(sp.ceiling(keep.xreplace(wide_let) / scale) - 1)
            uniform, keep_test = word, sp.LessThan(u, t)
        extra["mask"] = {
            "name": m.symbol.name, "index": m.index.name,
            "key": _word_statements(key, "_k"),
            # Each step on its own (CSE across steps would hoist a common part above
            # the step that defines its operands), then the uniform.
            "hash": [st for j, (k, e) in enumerate(m.steps.items())
                     for st in _word_statements({k: e}, f"_h{j}_")]
                    + _word_statements({u.name: uniform}, "_h"),
            "keep": word_code(keep_test),
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


def _per_batch(f: BatchReduction | BatchMap, named: dict[str, sp.Expr], batch_of, target,
               key: str) -> tuple[list[dict], list[Statement]]:
    """The statements of each batch's loop: the expressions that belong to that batch."""
    batches, body = [], []

    def edge_safe(e: sp.Expr) -> sp.Expr:
        # (after stabilize, whose factoring writes 1/(d - 1) back: see derive)
        for x in f.inputs:
            e = signed_zero_safe(e, x, f.domains.get(x.name))
        return e

    for k, b in enumerate(f.batches):
        mine = {n: e for n, e in named.items() if batch_of(n) == k}
        stmts = _cse_statements(mine, target, post=edge_safe)
        body += stmts
        batches.append({"index": k, "count": b.count.name, "nonempty": b.nonempty,
                        "arrays": [s.name for s in b.inputs], key: list(mine), "body": stmts,
                        "wide": wide_vectors(mine)})
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
    batches, body = _per_batch(f, dict(f.outputs), f.output_batch, _element_store,
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


@dataclass
class _Role:
    """How a per-sample symbol of a network lives in the batched kernel: ``array`` is
    the core variable; ``batch``: one row per sample, else shared by all samples;
    ``rank``: 0 per-sample scalar, 1 column vector, 2 matrix (per sample)."""

    array: str
    batch: bool
    rank: int


def _network_roles(net: Network) -> dict[str, _Role]:
    roles = {net.sample: _Role(f"a_{net.input}", True, 1), "df": _Role("a_df", True, 0),
             net.readout: _Role(f"a_{net.readout}", False, 1),
             net.output: _Role(f"a_{net.output}", True, 0)}
    for ly in net.layers:
        roles[ly.weight] = _Role(f"a_{ly.weight}", False, 2)
        if ly.bias is not None:
            roles[ly.bias] = _Role(f"a_{ly.bias}", False, 1)
    return roles


def _split_products(steps: dict[str, sp.MatrixExpr]) -> dict[str, sp.MatrixExpr]:
    """A step W a + b becomes the product Z<k>_lin = W a (a BLAS call) and the step
    Z<k>_lin + b (elementwise: substituted into its users, the activation's loop)."""
    out: dict[str, sp.MatrixExpr] = {}
    for n, e in steps.items():
        products = [a for a in e.args if isinstance(a, sp.MatMul)
                    and sum(f.is_Matrix for f in a.args) == 2] if isinstance(e, sp.MatAdd) else []
        if len(products) == 1:
            lin = sp.MatrixSymbol(f"{n}_lin", *e.shape)
            out[lin.name] = products[0]
            e = sp.MatAdd(lin, *[a for a in e.args if a is not products[0]])
        out[n] = e
    return out


def _element(e: sp.Basic) -> sp.Expr:
    """One element of an elementwise per-sample matrix expression, as a scalar SymPy
    expression in symbols named after the matrices (loaded at [i, c] in the loop)."""
    if isinstance(e, sp.MatrixSymbol):
        return sp.Symbol(e.name, real=True)
    if isinstance(e, sp.OneMatrix):
        return sp.S.One
    if isinstance(e, sp.HadamardProduct):
        return sp.Mul(*[_element(a) for a in e.args])
    if isinstance(e, sp.MatAdd):
        return sp.Add(*[_element(a) for a in e.args])
    if isinstance(e, sp.HadamardPower):
        return _element(e.base) ** e.exp
    # (imported by name: sp.matrices.expressions.applyfunc is only an attribute once some
    # other code has imported it, and a formula file without a network imports nothing)
    if isinstance(e, ElementwiseApplyFunction):
        return e.function(_element(e.expr))
    if isinstance(e, sp.MatMul) and sum(a.is_Matrix for a in e.args) == 1:
        return sp.Mul(*[_element(a) if a.is_Matrix else a for a in e.args])
    if not getattr(e, "is_Matrix", False):
        return e  # a per-sample scalar (df) or a number
    raise FormulaError(f"{e} is not elementwise")


def _dot(name: str, e: sp.MatrixExpr, roles: dict[str, _Role], shared: bool) -> tuple[str, str]:
    """The BLAS product (left, right) computing a per-sample product batched over rows.

    Row i of a batch array holds sample i's column vector (transposed), so per sample
    y = W v is Y = V W^T; summed over the batch (a shared gradient), u v^T is U^T V and
    s v (s a per-sample scalar) is s^T V."""
    factors = e.args if isinstance(e, sp.MatMul) else ()
    if len(factors) != 2 or any(a.is_Number for a in factors):
        raise FormulaError(f"{name} = {e}: not a product of two factors")

    def operand(f):
        t = isinstance(f, sp.Transpose)
        base = f.arg if t else f
        return roles[base.name if hasattr(base, "name") else str(base)], t

    (r1, t1), (r2, t2) = operand(factors[0]), operand(factors[1])
    if not shared and r2.batch and r2.rank == 1 and not t2 and not r1.batch:
        if r1.rank == 2:  # W v or W^T v
            return r2.array, r1.array if t1 else f"{r1.array}.T"
        if r1.rank == 1 and t1:  # w^T v: one number per sample
            return r2.array, r1.array
    if shared and r1.batch and r2.batch:
        if r1.rank == 1 and not t1 and r2.rank == 1 and t2:  # sum of u v^T
            return f"{r1.array}.T", r2.array
        if r1.rank == 0 and r2.rank == 1 and not t2:  # sum of s v
            return r1.array, r2.array
    raise FormulaError(f"{name} = {e}: no batched BLAS form for this product")


def _network_ops(steps: dict[str, sp.MatrixExpr], roles: dict[str, _Role],
                 shared: set[str], outputs: list[str], scratch: frozenset[str] = frozenset(),
                 given: dict[str, tuple] | None = None, keep: frozenset[str] = frozenset()
                 ) -> tuple[list[dict], list[Statement]]:
    """Per-sample steps -> kernel ops: "dot" (a BLAS product, the structure) or "map"
    (an elementwise loop whose statements are printed from SymPy). An elementwise
    step used only by elementwise steps is substituted into them (never stored); a
    map writes over an input buffer that is dead after it. ``scratch`` names steps
    whose core arrays (given in ``roles``) the kernel owns: a product is stored into
    them, and a map may write over them once they are dead. ``given``: steps computed
    before the kernel (name -> shape), passed in as arrays. ``keep``: scratch steps
    whose buffers no later map may write over (pre-activations the memo keeps). A
    shared step that is a per-sample column alone (a bias's delta) is a "sum" op: the
    sum over the batch's rows."""
    given = given or {}

    def is_map(n, e):
        return n not in shared and not (isinstance(e, sp.MatMul) and
                                        sum(a.is_Matrix for a in e.args) == 2)

    def users(n):
        return [m for m, e in steps.items() if n in {a.name for a in e.atoms(sp.MatrixSymbol)}]

    steps = dict(steps)
    for n in list(steps):
        if n not in outputs and is_map(n, steps[n]) and users(n) and all(
                is_map(u, steps[u]) for u in users(n)):
            sym = next(a for u in users(n) for a in steps[u].atoms(sp.MatrixSymbol)
                       if a.name == n)
            for u in users(n):
                steps[u] = steps[u].xreplace({sym: steps[n]})
            del steps[n]
    order = list(steps)
    last_use = {n: max([order.index(u) for u in users(n)], default=-1)
                for n in [*given, *order]}
    shape = {**given, **{n: e.shape for n, e in steps.items()}}
    roles = dict(roles)
    ops, statements = [], []
    for j, (n, e) in enumerate(steps.items()):
        out = n in outputs or n in scratch
        if n not in roles:
            roles[n] = _Role(f"a_{n}" if out else f"_t_{n}", n not in shared,
                             0 if e.shape == (1, 1) else 1 if e.shape[1] == 1 else 2)
        if n in shared and isinstance(e, sp.MatrixSymbol) and roles[e.name].batch:
            ops.append({"kind": "sum", "target": roles[n].array,
                        "source": roles[e.name].array})
            continue
        if not is_map(n, e):
            left, right = _dot(n, e, roles, n in shared)
            ops.append({"kind": "dot", "target": roles[n].array, "left": left,
                        "right": right, "out": out})
            continue
        expr = _element(e)
        names = sorted(s.name for s in expr.free_symbols)
        # A (sample, unit) array is read and written through a 1-D view ``<array>_v``:
        # of the whole array when every array of the step is one (the loop then runs
        # over all elements: measured on a (4096, 256) sigmoid, 2.1 ms against 3.1 ms
        # row by row), else of row i.
        loads, views = [], set()
        for name in names:
            r = roles[name]
            if r.batch and r.rank:
                views.add(r.array)
            index = ("_v[c]" if r.rank else "[i]") if r.batch else "[c]"
            loads.append(Statement(name, f"{r.array}{index}"))
        reuse = [m for m in names if n not in outputs and m in last_use and last_use[m] == j and (
                 m in scratch or not roles[m].array.startswith("a_"))
                 and shape[m] == e.shape and m not in keep]
        alloc = n not in outputs and n not in scratch and not reuse
        if reuse:
            roles[n] = _Role(roles[reuse[0]].array, True, 1)
        target = f"{roles[n].array}_v[c]"
        flat = len(views) == len(names)
        views.add(roles[n].array)
        body = _cse_statements({n: expr}, lambda _, t=target: t)
        statements += body
        arrays = sorted({roles[name].array for name in names} | {roles[n].array})
        ops.append({"kind": "map", "target": roles[n].array, "alloc": alloc,
                    "cols": f"_{e.shape[0]}", "cols_dim": str(e.shape[0]),
                    "arrays": arrays, "views": sorted(views), "flat": flat, "loads": loads,
                    "body": body})
    return ops, statements


def _network_dims(net: Network) -> dict[str, list[str]]:
    """Each array argument's dims, in the sizes' names (m, n0, ..., nL)."""
    widths = [w.name for w in net.widths()]
    dims = {net.input: ["m", widths[0]], net.readout: [widths[-1]], "df": ["m"]}
    for k, ly in enumerate(net.layers, start=1):
        dims[ly.weight] = [widths[k], widths[k - 1]]
        if ly.bias is not None:
            dims[ly.bias] = [widths[k]]
    return dims


def _network_plan(f: Formula, net: Network, ops: list[dict], body: list[Statement],
                  args: list[str], outputs: dict[str, list[str]], note: str) -> KernelPlan:
    widths = [w.name for w in net.widths()]
    dims = _network_dims(net)
    bind = {"m": (net.input, 0), widths[0]: (net.input, 1)}
    bind |= {widths[k]: (ly.weight, 0) for k, ly in enumerate(net.layers, start=1)}
    return KernelPlan(
        name=f.name, kind=f.kind, template="numba/network.py.j2",
        doc=_docstring(f, note), hash=f.content_hash(), arrays=args,
        outputs=list(outputs), body=body,
        extra={"ops": ops, "dims": {a: dims[a] for a in args}, "bind": bind,
               "out_dims": outputs, "widths": widths},
    )


def _pre_activations(net: Network) -> dict[int, str]:
    """Layer k -> the step its backward needs besides the activations: the layers
    whose activation derivative is not proven to be a function of the output (ReLU,
    GELU; ``symdl.derive.activation_local``) keep their product W a (Z<k>, or Z<k>_lin
    when a bias is added to it: the backward adds the bias again, one addition per
    element, rather than the forward spending a pass storing Z)."""
    out = {}
    for k, ly in enumerate(net.layers, start=1):
        (x,) = ly.activation.inputs
        ((yname, expr),) = ly.activation.outputs.items()
        if not activation_local(expr, x, sp.Symbol(yname, real=True))[0]:
            out[k] = f"Z{k}_lin" if ly.bias is not None else f"Z{k}"
    return out


def _saved_activations(net: Network) -> dict[str, list[str]]:
    """The arrays the forward kernel keeps for the backward one (the memo in
    templates/numba/memo.py.j2): the activations A_l, then the products the backward
    needs (``_pre_activations``): name -> (batch, width) dims."""
    widths = [w.name for w in net.widths()]
    saved = {f"A{k}": ["m", widths[k]] for k in range(1, len(net.layers) + 1)}
    return saved | {z: ["m", widths[k]] for k, z in _pre_activations(net).items()}


def plan_network(f: Network) -> KernelPlan:
    """The forward pass, batched over the rows of the input. Each product Z_l (W a,
    before any bias) is stored into the buffer of its activation A_l, which the
    activation then overwrites: the wrapper keeps the activations for the backward
    kernel. A product that the backward needs (``_pre_activations``) is kept in a
    buffer of its own instead."""
    roles = _network_roles(f)
    saved = _saved_activations(f)
    pre = _pre_activations(f)
    steps = _split_products(f.steps())
    scratch = set()
    for k, ly in enumerate(f.layers, start=1):
        product = f"Z{k}_lin" if ly.bias is not None else f"Z{k}"
        if k in pre:
            roles |= {product: _Role(f"s_{product}", True, 1),
                      f"A{k}": _Role(f"s_A{k}", True, 1)}
            scratch |= {product, f"A{k}"}
        else:
            roles[product] = _Role(f"s_A{k}", True, 1)
            scratch.add(product)
    ops, body = _network_ops(steps, roles, set(), [f.output], frozenset(scratch),
                             keep=frozenset(pre.values()))
    plan_ = _network_plan(f, f, ops, body, f.argument_names(), {f.output: ["m"]},
                          "Per sample x (a row of the input, as a column vector):")
    plan_.extra |= {"saved": saved, "memo": f.name}
    return plan_


def plan_network_gradient(f: NetworkGradient) -> KernelPlan:
    """The forward pass again (the activations), then the derived backward steps; and a
    second core that starts from the arrays the forward kernel kept (``resume``)."""
    net = f.network
    roles = _network_roles(net)
    fwd = {k: e for k, e in _split_products(net.steps()).items() if k != net.output}
    ops, body = _network_ops({**fwd, **f.steps}, roles, set(f.shared), list(f.results))
    saved = _saved_activations(net)
    kept = {**roles, **{a: _Role(f"s_{a}", True, 1) for a in saved}}
    shapes = {a: e.shape for a, e in fwd.items() if a in saved}
    # The resume core takes the kept arrays as given (s_A<l>, not a_: it owns their
    # buffers, which the memo hands over once, so the deltas may overwrite them); a
    # bias is added again to a kept product (Z<k> = Z<k>_lin + b, substituted into
    # the delta's loop).
    again = {f"Z{k}": fwd[f"Z{k}"] for k, z in _pre_activations(net).items() if z != f"Z{k}"}
    resume, _ = _network_ops({**again, **f.steps}, kept, set(f.shared), list(f.results),
                             given=shapes)
    dims = _network_dims(net)
    out_dims = {r: dims[r[1:]] for r in f.results[1:]}
    out_dims = {f.results[0]: dims[net.input], **out_dims}
    plan_ = _network_plan(f, net, ops, body, f.argument_names(), out_dims,
                          "Derived by SymPy (reverse mode), per sample x:")
    plan_.extra |= {"saved": saved, "memo": net.name, "resume": resume,
                    "inputs": net.argument_names()}
    return plan_


def _window_fold(fwd: Window) -> dict:
    """The fold over one window, printed: start value, element load and step.

    The step is op(acc, e) for the window's operator. An operator that selects one of
    its arguments (SymPy's derivative of op(acc, e) by e is Heaviside(e - acc)) is
    printed as a selection: acc = e when e > acc, so that the first maximum is kept on
    ties (as in PyTorch), or when e is NaN (NaN propagates, as in PyTorch).
    """
    from ...window import isnan, reduction_op

    ip = IndexPrinter()
    node, element = fwd.node(), fwd.element()
    op = reduction_op(node)
    acc, e, v = sp.Symbol("acc", real=True), sp.Symbol("e", real=True), sp.Symbol("v")
    step = sp.diff(op(acc, e), e)
    fold = {"init": numba_code(op.identity), "select": None, "step": None,
            "load": f"a_{element.base.name}[pl, {ip.doprint(element.indices[2])}, "
                    f"{ip.doprint(element.indices[3])}]",
            "element": numba_code(node.function.xreplace({element: v})),
            "window": [(ip.doprint(w), ip.doprint(lo), ip.doprint(hi + 1))
                       for w, lo, hi in node.limits],
            "subscript": [ip.doprint(ix) for ix in element.indices[2:]]}
    if isinstance(step, sp.Heaviside):
        z = step.args[0]
        indep, dep = z.as_independent(e)
        fold["select"] = numba_code(sp.Or(sp.Gt(dep, -indep), isnan(e)))
    elif step == 1:
        fold["step"] = numba_code(op(acc, e))
    else:
        raise FormulaError(f"{fwd.name}: cannot fold the window with {op.__name__}")
    return fold


def _window_wrapper(fwd: Window) -> dict:
    """Names and the printed output-size formula for the wrapper (H, W -> Ho, Wo)."""
    names = {fwd.size: sp.Symbol("f", integer=True), fwd.stride: sp.Symbol("stride")}
    return {
        "input": fwd.element().base.name,
        "out": fwd.output.base.name,
        "out_rows": scalar_code(fwd.out_size.xreplace({**names, fwd.extent: sp.Symbol("H")})),
        "out_cols": scalar_code(fwd.out_size.xreplace({**names, fwd.extent: sp.Symbol("W")})),
        "i": fwd.output.indices[2].name, "j": fwd.output.indices[3].name,
        "size_name": fwd.size.name, "stride_name": fwd.stride.name,
    }


_FT = sp.Symbol("_fT")  # the window size as a float of the kernel's dtype
_TOTAL = sp.Symbol("_tot", real=True)  # a window's reduction, in a backward kernel


def plan_window(f: Window) -> KernelPlan:
    """Forward pooling: per (n, c) plane and output position, fold the window."""
    acc = sp.Symbol("acc", real=True)
    finalize = f.expr.xreplace({f.node(): acc, f.size: _FT})
    extra = {**_window_wrapper(f), **_window_fold(f), "backward": False, "total": False}
    return KernelPlan(
        name=f.name, kind="window", template="numba/window.py.j2",
        doc=_docstring(f, "Per (n, c) plane, over f x f windows:"), hash=f.content_hash(),
        arrays=[extra["input"]], outputs=[extra["out"]],
        body=[Statement(f"a_{extra['out']}[pl, {extra['i']}, {extra['j']}]",
                        numba_code(finalize))],
        extra=extra)


def _tiles_at_stride_f(fwd: Window) -> bool:
    """Whether the windows tile the input without overlap when the stride is f: the
    element is x[n, c, s*i + a, s*j + b] with a and b from 0 to f - 1 (SymPy checks the
    subscripts). Only then may the backward write each element of dx once."""
    node, element = fwd.node(), fwd.element()
    (a, a_lo, a_hi), (b, b_lo, b_hi) = node.limits
    i, j = fwd.output.indices[2:]
    rows, cols = element.indices[2:]
    return all(sp.simplify(d) == 0 for d in (
        rows - (fwd.stride * i + a), cols - (fwd.stride * j + b), a_lo, b_lo,
        a_hi - (fwd.size - 1), b_hi - (fwd.size - 1)))


def plan_window_gradient(g: WindowGradient) -> KernelPlan:
    """Backward pooling from SymPy's local derivative dy/dv of a window element v.

    A derivative with a Heaviside factor is an indicator of the selected element: the
    gradient is routed there (the fold is replayed to find it). Otherwise it is spread
    to every element of the window.
    """
    fwd = g.forward
    extra = {**_window_wrapper(fwd), **_window_fold(fwd), "backward": True}
    dyv = sp.Symbol("dyv", real=True)
    local = g.local.xreplace({fwd.size: _FT})
    route = bool(local.atoms(sp.Heaviside))
    coef = local.replace(sp.Heaviside, lambda *args: sp.S.One) if route else local
    total = False
    if g.rest in coef.free_symbols and not route:
        # The others' reduction is the window's total less this element's term (a sum:
        # L2 pooling's v/sqrt(rho + v**2) is v/sqrt(_tot)); the backward folds each
        # window once for its total, then spreads the gradient.
        h = fwd.node().function.xreplace({fwd.element(): g.value})
        coef = sp.simplify(coef.xreplace({g.rest: _TOTAL - h}))
        total = isinstance(fwd.node(), sp.Sum)
    if g.rest in coef.free_symbols or (_TOTAL in coef.free_symbols and not total):
        raise FormulaError(f"{g.name}: the derivative {g.local} depends on the other "
                           "elements of the window; this lowering cannot compute it")
    (pre,), body = _leveled_statements({"_t": dyv * coef}, lambda n: n, [{_FT}], prefix="_g")
    extra |= {"route": route, "grad": "d" + fwd.output.base.name, "total": total,
              "grad_out": "d" + fwd.element().base.name, "uses_v": g.value in coef.free_symbols,
              "tiles": _tiles_at_stride_f(fwd)}
    return KernelPlan(
        name=g.name, kind="window_gradient", template="numba/window.py.j2",
        doc=_docstring(g, "Derived by SymPy, per (n, c) plane:"), hash=g.content_hash(),
        arrays=[extra["input"], extra["grad"]], outputs=[extra["grad_out"]],
        pre=pre, body=body, extra=extra)


def _correlation_common(fwd: Correlation) -> dict:
    """Names, the im2col subscripts of x and the output size, printed from the formula."""
    ip = IndexPrinter()
    xi = fwd.indexed(fwd.input)
    (ch, ka, kb) = [lim[0] for lim in fwd.sum().limits]
    names = {fwd.size: sp.Symbol("f"), fwd.stride: sp.Symbol("stride"),
             fwd.padding: sp.Symbol("padding")}
    return {
        "input": fwd.input, "weight": fwd.weight, "bias": fwd.bias, "bias_arg": fwd.bias_arg,
        "out": fwd.output.base.name, "c": ch.name, "a": ka.name, "b": kb.name,
        "i": fwd.output.indices[2].name, "j": fwd.output.indices[3].name,
        "rows": ip.doprint(xi.indices[2]), "cols": ip.doprint(xi.indices[3]),
        "size_name": fwd.size.name, "stride_name": fwd.stride.name,
        "padding_name": fwd.padding.name,
        "out_rows": scalar_code(fwd.out_size.xreplace({**names, fwd.extent: sp.Symbol("H")})),
        "out_cols": scalar_code(fwd.out_size.xreplace({**names, fwd.extent: sp.Symbol("W")})),
        # The same subscripts in a copy of x zero-padded by p on each side (x's element
        # (h, v) sits at (h + p, v + p) there): no bounds test in the unfolding loops.
        **_padded(fwd, xi),
    }


def _padded(fwd: Correlation, xi: sp.Indexed) -> dict:
    """Subscripts and extents of x zero-padded by the padding on each side, printed."""
    ip = IndexPrinter()
    p, h, v = fwd.padding, sp.Symbol("h"), sp.Symbol("v")
    return {"rows_padded": ip.doprint(xi.indices[2] + p),
            "cols_padded": ip.doprint(xi.indices[3] + p),
            "h_padded": ip.doprint(h + p), "v_padded": ip.doprint(v + p),
            "padded_rows": ip.doprint(sp.Symbol("H") + 2 * p),
            "padded_cols": ip.doprint(sp.Symbol("W") + 2 * p)}


def _check_product(f: Correlation) -> None:
    """The BLAS lowering multiplies w (O, C*f*f) by the unfolded x: it computes
    Sum(w[o, c, a, b] * x[n, c, ...], c, a, b), x read at the summand's own subscripts.
    Refuse any other summand rather than print a kernel that ignores it."""
    xi, wi = f.indexed(f.input), f.indexed(f.weight)
    n, o = f.output.indices[:2]
    c, a, b = [lim[0] for lim in f.sum().limits]
    if f.sum().function != wi * xi or wi.indices != (o, c, a, b) or xi.indices[:2] != (n, c):
        raise FormulaError(
            f"{f.name}: the summand must be {f.weight}[{o}, {c}, {a}, {b}] * "
            f"{f.input}[{n}, {c}, ...] (the product that im2col and BLAS compute), got "
            f"{f.sum().function}")


def _check_gradient_products(g: CorrelationGradient) -> None:
    """The backward's BLAS lowering computes dw = Sum(dy * x) and dx = Sum(deltas * dy *
    w): check that SymPy's gradients are exactly these products (a factor such as 2
    from another forward would be lost)."""
    fwd = g.forward
    dy = "d" + fwd.output.base.name
    expected = {fwd.weight: [dy, fwd.input],
                fwd.input: [dy, fwd.weight, "KroneckerDelta", "KroneckerDelta"]}
    for name, factors in expected.items():
        _, value = g.gradients[name]
        summand = value.function if isinstance(value, sp.Sum) else value
        kinds = [a.base.name if isinstance(a, sp.Indexed) else type(a).__name__
                 for a in sp.Mul.make_args(summand)]
        if sorted(kinds) != sorted(factors):
            raise FormulaError(f"{g.name}: the gradient of {name} is Sum({summand}); the BLAS "
                               f"lowering computes the product of {', '.join(factors)}")


def plan_correlation(f: Correlation) -> KernelPlan:
    """Forward: the Sum over (c, a, b) is a matrix product once x is unfolded (im2col:
    row (c, a, b), column (i, j) holds x at the summand's index expressions, 0 in the
    padding); BLAS (NumPy's np.dot, per image) multiplies w (O, C*f*f) by it. What is left of
    expr after the Sum (the bias) is added per element."""
    _check_product(f)
    extra = _correlation_common(f)
    acc, bv = sp.Symbol("_acc", real=True), sp.Symbol("bv", real=True)
    value = f.expr.xreplace({f.sum(): acc, f.indexed(f.bias): bv})
    return KernelPlan(
        name=f.name, kind="correlation", template="numba/correlation.py.j2",
        doc=_docstring(f, "In index notation (NCHW):"), hash=f.content_hash(),
        arrays=[f.input, f.weight, f.bias], outputs=[extra["out"]],
        body=[Statement("a_y2[o, q]", numba_code(value))],
        extra={**extra, "backward": False, **_direct(f, value == acc + bv)})


def _direct(f: Correlation, plain_bias: bool) -> dict:
    """The direct lowering at stride 1 (templates/numba/microkernel.py.j2): where the
    summand is w * x and the bias is added once, and x's padded subscripts step by one
    along the filter (a, b) and, at stride 1, along the output (i, j), a block of
    outputs is summed in registers from adjacent inputs. Returns {"direct": False}
    otherwise, or the printed subscripts of the block's first input (a = b = 0)."""
    ip = IndexPrinter()
    xi, wi = f.indexed(f.input), f.indexed(f.weight)
    (_, ka, kb) = [lim[0] for lim in f.sum().limits]
    i, j = f.output.indices[2], f.output.indices[3]
    row, col = xi.indices[2] + f.padding, xi.indices[3] + f.padding
    unit = {f.stride: 1}
    steps = [sp.diff(row, ka), sp.diff(col, kb), sp.diff(row.subs(unit), i),
             sp.diff(col.subs(unit), j)]
    if not plain_bias or f.sum().function != wi * xi or steps != [1, 1, 1, 1] \
            or wi.indices[2:] != (ka, kb):
        return {"direct": False}
    return {"direct": True, "direct_row": ip.doprint(row.subs({**unit, ka: 0})),
            "direct_col": ip.doprint(col.subs({**unit, kb: 0}))}


def _direct_input_gradient(g: CorrelationGradient, target: sp.Indexed, value: sp.Sum) -> dict:
    """The input gradient at stride 1 as a correlation, for the direct lowering: SymPy
    solves each delta of the scatter for its output index (i = h + p - a), the filter
    is flipped (a -> f - 1 - a) so that dy is read at unit steps, and dy is padded by
    f - 1 - p. Checked: the summand is then w[o, c, f-1-a, f-1-b] * dy[n, o, h + a -
    (f - 1 - p), ...], i.e. a correlation of the padded dy with the flipped weights
    whose channels are o. Returns {"direct_dx": False} where that does not hold."""
    fwd = g.forward
    ip = IndexPrinter()
    f, p = fwd.size, fwd.padding
    summand = value.function.subs(fwd.stride, 1)
    solved = {}
    for delta in summand.atoms(sp.KroneckerDelta):
        h, e = delta.args if delta.args[0] in target.indices else delta.args[::-1]
        free = [lim[0] for lim in value.limits if lim[0] in fwd.output.indices and e.has(lim[0])]
        if len(free) != 1:
            return {"direct_dx": False}
        (k,) = free
        (sol,) = sp.solve(sp.Eq(h, e), k) or (None,)
        if sol is None:
            return {"direct_dx": False}
        solved[k] = sol
        summand = summand.xreplace({delta: sp.S.One})
    ka, kb = [lim[0] for lim in fwd.sum().limits][1:]
    flipped = summand.xreplace(solved).xreplace({ka: f - 1 - ka, kb: f - 1 - kb})
    o = fwd.output.indices[1]  # (summed; n and c are the gradient's own indices)
    n, c, h, v = target.indices
    dy, w = sp.IndexedBase("d" + fwd.output.base.name), fwd.indexed(fwd.weight).base
    pad = f - 1 - p
    expected = w[o, c, f - 1 - ka, f - 1 - kb] * dy[n, o, h + ka - pad, v + kb - pad]
    if set(solved) != set(fwd.output.indices[2:]) or sp.expand(flipped - expected) != 0:
        return {"direct_dx": False}
    return {"direct_dx": True, "dy_padding": ip.doprint(pad),
            "dx_row": ip.doprint((h + ka - pad + pad).subs(ka, 0)),
            "dx_col": ip.doprint((v + kb - pad + pad).subs(kb, 0)),
            "dx_i": h.name, "dx_j": v.name}


def plan_correlation_gradient(g: CorrelationGradient) -> KernelPlan:
    """Backward from SymPy's gradients: the weight gradient (no deltas left: a gather)
    is dy times the unfolded x transposed; the input gradient (deltas pin x's index
    expressions: a scatter) is w transposed times dy, folded back (col2im) at the
    delta's positions; the bias gradient sums dy. The planner checks that the derived
    gradients have exactly this structure before choosing the BLAS lowering."""
    fwd = g.forward
    _check_product(fwd)
    _check_gradient_products(g)
    extra = _correlation_common(fwd)
    ip = IndexPrinter()
    dx_target, dx_value = g.gradients[fwd.input]
    deltas = sorted(dx_value.atoms(sp.KroneckerDelta), key=sp.default_sort_key)
    pinned = {}
    for d in deltas:
        h, e = d.args if d.args[0] in dx_target.indices else d.args[::-1]
        pinned[h] = e
    if list(pinned) != list(dx_target.indices[2:]):
        raise FormulaError(f"{g.name}: the input gradient is not a scatter over the "
                           "spatial axes; the BLAS lowering does not apply")
    dw_target, dw_value = g.gradients[fwd.weight]
    if dw_value.atoms(sp.KroneckerDelta) or not isinstance(dw_value, sp.Sum):
        raise FormulaError(f"{g.name}: the weight gradient is not a gather")
    _, db_value = g.gradients[fwd.bias]
    extra |= {"backward": True, "grad": "d" + extra["out"],
              "scatter_rows": ip.doprint(pinned[dx_target.indices[2]]),
              "scatter_cols": ip.doprint(pinned[dx_target.indices[3]]),
              "scatter_rows_padded": ip.doprint(pinned[dx_target.indices[2]] + fwd.padding),
              "scatter_cols_padded": ip.doprint(pinned[dx_target.indices[3]] + fwd.padding),
              "db_term": numba_code(db_value.function)}
    extra |= _direct_input_gradient(g, dx_target, dx_value)
    return KernelPlan(
        name=g.name, kind="correlation_gradient", template="numba/correlation.py.j2",
        doc=_docstring(g, "Derived by SymPy, in index notation:"), hash=g.content_hash(),
        arrays=[fwd.input, fwd.weight, extra["grad"]],
        outputs=["d" + fwd.input, "d" + fwd.weight, "d" + fwd.bias_arg], extra=extra)


def plan_axis(f: AxisReduction) -> KernelPlan:
    """Front-end ``symdl.ir.axis``, lowering ``symdl.lowering_axis``."""
    data = plan_axis_reduction(f)
    return KernelPlan(
        name=f.name, kind=f.kind, template="numba/axis.py.j2",
        doc=_docstring(f, "Along one axis (the keyword argument axis: any axis of the inputs,"
                          " or None for all their elements), with n its length:"),
        hash=f.content_hash(), arrays=f.argument_names()[:-len(f.params) or None],
        params=list(f.params), outputs=list(f.outputs), domains=dict(f.domains),
        pre=data["pre"], extra=data["extra"])


PLANNERS = {"network": plan_network, "network_gradient": plan_network_gradient,
            "axis reduction": plan_axis,
            "elementwise": plan_elementwise, "reduction": plan_reduction,
            "contraction": plan_contraction, "scalar": plan_scalar, "masked": plan_masked,
            "batch": plan_batch, "batch_gradient": plan_batch_gradient,
            "batch_reduction": plan_batch_reduction, "batch_map": plan_batch_map,
            "window": plan_window, "window_gradient": plan_window_gradient,
            "correlation": plan_correlation,
            "correlation_gradient": plan_correlation_gradient}


def plan(f: Formula) -> KernelPlan:
    """The kernel plan of one formula."""
    k = PLANNERS[f.kind](f)
    k.doc += _returns_section(k)
    return k


def _returns_section(k: KernelPlan) -> str:
    """A numpydoc Returns section, in the order the kernel returns, for every kernel
    that returns more than one value (one array, or an in-place update, needs none)."""
    if k.extra.get("result"):
        fields = ", ".join(k.extra["fields"])
        return (f"\n\nReturns\n-------\n{k.extra['result']}\n"
                f"    A named tuple ({fields}).")
    if len(k.outputs) < 2 or k.updates or k.kind == "masked":
        return ""
    scalar = k.kind in ("reduction", "batch reduction")
    lines = ["", "", "Returns", "-------"]
    for o in k.outputs:
        of = next((a for a in k.arrays if o in (f"d{a}", f"grad_{a}")), None)
        kind = "float" if scalar else "ndarray"
        what = (f"The gradient with respect to {of}, shaped like {of}." if of
                else f"{o}, as defined above.")
        lines += [f"{o} : {kind}", f"    {what}"]
    return "\n".join(lines)
