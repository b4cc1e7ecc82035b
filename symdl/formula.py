"""The declarative formula API: what a formula *is*, with no word on how it runs.

A formula file (built-in ones live in ``symdl/library/``) builds these objects from
SymPy expressions. ``symdl.derive`` turns them into derived formulas (gradients) and
``symdl.codegen`` prints them through the templates. Nothing here knows about loops.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy as sp

from .errors import FormulaError

# Names the generated code reserves for itself: arrays are passed to cores as
# ``a_<name>``, scalars as ``p_<name>``, temporaries are ``_c<k>``. A user name that
# starts with an underscore could collide with them, so it is refused.
RESERVED_NAMES = frozenset({"T", "F", "i", "b", "c", "n", "np", "math", "numba", "prange",
                            "shape", "dtype", "core", "parallel", "result", "partials",
                            "block", "sizes",
                            # the generated module's own globals (templates/numba/module.py.j2)
                            "os", "sys", "types", "ctypes", "glob", "threading",
                            "concurrent", "PARALLEL_THRESHOLD", "REDUCTION_BLOCK",
                            "BATCH_ROWS", "STREAM_BYTES", "STREAM_GROUP", "MK_ROWS",
                            "MK_VECTORS", "MK_VECTOR_BYTES"})

#: Input domains a wrapper checks before calling a kernel (name -> meaning).
DOMAINS = {
    "real": "any real number",
    "binary": "labels 0/1 (or bool)",
    "probability": "probabilities in [0, 1]",
    # (An Elementwise formula may name inputs whose domain is assumed, not checked:
    # optimizer state such as Adam's v, where a check would cost a pass over memory in
    # every step. verify samples them in their domain all the same.)
    "nonnegative": "values >= 0",
}

#: Scalar parameter checks (name -> meaning), enforced by the generated wrapper.
PARAM_CHECKS = {
    "any": "any real number",
    "positive": "> 0",
    "nonnegative": ">= 0",
    "unit_interval": "in [0, 1]",
    "unit_interval_open": "in [0, 1)",
    # A step number, a batch size: an integer at least 1 and above every zero of the
    # formula's denominators in it (symdl.derive.least_count; m - 1: m >= 2).
    "count": "an integer where the formula is defined",
}


def check_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a safe Python identifier for generated code, else raise.

    Names flow into templates as identifiers; validating them here is what keeps a
    formula file from injecting code into a generated module.
    """
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise FormulaError(f"{what} {name!r} is not a valid Python identifier")
    if name.startswith("_") or name in RESERVED_NAMES:
        raise FormulaError(f"{what} {name!r} is reserved by the code generator")
    return name


@dataclass(frozen=True)
class Param:
    """A scalar parameter of a kernel (a learning rate, an epsilon, a step count)."""

    name: str
    default: float | int | None = None
    check: str = "any"
    doc: str = ""

    def __post_init__(self) -> None:
        check_identifier(self.name, "parameter")
        if self.check not in PARAM_CHECKS:
            raise FormulaError(f"parameter {self.name!r}: unknown check {self.check!r}")

    @property
    def symbol(self) -> sp.Symbol:
        return sp.Symbol(self.name, real=True)


@dataclass(frozen=True)
class Formula:
    """What every formula has: identity, sheet text and the SymPy objects it is made of.

    Subclasses say what shape of computation it is (elementwise, reduction, index
    contraction); ``symdl.codegen`` picks the template from that.
    """

    name: str
    section: str
    title: str
    doc: str
    notes: tuple[str, ...] = field(default=(), kw_only=True)
    derived_from: str | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        check_identifier(self.name, "formula name")

    # -- what subclasses provide -------------------------------------------------
    kind: str = field(default="", init=False)

    def expressions(self) -> dict[str, sp.Expr]:
        """The defining expressions, by name (for hashing, showing and printing)."""
        raise NotImplementedError

    def argument_names(self) -> list[str]:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------
    def content_hash(self) -> str:
        """A stable hash of everything that determines the generated code."""
        parts = [self.kind, self.name, repr(self.argument_names())]
        parts += [f"{k}={sp.srepr(v)}" for k, v in self.expressions().items()]
        parts += [repr(p) for p in getattr(self, "params", ())]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _symbols(items: Sequence[sp.Symbol], what: str) -> tuple[sp.Symbol, ...]:
    out = []
    for s in items:
        if not isinstance(s, sp.Symbol):
            raise FormulaError(f"{what} must be SymPy Symbols, got {s!r}")
        check_identifier(s.name, what)
        out.append(s)
    return tuple(out)


def _exprs(mapping: Mapping[str, sp.Expr], what: str) -> dict[str, sp.Expr]:
    if not mapping:
        raise FormulaError(f"a formula needs at least one {what}")
    return {check_identifier(k, what): sp.sympify(v) for k, v in mapping.items()}


def _check_free(exprs: Mapping[str, sp.Expr], allowed: set[sp.Symbol], where: str) -> None:
    for k, e in exprs.items():
        unknown = e.free_symbols - allowed
        if unknown:
            _explain_assumptions(unknown, allowed, f"{where} {k!r}")
            names = ", ".join(sorted(s.name for s in unknown))
            raise FormulaError(f"{where} {k!r} uses undeclared symbol(s): {names}")


def _explain_assumptions(unknown: set, allowed: set, where: str) -> None:
    """SymPy symbols of one name but other assumptions are different symbols: say so,
    rather than call a declared name undeclared."""
    declared = {s.name: s for s in allowed if isinstance(s, sp.Symbol)}
    for s in sorted(unknown, key=lambda s: s.name):
        twin = declared.get(s.name)
        if twin is None:
            continue
        mine = {k: v for k, v in s.assumptions0.items() if k in ("real", "integer",
                                                                  "positive")}
        want = "integer=True" if twin.is_integer else "real=True"
        raise FormulaError(
            f"{where} uses a symbol {s.name!r} whose SymPy assumptions "
            f"({', '.join(f'{k}={v}' for k, v in mine.items()) or 'none'}) differ from the "
            f"declared {s.name!r} ({want}): SymPy treats them as two symbols; create it as "
            f"sp.Symbol({s.name!r}, {want})")


@dataclass(frozen=True)
class Algorithm:
    """An in-place update's iteration, laid out on the sheet as its paper lists it:
    what it requires and loops until (prose), SymPy assignments made before the loop
    (``init``) and at the top of each iteration (``each``), then the formula's own steps
    and updates, and what it returns."""

    require: str
    init: Mapping[sp.Expr, sp.Expr]
    until: str
    each: Mapping[sp.Expr, sp.Expr]
    returns: sp.Expr


