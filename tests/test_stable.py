"""Stable rewrites compute the same function as the definition, in high precision."""

import mpmath
import pytest
import sympy as sp

from symdl.stable import stabilize

x = sp.Symbol("x", real=True)
y = sp.Symbol("y", real=True)

CASES = [
    1 / (1 + sp.exp(-x)),
    1 / (1 + sp.exp(-2 * x)),
    sp.log(1 + sp.exp(x)),
    -sp.log(1 + sp.exp(-x)),
    1 - y**2,
    y * (1 - y),
    1 - sp.exp(-y),
    sp.log(1 / (1 + sp.exp(-x))),  # log-sigmoid
    sp.log(1 - 1 / (1 + sp.exp(-x))),  # log(1 - sigmoid)
    -sp.exp(x) / (1 + sp.exp(x)),
    # Derivatives of logistic curves and GELU's forms (issue 18's user activations).
    x * sp.exp(-x) / (1 + sp.exp(-x)) ** 2 + 1 / (1 + sp.exp(-x)),
    sp.exp(-x / 2) / (2 * (1 + sp.exp(-x / 2)) ** 2),
    sp.exp(2 * x) / (1 + sp.exp(x)) ** 3,
    x / 2 * (1 + sp.erf(x / sp.sqrt(2))),
    sp.erf(x) / 2 + sp.Rational(1, 2),
    3 - 3 * sp.erf(x),
    (1 + sp.tanh(x / 3)) / 2,
    1 - sp.tanh(2 * x) ** 2,
    sp.Min(1, sp.Max(0, x / 6 + sp.Rational(1, 2))),
]


@pytest.mark.parametrize("expr", CASES, ids=str)
def test_rewrite_is_the_same_function(expr):
    s = stabilize(expr)
    (v,) = expr.free_symbols
    f = sp.lambdify([v], expr, "mpmath")
    g = sp.lambdify([v], s, "mpmath")
    # 100 digits: the definitions cancel (1 - sigmoid(30) loses 13 digits), the rewrites not.
    with mpmath.workdps(100):
        for t in [-50, -3.5, -1, -1e-9, 0, 1e-9, 0.3, 0.99, 2, 30]:
            a, b = f(mpmath.mpf(t)), g(mpmath.mpf(t))
            assert abs(a - b) <= mpmath.mpf(10) ** -50 * (1 + abs(a))


def test_sigmoid_rewrite_never_overflows():
    printed = str(stabilize(1 / (1 + sp.exp(-x))))
    assert "exp(-Abs(x))" in printed


def test_difference_of_squares_is_factored():
    # Factored, with the sign in the factor that is 0 at y = 1 (not -(y - 1)*(y + 1),
    # which is -0.0 there): the same polynomial.
    assert stabilize(1 - y**2) == sp.Mul(1 - y, 1 + y)
    assert sp.expand(stabilize(1 - y**2) - (1 - y**2)) == 0


def test_tails_no_longer_cancel_or_overflow():
    """The forms SymPy derives are inf/inf or 1 - 1 in the tails; the rewrites are not."""
    for expr, at, exact in [
        (x * sp.exp(-x) / (1 + sp.exp(-x)) ** 2, -800, -800 * mpmath.exp(-800)),
        (1 + sp.erf(x), -25, mpmath.erfc(25)),
        (1 - sp.tanh(x) ** 2, 300, mpmath.sech(300) ** 2),
    ]:
        with mpmath.workdps(1000):
            exact = mpmath.mpf(exact)
        value = float(sp.lambdify([x], stabilize(expr), "math")(float(at)))
        assert abs(value - float(exact)) <= 1e-14 * abs(float(exact)), (expr, value)


def test_hard_sigmoid_kink_is_exact():
    f = sp.lambdify([x], stabilize(x / 6 + sp.Rational(1, 2)), "math")
    assert f(-3.0) == 0.0
