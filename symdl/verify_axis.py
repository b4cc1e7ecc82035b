"""Verification of ``AxisReduction`` kernels against their formulas in mpmath.

The reference evaluates the formula as written, row by row, at 50 digits: each
statistic over the row (a sum, mean, max or min of its term), then the outputs. A
derived backward kernel is also checked against the forward formula itself: the
directional derivative of sum(dy * y) along a random direction, by a central
difference in mpmath at 100 digits with a step of 1e-40, must equal the derived
gradient's dot product with that direction to 1e-30 (relative): that checks SymPy's
derivation, not only the printing of the derived formula.

Errors are normwise per row: in ULPs of the largest magnitude in the row of the
output's terms (``symdl.verify._magnitude``: softmax's backward y (dy - sum dy y)
cancels by design), divided by the row's condition: how many such ULPs the exact
output moves when every input moves by one ULP of its own (random signs). A row
of LayerNorm whose spread is 1e-2 of its mean is ill-conditioned: rounding x - mu
alone moves its output by hundreds of ULPs, in any implementation. A statistic
sums n terms, each rounded; a naive sum of n terms errs by up to (n - 1) ULPs of
the sum of their magnitudes, and the backward kernel adds a second level of sums:
the tolerance is 4 + 2 n ULPs.
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from .formula_axis import AxisReduction
from .verify import DIGITS, Result, _magnitude

#: (rows, length along the axis) of the samples
SHAPES = [(4, 7), (3, 33)]


def _fn(expr: sp.Expr, syms: list[sp.Symbol]):
    return sp.lambdify(syms, expr, modules="mpmath")


def row_values(f: AxisReduction, elems: dict, weights: dict, rows: dict, params: dict,
               magnitudes: bool = False) -> dict:
    """Every statistic and output of one row, in mpmath: per-element outputs as lists.
    With ``magnitudes``, each output's magnitude (the sum of its terms' magnitudes)."""
    n = len(next(iter(elems.values())))
    scalars = {**rows, **params, f.count.name: mpmath.mpf(n)}
    mags: dict[sp.Symbol, sp.Symbol] = {}
    for k, (op, term) in f.stats.items():
        per = [*f.inputs, *f.weights]
        syms = per + [sp.Symbol(s, real=True) for s in scalars]
        # (a max or min is itself in either mode: the element where it is attained
        # matters, for ties; a sum's magnitude is the sum of its terms' magnitudes)
        fn = _fn(_magnitude(term, mags) if magnitudes and op in ("sum", "mean") else term,
                 syms)
        vals = [fn(*[elems[s.name][j] if s in f.inputs else weights[s.name][j] for s in per],
                   *scalars.values()) for j in range(n)]
        if op in ("sum", "mean"):
            v = mpmath.fsum(abs(t) for t in vals) if magnitudes else mpmath.fsum(vals)
            scalars[k] = v / n if op == "mean" else v
        else:
            scalars[k] = (max if op == "max" else min)(vals)
        if magnitudes:
            mags[sp.Symbol(k, real=True)] = sp.Symbol(k, real=True)
    out = {}
    per = [*f.inputs, *f.weights]
    syms = per + [sp.Symbol(s, real=True) for s in scalars]
    for name, e in f.outputs.items():
        fn = _fn(_magnitude(e, mags) if magnitudes else e, syms)
        if name in f.element_outputs():
            out[name] = [fn(*[elems[s.name][j] if s in f.inputs else weights[s.name][j]
                              for s in per], *scalars.values()) for j in range(n)]
        else:
            out[name] = fn(*[mpmath.mpf(0)] * len(per), *scalars.values())
    return out


def _sample(f: AxisReduction, fwd: AxisReduction, rng, rows: int, n: int, dtype) -> dict:
    """Inputs spread over magnitudes row by row (logits over 1e3 in some rows)."""
    spread = np.array([1.0, 30.0, 1e3, 0.01])[np.arange(rows) % 4][:, None]
    arrays = {}
    for s in f.inputs:
        if s in fwd.inputs:
            a = rng.standard_normal((rows, n)) * spread + rng.uniform(-2, 2, (rows, 1))
            if fwd.domains.get(s.name) in ("probability", "nonnegative"):
                a = rng.uniform(0, 1, (rows, n))
        else:
            a = rng.standard_normal((rows, n))
        arrays[s.name] = a.astype(dtype)
    for s in f.row_inputs:
        arrays[s.name] = rng.standard_normal(rows).astype(dtype)
    for s in f.weights:
        arrays[s.name] = (rng.standard_normal(n) + 1).astype(dtype)
    return arrays


def _mp_row(arrays: dict, f: AxisReduction, r: int, nudge=None) -> tuple[dict, dict, dict]:
    """Row r's values in mpmath; with ``nudge`` (a function of a value, giving a factor),
    each value moved by that factor."""
    def mp(v):
        return mpmath.mpf(float(v)) * (nudge() if nudge else 1)

    elems = {s.name: [mp(v) for v in arrays[s.name][r]] for s in f.inputs}
    weights = {s.name: [mp(v) for v in arrays[s.name]] for s in f.weights}
    rows = {s.name: mp(arrays[s.name][r]) for s in f.row_inputs}
    return elems, weights, rows


def _condition(f: AxisReduction, arrays: dict, r: int, params: dict, exact: dict,
               units: dict, rng, dtype) -> dict:
    """Per output: how many ``units`` the exact row moves when each input moves by one
    ULP (relative eps/2, random signs); at least 1."""
    eps = mpmath.mpf(float(np.finfo(dtype).eps)) / 2
    moved = row_values(f, *_mp_row(arrays, f, r, lambda: 1 + eps * rng.choice([-1, 1])),
                       params)
    out = {}
    for o, v in exact.items():
        a = v if isinstance(v, list) else [v]
        b = moved[o] if isinstance(moved[o], list) else [moved[o]]
        change = max(float(abs(x - y)) for x, y in zip(a, b, strict=True))
        out[o] = max(1.0, change / units[o])
    return out


def _loss(fwd: AxisReduction, elems, weights, rows, params, grads: dict) -> mpmath.mpf:
    """sum over the row of each output times its incoming gradient."""
    out = row_values(fwd, elems, weights, rows, params)
    total = mpmath.mpf(0)
    for name, v in out.items():
        if isinstance(v, list):
            total += mpmath.fsum(g * y for g, y in zip(grads[name], v, strict=True))
        else:
            total += grads[name] * v
    return total


def check_derivation(f: AxisReduction, fwd: AxisReduction, arrays: dict, params: dict,
                     r: int, rng) -> float:
    """Relative difference between the derived gradient and a central difference of the
    forward formula in mpmath (at row r)."""
    with mpmath.workdps(100):
        elems, weights, rows = _mp_row(arrays, f, r)
        grads = {o: elems[f"d{o}"] if o in fwd.element_outputs() else rows[f"d{o}"]
                 for o in fwd.outputs}
        dirs = {s.name: [mpmath.mpf(float(v)) for v in rng.standard_normal(len(
            elems[fwd.inputs[0].name]))] for s in (*fwd.inputs, *fwd.weights)}
        # (a per-row input, batch norm's gamma along axis 0, moves by one number)
        row_dirs = {s.name: mpmath.mpf(float(rng.standard_normal())) for s in fwd.row_inputs}
        h = mpmath.mpf(10) ** -40

        def moved(sign):
            e = {k: [a + sign * h * d for a, d in zip(v, dirs[k], strict=True)]
                 if k in dirs else v for k, v in elems.items()}
            w = {k: [a + sign * h * d for a, d in zip(v, dirs[k], strict=True)]
                 for k, v in weights.items()}
            r = {k: rows[k] + sign * h * d for k, d in row_dirs.items()}
            return _loss(fwd, {s.name: e[s.name] for s in fwd.inputs}, w, r, params, grads)

        numeric = (moved(1) - moved(-1)) / (2 * h)
        derived = row_values(f, elems, weights, rows, params)
        analytic = mpmath.fsum(
            mpmath.fsum(g * d for g, d in zip(derived[f"d{k}"], dirs[k], strict=True))
            for k in dirs) + mpmath.fsum(derived[f"d{k}"] * d for k, d in row_dirs.items())
        return float(abs(numeric - analytic) / max(abs(numeric), mpmath.mpf(1e-30)))


def verify_axis(f: AxisReduction, kernel, formulas: dict, dtype, rng) -> Result:
    """The kernel against its formula (and a derived one against its forward's)."""
    dtype = np.dtype(dtype)
    fwd = formulas.get(f.derived_from, f) if f.derived_from else f
    params = {p.name: p.default for p in f.params}
    worst, samples, tol = 0.0, 0, 0.0
    for rows, n in SHAPES:
        arrays = _sample(f, fwd, rng, rows, n, dtype)
        got = kernel(*[arrays[a] for a in f.argument_names()[:len(
            f.argument_names()) - len(f.params)]], **params)
        got = dict(zip(f.outputs, got if isinstance(got, tuple) else (got,), strict=True))
        tol = max(tol, 4.0 + 2 * n)
        mp_params = {k: mpmath.mpf(v) for k, v in params.items()}
        summed = {o: np.zeros(n) for o in f.summed}
        summed_mag = {o: np.zeros(n) for o in f.summed}
        with mpmath.workdps(DIGITS):
            for r in range(rows):
                elems, weights, row_in = _mp_row(arrays, f, r)
                exact = row_values(f, elems, weights, row_in, mp_params)
                mags = row_values(f, elems, weights, row_in, mp_params, magnitudes=True)
                units = {}
                for o, m in mags.items():
                    scale = max(float(abs(t)) for t in (m if isinstance(m, list) else [m]))
                    units[o] = float(np.spacing(dtype.type(scale))) or float(
                        np.finfo(dtype).smallest_subnormal)
                cond = _condition(f, arrays, r, mp_params, exact, units, rng, dtype)
                for o, v in exact.items():
                    if o in f.summed:
                        summed[o] += np.array([float(t) for t in v])
                        summed_mag[o] += np.abs([float(t) for t in mags[o]])
                        continue
                    vals = v if isinstance(v, list) else [v]
                    g = got[o][r] if np.ndim(got[o]) else got[o]
                    for a, e in zip(np.atleast_1d(g), vals, strict=True):
                        err = float(abs(mpmath.mpf(float(a)) - e)) / units[o]
                        worst = max(worst, err / cond[o])
                samples += n
            for o in f.summed:
                unit = np.spacing(dtype.type(np.max(summed_mag[o]))) * rows
                worst = max(worst, float(np.max(np.abs(got[o] - summed[o]))) / float(unit))
        if f.derived_from:
            rel = check_derivation(f, fwd, arrays, mp_params, 0, rng)
            if not rel < 1e-30:
                worst = max(worst, np.inf)
    return Result(f.name, dtype.name, worst, samples, tol)
