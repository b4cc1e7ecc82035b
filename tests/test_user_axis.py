"""Reductions along any axis that a user writes (AxisReduction): softmax, log-softmax,
softmax cross-entropy, LayerNorm, RMSNorm and a Huber mean, with their SymPy-derived
backward kernels, generated through the CLI and checked against PyTorch autograd.

Tolerance: errors are measured in units of the dtype's epsilon times the largest
magnitude of the reference in the same row (the rounding of a sum of the row's
terms scales with that); a row here has at most 9 terms, and the worst case of a
naive sum of 9 terms plus an exp and a division is about 12 such units, so 16.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import generate_user_module

FORMULAS = '''"""Axis reductions a user writes."""
import sympy as sp
from symdl.formula import AxisReduction, Param

x, t = sp.symbols("x t", real=True)
gamma, beta = sp.symbols("gamma beta", real=True)
m, s, mu, var, tx, ms, h, st = sp.symbols("m s mu var tx ms h st", real=True)
eps = Param("eps", 1e-5, "positive", "added to the variance")
delta = Param("delta", 1.0, "positive", "Huber threshold")
S = "Axis"
softmax = AxisReduction("softmax", S, "Softmax", "exp(x) normalized along the axis.",
    inputs=(x,), stats={"m": ("max", x), "s": ("sum", sp.exp(x - m))},
    outputs={"y": sp.exp(x - m) / s}, backward=True)
log_softmax = AxisReduction("log_softmax", S, "Log-softmax", "log of softmax.",
    inputs=(x,), stats={"m": ("max", x), "s": ("sum", sp.exp(x - m))},
    outputs={"y": x - m - sp.log(s)}, backward=True)
cross_entropy = AxisReduction("softmax_cross_entropy", S, "Softmax cross-entropy",
    "Cross-entropy of target probabilities t and the softmax of logits x.",
    inputs=(x, t),
    stats={"m": ("max", x), "s": ("sum", sp.exp(x - m)), "tx": ("sum", t * x), "st": ("sum", t)},
    outputs={"loss": (sp.log(s) + m) * st - tx}, backward=True)
layer_norm = AxisReduction("layer_norm", S, "LayerNorm", "Normalized along the axis.",
    inputs=(x,), weights=(gamma, beta), params=(eps,),
    stats={"mu": ("mean", x), "var": ("mean", (x - mu) ** 2)},
    outputs={"y": (x - mu) / sp.sqrt(var + eps.symbol) * gamma + beta}, backward=True)
rms_norm = AxisReduction("rms_norm", S, "RMSNorm", "Scaled by the root mean square.",
    inputs=(x,), weights=(gamma,), params=(eps,), stats={"ms": ("mean", x ** 2)},
    outputs={"y": x / sp.sqrt(ms + eps.symbol) * gamma}, backward=True)
r = x - t
huber = sp.Piecewise((r ** 2 / 2, sp.Abs(r) <= delta.symbol),
                     (delta.symbol * (sp.Abs(r) - delta.symbol / 2), True))
huber_mean = AxisReduction("huber_mean", S, "Huber loss, mean", "Mean Huber loss.",
    inputs=(x, t), params=(delta,), stats={"h": ("mean", huber)}, outputs={"loss": h},
    backward=True)
rowmax = AxisReduction("rowmax", S, "Row max", "The largest element along the axis.",
    inputs=(x,), stats={"m": ("max", x)}, outputs={"top": m}, backward=True)
# Batch norm: the statistics along axis 0, gamma and beta one value per feature (per row
# of the reduction: row_inputs).
batch_norm = AxisReduction("batch_norm", S, "Batch norm", "Per feature, over the batch.",
    inputs=(x,), row_inputs=(gamma, beta), params=(eps,),
    stats={"mu": ("mean", x), "var": ("mean", (x - mu) ** 2)},
    outputs={"y": (x - mu) / sp.sqrt(var + eps.symbol) * gamma + beta, "mean": mu,
             "variance": var}, backward=True)
FORMULAS = [softmax, log_softmax, cross_entropy, layer_norm, rms_norm, huber_mean, rowmax,
            batch_norm]
'''


@pytest.fixture(scope="module")
def K(tmp_path_factory):
    return generate_user_module(tmp_path_factory.mktemp("axis"), "user_axis.py", FORMULAS)


def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def close(ours, ref, dtype, axis=-1, terms=None) -> None:
    """``terms``: for a gradient, an array as large as the terms it sums (dy * y for
    softmax's dx = y (dy - sum dy y)): where they cancel, the error is relative to them,
    as in any implementation (PyTorch's included)."""
    ref = np.asarray(ref, dtype=np.float64)
    ours = np.asarray(ours)
    assert ours.dtype == dtype and ours.shape == ref.shape
    big = np.abs(ref) if terms is None else np.maximum(np.abs(ref), np.abs(np.asarray(
        terms, dtype=np.float64)))
    if ref.ndim:
        scale = np.maximum(np.max(big, axis=axis, keepdims=True), big)
    else:
        scale = big
    units = np.abs(ours - ref) / (np.finfo(dtype).eps * np.maximum(scale, np.finfo(dtype).tiny))
    assert np.max(units) <= 16, np.max(units)


DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_forward_and_backward(K, name, axis, dtype) -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(5, 7, 9)) * 3).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    xt = _t(x)
    y = getattr(torch, name)(xt, axis)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    close(getattr(K, name)(x, axis=axis), y.detach(), dtype, axis)
    close(getattr(K, name + "_backward")(x, dy, axis=axis), xt.grad, dtype, axis,
          terms=dy * (y.detach().numpy() if name == "softmax" else 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_and_its_gradients(K, dtype) -> None:
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(6, 9)) * 4).astype(dtype)
    t = rng.random((6, 9)).astype(dtype)
    t /= t.sum(-1, keepdims=True)
    dl = rng.normal(size=6).astype(dtype)
    xt, tt = _t(x), _t(t)
    loss = -(tt * torch.log_softmax(xt, -1)).sum(-1)
    loss.backward(torch.tensor(dl, dtype=torch.float64))
    close(K.softmax_cross_entropy(x, t), loss.detach(), dtype, 0)
    dx, dt = K.softmax_cross_entropy_backward(x, t, dl)
    close(dx, xt.grad, dtype, terms=dl[:, None] * np.ones_like(x))
    close(dt, tt.grad, dtype, terms=dl[:, None] * x)


