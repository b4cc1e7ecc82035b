"""Signed zeros as the formula gives them (issue 17, item 8).

A factored polynomial must not carry a leading negation: -(y - 1)*(y + 1) is -0.0 at
y = 1 where 1 - y**2 (and PyTorch) give +0.0.
"""

import math

import numpy as np
import pytest
import sympy as sp
from conftest import sizes

from symdl.backends.numba.lowering import numba_code
from symdl.stable import stabilize


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("serial", [True, False])
def test_tanh_backward_zero_has_the_formulas_sign(kernels, dtype, serial):
    n = sizes("activations")[0 if serial else 1]
    y = np.resize(np.array([1.0, -1.0, 1.0, -1.0], dtype), n)
    dy = np.resize(np.array([2.0, 2.0, -2.0, -2.0], dtype), n)
    got = kernels.tanh_backward(y, dy)
    # dy*(1 - y**2) in IEEE arithmetic: 1 - 1 is +0, so the sign is dy's.
    expected_sign = np.where(dy > 0, 1.0, -1.0)
    assert np.all(got == 0)
    assert np.array_equal(np.copysign(1.0, got), expected_sign)


def test_tanh_backward_zero_matches_torch(kernels):
    torch = pytest.importorskip("torch")
    y = np.array([1.0, -1.0, 1.0, -1.0])
    dy = np.array([2.0, 2.0, -2.0, -2.0])
    expected = torch.ops.aten.tanh_backward(torch.from_numpy(dy), torch.from_numpy(y)).numpy()
    got = kernels.tanh_backward(y, dy)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


@pytest.mark.parametrize("poly", ["1 - y**2", "4 - y**2", "9 - y**2"])
def test_factored_polynomial_keeps_positive_zeros(poly):
    """The generator's rule, for any such polynomial (a user's formula too): at each
    root the printed form is +0.0 for dy = 1, like the polynomial itself."""
    y, dy = sp.symbols("y dy", real=True)
    expr = sp.sympify(poly, locals={"y": y})
    code = numba_code(stabilize(dy * expr))
    assert not code.startswith("-"), code
    for root in sp.solve(expr, y):
        value = eval(code, {"T": float, "math": math}, {"y": float(root), "dy": 1.0})
        assert value == 0 and math.copysign(1.0, value) == 1.0, (code, root)


def test_tanh_backward_zero_sign_in_the_streaming_core(kernels, monkeypatch):
    # float64 outputs above STREAM_BYTES take a third core (non-temporal stores).
    import importlib

    module = importlib.import_module("symdl.kernels.activations")
    monkeypatch.setattr(module, "STREAM_BYTES", 0)
    n = sizes("activations")[1]
    y = np.resize(np.array([1.0, -1.0]), n)
    dy = np.full(n, 2.0)
    got = kernels.tanh_backward(y, dy)
    assert np.all(got == 0) and not np.signbit(got).any()
