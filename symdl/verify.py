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

from .formula import (
    Contraction,
    Elementwise,
    Formula,
    MaskedElementwise,
    Reduction,
    ScalarFunction,
)

DIGITS = 50


def reference_digits(dtype: np.dtype) -> int:
    """Working precision for references in dtype: 50 digits plus the decimal exponent of
    the smallest subnormal, so that a formula such as log(1 + exp(x)) keeps 50 good
    digits wherever its result is representable (1 + 1e-320 needs 320 digits)."""
    return DIGITS + int(-math.log10(float(np.finfo(dtype).smallest_subnormal))) + 1

#: Allowed max error in ULPs of the kernel's dtype, per formula kind. Elementwise
#: kernels are a few correctly-rounded operations (each <= 0.5 ULP) plus libm's exp,
#: log1p, tanh (<= 1 ULP each): 4 ULP bounds the sum. Sums of n terms may lose up to
#: log2(n) ULPs in the worst case with blocked summation; matvec checks against that.
TOLERANCE_ULP = {"elementwise": 4.0, "reduction": 4.0}


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
            errs[k] = 0.0 if float(e) == g else math.inf
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
    """Sample inputs; a backward kernel samples its y from the forward formula's image."""
    xs = np.concatenate([edge_values(dtype), random_values(rng, n, dtype)])
    if f.derived_from:
        fwd = formulas[f.derived_from]
        (x,) = fwd.inputs
        (fx,) = fwd.outputs.values()
        fmp = _mp(fx, [x])
        with mpmath.workdps(reference_digits(np.dtype(dtype))):
            ys = [float(fmp(_mpf(float(v)))) for v in xs]
        ys = np.array(ys, dtype=np.float64).astype(dtype)
        dys = np.concatenate([np.ones(len(edge_values(dtype))),
                              rng.standard_normal(len(xs) - len(edge_values(dtype)))])
        return [ys, dys.astype(dtype)]
    return [xs] + [random_values(rng, len(xs), dtype) for _ in f.inputs[1:]]


def verify_elementwise(f: Elementwise, kernel, formulas, dtype, rng, n) -> Result:
    args = _inputs_for(f, formulas, dtype, rng, n)
    params = {p.name: p.default for p in f.params}
    got = [kernel(*args, **params)] if len(f.outputs) == 1 else list(kernel(*args, **params))
    errs = []
    syms = list(f.inputs) + [p.symbol for p in f.params]
    with mpmath.workdps(reference_digits(np.dtype(dtype))):
        for expr, g in zip(f.outputs.values(), got, strict=True):
            fn = _mp(expr, syms)
            exact = [fn(*[_mpf(float(a[k])) for a in args],
                        *[mpmath.mpf(v) for v in params.values()]) for k in range(len(args[0]))]
            errs.append(ulp_error(np.asarray(g).ravel(), exact, np.dtype(dtype)))
    return Result(f.name, np.dtype(dtype).name, float(np.max(errs)), len(args[0]),
                  TOLERANCE_ULP["elementwise"])


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


def verify_contraction(f: Contraction, kernel, dtype, rng, n) -> Result:
    """Against the exact sum; tolerance: n ULPs of the sum of |terms| (the sum's bound)."""
    worst = 0.0
    eps = float(np.finfo(dtype).eps)
    for m_, n_ in [(1, 1), (3, 5), (17, 33), (64, 1000)]:
        A = rng.standard_normal((m_, n_)).astype(dtype)
        x = rng.standard_normal(n_).astype(dtype)
        got = kernel(A, x)
        with mpmath.workdps(DIGITS):
            for i in range(m_):
                terms = [mpmath.mpf(float(A[i, j])) * mpmath.mpf(float(x[j])) for j in range(n_)]
                exact = mpmath.fsum(terms)
                bound = n_ * eps * float(mpmath.fsum(abs(t) for t in terms)) or eps
                worst = max(worst, float(abs(mpmath.mpf(float(got[i])) - exact)) / bound)
    return Result(f.name, np.dtype(dtype).name, worst, 4, 1.0)


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
    keys = {sp.Symbol(k, integer=True, nonnegative=True): e.subs(m.seed, seed)
            for k, e in m.key.items()}
    keys = {k: sp.Integer(int(v) % 2**64) for k, v in keys.items()}
    return [sp.Rational(m.uniform.subs(keys).subs(m.index, int(i))) for i in indices]


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


def verify(formulas: list[Formula], module: ModuleType, dtypes=(np.float64, np.float32),
           n: int = 2000, seed: int = 0) -> list[Result]:
    """Verify every formula's kernel in ``module``, for each dtype."""
    by_name = {f.name: f for f in formulas}
    results = []
    for f in formulas:
        kernel = getattr(module, f.name)
        if isinstance(f, ScalarFunction):  # no dtypes: Python ints and floats
            results.append(verify_scalar(f, kernel, np.random.default_rng(seed)))
            continue
        for dtype in dtypes:
            rng = np.random.default_rng(seed)
            if isinstance(f, Elementwise) and f.outputs:
                results.append(verify_elementwise(f, kernel, by_name, dtype, rng, n))
            elif isinstance(f, Reduction):
                results.append(verify_reduction(f, kernel, dtype, rng, n))
            elif isinstance(f, Contraction):
                results.append(verify_contraction(f, kernel, dtype, rng, n))
            elif isinstance(f, MaskedElementwise):
                results.append(verify_masked(f, kernel, dtype, rng, n))
    return results
