"""The vectorizable exp, tanh and log1p (symdl/vecmath.py): the polynomial's scheme and their
accuracy against mpmath."""

import mpmath
import numba
import numpy as np
import pytest
import sympy as sp

from symdl.vecmath import estrin


def _vectorizable(name, x):
    """The runtime's vectorizable function ``name`` (_vexp, _vtanh) at each element of
    x, called from a compiled loop, as a kernel calls it."""
    function = getattr(__import__("symdl.kernels._runtime", fromlist=[name]), name)

    @numba.njit(fastmath={"contract"}, error_model="numpy")  # (a kernel's flags)
    def evaluate(x, y):
        for i in range(x.size):
            y[i] = function(x[i])

    y = np.empty_like(x)
    evaluate(x, y)
    return y


def _worst_ulp(name, reference, x):
    """The largest error of the runtime's function ``name`` at the elements of x, in
    units of the spacing of x's dtype at the exact value (mpmath, 100 bits; at an exact
    0, the smallest subnormal)."""
    y = _vectorizable(name, x)
    tiny = float(np.finfo(x.dtype).smallest_subnormal)
    mpmath.mp.prec = 100
    worst = 0.0
    for xv, yv in zip(x.tolist(), y.tolist(), strict=True):
        ref = reference(mpmath.mpf(xv))
        spacing = float(np.spacing(x.dtype.type(abs(float(ref))))) if ref != 0 else tiny
        worst = max(worst, float(abs(mpmath.mpf(yv) - ref)) / spacing)
    return worst


@pytest.mark.parametrize("degree", range(0, 15))
def test_estrin_is_the_polynomial(degree):
    r = sp.Symbol("r", real=True)
    coeffs = [sp.Rational(1, j + 2) for j in range(degree + 1)]
    powers, poly = estrin(coeffs, r)
    for sym, value in reversed(powers):  # (r8 = r4**2, then r4 = r2**2, r2 = r**2)
        poly = poly.subs(sym, value)
    assert sp.expand(poly - sum(c * r**j for j, c in enumerate(coeffs))) == 0
    # About log2(degree) levels of squares, one statement each.
    assert len(powers) == max(0, (degree).bit_length() - 1)


@pytest.mark.parametrize("dtype, lo, hi", [(np.float32, -87, 88), (np.float64, -708, 709)])
def test_exp_within_one_and_a_half_ulp(dtype, lo, hi):
    # The result is 1 + (r + r**2*tail) scaled by powers of two (exact): the final sum
    # rounds once (0.5 ulp); the inner roundings are scaled down by |r| <= ln2/2, the
    # reduced argument r carries at most about half an ulp of r, and the fitted tail
    # polynomial at most 0.18 ulp. Measured 1.03 ulp (float64) and 1.01 ulp (float32).
    x = np.linspace(lo, hi, 20_001).astype(dtype)
    y = _vectorizable("_vexp", x)
    mpmath.mp.prec = 100
    worst = 0.0
    for xv, yv in zip(x.tolist(), y.tolist(), strict=True):
        ref = mpmath.exp(mpmath.mpf(xv))
        worst = max(worst, float(abs(mpmath.mpf(yv) - ref) / float(np.spacing(dtype(float(ref))))))
    assert worst <= 1.5


@pytest.mark.parametrize("dtype, lo", [(np.float32, -120.0), (np.float64, -800.0)])
def test_exp_of_a_nonpositive_argument_is_exp_bit_for_bit(dtype, lo):
    # _vexp_nonpos (exp(-|x|) in the logistic kernels) scales by one power of two and a
    # constant; _vexp by two powers of two. Both round once, at the last product, so
    # they agree everywhere, subnormal results (below about -708 and -87) included.
    rng = np.random.default_rng(5)
    x = np.concatenate([np.linspace(lo, 0, 200_001),
                        -np.exp(rng.uniform(-60, np.log(-lo), 100_000)),
                        [0.0, -0.0, -np.inf, np.nan]]).astype(dtype)
    ours, general = _vectorizable("_vexp_nonpos", x), _vectorizable("_vexp", x)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    assert np.array_equal(ours.view(bits), general.view(bits))
    assert ((ours > 0) & (ours < np.finfo(dtype).tiny)).sum() > 1000  # subnormals tested


@pytest.mark.parametrize("dtype, top", [(np.float32, 12.0), (np.float64, 25.0)])
def test_tanh_within_two_and_a_half_ulp(dtype, top):
    # tanh = (1 - e)/(1 + e) with e = 2**k*(1 + expm1(r)), numerator and denominator each
    # one rounding of their exact value. expm1(r) carries about exp's 1.1 ulp, which the
    # numerator keeps where it is -expm1(r) (k = 0); the denominator and the quotient
    # round once each (0.5 ulp). Measured 1.91 ulp (float64) and 1.85 ulp (float32);
    # -m/(m + 2) from a rounded m = e - 1 gave 2.68 and 2.54.
    rng = np.random.default_rng(7)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    x = np.concatenate([np.linspace(-top, top, 20_001), rng.uniform(-1, 1, 20_000),
                        np.exp(rng.uniform(np.log(tiny), np.log(top), 10_000)),
                        [tiny, 1e-30, 0.17, 0.22, 0.625, 1.0, 9.0, 20.0, 1e30]]).astype(dtype)
    assert _worst_ulp("_vtanh", mpmath.tanh, x) <= 2.5
    # Signed zeros, the limits and NaN.
    out = _vectorizable("_vtanh", np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype))
    assert np.array_equal(np.signbit(out[:2]), [False, True]) and not out[:2].any()
    assert out[2] == 1 and out[3] == -1 and np.isnan(out[4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_within_two_ulp(dtype):
    # log(m) = f - (f**2/2 - s*(f**2/2 + R)) with f = m - 1 exact: the quotient s only
    # scales the correction. With the rounding of 1 + x made up by (x - (u - 1))/u and
    # k*ln2 added in two exact-ish pieces, the sums round about four times, each scaled
    # down by the terms' size. Measured 1.38 ulp (float32) and 1.27 ulp (float64);
    # log(m) = s*(2 + series) gave 2.50 and 2.69 (and +0 for -0).
    rng = np.random.default_rng(3)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    x = np.concatenate([rng.uniform(-1, 1, 20_000), np.exp(rng.uniform(-20, 80, 10_000)),
                        -np.exp(rng.uniform(np.log(tiny) + 1, 0, 5_000)) * 0.999,
                        np.linspace(-0.99, 3, 10_001)]).astype(dtype)
    assert _worst_ulp("_vlog1p", mpmath.log1p, x) <= 2.0
    out = _vectorizable("_vlog1p", np.array([0.0, -0.0, -1.0, -2.0, np.inf, np.nan], dtype))
    assert np.array_equal(np.signbit(out[:2]), [False, True]) and not out[:2].any()
    assert out[2] == -np.inf and np.isnan(out[3]) and out[4] == np.inf and np.isnan(out[5])
