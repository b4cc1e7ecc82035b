"""Verification: each generated kernel against its SymPy formula in high precision.

The reference is the formula as *defined* (not the stabilized form the kernel
prints), evaluated with mpmath at 50 digits on random and edge inputs; the error
is measured in ULPs of the kernel's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import mpmath
import numpy as np
import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from .derive import least_count
from .errors import FormulaError
from .formula import (
    AxisReduction,
    Batch,
    BatchGradient,
    BatchMap,
    BatchReduction,
    Contraction,
    Correlation,
    CorrelationGradient,
    Elementwise,
    Formula,
    MaskedElementwise,
    Network,
    NetworkGradient,
    Reduction,
    ScalarFunction,
    SpecialCase,
    Window,
    WindowGradient,
)

DIGITS = 50
MAX_DIGITS = 20_000  # where a reference that is still infinite is taken as infinite


def reference_digits(dtype: np.dtype) -> int:
    """Working precision for references in dtype: 50 digits plus the decimal exponent of
    the smallest subnormal, so that a formula such as log(1 + exp(x)) keeps 50 good
    digits wherever its result is representable (1 + 1e-320 needs 320 digits)."""
    return DIGITS + int(-math.log10(float(np.finfo(dtype).smallest_subnormal))) + 1

#: Allowed max error in ULPs of the kernel's dtype, per formula kind. Elementwise
#: kernels are a few correctly-rounded operations (each <= 0.5 ULP) plus libm's exp,
#: log1p, tanh (<= 1 ULP each): 4 ULP bounds the sum. Sums of n terms may lose up to
#: log2(n) ULPs in the worst case with blocked summation; matvec checks against that.
TOLERANCE_ULP = {"elementwise": 4.0, "reduction": 4.0, "batch_map": 4.0}
#: Batch reductions: each term is computed in the kernel's dtype (<= 4 ULP, as an
#: elementwise kernel), terms are added in float64 (plain sums of 16 terms, added
#: with TwoSum compensation) and the blocks exactly (math.fsum), so for terms of one
#: sign the sum keeps the terms' relative error; the outputs then add a few float64
#: roundings (<= 1.5 ULP in float64, nothing in float32 ULPs). Terms of mixed sign
#: may cancel: such a formula would fail here, and rightly so, as its kernel cannot
#: promise a few ULP.
TOLERANCE_ULP["batch_reduction"] = 4.0 + 1.5



@dataclass
class Result:
    name: str
    dtype: str
    max_ulp: float
    samples: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_ulp <= self.tolerance


def ulp_error(got: np.ndarray, exact: list, dtype: np.dtype) -> np.ndarray:
    """|got - exact| in units of the spacing of dtype at exact (rounded to dtype).

    Non-finite references must be matched exactly (inf by the same inf, nan by nan).
    """
    errs = np.empty(len(exact))
    info = np.finfo(dtype)
    for k, (g, e) in enumerate(zip(got.tolist(), exact, strict=True)):
        if mpmath.isnan(e) or math.isnan(g):
            errs[k] = 0.0 if (mpmath.isnan(e) and math.isnan(g)) else math.inf
            continue
        if mpmath.isinf(e) or math.isinf(g):
            # an exact value beyond dtype's range rounds to the infinity of its sign
            overflow = abs(float(e)) > float(info.max) and (float(e) > 0) == (g > 0)
            errs[k] = 0.0 if float(e) == g or overflow else math.inf
            continue
        if abs(float(e)) > float(info.max):
            errs[k] = 0.0 if math.isinf(g) else math.inf
            continue
        e_rounded = dtype.type(float(e))
        with np.errstate(over="ignore"):  # the spacing at the largest finite value
            spacing = float(np.spacing(np.abs(e_rounded))) or float(info.smallest_subnormal)
        errs[k] = float(abs(mpmath.mpf(g) - e) / spacing)
    return errs


def edge_values(dtype: np.dtype) -> np.ndarray:
    """Where elementwise formulas break: zero, subnormals, overflow thresholds, inf, nan."""
    info = np.finfo(dtype)
    mags = [0.0, float(info.smallest_subnormal), float(info.tiny), 1e-300, 1e-30, 1e-8, 0.5,
            1.0, 2.0, 17.0, 20.0, 36.0, 40.0, 88.0, 89.0, 103.0, 104.0, 709.0, 709.8, 710.0,
            745.0, 746.0, 1e4, 1e30, float(info.max), math.inf]
    vals = [s * m for m in mags for s in (1.0, -1.0)] + [math.nan]
    with np.errstate(over="ignore"):
        return np.array(vals, dtype=np.float64).astype(dtype)


def random_values(rng: np.random.Generator, n: int, dtype: np.dtype) -> np.ndarray:
    """Log-uniform magnitudes over the interesting range, both signs, plus a bulk near 0."""
    mags = 10.0 ** rng.uniform(-12, 3.5, n // 2)
    signs = rng.choice([-1.0, 1.0], n // 2)
    bulk = rng.uniform(-40, 40, n - n // 2)
    return np.concatenate([mags * signs, bulk]).astype(dtype)


def _mp(expr: sp.Expr, args: list[sp.Symbol]):
    return sp.lambdify(args, expr, modules="mpmath")


def _mpf(v: float):
    return mpmath.mpf(v) if math.isfinite(v) else (mpmath.inf if v > 0 else -mpmath.inf) \
        if not math.isnan(v) else mpmath.nan


def _inputs_for(f: Elementwise, formulas: dict[str, Formula], dtype, rng, n):
    """Sample inputs. A backward kernel in terms of the output samples its y from the
    forward formula's image (parameters at their defaults); one that takes the inputs
    samples them as the forward's, and each incoming gradient near 1."""
    xs = np.concatenate([edge_values(dtype), random_values(rng, n, dtype)])
    n_edge = len(edge_values(dtype))
    dys = np.concatenate([np.ones(n_edge), rng.standard_normal(len(xs) - n_edge)]).astype(dtype)
    if f.derived_from:
        fwd = formulas[f.derived_from]
        if f.inputs[0].name in fwd.outputs:  # <name>_backward(y, dy)
            (x,) = fwd.inputs
            (fx,) = fwd.results().values()
            fmp = _mp(fx.subs({q.symbol: q.default for q in fwd.params}), [x])
            with mpmath.workdps(reference_digits(np.dtype(dtype))):
                ys = [float(fmp(_mpf(float(v)))) for v in xs]
            return [np.array(ys, dtype=np.float64).astype(dtype), dys]
        n_in = len(fwd.inputs)
        return ([xs] + [random_values(rng, len(xs), dtype) for _ in fwd.inputs[1:]]
                + [dys for _ in f.inputs[n_in:]])
    return [xs] + [random_values(rng, len(xs), dtype) for _ in f.inputs[1:]]


