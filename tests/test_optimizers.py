"""Adam and RMSProp: against PyTorch over many steps, in-place semantics, bad input."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _grads(rng, n, steps, dtype):
    return [(rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 1)).astype(dtype)
            for _ in range(steps)]


# PyTorch computes the bias correction 1 - beta2**t with pow, which loses up to ~log2(1/
# (1 - beta2)) ~ 10 bits at t = 1; symdl uses expm1 (see symdl/stable.py). Over 50 steps
# the two trajectories differ by that, never more: 1e-11 relative in float64, 2e-4 in float32
# (both about 2**(-53+10) and 2**(-24+11), plus accumulation over the steps).
TOL = {np.float64: 1e-11, np.float32: 2e-4}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", [{}, {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}])
def test_adam_matches_torch_over_many_steps(kernels, dtype, kw):
    rng = np.random.default_rng(11)
    theta0 = rng.standard_normal(5000).astype(dtype)
    grads = _grads(rng, 5000, 50, dtype)
    p = torch.nn.Parameter(torch.tensor(theta0.copy()))
    torch_kw = {("betas" if k.startswith("beta") else k): v for k, v in kw.items()}
    if "beta1" in kw:
        torch_kw["betas"] = (kw["beta1"], kw["beta2"])
    opt = torch.optim.Adam([p], **torch_kw, foreach=False)
    theta, m, v = theta0.copy(), np.zeros_like(theta0), np.zeros_like(theta0)
    for t, g in enumerate(grads, start=1):
        p.grad = torch.tensor(g)
        opt.step()
        kernels.adam_step(theta, g, m, v, t, **kw)
    state = opt.state[p]
    ref = p.detach().numpy()
    scale = np.abs(theta0) + len(grads) * kw.get("lr", 1e-3)  # Adam moves <= lr per step
    assert np.all(np.abs(theta - ref) <= TOL[dtype] * scale)
    np.testing.assert_allclose(m, state["exp_avg"].numpy(), rtol=TOL[dtype],
                               atol=TOL[dtype] * np.abs(m).max())
    np.testing.assert_allclose(v, state["exp_avg_sq"].numpy(), rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("n", [5000, 40_000])  # the serial and the parallel cores
def test_rmsprop_matches_torch_over_many_steps(kernels, dtype, momentum, n):
    rng = np.random.default_rng(12)
    theta0 = rng.standard_normal(n).astype(dtype)
    grads = _grads(rng, n, 50, dtype)
    p = torch.nn.Parameter(torch.tensor(theta0.copy()))
    opt = torch.optim.RMSprop([p], lr=1e-2, alpha=0.99, eps=1e-8, momentum=momentum,
                              foreach=False)
    theta, sq = theta0.copy(), np.zeros_like(theta0)
    # PyTorch keeps no momentum buffer at momentum 0, and symdl leaves it untouched then:
    # garbage in it must not matter (and must stay as it was).
    buf = np.zeros_like(theta0) if momentum else rng.standard_normal(n).astype(dtype)
    buf0 = buf.copy()
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        kernels.rmsprop_step(theta, g, sq, buf, lr=1e-2, alpha=0.99, eps=1e-8,
                             momentum=momentum)
    # Same operations in the same order as PyTorch, up to FMA contraction: a few ULP per
    # step, accumulated over 50 steps.
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(theta, p.detach().numpy(), rtol=200 * eps, atol=200 * eps)
    np.testing.assert_allclose(sq, opt.state[p]["square_avg"].numpy(), rtol=200 * eps)
    if momentum:
        np.testing.assert_allclose(buf, opt.state[p]["momentum_buffer"].numpy(),
                                   rtol=200 * eps, atol=200 * eps)
    else:
        np.testing.assert_array_equal(buf, buf0)


def test_in_place_on_views_and_nothing_else_changes(kernels):
    rng = np.random.default_rng(13)
    big = rng.standard_normal((4, 10))
    theta = big[:, ::2]  # a strided view of the caller's array
    grad = rng.standard_normal((4, 5))
    grad_before = grad.copy()
    m, v = np.zeros((4, 5)), np.zeros((4, 5))
    ref_theta, ref_m, ref_v = theta.copy(), m.copy(), v.copy()
    kernels.adam_step(ref_theta, grad, ref_m, ref_v, 1)
    untouched = big[:, 1::2].copy()
    kernels.adam_step(theta, grad, m, v, 1)
    np.testing.assert_array_equal(big[:, ::2], ref_theta)
    np.testing.assert_array_equal(big[:, 1::2], untouched)
    np.testing.assert_array_equal(grad, grad_before)
    np.testing.assert_array_equal(m, ref_m)


@pytest.mark.parametrize("name", ["rmsprop_step", "batchnorm_update_running"])
def test_other_in_place_kernels_on_views_and_read_only(kernels, name):
    """Every in-place kernel, not only Adam: strided and transposed views of the
    caller's arrays are updated where they lie, nothing else changes, read-only refused."""
    rng = np.random.default_rng(14)
    if name == "rmsprop_step":
        def call(a, b, inputs):
            kernels.rmsprop_step(a, inputs, b, np.zeros_like(inputs), momentum=0.0)
        inputs = rng.standard_normal((5, 4))
    else:
        def call(a, b, inputs):
            kernels.batchnorm_update_running(a, b, inputs, np.abs(inputs), 8)
        inputs = rng.standard_normal((5, 4))
    big_a, big_b = rng.standard_normal((5, 8)), np.abs(rng.standard_normal((4, 5)))
    a, b = big_a[:, ::2], big_b.T  # a strided view and a transposed one, (5, 4) each
    ref_a, ref_b = a.copy(), b.copy()
    call(ref_a, ref_b, inputs)
    untouched, inputs_before = big_a[:, 1::2].copy(), inputs.copy()
    call(a, b, inputs)
    np.testing.assert_array_equal(big_a[:, ::2], ref_a)
    np.testing.assert_array_equal(big_b.T, ref_b)
    np.testing.assert_array_equal(big_a[:, 1::2], untouched)
    np.testing.assert_array_equal(inputs, inputs_before)
    assert not np.array_equal(ref_a, big_a[:, 1::2])  # (the update did change a)
    ro = b.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        call(a.copy(), ro, inputs)