def test_cross_entropy_with_logits_spread_over_1e4(K) -> None:
    """The max shift keeps exp in range: no inf, no NaN, the exact loss."""
    x = np.array([[1000.0, 0.0, -1000.0], [1e4, 1e4 - 1, 0.0]])
    t = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    ref = -(torch.tensor(t) * torch.log_softmax(torch.tensor(x), -1)).sum(-1)
    close(K.softmax_cross_entropy(x, t), ref, np.float64, 0)
    dx, _ = K.softmax_cross_entropy_backward(x, t, np.ones(2))
    assert np.all(np.isfinite(dx))
    close(K.softmax(x.astype(np.float32)), torch.softmax(torch.tensor(x), -1), np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_and_rms_norm(K, dtype) -> None:
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(4, 3, 9)) * 2 + 1).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    g, b = rng.normal(size=9).astype(dtype), rng.normal(size=9).astype(dtype)
    xt, gt, bt = _t(x), _t(g), _t(b)
    y = torch.nn.functional.layer_norm(xt, (9,), gt, bt, 1e-5)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    close(K.layer_norm(x, g, b), y.detach(), dtype)
    dx, dg, db = K.layer_norm_backward(x, dy, g, b)
    # dx: dy gamma / sigma minus its mean and its projection on x-hat (the row's terms).
    sigma = np.std(x.astype(np.float64), axis=-1, keepdims=True)
    close(dx, xt.grad, dtype, terms=dy * g / sigma)
    close(dg, gt.grad, dtype, 0, terms=dy * (x - x.mean(-1, keepdims=True)) / sigma)
    close(db, bt.grad, dtype, 0, terms=dy)
    xt, gt = _t(x), _t(g)
    y = torch.nn.functional.rms_norm(xt, (9,), gt, 1e-5)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    close(K.rms_norm(x, g), y.detach(), dtype)
    dx, dg = K.rms_norm_backward(x, dy, g)
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True))
    close(dx, xt.grad, dtype, terms=dy * g / rms)
    close(dg, gt.grad, dtype, 0, terms=dy * x / rms)


@pytest.mark.parametrize("dtype", DTYPES)
def test_huber_mean_over_all_elements(K, dtype) -> None:
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(5, 8)) * 2).astype(dtype)
    t = (rng.normal(size=(5, 8)) * 2).astype(dtype)
    x[0, 0], t[0, 0] = 1.0, 0.0  # |x - t| = delta: the kink, with PyTorch's branch
    xt, tt = _t(x), _t(t)
    loss = torch.nn.functional.huber_loss(xt, tt, delta=1.0)
    loss.backward()
    close(K.huber_mean(x, t, axis=None), loss.detach(), dtype)
    dx, dt = K.huber_mean_backward(x, t, np.array(1.0), axis=None)
    close(dx, xt.grad, dtype, None)
    close(dt, tt.grad, dtype, None)


