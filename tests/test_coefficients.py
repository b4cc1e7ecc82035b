"""Scalar coefficients derived from parameters are computed in float64 and rounded
once to the working dtype (issue 17, items 4a and 5).

Each float32 kernel is compared with the same step computed in float64 from the same
float32 inputs (numpy, written here from the papers' formulas): the float32 result
must be within a few float32 ULP of the float64 one. A float32 kernel that rounds
beta2 = 0.9999 to float32 before 1 - beta2 is 1.7e-4 (about 1400 ULP) off.
"""

import numpy as np
import pytest
from conftest import sizes


def ulps(got32: np.ndarray, ref64: np.ndarray) -> float:
    """The largest error of got32, in float32 ULP of the float64 reference."""
    spacing = np.spacing(np.abs(ref64).astype(np.float32)).astype(np.float64)
    return float(np.max(np.abs(got32.astype(np.float64) - ref64) / spacing))


def _inputs(n, k, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.5, 2.0, n).astype(np.float32) for _ in range(k)]


# Error bounds: each result is a chain of float32 roundings of positive terms (no
# cancellation), each at most 0.5 ULP of its own result. m_t, v_t, s_t: two products
# and a sum, plus the coefficient's own rounding: 2 ULP. Adam's update
# lr*mhat/(sqrt(vhat) + eps): m_t's 2, half of v_t's 2 through the square root, the
# two coefficients' 0.5 + 0.25, five operations' 2.5: 6.25. RMSProp's buffer and
# update: s_t's 2 halved, five roundings and the parameters' two: 4.5.
MOMENT_ULP, UPDATE_ULP = 2, 6.25


@pytest.mark.parametrize("serial", [True, False])
@pytest.mark.parametrize("beta1, beta2, t", [(0.9, 0.999, 1), (0.9, 0.9999, 1),
                                             (0.99, 0.9999, 1000)])
def test_adam_float32_within_ulps_of_float64(kernels, serial, beta1, beta2, t):
    n = sizes("optimizers")[0 if serial else 1]
    grad, m, v = _inputs(n, 3, 1)
    theta = np.zeros(n, np.float32)  # so that theta's result is the update itself
    g, m64, v64 = (a.astype(np.float64) for a in (grad, m, v))
    lr, eps = 1e-3, 1e-8
    m_ref = beta1 * m64 + (1 - beta1) * g
    v_ref = beta2 * v64 + (1 - beta2) * g * g
    theta_ref = -lr * (m_ref / (1 - beta1**t)) / (np.sqrt(v_ref / (1 - beta2**t)) + eps)
    kernels.adam_step(theta, grad, m, v, t, lr=lr, beta1=beta1, beta2=beta2, eps=eps)
    assert ulps(m, m_ref) <= MOMENT_ULP
    assert ulps(v, v_ref) <= MOMENT_ULP
    assert ulps(theta, theta_ref) <= UPDATE_ULP


@pytest.mark.parametrize("serial", [True, False])
@pytest.mark.parametrize("alpha, momentum, first", [(0.99, 0.0, False), (0.9999, 0.0, True),
                                                    (0.9999, 0.9, True), (0.9, 0.9, False)])
def test_rmsprop_float32_within_ulps_of_float64(kernels, serial, alpha, momentum, first):
    n = sizes("optimizers")[0 if serial else 1]
    grad, square_avg, buf = _inputs(n, 3, 2)
    if first:  # the first step (PyTorch starts from zeros): s_t = (1 - alpha) g**2
        square_avg[:] = 0
    theta = np.zeros(n, np.float32)
    g, s64, b64 = (a.astype(np.float64) for a in (grad, square_avg, buf))
    lr, eps = 1e-2, 1e-8
    s_ref = alpha * s64 + (1 - alpha) * g * g
    b_ref = momentum * b64 + g / (np.sqrt(s_ref) + eps)
    kernels.rmsprop_step(theta, grad, square_avg, buf, lr=lr, alpha=alpha, eps=eps,
                         momentum=momentum)
    assert ulps(square_avg, s_ref) <= MOMENT_ULP
    if momentum:
        assert ulps(buf, b_ref) <= UPDATE_ULP
    assert ulps(theta, -lr * b_ref) <= UPDATE_ULP


@pytest.mark.parametrize("serial", [True, False])
@pytest.mark.parametrize("momentum, m, zero_batch", [(0.1, 3, False), (0.99999, 64, True),
                                                     (0.3, 2**25 + 1, False)])
def test_batchnorm_update_running_float32_within_ulps(kernels, serial, momentum, m,
                                                      zero_batch):
    n = sizes("batchnorm")[0 if serial else 1]
    running_mean, running_var, mean, var = _inputs(n, 4, 3)
    if zero_batch:  # batch statistics 0: the result is (1 - momentum) * running
        mean[:], var[:] = 0, 0
    rm64, rv64, mean64, var64 = (a.astype(np.float64) for a in
                                 (running_mean, running_var, mean, var))
    mean_ref = (1 - momentum) * rm64 + momentum * mean64
    var_ref = (1 - momentum) * rv64 + momentum * var64 * m / (m - 1)
    kernels.batchnorm_update_running(running_mean, running_var, mean, var, m,
                                     momentum=momentum)
    assert ulps(running_mean, mean_ref) <= MOMENT_ULP
    assert ulps(running_var, var_ref) <= MOMENT_ULP


@pytest.mark.parametrize("serial", [True, False])
def test_dropout_float32_p_just_below_one(kernels, serial):
    # p < 1 in float64, but float32(p) == 1: q = 1 - p must be taken in float64, or
    # every element is kept as x/0 = inf (issue 17, item 4a).
    n = sizes("regularization")[0 if serial else 1]
    p = 0.99999999
    assert np.float32(p) == 1
    x = np.ones(n, np.float32)
    for inverted in (True, False):
        y, mask = kernels.dropout(x, p, seed=5, inverted=inverted)
        assert np.all(np.isfinite(y))
        # Keep probability 1e-8: P(more than 2 of n <= 40,000 kept) < 1e-11.
        assert mask.sum() <= 2
        assert np.all(y[~mask] == 0)
        scale = np.float32(1) / np.float32(1 - p) if inverted else np.float32(1)
        assert np.all(y[mask] == scale)
    y = kernels.dropout_inference(x, p, inverted=False)  # q x, q in float64 first
    np.testing.assert_array_equal(y, np.full(n, np.float32(1 - p)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("serial", [True, False])
def test_dropout_scale_is_one_rounding_of_1_minus_p(kernels, dtype, serial):
    # The kept elements are x / q with q = 1 - p rounded once to the dtype (as
    # PyTorch's scale 1/(1 - p), computed in double): float32(1) - float32(0.9) is
    # 0.100000024, not float32(0.1).
    n = sizes("regularization", serial=4096)[0 if serial else 1]  # (some kept: q = 0.1)
    x = np.random.default_rng(6).uniform(1, 2, n).astype(dtype)
    y, mask = kernels.dropout(x, 0.9, seed=11)
    assert mask.any()
    np.testing.assert_array_equal(y[mask], x[mask] / dtype(1 - 0.9))
    np.testing.assert_array_equal(kernels.dropout_inference(x, 0.9, inverted=False),
                                  x * dtype(1 - 0.9))