def _condition(expr: sp.Expr, syms: list[sp.Symbol], n_inputs: int):
    """A function of the inputs' values: the expression's relative condition number
    sum_j |a_j * d expr/d a_j / expr| over its array inputs (at least 1). Rounding the
    inputs, or an intermediate, by one ULP already moves the result by that many: a
    kernel is held to its tolerance times this (GELU's tanh form at x = -5: ~35)."""
    def slope(s):  # (a kink's DiracDelta is 0 away from the kink, where samples are)
        d = sp.diff(expr, s).replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: 0)
        return d.replace(lambda e: isinstance(e, sp.Heaviside),
                         lambda e: sp.Piecewise((1, e.args[0] > 0), (0, True)))

    parts = [_mp(slope(s), syms) for s in syms[:n_inputs]]
    fn = _mp(expr, syms)

    def cond(values):
        value = fn(*values)
        if not value or not mpmath.isfinite(value):
            return 1.0
        total = mpmath.fsum(abs(values[j] * d(*values)) for j, d in enumerate(parts)
                            if values[j] and mpmath.isfinite(values[j]))
        c = total / abs(value)
        return max(1.0, float(c)) if mpmath.isfinite(c) else math.inf

    return cond


def verify_elementwise(f: Elementwise, kernel, formulas, dtype, rng, n,
                       conditioned: bool = False) -> Result:
    args = _inputs_for(f, formulas, dtype, rng, n)
    params = {p.name: p.default for p in f.params}
    got = [kernel(*args, **params)] if len(f.outputs) == 1 else list(kernel(*args, **params))
    errs = []
    syms = list(f.inputs) + [p.symbol for p in f.params]
    with mpmath.workdps(reference_digits(np.dtype(dtype))):
        for expr, g in zip(f.outputs.values(), got, strict=True):
            fn = _mp(expr, syms)
            # A user's formula, and the kernels that verify could not check before (a
            # backward that takes the inputs, several inputs, parameters), are held to
            # the tolerance times the condition number, as the test suite holds them: a
            # formula printed from SymPy rounds its intermediates in the kernel's dtype,
            # and each rounding moves the result by up to that many ULPs (SiLU at
            # x = -745 rounds a subnormal exp(x), then multiplies by x: 319 ULP, cond
            # 745). The library's one-input kernels, whose algorithms were built for it,
            # keep the tolerance alone.
            from_inputs = f.derived_from and f.inputs[0].name not in formulas[
                f.derived_from].outputs
            cond = (_condition(expr, syms, len(f.inputs))
                    if conditioned or from_inputs or len(f.inputs) > 1 or f.params
                    else lambda values: 1.0)
            values = [[_mpf(float(a[k])) for a in args] + [mpmath.mpf(v) for v in
                                                           params.values()]
                      for k in range(len(args[0]))]
            exact = [fn(*v) for v in values]
            # An infinite input where mpmath gives nan (inf/inf, inf*0): IEEE arithmetic
            # gives nan there too, and a kernel may give nan; one that gives a number
            # must give the limit (the value at a finite input beyond any float).
            huge = mpmath.mpf(10) ** 1000
            g = np.asarray(g).ravel()
            exact = [fn(*[mpmath.sign(a) * huge if mpmath.isinf(a) else a for a in v])
                     if mpmath.isnan(e) and not np.isnan(got_k) and any(
                         mpmath.isinf(a) for a in v) else e
                     for v, e, got_k in zip(values, exact, g, strict=True)]
            err = ulp_error(g, exact, np.dtype(dtype))
            errs.append(err / np.array([cond(v) for v in values]))
    return Result(f.name, np.dtype(dtype).name, float(np.max(errs)), len(args[0]),
                  TOLERANCE_ULP["elementwise"])


def _count_samples(least: int) -> list[int]:
    """Values of a count parameter (a step number, a batch size), from its least one."""
    return [least, least + 1, least + 9, 1000]


def _magnitude(expr: sp.Expr, mags: dict | None = None) -> sp.Expr:
    """expr with each sum in a numerator replaced by the sum of its terms' magnitudes.

    An optimizer step theta - delta cancels by design when theta ~ delta; no kernel can
    be more accurate than the rounding of its terms, so updates are measured in ULPs of
    this magnitude (the scale of the terms), not of the possibly tiny difference.
    Denominators and function arguments are left alone (growing them would shrink it).
    ``mags`` maps symbols of intermediate results (a sum, a statistic) to symbols for
    their own magnitudes, used where they stand in a numerator.
    """
    mags = mags or {}
    if expr.is_Symbol:
        return mags.get(expr, expr)
    if expr.is_Add:
        return sp.Add(*[sp.Abs(_magnitude(a, mags)) for a in expr.args])
    if expr.is_Mul:
        return sp.Mul(*[a if (a.is_Pow and a.exp.is_negative) else _magnitude(a, mags)
                        for a in expr.args])
    if expr.is_Pow and expr.exp.is_positive:
        return sp.Pow(_magnitude(expr.base, mags), expr.exp)
    return expr


def _update_settings(f: Elementwise) -> list[dict]:
    """Parameter settings to verify an update at: the defaults (with each sample of a
    parameter that has none), and for each special case, its values and a value just
    off them (so that both the general core and the special one are checked)."""
    free_params = [p for p in f.params if p.default is None]
    samples = _count_samples(least_count(f, free_params[0].name)) if free_params else [None]
    out = [{p.name: (value if p.default is None else p.default) for p in f.params}
           for value in samples]
    checks = {p.name: p.check for p in f.params}
    for case in f.special_cases:
        out.append({**out[0], **case.when})
        out.append({**out[0], **{k: _other_value(checks[k], v) for k, v in case.when.items()}})
    return out


def _other_value(check: str, value: float) -> float:
    """A value of a parameter with this check other than ``value`` (the general core)."""
    if check == "count":
        return value + 1
    return 0.5 if value != 0.5 else 0.25  # inside every real check's domain


def _applying_case(f: Elementwise, params: dict) -> SpecialCase | None:
    """The special case whose values the parameters hold (the one the wrapper picks)."""
    return next((c for c in f.special_cases
                 if all(params[k] == v for k, v in c.when.items())), None)


