"""The vectorizable exp (symdl/vecmath.py): its polynomial's scheme and its accuracy
against mpmath."""

import mpmath
import numba
import numpy as np
import pytest
import sympy as sp

from symdl.vecmath import estrin


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
    # The result is 1 + r*(1 + r*tail) scaled by powers of two (exact): the final fused
    # step rounds once (0.5 ulp); the inner roundings are scaled down by |r| <= ln2/2,
    # and the reduced argument r carries at most about half an ulp of r. Measured 1.10
    # ulp in both formats (the tail in Horner's scheme gives the same).
    activations = __import__("symdl.kernels.activations", fromlist=["_vexp"])

    @numba.njit
    def evaluate(x, y):
        for i in range(x.size):
            y[i] = activations._vexp(x[i])

    x = np.linspace(lo, hi, 20_001).astype(dtype)
    y = np.empty_like(x)
    evaluate(x, y)
    mpmath.mp.prec = 100
    worst = 0.0
    for xv, yv in zip(x.tolist(), y.tolist(), strict=True):
        ref = mpmath.exp(mpmath.mpf(xv))
        worst = max(worst, float(abs(mpmath.mpf(yv) - ref) / float(np.spacing(dtype(float(ref))))))
    assert worst <= 1.5