def test_bad_arguments_name_the_argument(K) -> None:
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="'axis'"):
        K.softmax(x, axis=2)
    with pytest.raises(TypeError, match="'axis'"):
        K.softmax(x, axis=1.0)
    with pytest.raises(ValueError, match="'gamma'"):
        K.layer_norm(x, np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="length 0"):
        K.softmax(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="'t'"):
        K.softmax_cross_entropy(x, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="'dloss'"):
        K.softmax_cross_entropy_backward(x, x, np.ones(4))
    with pytest.raises(ValueError, match="'eps'"):
        K.layer_norm(x, np.ones(4), np.ones(4), eps=-1.0)


def test_symdl_verify_checks_every_axis_kernel_as_a_user_runs_it(K) -> None:
    """`symdl verify` on the user's file: every kernel and derived gradient within its
    tolerance, in both dtypes, each gradient also checked against a central difference
    of the forward formula in mpmath."""
    import subprocess
    import sys
    from pathlib import Path

    directory = Path(K.__file__).parent.parent.parent
    r = subprocess.run([sys.executable, "-m", "symdl.cli", "verify", "--formulas",
                        "user_axis.py", "--out", "out"], cwd=directory, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if " ULP " in line]
    assert len(rows) == 32 and all(row[-1] == "ok" for row in rows), r.stdout


def test_verify_fails_a_wrong_kernel_and_a_wrong_derivation(K) -> None:
    """The checks can fail: a kernel off by 1e-12 (relative) and a backward formula
    whose gradient is off by a term are both caught."""
    import importlib.util
    import sys
    from pathlib import Path

    import numpy as np
    import sympy as sp

    from symdl.derive_axis import axis_backward_formula
    from symdl.verify import verify
    from symdl.verify_axis import check_derivation

    path = Path(K.__file__).parent.parent.parent / "user_axis.py"
    spec = importlib.util.spec_from_file_location("user_axis_formulas", path)
    user = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = user
    spec.loader.exec_module(user)

    class Off:
        softmax = staticmethod(lambda x, axis=-1: K.softmax(x, axis=axis) * (1 + 1e-12))

    (bad,) = [r for r in verify([user.softmax], Off, dtypes=(np.float64,))]
    assert not bad.ok
    good = axis_backward_formula(user.rms_norm)
    x = sp.Symbol("x", real=True)
    wrong = type(good)(**{**{f: getattr(good, f) for f in (
        "name", "section", "title", "doc")}, "inputs": good.inputs, "weights": good.weights,
        "params": good.params, "stats": good.stats, "summed": good.summed,
        "derived_from": good.derived_from,
        "outputs": {**good.outputs, "dx": good.outputs["dx"] + x / 1000}})
    rng = np.random.default_rng(0)
    arrays = {"x": rng.standard_normal((2, 5)), "dy": rng.standard_normal((2, 5)),
              "gamma": rng.standard_normal(5)}
    import mpmath

    params = {"eps": mpmath.mpf(1e-5)}
    assert check_derivation(good, user.rms_norm, arrays, params, 0, rng) < 1e-30
    assert check_derivation(wrong, user.rms_norm, arrays, params, 0, rng) > 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_rows_as_pytorch(K, dtype) -> None:
    """A NaN in a row makes that row's softmax NaN, and only that row (as PyTorch); rows
    longer than the max's 16 lanes, with the NaN in the lanes and in the tail."""
    x = np.random.default_rng(5).normal(size=(4, 37)).astype(dtype)
    x[0, 3] = np.nan
    x[1, 36] = np.nan
    x[2, 5] = np.inf
    ref = torch.softmax(torch.tensor(x.astype(np.float64)), -1).numpy()
    ours = K.softmax(x)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    close(ours[3:], ref[3:], dtype)
    # A row of -inf: 0/0 in every element, NaN, as PyTorch gives.
    assert np.isnan(torch.softmax(torch.full((1, 20), -torch.inf), -1)).all()
    assert np.isnan(K.softmax(np.full((1, 20), -np.inf, dtype))).all()