@dataclass(frozen=True)
class SpecialCase:
    """Parameter values at which an in-place update has less to do.

    The kernel checks ``when`` (parameter name -> value) at run time and then calls a
    second core, printed from the results with those values substituted by SymPy (so
    RMSProp's momentum * momentum_buf term, and with it the read of momentum_buf,
    vanishes at momentum = 0). The ``untouched`` updates are not written at all: use
    it where the reference (PyTorch) keeps no such state, and say ``why``.
    """

    when: Mapping[str, float]
    untouched: tuple[str, ...] = ()
    why: str = ""

    def substitutions(self) -> dict[sp.Symbol, sp.Expr]:
        return {sp.Symbol(k, real=True): sp.nsimplify(v, rational=True)
                for k, v in self.when.items()}


@dataclass(frozen=True)
class Elementwise(Formula):
    """Outputs computed element by element from same-shaped array inputs.

    ``outputs`` maps each output name to its expression in the inputs and params.
    ``updates`` instead names *inputs* that the kernel overwrites in place (an
    optimizer step); all updates are computed from the old values. ``steps`` are
    named intermediate results, in order (Adam's bias-corrected moments), that later
    steps and the results may use; the sheet lists them as an algorithm, the kernels
    substitute them. ``backward=True`` asks SymPy for the gradient kernel: with one
    input and one output ``<name>_backward(y, dy)``, the derivative rewritten in terms
    of the output y where SymPy proves that correct; otherwise
    ``<name>_backward(inputs..., d<output>..., params)``, returning the gradient of every
    input (``symdl.derive.backward_formula``).
    ``special_cases`` (updates only) name parameter values with a cheaper core.
    ``domains`` names inputs the wrapper checks (``DOMAINS``), except those listed in
    ``assumed`` (optimizer state: a check would cost a pass over memory every step).
    """

    inputs: tuple[sp.Symbol, ...] = ()
    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    updates: Mapping[str, sp.Expr] = field(default_factory=dict)
    steps: Mapping[str, sp.Expr] = field(default_factory=dict)
    backward: bool = False
    domains: Mapping[str, str] = field(default_factory=dict)
    assumed: tuple[str, ...] = ()
    plot: tuple[float, float] | None = None
    special_cases: tuple[SpecialCase, ...] = ()
    algorithm: Algorithm | None = None
    # Parameters whose gradients the user asks for: a reduction kernel
    # <name>_param_grad(inputs..., d<output>..., params) sums them over every element.
    param_gradients: tuple[str, ...] = ()
    kind: str = field(default="elementwise", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "inputs", _symbols(self.inputs, "input"))
        object.__setattr__(self, "params", tuple(self.params))
        if bool(self.outputs) == bool(self.updates):
            raise FormulaError(f"{self.name}: give either outputs or in-place updates")
        if self.outputs:
            object.__setattr__(self, "outputs", _exprs(self.outputs, "output"))
        else:
            object.__setattr__(self, "updates", _exprs(self.updates, "update"))
            names = {s.name for s in self.inputs}
            for k in self.updates:
                if k not in names:
                    raise FormulaError(f"{self.name}: update {k!r} is not an input")
        if "out" in self.argument_names():
            raise FormulaError(f"{self.name}: 'out' is the name of the output argument")
        allowed = set(self.inputs) | {p.symbol for p in self.params}
        object.__setattr__(self, "steps", _exprs(self.steps, "step") if self.steps else {})
        for k, e in self.steps.items():
            _check_free({k: e}, allowed, f"{self.name}: step")
            allowed.add(sp.Symbol(k, real=True))
        _check_free(self.defined_results(), allowed, f"{self.name}: expression")
        for k, d in self.domains.items():
            if d not in DOMAINS or k not in {s.name for s in self.inputs}:
                raise FormulaError(f"{self.name}: bad domain {k!r}: {d!r}")
        if not set(self.assumed) <= set(self.domains):
            raise FormulaError(f"{self.name}: assumed {self.assumed} must name inputs that "
                               "have a domain")
        if self.backward and self.updates:
            raise FormulaError(f"{self.name}: backward=True is for outputs, not in-place "
                               "updates")
        object.__setattr__(self, "param_gradients", tuple(self.param_gradients))
        unknown = set(self.param_gradients) - {q.name for q in self.params}
        if unknown or (self.param_gradients and self.updates):
            raise FormulaError(f"{self.name}: param_gradients names parameters of a formula "
                               f"with outputs; not parameters: {sorted(unknown)}")
        object.__setattr__(self, "special_cases", tuple(self.special_cases))
        self._check_special_cases()

    def _check_special_cases(self) -> None:
        params = {p.name: p for p in self.params}
        for case in self.special_cases:
            if not self.updates:
                raise FormulaError(f"{self.name}: special cases are for in-place updates")
            if not case.when or "\n" in case.why:
                raise FormulaError(f"{self.name}: a special case needs parameter values "
                                   "and a one-line why")
            for k, v in case.when.items():
                if k not in params:
                    raise FormulaError(f"{self.name}: special case on unknown parameter {k!r}")
                if not isinstance(v, int | float) or isinstance(v, bool) or v != v or abs(
                        v) == float("inf"):
                    raise FormulaError(f"{self.name}: special case {k} = {v!r} is not a "
                                       "finite number")
            for k in case.untouched:
                if k not in self.updates:
                    raise FormulaError(f"{self.name}: untouched {k!r} is not an update")
            if not set(self.updates) - set(case.untouched):
                raise FormulaError(f"{self.name}: a special case must leave an update")

    def defined_results(self) -> dict[str, sp.Expr]:
        """The results as written, possibly in terms of the steps."""
        return dict(self.outputs or self.updates)

    def results(self) -> dict[str, sp.Expr]:
        """The results in terms of inputs and params alone (steps substituted)."""
        out = self.defined_results()
        for k, e in reversed(list(self.steps.items())):
            out = {n: r.xreplace({sp.Symbol(k, real=True): e}) for n, r in out.items()}
        return out

    def special_results(self, case: SpecialCase) -> dict[str, sp.Expr]:
        """The results a special case's core computes: ``when`` substituted, and no
        value for the untouched arrays."""
        subs = case.substitutions()
        return {k: e.subs(subs) for k, e in self.results().items() if k not in case.untouched}

    def expressions(self) -> dict[str, sp.Expr]:
        return {**self.steps, **self.defined_results()}

    def argument_names(self) -> list[str]:
        return [s.name for s in self.inputs] + [p.name for p in self.params]

    def content_hash(self) -> str:
        if not self.special_cases:
            return super().content_hash()
        extra = repr([(sorted(c.when.items()), c.untouched) for c in self.special_cases])
        return hashlib.sha256((super().content_hash() + extra).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Reduction(Formula):
    """Scalar results from sums over 1-D arrays of one length.

    ``sums`` maps a sum's name to its per-element summand; ``outputs`` are
    expressions in those sum symbols and ``n`` (the number of elements), for example
    precision = tp / n_pred. Sums are taken in fixed-size blocks combined in a fixed
    order, so the result does not depend on the thread count.
    """

    inputs: tuple[sp.Symbol, ...] = ()
    sums: Mapping[str, sp.Expr] = field(default_factory=dict)
    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    domains: Mapping[str, str] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    # Inputs of any one shape, summed over all their elements (a parameter's gradient
    # of an elementwise formula); otherwise 1-D arrays.
    any_shape: bool = False
    kind: str = field(default="reduction", init=False)

    #: the element-count symbol available to ``outputs`` (m, as on the cheat sheet)
    count = sp.Symbol("m", integer=True, positive=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "inputs", _symbols(self.inputs, "input"))
        object.__setattr__(self, "sums", _exprs(self.sums, "sum"))
        object.__setattr__(self, "outputs", _exprs(self.outputs, "output"))
        taken = {s.name for s in self.inputs} & ({self.count.name} | set(self.sums))
        if taken:
            raise FormulaError(f"{self.name}: input name(s) {sorted(taken)} clash with sums")
        object.__setattr__(self, "params", tuple(self.params))
        params = {q.symbol for q in self.params}
        _check_free(self.sums, set(self.inputs) | params, f"{self.name}: sum")
        sum_syms = {sp.Symbol(k, real=True) for k in self.sums} | {self.count}
        _check_free(self.outputs, sum_syms | params, f"{self.name}: output")
        for k, d in self.domains.items():
            if d not in DOMAINS or k not in {s.name for s in self.inputs}:
                raise FormulaError(f"{self.name}: bad domain {k!r}: {d!r}")

    def sum_symbols(self) -> list[sp.Symbol]:
        return [sp.Symbol(k, real=True) for k in self.sums]

    def expressions(self) -> dict[str, sp.Expr]:
        return {**{f"sum_{k}": v for k, v in self.sums.items()}, **self.outputs}

    def argument_names(self) -> list[str]:
        return [s.name for s in self.inputs] + [q.name for q in self.params]


@dataclass(frozen=True)
class Contraction(Formula):
    """An output array defined in index notation, e.g. y[i] = Sum(A[i, j] * x[j], j).

    ``output`` is an Indexed object (``y[i]``), ``expr`` its value with ``sp.Sum``
    over the summation indices. Every index is an ``sp.Idx`` with a symbolic range,
    which is what ties array shapes together; the wrapper checks them.
    ``backward=True`` asks SymPy for one kernel per input array,
    ``<name>_grad_<array>(arrays it reads..., d<output>)``: that array's gradient, itself
    a contraction (``symdl.derive.contraction_backward_formulas``).
    """

    output: sp.Indexed | None = None
    expr: sp.Expr | None = None
    arg_order: tuple[str, ...] = ()
    backward: bool = False
    kind: str = field(default="contraction", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_index_notation()
        names = [b.name for b in self.input_bases()]
        if sorted(self.arg_order) != sorted(names):
            raise FormulaError(f"{self.name}: arg_order must list the inputs {names}")

    def _check_index_notation(self) -> None:
        if not isinstance(self.output, sp.Indexed):
            raise FormulaError(f"{self.name}: output must be an Indexed object like y[i]")
        if not isinstance(self.expr, sp.Expr):
            raise FormulaError(f"{self.name}: expr must be a SymPy expression")
        check_identifier(self.output.base.name, "output")
        for base in self.input_bases():
            check_identifier(base.name, "input")

    def input_bases(self) -> list[sp.IndexedBase]:
        bases = {ix.base for ix in self.expr.atoms(sp.Indexed)}
        return sorted(bases, key=lambda b: b.name)

    def terms(self) -> list[tuple[sp.Expr, list[tuple]]]:
        """The additive terms of expr, each as (summand, its summation limits): a Sum
        gives its function and limits, any other term no limits."""
        out = []
        for term in sp.Add.make_args(self.expr):
            if isinstance(term, sp.Sum):
                out.append((term.function, list(term.limits)))
            else:
                out.append((term, []))
        return out

    def output_limits(self) -> list[tuple]:
        """(index, 0, upper) of each output index: from its Idx range."""
        limits = []
        for k in self.output.indices:
            if not isinstance(k, sp.Idx) or k.upper is None:
                raise FormulaError(f"{self.name}: output index {k} has no range (use sp.Idx)")
            limits.append((k, k.lower, k.upper))
        return limits

    def expressions(self) -> dict[str, sp.Expr]:
        return {self.output.base.name: self.expr}

    def argument_names(self) -> list[str]:
        return list(self.arg_order)


@dataclass(frozen=True)
class Batch(Formula):
    """Per-feature statistics over the batch axis, then per-element outputs (batch norm).

    Inputs have shape (m, C): row i is a sample, column c a feature. ``features`` are
    (C,) arrays (gamma, beta), ``params`` scalars. ``stats`` are batch means, in order:
    stat_k = (1/m) * Sum_i expr_k, where expr_k may use the inputs, params and earlier
    stats. ``outputs`` are per-element expressions. The kernel returns the outputs,
    then the stats. ``backward=True`` asks SymPy for ``<name>_backward``, derived by the
    chain rule through the batch means (``symdl.derive.batch_backward_formula``).
    """

    inputs: tuple[sp.Symbol, ...] = ()
    features: tuple[sp.Symbol, ...] = ()
    params: tuple[Param, ...] = ()
    stats: Mapping[str, sp.Expr] = field(default_factory=dict)
    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    backward: bool = False
    domains: Mapping[str, str] = field(default_factory=dict)
    kind: str = field(default="batch", init=False)

    #: the batch-size symbol (number of rows)
    count = sp.Symbol("m", integer=True, positive=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "inputs", _symbols(self.inputs, "input"))
        object.__setattr__(self, "features", _symbols(self.features, "feature"))
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "stats", _exprs(self.stats, "stat") if self.stats else {})
        object.__setattr__(self, "outputs", _exprs(self.outputs, "output"))
        allowed = set(self.inputs) | {p.symbol for p in self.params}
        for k, e in self.stats.items():
            _check_free({k: e}, allowed, f"{self.name}: stat")  # stats: no features
            allowed.add(sp.Symbol(k, real=True))
        allowed |= set(self.features)
        _check_free(self.outputs, allowed, f"{self.name}: output")

    def stat_symbols(self) -> list[sp.Symbol]:
        return [sp.Symbol(k, real=True) for k in self.stats]

    def expressions(self) -> dict[str, sp.Expr]:
        i = sp.Symbol("i")
        means = {k: sp.Sum(e.subs({s: sp.Indexed(s.name, i) for s in self.inputs}),
                           (i, 1, self.count)) / self.count for k, e in self.stats.items()}
        return {**means, **self.outputs}

    def argument_names(self) -> list[str]:
        return [s.name for s in (*self.inputs, *self.features)] + [p.name for p in self.params]


@dataclass(frozen=True)
class BatchGradient(Formula):
    """The backward pass of a ``Batch`` formula, as SymPy derived it.

    One pass sums ``reductions`` (per-element terms) per feature; ``finish`` turns
    those sums into the stats' adjoints and the feature gradients (per feature, in
    order); a second pass computes ``outputs`` per element. Built by
    ``symdl.derive.batch_backward_formula``, not written by hand.
    """

    arrays: tuple[sp.Symbol, ...] = ()  # per-element arrays (incoming gradients, inputs)
    features: tuple[sp.Symbol, ...] = ()  # per-feature arrays (features used, stats)
    params: tuple[Param, ...] = ()
    reductions: Mapping[str, sp.Expr] = field(default_factory=dict)
    finish: Mapping[str, sp.Expr] = field(default_factory=dict)
    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    feature_outputs: tuple[str, ...] = ()
    # Sums of the chain rule that are zero by the stats' definitions (name -> summand):
    # shown on the sheet, never computed.
    vanished: Mapping[str, sp.Expr] = field(default_factory=dict)
    domains: Mapping[str, str] = field(default_factory=dict)
    kind: str = field(default="batch_gradient", init=False)

    count = Batch.count

    def expressions(self) -> dict[str, sp.Expr]:
        i = sp.Symbol("i")
        sums = {k: sp.Sum(e.subs({s: sp.Indexed(s.name, i) for s in self.arrays}),
                          (i, 1, self.count)) for k, e in self.reductions.items()}
        return {**sums, **self.finish, **self.outputs}

    def argument_names(self) -> list[str]:
        return [s.name for s in (*self.arrays, *self.features)] + [p.name for p in self.params]


#: Checks on the arguments of a scalar function (name -> meaning), enforced by the
#: generated wrapper. The integer checks refuse bools and non-integers with TypeError.
ARG_CHECKS = {
    "natural": "an integer >= 0",
    "positive_int": "an integer >= 1",
    "odd": "an odd integer >= 1",
    "finite": "a finite real number",
    "finite_nonnegative": "a finite real number >= 0",
    "unit_interval_open": "a real number in [0, 1)",
    "seed": "an integer in [0, 2**64)",
}


#: Names a generated scalar function needs for itself (modules, helpers, results).
SCALAR_RESERVED = frozenset({"np", "math", "numba", "prange", "collections", "diagnosis",
                             "advice"})


@dataclass(frozen=True)
class Arg:
    """A scalar argument of a ``ScalarFunction``: the Python name and the sheet's symbol.

    ``symbol`` is what the expressions use (``p`` for ``padding``, as on the sheet);
    the generated function calls it ``name``.
    """

    name: str
    symbol: sp.Symbol
    default: float | int | None = None
    check: str = "finite"
    doc: str = ""

    def __post_init__(self) -> None:
        # A scalar function has no Numba core, so only the module names it uses are
        # off limits (n is a fine name for an input size here).
        if self.name in SCALAR_RESERVED:
            raise FormulaError(f"argument {self.name!r} is reserved by the code generator")
        if self.name not in RESERVED_NAMES:
            check_identifier(self.name, "argument")
        elif not self.name.isidentifier():
            raise FormulaError(f"argument {self.name!r} is not a valid Python identifier")
        if not isinstance(self.symbol, sp.Symbol):
            raise FormulaError(f"argument {self.name!r}: symbol must be a SymPy Symbol")
        if self.check not in ARG_CHECKS:
            raise FormulaError(f"argument {self.name!r}: unknown check {self.check!r}")


@dataclass(frozen=True)
class Branch:
    """One decision of a recipe: when ``condition`` holds, give ``advice`` (and stop)."""

    question: str
    condition: sp.Basic
    diagnosis: str
    advice: tuple[str, ...]


@dataclass(frozen=True)
class ScalarFunction(Formula):
    """A plain Python function of scalar arguments (no arrays, no Numba).

    ``outputs`` maps each result's name to its expression in the argument symbols.
    With ``integer=True`` the arithmetic is exact integer arithmetic: ``floor`` of a
    quotient prints as ``//`` and any output that SymPy cannot prove to be an integer
    is floored. ``requires`` holds (condition, message) pairs in the arguments and
    outputs; the wrapper raises ValueError(message) when one fails. ``cases`` are
    substitutions shown on the sheet as special cases derived by SymPy, e.g.
    ("valid", {p: 0, s: 1}). ``branches`` make it a recipe: the result then also
    carries the ``diagnosis`` and ``advice`` of the first branch whose condition
    holds (or of ``otherwise``), and the sheet draws the branches as a flowchart.
    """

    args: tuple[Arg, ...] = ()
    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    requires: tuple[tuple[sp.Basic, str], ...] = ()
    integer: bool = False
    cases: tuple[tuple[str, Mapping[sp.Symbol, sp.Expr]], ...] = ()
    branches: tuple[Branch, ...] = ()
    otherwise: tuple[str, tuple[str, ...]] = ("", ())
    kind: str = field(default="scalar", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "outputs", _exprs(self.outputs, "output"))
        names = [a.name for a in self.args] + list(self.outputs)
        if len(set(names)) != len(names):
            raise FormulaError(f"{self.name}: argument and output names must be distinct")
        syms = {a.symbol for a in self.args}
        _check_free(self.outputs, syms, f"{self.name}: output")
        allowed = syms | set(self.output_symbols().values())
        conditions = {f"requires[{k}]": c for k, (c, _) in enumerate(self.requires)}
        conditions |= {f"branch {b.question!r}": b.condition for b in self.branches}
        _check_free(conditions, allowed, f"{self.name}:")
        for label, subs in self.cases:
            if set(subs) - syms:
                raise FormulaError(f"{self.name}: case {label!r} substitutes unknown symbols")
        # A recipe's every outcome tells the user what to do next, "done" included.
        outcomes = [(b.diagnosis, b.advice) for b in self.branches]
        for diagnosis, advice in outcomes + ([self.otherwise] if self.branches else []):
            if not advice or not all(isinstance(a, str) and a.strip() for a in advice):
                raise FormulaError(f"{self.name}: the diagnosis {diagnosis!r} needs advice "
                                   "text (a tuple of non-empty strings)")

    def output_symbols(self) -> dict[str, sp.Symbol]:
        """The symbol of each output, for conditions and the sheet (n_out -> n_{out})."""
        return {k: sp.Symbol(k, integer=True) if self.integer else sp.Symbol(k, real=True)
                for k in self.outputs}

    def expressions(self) -> dict[str, sp.Expr]:
        exprs = dict(self.outputs)
        exprs |= {f"requires_{k}": c for k, (c, _) in enumerate(self.requires)}
        exprs |= {f"branch_{k}": b.condition for k, b in enumerate(self.branches)}
        return exprs

    def argument_names(self) -> list[str]:
        return [a.name for a in self.args]

    def content_hash(self) -> str:
        extra = repr((self.args, [m for _, m in self.requires], self.integer,
                      [(b.question, b.diagnosis, b.advice) for b in self.branches],
                      self.otherwise))
        return hashlib.sha256((super().content_hash() + extra).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Mask:
    """A Bernoulli mask, one draw per element, from a counter-based hash.

    ``symbol`` (X, 1 = kept) appears in the outputs. X = 1 exactly when
    ``uniform`` < ``keep``: ``uniform`` is a number in [0, 1) computed from the seed
    argument and the element ``index`` alone (bitwise nodes of ``symdl.bitops``), so
    the mask does not depend on how the elements are split among threads. ``key`` are
    named integer expressions in the seed, computed once per call. ``steps`` are named
    integer words computed per element, in order (each in the index, the key names and
    the earlier steps), which ``uniform`` may use: a many-round hash stays a chain of
    small expressions instead of one tree that doubles with every round.
    """

    symbol: sp.Symbol
    keep: sp.Expr
    seed: sp.Symbol
    index: sp.Symbol
    key: Mapping[str, sp.Expr]
    uniform: sp.Expr
    steps: Mapping[str, sp.Expr] = field(default_factory=dict)

    def step_symbols(self) -> dict[str, sp.Symbol]:
        """The symbol of each key and step name, as the expressions use them."""
        return {k: sp.Symbol(k, integer=True, nonnegative=True)
                for k in [*self.key, *self.steps]}


@dataclass(frozen=True)
class MaskedElementwise(Formula):
    """Elementwise outputs of array inputs, scalar arguments and (optionally) a random
    mask, in variants chosen by a boolean argument (inverted or standard dropout).

    ``variants`` maps the value of the ``flag`` argument to the outputs. ``let`` names
    scalar intermediates (q = 1 - p), computed once per call. A formula with a mask
    gets a derived ``<name>_inference`` formula: the expectation of its outputs over
    the mask, taken by ``sympy.stats`` (``symdl.derive``).
    """

    inputs: tuple[sp.Symbol, ...] = ()
    args: tuple[Arg, ...] = ()
    let: Mapping[sp.Symbol, sp.Expr] = field(default_factory=dict)
    flag: str = "variant"
    flag_default: bool = True
    variants: Mapping[bool, Mapping[str, sp.Expr]] = field(default_factory=dict)
    mask: Mask | None = None
    kind: str = field(default="masked", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "inputs", _symbols(self.inputs, "input"))
        object.__setattr__(self, "args", tuple(self.args))
        check_identifier(self.flag, "flag")
        if set(self.variants) != {True, False}:
            raise FormulaError(f"{self.name}: variants must be given for {self.flag}=True/False")
        variants = {v: _exprs(o, "output") for v, o in self.variants.items()}
        if len({tuple(o) for o in variants.values()}) != 1:
            raise FormulaError(f"{self.name}: every variant must have the same outputs")
        object.__setattr__(self, "variants", variants)
        allowed = set(self.inputs) | {a.symbol for a in self.args} | set(self.let)
        if self.mask is not None:
            allowed.add(self.mask.symbol)
        for v, outs in variants.items():
            _check_free(outs, allowed, f"{self.name}: {self.flag}={v} output")
        names = [s.name for s in self.inputs] + [a.name for a in self.args] + [self.flag]
        if len(set(names)) != len(names):
            raise FormulaError(f"{self.name}: input and argument names must be distinct")
        # The kernel returns one result and takes the keywords out= (and mask=).
        if len(next(iter(variants.values()))) != 1:
            raise FormulaError(f"{self.name}: a masked formula has exactly one output")
        if {"out", "mask"} & set(names):
            raise FormulaError(f"{self.name}: 'out' and 'mask' are the kernel's keywords")

    def outputs(self) -> list[str]:
        return list(self.variants[True])

    def expressions(self) -> dict[str, sp.Expr]:
        exprs = {f"{k}_{self.flag}_{v}": e for v, o in self.variants.items()
                 for k, e in o.items()}
        exprs |= {f"let_{s.name}": e for s, e in self.let.items()}
        if self.mask is not None:
            exprs |= {"keep": self.mask.keep, "uniform": self.mask.uniform,
                      **{f"key_{k}": e for k, e in self.mask.key.items()},
                      **{f"step_{k}": e for k, e in self.mask.steps.items()}}
        return exprs

    def argument_names(self) -> list[str]:
        return [s.name for s in self.inputs] + [a.name for a in self.args] + [self.flag]

    def content_hash(self) -> str:
        extra = repr((self.args, self.flag_default))
        return hashlib.sha256((super().content_hash() + extra).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Window(Formula):
    """Pooling: each output is a reduction over an f x f window of an NCHW input.

    ``output`` is y[n, c, i, j]; ``expr`` holds one window reduction (``sp.Sum`` for an
    average, ``symdl.window.MaxOver`` for a maximum) over the window indices (a, b),
    whose function is the window element x[n, c, s*i + a, s*j + b] (or a function of
    it). ``size`` and ``stride`` are the symbols f and s (runtime arguments; the stride
    defaults to f). ``out_size`` is the output size along one axis in ``extent`` (the
    input size), f and s: the CNN shape formula, not retyped. ``backward=True`` asks
    SymPy for ``<name>_backward(x, dy, f, stride=None) -> dx``.
    """

    output: sp.Indexed | None = None
    expr: sp.Expr | None = None
    size: sp.Symbol | None = None
    stride: sp.Symbol | None = None
    extent: sp.Symbol | None = None
    out_size: sp.Expr | None = None
    backward: bool = False
    kind: str = field(default="window", init=False)

    def __post_init__(self) -> None:
        from .window import window_nodes

        super().__post_init__()
        if not isinstance(self.output, sp.Indexed) or len(self.output.indices) != 4:
            raise FormulaError(f"{self.name}: output must be y[n, c, i, j] (NCHW)")
        check_identifier(self.output.base.name, "output")
        nodes = window_nodes(self.expr)
        if len(nodes) != 1:
            raise FormulaError(f"{self.name}: expr needs exactly one window reduction "
                               "(Sum or MaxOver)")
        (node,) = nodes
        elements = node.function.atoms(sp.Indexed)
        if len(elements) != 1 or len(node.limits) != 2:
            raise FormulaError(f"{self.name}: the reduction must run over a 2-D window (a, b) "
                               "of one array element x[n, c, s*i + a, s*j + b]")
        (element,) = elements
        check_identifier(element.base.name, "input")
        if tuple(element.indices[:2]) != tuple(self.output.indices[:2]):
            raise FormulaError(f"{self.name}: the window must stay in the output's (n, c) plane")
        free = self.out_size.free_symbols - {self.extent, self.size, self.stride}
        if free:
            raise FormulaError(f"{self.name}: out_size uses undeclared symbols {free}")

    def node(self) -> sp.Expr:
        from .window import window_nodes

        return window_nodes(self.expr)[0]

    def element(self) -> sp.Indexed:
        (element,) = self.node().function.atoms(sp.Indexed)
        return element

    def expressions(self) -> dict[str, sp.Expr]:
        return {self.output.base.name: self.expr, "out_size": self.out_size}

    def argument_names(self) -> list[str]:
        return [self.element().base.name, self.size.name, "stride"]


@dataclass(frozen=True)
class WindowGradient(Formula):
    """The backward pass of a ``Window`` formula, as SymPy derived it.

    ``local`` is the derivative of the output with respect to one window element v,
    in v, rho (the reduction of the window's other elements) and the window size:
    1/f**2 for an average (spread to every element), Heaviside(v - rho) for a maximum
    (routed to the selected element). Built by ``symdl.derive.window_backward_formula``.
    """

    forward: Window | None = None
    local: sp.Expr | None = None
    value: sp.Symbol | None = None
    rest: sp.Symbol | None = None
    kind: str = field(default="window_gradient", init=False)

    def expressions(self) -> dict[str, sp.Expr]:
        return {**self.forward.expressions(), f"d{self.forward.output.base.name}_dv": self.local}

    def argument_names(self) -> list[str]:
        fwd = self.forward
        return [fwd.element().base.name, "d" + fwd.output.base.name, fwd.size.name, "stride"]


@dataclass(frozen=True)
class Correlation(Contraction):
    """A 2-D cross-correlation layer (PyTorch's conv2d): a ``Contraction`` in index
    notation whose lowering is im2col plus a matrix product (BLAS), not a loop nest.

    ``output`` is y[n, o, i, j]; ``expr`` is Sum(w[o, c, a, b] * x[n, c, s*i + a - p,
    s*j + b - p], c, a, b) + bias[o]: the input ``x`` (N, C, H, W), the weights ``w``
    (O, C, f, f) and the bias (O,), which the kernel's argument ``bias_arg`` may leave
    out (None: no bias). ``stride`` and ``padding`` are runtime integer arguments;
    reads outside the input are the zero padding. ``out_size`` is the CNN shape formula
    in ``extent``, ``size``, ``stride`` and ``padding``. ``backward=True`` asks SymPy
    for the gradients with respect to x, w and the bias (``<name>_backward``).
    """

    output: sp.Indexed | None = None
    expr: sp.Expr | None = None
    input: str = "x"
    weight: str = "w"
    bias: str = "bias"
    bias_arg: str = "b"
    size: sp.Symbol | None = None
    stride: sp.Symbol | None = None
    padding: sp.Symbol | None = None
    extent: sp.Symbol | None = None
    out_size: sp.Expr | None = None
    backward: bool = False
    kind: str = field(default="correlation", init=False)

    def __post_init__(self) -> None:
        Formula.__post_init__(self)  # (its arguments are named below, not by arg_order)
        self._check_index_notation()
        for name in (self.input, self.weight, self.bias):
            check_identifier(name, "array")
        if not self.bias_arg.isidentifier():  # only the wrapper's argument (b, as PyTorch)
            raise FormulaError(f"{self.name}: bias_arg {self.bias_arg!r} is not an identifier")
        if not isinstance(self.output, sp.Indexed) or len(self.output.indices) != 4:
            raise FormulaError(f"{self.name}: output must be y[n, o, i, j] (NCHW)")
        sums = list(self.expr.atoms(sp.Sum))
        if len(sums) != 1 or len(sums[0].limits) != 3:
            raise FormulaError(f"{self.name}: expr needs one Sum over (c, a, b)")
        names = {ix.base.name for ix in self.expr.atoms(sp.Indexed)}
        if names != {self.input, self.weight, self.bias}:
            raise FormulaError(f"{self.name}: expr must use {self.input}, {self.weight} and "
                               f"{self.bias}, got {sorted(names)}")

    def sum(self) -> sp.Sum:
        (s,) = self.expr.atoms(sp.Sum)
        return s

    def output_limits(self) -> list[tuple]:
        """The output's indices run over the batch, the output channels and the output
        size (N, O, n_out): the image's size is a runtime argument, not an Idx range."""
        ranges = [sp.Symbol(k, integer=True, positive=True) for k in ("N", "O", "n_out", "n_out")]
        return [(k, 0, r - 1) for k, r in zip(self.output.indices, ranges, strict=True)]

    def indexed(self, name: str) -> sp.Indexed:
        (ix,) = [ix for ix in self.expr.atoms(sp.Indexed) if ix.base.name == name]
        return ix

    def expressions(self) -> dict[str, sp.Expr]:
        return {self.output.base.name: self.expr, "out_size": self.out_size}

    def argument_names(self) -> list[str]:
        return [self.input, self.weight, self.bias_arg, "stride", "padding"]


@dataclass(frozen=True)
class CorrelationGradient(Formula):
    """The backward pass of a ``Correlation``: each gradient as SymPy derived it.

    ``gradients`` maps an array's name to (its gradient's target, e.g. dw[o, c, a, b],
    and the value, a Sum over the remaining indices); a KroneckerDelta left in a value
    pins a compound index (x's s*i + a - p): that gradient is scattered there.
    Built by ``symdl.derive.correlation_backward_formula``.
    """

    forward: Correlation | None = None
    gradients: Mapping[str, tuple[sp.Indexed, sp.Expr]] = field(default_factory=dict)
    kind: str = field(default="correlation_gradient", init=False)

    def expressions(self) -> dict[str, sp.Expr]:
        return {**self.forward.expressions(),
                **{str(t): v for t, v in self.gradients.values()}}

    def argument_names(self) -> list[str]:
        f = self.forward
        return [f.input, f.weight, "d" + f.output.base.name, "stride", "padding"]


@dataclass(frozen=True)
class Layer:
    """One layer of a ``Network``: Z = weight @ A_prev (+ bias), A = activation(Z).

    ``activation`` is a one-input, one-output ``Elementwise`` formula without
    parameters, from the library (sigmoid, tanh) or a user's own (ReLU, GELU): its
    SymPy expression is applied to each element of Z, and its derivative is derived
    from that expression (``symdl.derive``). ``bias`` names an optional bias vector
    (n_l,), added to the product.
    """

    weight: str
    activation: Elementwise
    bias: str | None = None

    def __post_init__(self) -> None:
        check_identifier(self.weight, "weight")
        if self.bias is not None:
            check_identifier(self.bias, "bias")
        act = self.activation
        if not isinstance(act, Elementwise) or len(act.inputs) != 1 or len(act.outputs) != 1 \
                or act.steps:
            raise FormulaError(f"layer {self.weight!r}: the activation must be a one-input, "
                               "one-output Elementwise formula (sigmoid, tanh, ReLU, GELU)")
        if act.params:
            raise FormulaError(f"layer {self.weight!r}: activation {act.name!r} has parameters "
                               f"({', '.join(q.name for q in act.params)}); a network layer "
                               "takes activations without parameters (write the value in)")


@dataclass(frozen=True)
class Network(Formula):
    """A fully connected network, applied to each row of a batch:

        Z_1 = W_1 x (+ b_1), A_1 = act_1(Z_1), ..., Z_L = W_L A_{L-1} (+ b_L),
        A_L = act_L(Z_L), f = w^T A_L

    ``layers`` fix the depth and each layer's weight name, optional bias name and
    activation; the widths stay symbolic (n_0, ..., n_L) and are read from the arrays
    at run time. The kernel takes the batch ``input`` (m, n_0), then per layer its
    weight (n_l, n_{l-1}) and its bias (n_l,) if it has one, then the ``readout``
    vector (n_L,), and returns f (m,). The sheet writes one sample as the column
    vector ``sample``. The backward kernel ``<name>_backward`` is derived by SymPy
    (``symdl.derive.network_backward_formula``).
    """

    input: str = "X"
    sample: str = "x"
    layers: tuple[Layer, ...] = ()
    readout: str = "w"
    output: str = "f"
    kind: str = field(default="network", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise FormulaError(f"{self.name}: a network needs at least one layer")
        names = [self.input, self.sample, self.readout, self.output,
                 *[n for ly in self.layers for n in (ly.weight, ly.bias) if n is not None]]
        for n in names:
            check_identifier(n, "network name")
        if len(set(names)) != len(names):
            raise FormulaError(f"{self.name}: input, weight, bias, readout and output names "
                               "must be distinct")
        # The derivation names its per-sample intermediates Z<k>, A<k>, G<k>, delta<k>
        # (and the lowering a layer's product without its bias Z<k>_lin), the seed df and
        # the gradients d<name>: a user name must not shadow them.
        for n in names:
            if n == "df" or n.startswith("d") and n[1:] in names or re.fullmatch(
                    r"(Z|A|G|delta)\d+|Z\d+_lin", n):
                raise FormulaError(f"{self.name}: name {n!r} is reserved for the derivation")

    def widths(self) -> list[sp.Symbol]:
        """n_0 (input width), n_1, ..., n_L: symbolic, bound to array sizes at run time."""
        return [sp.Symbol(f"n{k}", integer=True, positive=True)
                for k in range(len(self.layers) + 1)]

    def symbols(self) -> dict[str, sp.MatrixSymbol]:
        """The per-sample matrix symbols: x, W_l, b_l, Z_l, A_l (columns), the readout w."""
        n = self.widths()
        out = {self.sample: sp.MatrixSymbol(self.sample, n[0], 1)}
        for k, ly in enumerate(self.layers, start=1):
            out[ly.weight] = sp.MatrixSymbol(ly.weight, n[k], n[k - 1])
            if ly.bias is not None:
                out[ly.bias] = sp.MatrixSymbol(ly.bias, n[k], 1)
            out[f"Z{k}"] = sp.MatrixSymbol(f"Z{k}", n[k], 1)
            out[f"A{k}"] = sp.MatrixSymbol(f"A{k}", n[k], 1)
        out[self.readout] = sp.MatrixSymbol(self.readout, n[-1], 1)
        return out

    def steps(self) -> dict[str, sp.MatrixExpr]:
        """The forward pass per sample, in order: Z_l, A_l, then f (a 1x1 matrix)."""
        s = self.symbols()
        prev = s[self.sample]
        out: dict[str, sp.MatrixExpr] = {}
        for k, ly in enumerate(self.layers, start=1):
            (x,) = ly.activation.inputs
            (expr,) = ly.activation.outputs.values()
            out[f"Z{k}"] = s[ly.weight] * prev
            if ly.bias is not None:
                out[f"Z{k}"] = out[f"Z{k}"] + s[ly.bias]
            out[f"A{k}"] = s[f"Z{k}"].applyfunc(sp.Lambda(x, expr))
            prev = s[f"A{k}"]
        out[self.output] = s[self.readout].T * prev
        return out

    def expressions(self) -> dict[str, sp.Expr]:
        return dict(self.steps())

    def argument_names(self) -> list[str]:
        """input, then per layer its weight and its bias (if any), then the readout."""
        return [self.input, *[n for ly in self.layers for n in (ly.weight, ly.bias)
                              if n is not None], self.readout]


@dataclass(frozen=True)
class NetworkGradient(Formula):
    """The backward pass of a ``Network``, derived by SymPy (``symdl.derive``).

    ``steps`` are per-sample matrix expressions in reverse order: the adjoints
    G_l = df/dA_l, the layer deltas delta_l = df/dZ_l, and the gradients. The gradients
    of the shared parameters (``shared``: weights, readout) are summed over the batch,
    each sample weighted by its incoming gradient ``seed`` (df); a bias's gradient is
    the sum of its layer's deltas. ``local`` holds each layer's activation derivative,
    keyed by the symbol it is written in: its output A_l where SymPy proves that form
    (sigmoid: A (1 - A)), else its pre-activation Z_l (ReLU, GELU), which the forward
    kernel then keeps for the backward one.
    """

    network: Network | None = None
    seed: str = "df"
    steps: Mapping[str, sp.MatrixExpr] = field(default_factory=dict)
    local: Mapping[str, sp.Expr] = field(default_factory=dict)
    shared: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    kind: str = field(default="network_gradient", init=False)

    def expressions(self) -> dict[str, sp.Expr]:
        return {**self.network.steps(), **self.steps}

    def argument_names(self) -> list[str]:
        return [*self.network.argument_names(), self.seed]


@dataclass(frozen=True)
class SampleBatch:
    """1-D input arrays of one length, with the symbol that stands for that length.

    A ``BatchReduction`` takes several batches of independent lengths (a batch of real
    samples and one of generated samples); each sum runs over one batch.
    """

    count: sp.Symbol
    inputs: tuple[sp.Symbol, ...]
    nonempty: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.count, sp.Symbol) and self.count.is_integer
                and self.count.is_positive):
            raise FormulaError(f"batch count {self.count!r} must be a positive integer Symbol")
        check_identifier(self.count.name, "batch count")
        object.__setattr__(self, "inputs", _symbols(self.inputs, "input"))
        if not self.inputs:
            raise FormulaError(f"batch {self.count.name!r} has no inputs")


@dataclass(frozen=True)
class BatchReduction(Formula):
    """Scalar results from sums over batches of 1-D arrays, each batch of its own length.

    ``sums`` maps a sum's name to its per-element summand, which may use the inputs of
    one batch only; ``outputs`` are expressions in the sum symbols and the batch
    counts, for example a mean over each batch. ``gradient=True`` asks SymPy for the
    kernel ``<name>_grad`` giving d output / d input_i for every element of every
    input (one output only). A batch marked ``nonempty`` refuses an empty array.
    Sums are taken in fixed-size blocks (lanes of short plain sums, added with
    compensated TwoSum summation: the loops vectorize), and the block sums are
    combined exactly, so the result does not depend on the thread count.
    """

    batches: tuple[SampleBatch, ...] = ()
    sums: Mapping[str, sp.Expr] = field(default_factory=dict)
    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    domains: Mapping[str, str] = field(default_factory=dict)
    gradient: bool = False
    kind: str = field(default="batch_reduction", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "batches", tuple(self.batches))
        if not self.batches:
            raise FormulaError(f"{self.name}: a batch reduction needs at least one batch")
        object.__setattr__(self, "sums", _exprs(self.sums, "sum"))
        object.__setattr__(self, "outputs", _exprs(self.outputs, "output"))
        names = [s.name for s in self.inputs] + [b.count.name for b in self.batches]
        taken = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(self.sums)))
        if taken:
            raise FormulaError(f"{self.name}: name(s) {taken} used twice")
        for k in self.sums:
            self.sum_batch(k)  # each summand lies in one batch
        allowed = set(self.sum_symbols()) | {b.count for b in self.batches}
        _check_free(self.outputs, allowed, f"{self.name}: output")
        for k, d in self.domains.items():
            if d not in DOMAINS or k not in {s.name for s in self.inputs}:
                raise FormulaError(f"{self.name}: bad domain {k!r}: {d!r}")
        if self.gradient and len(self.outputs) != 1:
            raise FormulaError(f"{self.name}: gradient=True needs exactly one output")

    @property
    def inputs(self) -> tuple[sp.Symbol, ...]:
        return tuple(s for b in self.batches for s in b.inputs)

    def sum_batch(self, name: str) -> int:
        """The index of the batch that sum ``name`` runs over."""
        used = self.sums[name].free_symbols
        owners = [k for k, b in enumerate(self.batches) if used & set(b.inputs)]
        if len(owners) != 1 or used - set(self.batches[owners[0]].inputs):
            raise FormulaError(f"{self.name}: sum {name!r} must use the inputs of exactly "
                               f"one batch")
        return owners[0]

    def sum_symbols(self) -> list[sp.Symbol]:
        return [sp.Symbol(k, real=True) for k in self.sums]

    def expressions(self) -> dict[str, sp.Expr]:
        return {**{f"sum_{k}": v for k, v in self.sums.items()}, **self.outputs}

    def argument_names(self) -> list[str]:
        return [s.name for s in self.inputs]


