"""A window reduction whose derivative depends on the other elements of the window: L2
pooling, sqrt of the sum of squares over each window. SymPy's local derivative
v/sqrt(rho + v**2) uses rho, the others' sum; the backward folds each window for its
total, then spreads dy * v / sqrt(total). Checked against PyTorch's lp_pool2d (p = 2)
and by `symdl verify`.

Tolerance: float64 and float32 results against PyTorch in float64: a window of at most
9 squares summed (<= 9 roundings of the sum of their magnitudes), a square root and a
division: 16 ULPs of the largest value of the output (a normwise bound).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import generate_user_module

FORMULAS = '''"""L2 pooling: the root of the sum of squares over each window."""
import sympy as sp
from symdl.formula import Window

n, c, i, j, a, b = sp.symbols("n c i j a b", integer=True, nonnegative=True)
f, s, ext = sp.symbols("f s ext", integer=True, positive=True)
x = sp.IndexedBase("x")
y = sp.IndexedBase("y")
element = x[n, c, s * i + a, s * j + b]
l2pool2d = Window("l2pool2d", "Pooling", "L2 pooling", "sqrt of the sum of squares.",
                  output=y[n, c, i, j],
                  expr=sp.sqrt(sp.Sum(element ** 2, (a, 0, f - 1), (b, 0, f - 1))),
                  size=f, stride=s, extent=ext, out_size=sp.floor((ext - f) / s) + 1,
                  backward=True)
FORMULAS = [l2pool2d]
'''


@pytest.fixture(scope="module")
def K(tmp_path_factory):
    return generate_user_module(tmp_path_factory.mktemp("l2"), "user_l2.py", FORMULAS)


CASES = [(2, 2, (2, 3, 8, 8)), (3, 1, (2, 2, 7, 9)), (3, 2, (1, 2, 9, 7)),
         (2, 2, (2, 64, 16, 16))]  # the last one runs the parallel core


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("f", "s", "shape"), CASES)
def test_l2_pooling_and_its_gradient_match_pytorch(K, f, s, shape, dtype) -> None:
    rng = np.random.default_rng(f * 10 + s)
    x = rng.standard_normal(shape).astype(dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    y = torch.nn.functional.lp_pool2d(xt, 2, f, s)
    dy = rng.standard_normal(tuple(y.shape)).astype(dtype)
    y.backward(torch.tensor(dy.astype(np.float64)))
    ours, grad = K.l2pool2d(x, f, s), K.l2pool2d_backward(x, dy, f, s)
    assert ours.dtype == grad.dtype == dtype
    eps = np.finfo(dtype).eps
    assert np.max(np.abs(ours - y.detach().numpy())) <= 16 * eps * np.max(np.abs(ours))
    ref = xt.grad.numpy()
    assert np.max(np.abs(grad - ref)) <= 16 * eps * np.max(np.abs(ref))


def test_symdl_verify_passes_l2_pooling(K) -> None:
    directory = Path(K.__file__).parent.parent.parent
    r = subprocess.run([sys.executable, "-m", "symdl.cli", "verify", "--formulas",
                        "user_l2.py", "--out", "out"], cwd=directory, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(" ok") == 4, r.stdout