def verify_update(f: Elementwise, kernel, dtype, rng, n) -> Result:
    """In-place kernels: run on copies, compare every updated array with mpmath, and
    check that a special case leaves its untouched arrays bit for bit as they were."""
    worst, count = 0.0, 0
    dtype = np.dtype(dtype)
    syms = list(f.inputs) + [p.symbol for p in f.params]
    for params in _update_settings(f):
        size = max(n // 4, 1)
        args = [random_values(rng, size, dtype) for _ in f.inputs]
        for k, s in enumerate(f.inputs):
            if f.domains.get(s.name) == "nonnegative":
                args[k] = np.abs(args[k])
        work = [a.copy() for a in args]
        kernel(*work, **params)
        updated = {s.name: w for s, w in zip(f.inputs, work, strict=True)}
        case = _applying_case(f, params)
        for name in case.untouched if case else ():
            i = next(k for k, s in enumerate(f.inputs) if s.name == name)
            if updated[name].tobytes() != args[i].tobytes():  # bit for bit
                worst = math.inf  # written although the special case leaves it alone
        results = f.special_results(case) if case else f.results()
        # The parameters' exact (float64) values: the kernel computes the coefficients
        # it derives from them (1 - beta2, the bias corrections) in float64 and rounds
        # each once, as PyTorch does; a parameter used per element is rounded to the
        # dtype (at most half an ULP of its term, within the tolerance).
        pvals = [mpmath.mpf(float(v)) for v in params.values()]
        with mpmath.workdps(reference_digits(dtype)):
            for name, expr in results.items():
                fn, mag = _mp(expr, syms), _mp(_magnitude(expr), syms)
                for k in range(size):
                    point = [_mpf(float(a[k])) for a in args] + pvals
                    exact, scale = fn(*point), mag(*point)
                    got = float(updated[name][k])
                    if not mpmath.isfinite(exact) or not math.isfinite(got):
                        err = float(ulp_error(np.array([got], dtype), [exact], dtype)[0])
                    else:
                        unit = float(np.spacing(dtype.type(float(scale)))) or float(
                            np.finfo(dtype).smallest_subnormal)
                        err = float(abs(mpmath.mpf(got) - exact)) / unit
                    worst = max(worst, err)
                count += size
    return Result(f.name, dtype.name, worst, count, TOLERANCE_ULP["elementwise"])


#: Batch kernels subtract the mean and sum terms that cancel (the backward pass famously
#: does), so their error counts in ULPs of the magnitude of the terms (see _magnitude):
#: a few roundings per element, float64 partial sums, and the statistics rounded once
#: to the dtype, as the API returns and takes them.
TOLERANCE_BATCH_ULP = 4.0

BATCH_SHAPES = [(2, 1), (7, 3), (64, 5), (300, 4)]


def _batch_exact(f, arrays: dict, params: dict, m: int, c: int) -> tuple[dict, dict]:
    """Evaluate a Batch or BatchGradient formula for feature column c in mpmath.

    Returns (exact values, magnitudes): the magnitude of each result is its _magnitude,
    with the intermediate results' own magnitudes where they stand in a numerator; it
    is the scale against which the kernel's error counts.
    """
    per_elem = list(f.inputs if isinstance(f, Batch) else f.arrays)
    if isinstance(f, Batch):
        stages = [("mean", f.stats), ("each", f.outputs)]
    else:
        stages = [("sum", f.reductions), ("once", f.finish), ("each", f.outputs)]
    derived = [k for _, exprs in stages for k in exprs]
    mags = {sp.Symbol(k, real=True): sp.Symbol(f"{k}__mag", real=True) for k in derived}
    names = [*params, *[s.name for s in f.features], *[s.name for s in per_elem],
             *derived, *[str(v) for v in mags.values()]]
    syms = tuple([sp.Symbol(k, real=True) for k in names] + [f.count])
    env = {k: mpmath.mpf(float(v)) for k, v in params.items()}
    env.update({s.name: mpmath.mpf(float(arrays[s.name][c])) for s in f.features
                if s.name in arrays})
    cols = {s.name: [mpmath.mpf(float(v)) for v in arrays[s.name][:, c]] for s in per_elem}

    def at(expr, i):
        point = dict(env)
        point.update({k: v[i] for k, v in cols.items()})
        return _cached_mp(expr, syms)(*[point.get(k, 0) for k in names], m)

    exact, scale = {}, {}
    for how, exprs in stages:
        for k, e in exprs.items():
            mag = _magnitude(e, mags)
            if how == "each":
                exact[k] = [at(e, i) for i in range(m)]
                scale[k] = [abs(at(mag, i)) for i in range(m)]
                continue
            if how == "once":
                value, size = at(e, 0), abs(at(mag, 0))
            else:
                value = mpmath.fsum(at(e, i) for i in range(m))
                size = mpmath.fsum(abs(at(mag, i)) for i in range(m))
                if how == "mean":
                    value, size = value / m, size / m
            env[k], env[f"{k}__mag"] = value, size
            exact[k], scale[k] = [value], [size]
    return exact, scale


_MP_CACHE: dict = {}


def _cached_mp(expr: sp.Expr, syms: tuple):
    key = (expr, syms)
    if key not in _MP_CACHE:
        _MP_CACHE[key] = _mp(expr, list(syms))
    return _MP_CACHE[key]


def verify_batch(f, kernel, formulas, dtype, rng) -> Result:
    """Batch forward/backward kernels against mpmath, normwise per feature column."""
    dtype = np.dtype(dtype)
    worst = 0.0
    fwd = formulas.get(f.derived_from) if f.derived_from else f
    for m, n_feat in BATCH_SHAPES:  # noqa: B007 (m is used by the reference)
        offset = rng.choice([0.0, 3.0, -50.0, 1e3], n_feat)
        x = {s.name: (rng.standard_normal((m, n_feat)) * rng.uniform(0.1, 4, n_feat)
                      + offset).astype(dtype) for s in fwd.inputs}
        feats = {s.name: rng.standard_normal(n_feat).astype(dtype) for s in fwd.features}
        for k, d in getattr(fwd, "domains", {}).items():
            if d == "nonnegative":
                feats[k] = np.abs(feats[k])
        params = {p.name: float(dtype.type(p.default)) for p in f.params}
        if isinstance(f, Batch):
            arrays = {**x, **feats}
            names = f.argument_names()[:len(f.inputs) + len(f.features)]
        else:
            stats = fwd_kernel_stats(fwd, x, feats, params, dtype)
            douts = {s.name: rng.standard_normal((m, n_feat)).astype(dtype)
                     for s in f.arrays if s.name not in x}
            arrays = {**douts, **x, **feats, **stats}
            names = [s.name for s in (*f.arrays, *f.features)]
        got = kernel(*[arrays[k] for k in names], **params)
        got = got if isinstance(got, tuple) else (got,)
        out_names = list(f.outputs) + list(f.stats if isinstance(f, Batch) else
                                           f.feature_outputs)
        tiny = float(np.finfo(dtype).smallest_subnormal)
        with mpmath.workdps(DIGITS):
            for c in range(n_feat):
                exact, scale = _batch_exact(f, arrays, params, m, c)
                for name, g in zip(out_names, got, strict=True):
                    col = g[:, c] if g.ndim == 2 else g[c:c + 1]
                    for a, r, sc in zip(col, exact[name], scale[name], strict=True):
                        unit = float(np.spacing(dtype.type(float(sc)))) or tiny
                        worst = max(worst, float(abs(mpmath.mpf(float(a)) - r)) / unit)
    return Result(f.name, dtype.name, worst, len(BATCH_SHAPES), TOLERANCE_BATCH_ULP)


def fwd_kernel_stats(fwd: Batch, x: dict, feats: dict, params: dict, dtype) -> dict:
    """The statistics a backward kernel receives: the exact ones, rounded to dtype."""
    m, n_feat = next(iter(x.values())).shape
    stats = {k: np.empty(n_feat, dtype) for k in fwd.stats}
    with mpmath.workdps(DIGITS):
        for c in range(n_feat):
            exact, _ = _batch_exact(fwd, {**x, **feats}, params, m, c)
            for k in fwd.stats:
                stats[k][c] = float(exact[k][0])
    return stats


def verify_reduction(f: Reduction, kernel, dtype, rng, n) -> Result:
    worst = 0.0
    syms = list(f.inputs)
    for trial in range(8):
        size = [0, 1, 7, n, 3 * n + 5, 20000, 50, 2][trial]
        if any(d == "binary" for d in f.domains.values()):
            args = [rng.integers(0, 2, size).astype(dtype) for _ in syms]
        else:
            args = [random_values(rng, size, dtype) for _ in syms]
        got = kernel(*args)
        got = got if isinstance(got, tuple) else (got,)
        with mpmath.workdps(DIGITS):
            sums = {}
            for k, e in f.sums.items():
                fn = _mp(e, syms)
                sums[sp.Symbol(k, real=True)] = mpmath.fsum(
                    fn(*[mpmath.mpf(float(a[i])) for a in args]) for i in range(size))
            sums[f.count] = size
            for expr, g in zip(f.outputs.values(), got, strict=True):
                exact = sp.N(expr.subs(sums), DIGITS)
                e = mpmath.mpf(str(exact))
                worst = max(worst, float(ulp_error(np.array([g]), [e], np.dtype(np.float64))[0]))
    return Result(f.name, np.dtype(dtype).name, worst, 8, TOLERANCE_ULP["reduction"])


#: Sizes given to a contraction's range symbols, one tuple a case (cycled over the
#: symbols): all 1, small and unequal, larger than a vector.
CONTRACTION_SIZES = [(1,), (3, 5, 2), (17, 33, 9)]


def verify_contraction(f: Contraction, kernel, dtype, rng, n) -> Result:
    """Any contraction against its own index expression in mpmath
    (``index_notation_fn``), for arrays of several sizes: each array's shape is read
    off its subscripts' ranges. Tolerance: k ULPs of the sum of |terms| for an element
    summed from k products (the sum's bound); the score is the error over it."""
    worst = 0.0
    eps = float(np.finfo(dtype).eps)
    idx = {j for j in f.expr.atoms(sp.Idx)} | set(f.output.indices)
    sizes = sorted({s for j in idx for s in j.upper.free_symbols}, key=lambda s: s.name)
    reads = {ix.base.label.name: ix.indices for ix in f.expr.atoms(sp.Indexed)}
    fn = index_notation_fn(f.expr, {})
    for case in CONTRACTION_SIZES:
        env = {s.name: case[k % len(case)] for k, s in enumerate(sizes)}
        at = {s: env[s.name] for s in sizes}

        def extent(j, at=at):
            if not isinstance(j, sp.Idx):
                raise FormulaError(f"{f.name}: verify reads shapes from plain indices "
                                   f"(sp.Idx), not {j}")
            return int(j.upper.subs(at)) + 1

        arrays = {a: rng.standard_normal(tuple(extent(j) for j in reads[a])).astype(dtype)
                  for a in f.arg_order}
        got = np.asarray(kernel(*[arrays[a] for a in f.arg_order]))
        exact_env = {**env, **{a: np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(
            v) for a, v in arrays.items()}}
        out_shape = tuple(extent(j) for j in f.output.indices)
        assert got.shape == out_shape, (f.name, got.shape, out_shape)
        with mpmath.workdps(DIGITS):
            for where in np.ndindex(out_shape):
                point = {**exact_env, **{str(j.label): k for j, k in
                                         zip(f.output.indices, where, strict=True)}}
                value, magnitude, terms = fn(point)
                bound = max(terms, 1) * eps * float(magnitude) or eps
                worst = max(worst, float(abs(mpmath.mpf(float(got[where])) - value)) / bound)
    return Result(f.name, np.dtype(dtype).name, worst, 4, 1.0)


#: (shape, f, stride) cases for window kernels: strides equal to, below (overlapping
#: windows) and above 1, odd and even sizes.
WINDOW_CASES = [((1, 1, 1, 1), 1, 1), ((2, 3, 5, 6), 2, None), ((1, 2, 7, 7), 3, 1),
                ((2, 1, 8, 9), 3, 2), ((1, 2, 6, 5), 2, 1)]


def _window_reference(f: Window, local, x: np.ndarray, dy, size: int, stride: int):
    """y (and dx when dy is given) in mpmath, from the formula: the window's operator
    applied to exact values, and SymPy's local derivative g(v, rho, f) per element."""
    from .window import reduction_op

    op = {sp.Add: mpmath.fsum, sp.Max: max}[reduction_op(f.node())]
    r = sp.Symbol("_r")
    finalize = _mp(f.expr.xreplace({f.node(): r}), [r, f.size])
    v = sp.Symbol("v", real=True)  # each element's term (x for pooling, x**2 for L2 pooling)
    element_term = _mp(f.node().function.xreplace({f.element(): v}), [v])
    n_, c_, h, w = x.shape
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    y = np.empty((n_, c_, ho, wo), dtype=object)
    dx = np.zeros(x.shape, dtype=object)
    mag = np.zeros(x.shape, dtype=object)  # sum of |contributions|: the error's scale
    for n, c, i, j in np.ndindex(y.shape):
        cells = [(n, c, stride * i + a, stride * j + b) for a in range(size)
                 for b in range(size)]
        vals = [mpmath.mpf(float(x[p])) for p in cells]
        terms = [element_term(val) for val in vals]
        y[n, c, i, j] = finalize(op(terms), size)
        if dy is None:
            continue
        for k, p in enumerate(cells):
            rest = terms[:k] + terms[k + 1:]
            rho = op(rest) if rest else (0 if op is mpmath.fsum else -mpmath.inf)
            term = mpmath.mpf(float(dy[n, c, i, j])) * local(vals[k], rho, size)
            dx[p] += term
            mag[p] += abs(term)
    return y, dx, mag


def verify_window(f, kernel, formulas, dtype, rng) -> Result:
    """Pooling kernels against the formula in mpmath. A maximum is exact; a sum of k
    terms is within k ULPs of the sum of their magnitudes (the recursive sum's bound),
    so the score is the error over that bound (at most 1)."""
    from .derive import window_local

    dtype = np.dtype(dtype)
    fwd = f.forward if isinstance(f, WindowGradient) else f
    v, rho = sp.Symbol("v", real=True), sp.Symbol("rho", real=True)
    local = _mp(window_local(fwd).replace(sp.Heaviside, lambda z, *_: sp.Piecewise(
        (1, z > 0), (0, True))), [v, rho, fwd.size])
    eps = float(np.finfo(dtype).eps)
    worst = 0.0
    for shape, size, stride in WINDOW_CASES:
        x = rng.standard_normal(shape).astype(dtype)
        s = size if stride is None else stride
        dy = None
        if isinstance(f, WindowGradient):
            ho, wo = (shape[2] - size) // s + 1, (shape[3] - size) // s + 1
            dy = rng.standard_normal((*shape[:2], ho, wo)).astype(dtype)
            got = kernel(x, dy, size, stride)
        else:
            got = kernel(x, size, stride)
        with mpmath.workdps(DIGITS):
            y, dx, mag = _window_reference(fwd, local, x, dy, size, s)
            exact = dx if dy is not None else y
            for idx in np.ndindex(exact.shape):
                err = abs(mpmath.mpf(float(got[idx])) - exact[idx])
                # each contribution rounded once (dy * g), then summed: k + 1 roundings
                bound = (size * size + 1) * eps * float(mag[idx]) or 1e-300
                if dy is None:
                    cells = x[idx[0], idx[1], idx[2] * s:idx[2] * s + size,
                              idx[3] * s:idx[3] * s + size]
                    bound = (size * size + 1) * eps * float(np.abs(cells).astype(
                        np.float64).sum()) / size**2
                worst = max(worst, float(err / bound))
    return Result(f.name, dtype.name, worst, len(WINDOW_CASES), 1.0)


def _int_fn(e: sp.Expr):
    """An integer index expression (a + s*i - p) as a function of the integer values of
    its symbols, by name."""
    syms = sorted(e.free_symbols, key=lambda v: v.name)
    names = [v.name for v in syms]
    fn = sp.lambdify(syms, e)
    return lambda env: int(fn(*[env[k] for k in names]))


def index_notation_fn(expr: sp.Expr, extents: dict[str, int]):
    """(value, magnitude, terms) of an expression in index notation, term by term.

    The result is a function of ``env``: integers by symbol name (indices, sizes,
    stride, padding) and mpmath object arrays by array name. An array read outside its
    bounds is 0 (the zero padding); a KroneckerDelta is 1 where its arguments are equal.
    A Sum runs over its limits, except a summation index named in ``extents``, which
    runs over that extent (the output's indices: their symbolic upper bound n_out is
    one size for both spatial axes, the arrays' is not). The magnitude is the same
    expression with every term's absolute value, and terms counts its nonzero terms:
    a floating-point sum of k products is within k ULPs of the magnitude.
    """
    if isinstance(expr, sp.Sum):
        body = index_notation_fn(expr.function, extents)
        limits = [(k.name, _int_fn(lo), _int_fn(hi)) for k, lo, hi in expr.limits]

        def total(env, at=0):
            if at == len(limits):
                return body(env)
            name, lo, hi = limits[at]
            span = range(extents[name]) if name in extents else range(lo(env), hi(env) + 1)
            value = magnitude = terms = 0
            for k in span:
                env[name] = k
                v, m, t = total(env, at + 1)
                value, magnitude, terms = value + v, magnitude + m, terms + t
            env.pop(name, None)
            return value, magnitude, terms

        return total
    if isinstance(expr, sp.Indexed):
        name, subscripts = expr.base.label.name, [_int_fn(e) for e in expr.indices]

        def read(env):
            array = env[name]
            at = tuple(fn(env) for fn in subscripts)
            if all(0 <= k < n for k, n in zip(at, array.shape, strict=True)):
                v = array[at]
                return v, abs(v), int(v != 0)
            return 0, 0, 0

        return read
    if isinstance(expr, sp.KroneckerDelta):
        left, right = (_int_fn(a) for a in expr.args)
        return lambda env: (1, 1, 1) if left(env) == right(env) else (0, 0, 0)
    if expr.is_Mul or expr.is_Add:
        # (deltas first: a product with a zero factor is 0, the rest is not evaluated)
        parts = [index_notation_fn(a, extents) for a in sorted(
            expr.args, key=lambda a: not isinstance(a, sp.KroneckerDelta))]

        def combine(env):
            value, magnitude, terms = (1, 1, 1) if expr.is_Mul else (0, 0, 0)
            for part in parts:
                v, m, t = part(env)
                if expr.is_Mul:
                    if m == 0:
                        return 0, 0, 0
                    value, magnitude, terms = value * v, magnitude * m, terms * t
                else:
                    value, magnitude, terms = value + v, magnitude + m, terms + t
            return value, magnitude, terms

        return combine
    if expr.is_Number:
        c = int(expr) if expr.is_Integer else mpmath.mpf(sp.Float(expr, DIGITS)._mpf_)
        return lambda env: (c, abs(c), int(c != 0))
    raise TypeError(f"cannot evaluate {expr!r} in index notation")


#: (N, C, H, W, O, f, stride, padding) cases for correlation kernels.
CORRELATION_CASES = [(1, 1, 3, 3, 1, 1, 1, 0), (2, 3, 5, 6, 2, 3, 1, 1), (1, 2, 7, 6, 3, 2, 2, 2)]


def verify_correlation(f, kernel, dtype, rng) -> Result:
    """conv2d and its backward against the formula's own index expressions in mpmath:
    the forward's expr, and each gradient as SymPy derived it (``f.gradients``),
    evaluated term by term (``index_notation_fn``). A sum of k products is within k
    ULPs of the sum of their magnitudes: the score is the error over that bound, k
    counted for each element."""
    dtype = np.dtype(dtype)
    eps = float(np.finfo(dtype).eps)
    fwd = f.forward if isinstance(f, CorrelationGradient) else f
    if isinstance(f, CorrelationGradient):
        parts = [f.gradients[name] for name in (fwd.input, fwd.weight, fwd.bias)]
    else:
        parts = [(fwd.output, fwd.expr)]
    # The sizes the limits name: c runs to C - 1, n to N - 1, o to O - 1.
    (channels,) = fwd.sum().limits[0][2].free_symbols
    (batch,), (out_channels,) = [upper.free_symbols for _, _, upper in fwd.output_limits()[:2]]
    worst = 0.0
    for nb, c_, h_, w_, o_, fs, st, pd in CORRELATION_CASES:
        x = rng.standard_normal((nb, c_, h_, w_)).astype(dtype)
        w = rng.standard_normal((o_, c_, fs, fs)).astype(dtype)
        bias = rng.standard_normal(o_).astype(dtype)
        ho, wo = (h_ + 2 * pd - fs) // st + 1, (w_ + 2 * pd - fs) // st + 1
        dy = rng.standard_normal((nb, o_, ho, wo)).astype(dtype)
        if isinstance(f, CorrelationGradient):
            got = kernel(x, w, dy, stride=st, padding=pd)
        else:
            got = (kernel(x, w, bias, stride=st, padding=pd),)
        out_index = [k.name for k in fwd.output.indices]
        env = {fwd.size.name: fs, fwd.stride.name: st, fwd.padding.name: pd,
               channels.name: c_, batch.name: nb, out_channels.name: o_}
        with mpmath.workdps(DIGITS):
            env.update({name: np.vectorize(lambda v: mpmath.mpf(float(v)), otypes=[object])(a)
                        for name, a in ((fwd.input, x), (fwd.weight, w), (fwd.bias, bias),
                                        ("d" + fwd.output.base.name, dy))})
            for (target, value), g in zip(parts, got, strict=True):
                evaluate = index_notation_fn(value, {out_index[2]: ho, out_index[3]: wo})
                names = [t.name for t in target.indices]
                for idx in np.ndindex(g.shape):
                    exact, mag, terms = evaluate({**env, **dict(zip(names, idx, strict=True))})
                    bound = terms * eps * float(mag) or 1e-300
                    worst = max(worst, float(abs(mpmath.mpf(float(g[idx])) - exact)) / bound)
    return Result(f.name, dtype.name, worst, len(CORRELATION_CASES), 1.0)


#: Sample values per integer argument check (small: every combination is plausible).
_INT_SAMPLES = {"natural": range(0, 40), "positive_int": range(1, 12), "odd": range(1, 40, 2)}


def _scalar_sample(f: ScalarFunction, rng: np.random.Generator) -> dict:
    if f.integer:
        return {a: int(rng.choice(_INT_SAMPLES[a.check])) for a in f.args}
    # Error rates: exact binary fractions in [0, 1], some equal (ties decide branches).
    return {a: float(rng.choice([0.0, 0.01, 0.05, 0.5, rng.uniform(0, 1)])) for a in f.args}


def verify_scalar(f: ScalarFunction, kernel, rng: np.random.Generator,
                  n: int = 400) -> Result:
    """Against the formula evaluated exactly by SymPy (integers / rationals).

    Integer functions must match exactly, and raise ValueError exactly where a
    requirement fails; float outputs must be correctly rounded (0.5 ULP: each is one
    subtraction of exact inputs). For a recipe, the diagnosis must be the one of the
    first branch whose condition holds exactly. Score: the worst ULP error, or inf.
    """
    worst = 0.0
    outs = f.output_symbols()
    for _ in range(n):
        vals = _scalar_sample(f, rng)
        exact = {a.symbol: sp.Integer(v) if f.integer else sp.Rational(v)
                 for a, v in vals.items()}
        results = {outs[k]: e.subs(exact) for k, e in f.outputs.items()}
        subs = exact | results
        ok = all(bool(c.subs(subs)) for c, _ in f.requires)
        try:
            got = kernel(*vals.values())
        except ValueError:
            worst = max(worst, 0.0 if not ok else math.inf)
            continue
        if not ok:
            return Result(f.name, "int" if f.integer else "float64", math.inf, n, 0.0)
        for k in f.outputs:
            g = got if len(f.outputs) == 1 and not f.branches else getattr(got, k)
            if f.integer:
                worst = max(worst, 0.0 if g == results[outs[k]] else math.inf)
            else:
                r = sp.Rational(results[outs[k]])
                with mpmath.workdps(DIGITS):
                    e = mpmath.mpf(r.p) / r.q
                    worst = max(worst, float(ulp_error(np.array([g]), [e],
                                                       np.dtype(np.float64))[0]))
        if f.branches:
            want = next((b.diagnosis for b in f.branches if bool(b.condition.subs(subs))),
                        f.otherwise[0])
            worst = max(worst, 0.0 if got.diagnosis == want else math.inf)
    return Result(f.name, "int" if f.integer else "float64", worst, n,
                  0.0 if f.integer else 0.5)


#: Drop probabilities whose q = 1 - p is exact in float32 and float64, so that the
#: kernel's q and the exact q agree and mask decisions are comparable.
EXACT_P = (0.0, 0.125, 0.25, 0.5, 0.75, 0.9375)


def mask_reference(f: MaskedElementwise, seed: int, indices) -> list[sp.Rational]:
    """The mask's uniforms u(seed, index), evaluated exactly by SymPy (bitops nodes)."""
    m = f.mask
    symbols = m.step_symbols()
    keys = {symbols[k]: sp.Integer(int(e.subs(m.seed, seed)) % 2**64)
            for k, e in m.key.items()}
    out = []
    for i in indices:
        values = {**keys, m.index: sp.Integer(int(i))}
        for k, e in m.steps.items():  # in order: each step uses the earlier ones
            values[symbols[k]] = sp.Integer(int(e.xreplace(values)) % 2**64)
        out.append(sp.Rational(m.uniform.xreplace(values)))
    return out


def verify_masked(f: MaskedElementwise, kernel, dtype, rng, n) -> Result:
    """Outputs against the formula in mpmath given the mask; the mask against the hash
    evaluated exactly by SymPy at sampled indices. Tolerance 0.5 ULP: each output is
    one correctly rounded operation of exact values (q is exact for EXACT_P)."""
    worst = 0.0
    dtype = np.dtype(dtype)
    x = random_values(rng, n, dtype)
    arg_syms = [a.symbol for a in f.args]
    for trial, p in enumerate(EXACT_P):
        q = 1 - sp.Rational(p)
        for flag in (True, False):
            if f.mask is not None:
                seed = int(rng.integers(0, 2**63)) * (1 + trial % 2)
                y, mask = kernel(x, p, seed, **{f.flag: flag})
                idx = rng.choice(x.size, 48, replace=False)
                ref = mask_reference(f, seed, idx)
                if any(bool(u < q) != bool(mask[i]) for u, i in zip(ref, idx, strict=True)):
                    return Result(f.name, dtype.name, math.inf, n, 0.5)
            else:
                y, mask = kernel(x, p, **{f.flag: flag}), None
            ((_, expr),) = f.variants[flag].items()
            expr = expr.subs(f.let).subs(dict(zip(arg_syms, [sp.Rational(p), 0], strict=False)))
            syms = list(f.inputs) + ([f.mask.symbol] if f.mask is not None else [])
            fn = _mp(expr, syms)
            with mpmath.workdps(DIGITS):
                exact = [fn(mpmath.mpf(float(x[k])), *([int(mask[k])] if mask is not None
                                                        else [])) for k in range(x.size)]
            worst = max(worst, float(ulp_error(np.asarray(y), exact, dtype).max()))
    return Result(f.name, dtype.name, worst, n, 0.5)


def probability_values(rng: np.random.Generator, n: int, dtype: np.dtype,
                       endpoints: bool = True) -> np.ndarray:
    """Probabilities: the endpoints (where logs diverge), values near 0 and near 1, a bulk."""
    info = np.finfo(dtype)
    edges = [float(info.smallest_subnormal), float(info.tiny), 1e-30, 1e-8, 0.5,
             1 - float(info.epsneg), 1 - 1e-6] + ([0.0, 1.0] if endpoints else [])
    small = 10.0 ** rng.uniform(-30, 0, n // 3)
    vals = np.concatenate([edges, small, 1 - small, rng.uniform(0, 1, n - 2 * (n // 3))])
    vals = vals.astype(dtype)
    return vals if endpoints else vals[(vals > 0) & (vals < 1)]


def _batch_sample(domain: str, rng, size: int, dtype, elementwise: bool) -> np.ndarray:
    """size inputs of a domain; reductions draw finite logits up to 1e4 in magnitude
    (one inf or nan would make the whole sum inf or nan and hide every other term)."""
    if domain == "probability":
        vals = probability_values(rng, size, dtype, endpoints=not elementwise)
    elif elementwise:
        vals = np.concatenate([edge_values(dtype), random_values(rng, size, dtype)])
    else:
        vals = random_values(rng, size, dtype)
        vals = np.concatenate([[-1e4, 1e4, -745.0, 745.0, 40.0, -40.0, 0.0], vals])
        vals = vals[np.abs(vals) <= 1e4].astype(dtype)
    if elementwise:
        return vals
    return rng.permutation(vals)[:size] if size else vals[:0]


def _mp_value(fn, args):
    """fn(*args) in mpmath, at a precision that more digits do not change; a pole (1/0)
    is reported as None.

    The defined form of a cost can need thousands of digits (log(1 - 1/(1 + exp(-l)))
    at l = 1e4 is log(1 - (1 - 1e-4343))), which no fixed precision covers: the
    value is re-evaluated with DIGITS more digits, then with doubled precision, until
    two evaluations agree; an infinite or nan value must survive up to MAX_DIGITS.
    """
    dps = mpmath.mp.dps
    try:
        prev = fn(*args)
        dps += DIGITS
        while True:
            with mpmath.workdps(dps):
                cur = fn(*args)
            if not mpmath.isfinite(cur):
                if dps > MAX_DIGITS:
                    return cur
            elif mpmath.isfinite(prev) and abs(cur - prev) <= abs(cur) * mpmath.mpf(10) ** -DIGITS:
                return +cur
            prev, dps = cur, 2 * dps
    except ZeroDivisionError:
        return None


def verify_batch_reduction(f: BatchReduction, kernel, dtype, rng, n) -> Result:
    """Random batches of unrelated lengths (crossing block boundaries) against the exact
    sums of the defined summands in mpmath; the error is in ULPs of the kernel's dtype."""
    dt = np.dtype(dtype)
    worst = 0.0
    trials = [(1, 1), (7, 3), (n, n // 3 + 1), (9000, 50)]
    for sizes in trials:
        data = {}
        for b, size in zip(f.batches, sizes * len(f.batches), strict=False):
            for x in b.inputs:
                data[x] = _batch_sample(f.domains.get(x.name, "real"), rng, size, dt, False)
        got = kernel(*[data[x] for x in f.inputs])
        got = got if isinstance(got, tuple) else (got,)
        with mpmath.workdps(reference_digits(dt)):
            values = {b.count: len(data[b.inputs[0]]) for b in f.batches}
            for term, sym in zip(f.sums.values(), f.sum_symbols(), strict=True):
                xs = sorted(term.free_symbols, key=sp.default_sort_key)
                fn = _mp(term, xs)
                values[sym] = mpmath.fsum(_mp_value(fn, [_mpf(float(data[x][i])) for x in xs])
                                          for i in range(len(data[xs[0]])))
            for expr, g in zip(f.outputs.values(), got, strict=True):
                syms = sorted(values, key=sp.default_sort_key)
                exact = _mp(expr, syms)(*[values[s] for s in syms])
                worst = max(worst, float(ulp_error(np.array([g]), [exact], dt)[0]))
    return Result(f.name, dt.name, worst, len(trials), TOLERANCE_ULP["batch_reduction"])


def verify_batch_map(f: BatchMap, kernel, dtype, rng, n) -> Result:
    """Every element of every output against the derived expression in mpmath. At a
    pole of the expression (a probability of exactly 0 or 1) the kernel must give inf."""
    dt = np.dtype(dtype)
    data = {}
    for b in f.batches:
        for x in b.inputs:
            data[x] = _batch_sample(f.domains.get(x.name, "real"), rng, n, dt, True)
    got = kernel(*[data[x] for x in f.inputs])
    got = got if isinstance(got, tuple) else (got,)
    counts = {b.count: len(data[b.inputs[0]]) for b in f.batches}
    errs = []
    with mpmath.workdps(reference_digits(dt)):
        for (name, expr), g in zip(f.outputs.items(), got, strict=True):
            xs = list(f.batches[f.output_batch(name)].inputs)
            cs = sorted(counts, key=sp.default_sort_key)
            fn = _mp(expr, xs + cs)
            exact = [_mp_value(fn, [_mpf(float(data[x][i])) for x in xs] +
                               [mpmath.mpf(counts[c]) for c in cs]) for i in range(len(g))]
            if len(xs) == 1:  # at +-inf the reference is the limit (exp(l)/(1 + exp(l)) -> 1)
                at = expr.subs(counts)
                lims = {v: mpmath.mpf(sp.N(sp.limit(at, xs[0], v), DIGITS))
                        for v in (sp.oo, -sp.oo) if sp.limit(at, xs[0], v).is_finite}
                for i, v in enumerate(data[xs[0]].tolist()):
                    if math.isinf(v) and (sp.oo if v > 0 else -sp.oo) in lims:
                        exact[i] = lims[sp.oo if v > 0 else -sp.oo]
            poles = np.array([e is None for e in exact])
            if poles.any() and not np.all(np.isinf(g[poles])):
                errs.append(np.array([math.inf]))
            errs.append(ulp_error(g[~poles], [e for e in exact if e is not None], dt))
    return Result(f.name, dt.name, float(max(e.max(initial=0.0) for e in errs)), n,
                  TOLERANCE_ULP["batch_map"])


def network_reference(net: Network, arrays: dict[str, np.ndarray], df: np.ndarray,
                      digits: int = DIGITS) -> dict[str, np.ndarray]:
    """f and the gradients of sum(df * f), in mpmath, from the network's *definition*.

    Independent of the derived chain: the forward steps are expanded into one scalar
    SymPy expression per sample (explicit small matrices), SymPy differentiates it with
    respect to every input and weight entry, and mpmath evaluates it. Returns arrays of
    mpf, keyed by the kernels' names (f, dX, dW1, ..., dw).
    """
    syms = net.symbols()
    args = {net.sample: arrays[net.input][0][:, None]} | {
        n: (a[:, None] if a.ndim == 1 else a) for n, a in arrays.items() if n != net.input}
    explicit, params = {}, {}
    for name, a in args.items():
        m = sp.ImmutableMatrix(*a.shape, lambda i, j, n=name: sp.Symbol(f"{n}_{i}_{j}"))
        explicit[syms[name]] = m
        params[name] = list(m)
    for name, e in net.steps().items():
        target = syms.get(name, sp.MatrixSymbol(name, 1, 1))
        if isinstance(e, ElementwiseApplyFunction):  # (SymPy would apply the function to
            # a 1x1 matrix as a whole: erf(Matrix([[z]])))
            explicit[target] = explicit[e.expr].applyfunc(e.function)
        else:
            explicit[target] = sp.ImmutableMatrix(e.xreplace(explicit).doit())
    f = explicit[sp.MatrixSymbol(net.output, 1, 1)][0, 0]
    order = [s for n in args for s in params[n]]
    outs = {net.output: [f]} | {"d" + (net.input if n == net.sample else n):
                                [sp.diff(f, s) for s in params[n]] for n in args}
    fn = sp.lambdify(order, [e for v in outs.values() for e in v], modules="mpmath")
    X = arrays[net.input]
    result = {net.output: np.empty(X.shape[0], object), "d" + net.input: np.empty(X.shape, object)}
    result |= {"d" + n: np.zeros(arrays[n].shape, object) for n in args if n != net.sample}
    with mpmath.workdps(digits):
        for i in range(X.shape[0]):
            point = {net.sample: X[i][:, None]} | {n: a for n, a in args.items()
                                                   if n != net.sample}
            vals = fn(*[mpmath.mpf(float(v)) for n in args for v in point[n].ravel()])
            k = 0
            for name, exprs in outs.items():
                got = np.array(vals[k:k + len(exprs)], object)
                k += len(exprs)
                if name == net.output:
                    result[name][i] = got[0]
                elif name == "d" + net.input:
                    result[name][i] = got * mpmath.mpf(float(df[i]))
                else:
                    result[name] += got.reshape(result[name].shape) * mpmath.mpf(float(df[i]))
    return result


def network_bound(net: Network, sizes: list[int], dtype) -> float:
    """Normwise error bound, in units of the largest exact entry of an output array.

    Each entry is a chain of at most L + 1 dot products of length <= n_l (each within
    n_l u of its terms) and per layer a few correctly rounded elementwise operations
    (the activation and its derivative: <= 4 ULP, as for the elementwise kernels). With
    weights and inputs of order one, every term is of the order of the largest entry."""
    return (sum(sizes) + 4 * (len(net.layers) + 1)) * float(np.finfo(dtype).eps)


def verify_network(f: Network | NetworkGradient, kernel, dtype, rng) -> Result:
    """Small random networks (widths 1 to 4) against network_reference."""
    net = f if isinstance(f, Network) else f.network
    dtype = np.dtype(dtype)
    worst = 0.0
    trials = 4
    for trial in range(trials):
        sizes = [int(v) for v in rng.integers(1, 5, len(net.layers) + 1)]
        m = [1, 2, 5, 3][trial]
        arrays = {net.input: rng.standard_normal((m, sizes[0]))}
        for k, ly in enumerate(net.layers, start=1):
            arrays[ly.weight] = rng.standard_normal((sizes[k], sizes[k - 1]))
            if ly.bias is not None:
                arrays[ly.bias] = rng.standard_normal(sizes[k])
        arrays[net.readout] = rng.standard_normal(sizes[-1])
        arrays = {n: a.astype(dtype) for n, a in arrays.items()}
        df = rng.standard_normal(m).astype(dtype)
        exact = network_reference(net, arrays, df)
        if isinstance(f, Network):
            got = {net.output: kernel(*arrays.values())}
        else:
            got = dict(zip(f.results, kernel(*arrays.values(), df), strict=True))
        for name, g in got.items():
            ref = exact[name]
            scale = float(max(abs(v) for v in ref.ravel())) or 1.0
            err = max(float(abs(mpmath.mpf(float(a)) - r)) for a, r in
                      zip(g.ravel(), ref.ravel(), strict=True))
            worst = max(worst, err / (network_bound(net, sizes, dtype) * scale))
    return Result(f.name, dtype.name, worst, trials, 1.0)


def verify(formulas: list[Formula], module: ModuleType, dtypes=(np.float64, np.float32),
           n: int = 2000, seed: int = 0, names: list[str] | None = None,
           conditioned: bool = False) -> list[Result]:
    """Verify every formula's kernel in ``module`` (only those in ``names`` if given;
    a derived kernel still finds its forward formula among ``formulas``), per dtype.
    ``conditioned``: the formulas are a user's, whose elementwise kernels are all held
    to the tolerance times the formula's condition number."""
    by_name = {f.name: f for f in formulas}
    results = []
    for f in formulas:
        if names and f.name not in names:
            continue
        kernel = getattr(module, f.name)
        if isinstance(f, ScalarFunction):  # no dtypes: Python ints and floats
            results.append(verify_scalar(f, kernel, np.random.default_rng(seed)))
            continue
        for dtype in dtypes:
            rng = np.random.default_rng(seed)
            if isinstance(f, Elementwise) and f.outputs:
                results.append(verify_elementwise(f, kernel, by_name, dtype, rng, n,
                                                  conditioned))
            elif isinstance(f, Elementwise):
                results.append(verify_update(f, kernel, dtype, rng, n))
            elif isinstance(f, Reduction):
                results.append(verify_reduction(f, kernel, dtype, rng, n))
            elif isinstance(f, BatchReduction):
                results.append(verify_batch_reduction(f, kernel, dtype, rng, n))
            elif isinstance(f, BatchMap):
                results.append(verify_batch_map(f, kernel, dtype, rng, n))
            elif isinstance(f, Batch | BatchGradient):
                results.append(verify_batch(f, kernel, by_name, dtype, rng))
            elif isinstance(f, Correlation | CorrelationGradient):  # (before Contraction)
                results.append(verify_correlation(f, kernel, dtype, rng))
            elif isinstance(f, Contraction):
                results.append(verify_contraction(f, kernel, dtype, rng, n))
            elif isinstance(f, MaskedElementwise):
                results.append(verify_masked(f, kernel, dtype, rng, n))
            elif isinstance(f, Window | WindowGradient):
                results.append(verify_window(f, kernel, by_name, dtype, rng))
            elif isinstance(f, Network | NetworkGradient):
                results.append(verify_network(f, kernel, dtype, rng))
            elif isinstance(f, AxisReduction):
                from .verify_axis import verify_axis

                results.append(verify_axis(f, kernel, by_name, dtype, rng))
    return results