@dataclass(frozen=True)
class BatchMap(Formula):
    """Per-element outputs over batches: each output is an array as long as its batch.

    An output may use the inputs of one batch and the batch counts (scalars). This is
    the shape of a derived gradient kernel, d cost / d input_i, of a ``BatchReduction``;
    ``of`` maps each output to the input it is the gradient of (for the sheet).
    """

    batches: tuple[SampleBatch, ...] = ()
    outputs: Mapping[str, sp.Expr] = field(default_factory=dict)
    of: Mapping[str, str] = field(default_factory=dict)
    domains: Mapping[str, str] = field(default_factory=dict)
    kind: str = field(default="batch_map", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "batches", tuple(self.batches))
        object.__setattr__(self, "outputs", _exprs(self.outputs, "output"))
        counts = {b.count for b in self.batches}
        for k in self.outputs:
            batch = self.batches[self.output_batch(k)]
            _check_free({k: self.outputs[k]}, set(batch.inputs) | counts, f"{self.name}: output")

    @property
    def inputs(self) -> tuple[sp.Symbol, ...]:
        return tuple(s for b in self.batches for s in b.inputs)

    def output_batch(self, name: str) -> int:
        """The batch whose length output ``name`` has: the batch of the input it uses."""
        used = self.outputs[name].free_symbols
        if name in self.of:
            used = used | {sp.Symbol(self.of[name], real=True)}
        owners = [k for k, b in enumerate(self.batches) if used & set(b.inputs)]
        if len(owners) != 1:
            raise FormulaError(f"{self.name}: output {name!r} must belong to exactly one batch")
        return owners[0]

    def expressions(self) -> dict[str, sp.Expr]:
        return dict(self.outputs)

    def argument_names(self) -> list[str]:
        return [s.name for s in self.inputs]


# (defined in its own module, imported here so that formula files find every kind in
# symdl.formula; at the end, as formula_axis builds on the classes above)
from .formula_axis import AxisReduction  # noqa: E402, F401