REFUSED = {
    "a max of a statistic, with a gradient": (
        'f = AxisReduction("spread", "S", "Spread", ".", inputs=[x], backward=True, '
        'stats={"s": ("mean", x), "m": ("max", x - s)}, outputs={"top": m})',
        "spread", "a max of a statistic is not supported"),
    "an unknown operation": (
        'f = AxisReduction("bad", "S", "Bad", ".", inputs=[x], '
        'stats={"m": ("median", x)}, outputs={"y": x - m})', "'m'", "op one of"),
    "an undeclared symbol": (
        'f = AxisReduction("bad", "S", "Bad", ".", inputs=[x], '
        'stats={"s": ("sum", x * q)}, outputs={"y": x / s})', "'s'", "q"),
    "a name used twice": (
        'f = AxisReduction("bad", "S", "Bad", ".", inputs=[x], '
        'stats={"x": ("sum", x)}, outputs={"y": x})', "bad", "used twice"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_formula_symdl_cannot_do_is_refused_in_one_line(tmp_path, case) -> None:
    import subprocess
    import sys

    body, where, why = REFUSED[case]
    (tmp_path / "refused.py").write_text(
        "import sympy as sp\nfrom symdl.formula import AxisReduction\n"
        'x, m, s, q = sp.symbols("x m s q", real=True)\n' + body + "\nFORMULAS = [f]\n")
    r = subprocess.run([sys.executable, "-m", "symdl.cli", "generate", "--formulas",
                        "refused.py", "--out", "out"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if "deriving and printing" not in line]
    assert len(lines) == 1 and where in lines[0] and why in lines[0], r.stderr


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_max_output_shares_its_gradient_among_ties_as_pytorch_amax(K, dtype) -> None:
    x = np.random.default_rng(6).normal(size=(3, 4, 21)).astype(dtype)
    x[0, 0, [2, 7, 19]] = 9.0  # a three-way tie, in the lanes and in the tail
    dtop = np.random.default_rng(7).normal(size=(3, 4)).astype(dtype)
    xt = _t(x)
    top = torch.amax(xt, -1)
    top.backward(torch.tensor(dtop, dtype=torch.float64))
    close(K.rowmax(x), top.detach(), dtype, 0)
    close(K.rowmax_backward(x, dtop), xt.grad, dtype)
    assert K.rowmax_backward(x, dtop)[0, 0, 2] == dtype(dtop[0, 0] / 3)


def test_compiling_a_user_kernel_warns_nothing(K, tmp_path) -> None:
    """Numba's pedantic SSA check flagged the inlined exp's variables on first compile
    ("... is not in scope. Please report ..."); a user saw it in their own process.
    Fresh process, empty Numba cache, every warning an error."""
    import subprocess
    import sys

    code = ("import warnings; warnings.simplefilter('error')\n"
            "import importlib.util, numpy as np\n"
            f"spec = importlib.util.spec_from_file_location('k', {K.__file__!r})\n"
            "k = importlib.util.module_from_spec(spec); spec.loader.exec_module(k)\n"
            "x = np.random.default_rng(0).normal(size=(3, 40))\n"
            "y = k.softmax(x); k.softmax_backward(x, y)\n"
            "k.softmax(x.astype(np.float32))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0 and not r.stderr, r.stderr


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 11), (4096, 24)])  # (the second: parallel cores)
def test_batch_norm_along_axis_0_matches_pytorch_and_the_builtin(K, dtype, shape) -> None:
    """Axis 0 runs in place (the column layout, no transposed copy); gamma and beta are
    per-row inputs, and their gradients are sums along the axis. The incoming gradients
    of the mean and variance outputs count too."""
    import symdl.kernels as builtin

    rng = np.random.default_rng(8)
    x = (rng.normal(size=shape) * 3 + 2).astype(dtype)
    g, b = (rng.normal(size=shape[1]).astype(dtype) for _ in range(2))
    dy = rng.normal(size=shape).astype(dtype)
    dmean, dvar = (rng.normal(size=shape[1]).astype(dtype) for _ in range(2))
    xt, gt, bt = _t(x), _t(g), _t(b)
    mean, var = xt.mean(0), xt.var(0, unbiased=False)
    y = (xt - mean) / torch.sqrt(var + 1e-5) * gt + bt
    (y * _t(dy)).sum().add((mean * _t(dmean)).sum() + (var * _t(dvar)).sum()).backward()
    # Every value here rests on sums of m terms, each added in turn (per column, as the
    # library's batch norm): their rounding errors add up as a random walk, about
    # sqrt(m) of them (Higham, Accuracy and Stability of Numerical Algorithms, 4.2).
    walk = np.sqrt(shape[0])
    ours = K.batch_norm(x, g, b, axis=0)
    for a, ref in zip(ours, (y, mean, var), strict=True):
        close(a, ref.detach(), dtype, 0, terms=walk * np.maximum(np.abs(x), x.var(0)))
    dx, dg, db = K.batch_norm_backward(x, dy, g, b, dmean, dvar, axis=0)
    close(dx, xt.grad, dtype, 0, terms=walk * dy * g * 4)
    xhat = (x - x.mean(0, dtype=np.float64)) / x.std(0, dtype=np.float64)
    close(dg, gt.grad, dtype, 0, terms=walk * np.abs(dy * xhat).sum(0) / shape[0])
    close(db, bt.grad, dtype, 0, terms=walk * np.abs(dy).sum(0, dtype=np.float64) / shape[0])
    # the library's batch norm, its own kernels, agrees
    close(ours[0], builtin.batchnorm_forward(x, g, b)[0].astype(np.float64), dtype, 0, terms=x)