def test_optimizer_bad_input(kernels):
    x = np.zeros(3)
    with pytest.raises(ValueError, match="'t'"):
        kernels.adam_step(x.copy(), x, x.copy(), x.copy(), 0)
    with pytest.raises(TypeError, match="'t'"):
        kernels.adam_step(x.copy(), x, x.copy(), x.copy(), 1.5)
    with pytest.raises(ValueError, match="'beta1'"):
        kernels.adam_step(x.copy(), x, x.copy(), x.copy(), 1, beta1=1.0)
    with pytest.raises(ValueError, match="'lr'"):
        kernels.adam_step(x.copy(), x, x.copy(), x.copy(), 1, lr=float("nan"))
    # Not a string that would convert, nor a bool taken as 1.0; a step the compiled core
    # can hold (int64).
    for bad in ("0.5", True):
        with pytest.raises(TypeError, match="'lr' must be a real number"):
            kernels.adam_step(x.copy(), x, x.copy(), x.copy(), 1, lr=bad)
    for big in (2**63, np.uint64(2**63), 10**30):
        with pytest.raises(ValueError, match=r"'t' must be < 2\*\*63"):
            kernels.adam_step(x.copy(), x, x.copy(), x.copy(), big)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="'m'.*read-only"):
        kernels.adam_step(x.copy(), x, ro, x.copy(), 1)
    with pytest.raises(TypeError, match="'theta'"):
        kernels.adam_step([0.0, 0.0, 0.0], x, x.copy(), x.copy(), 1)
    with pytest.raises(TypeError, match="'v'"):
        kernels.adam_step(x.copy(), x, x.copy(), np.zeros(3, np.float32), 1)
    with pytest.raises(ValueError, match="'m'"):
        kernels.adam_step(x.copy(), x, np.zeros(4), x.copy(), 1)
    shared = np.zeros(3)
    with pytest.raises(ValueError, match="overlaps"):
        kernels.adam_step(shared, x, shared, x.copy(), 1)
    with pytest.raises(ValueError, match="'momentum'"):
        kernels.rmsprop_step(x.copy(), x, x.copy(), x.copy(), momentum=-1)
