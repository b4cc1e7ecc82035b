"""Batch norm against PyTorch (forward, autograd backward, inference, running stats),
edge cases, and the derivation through the batch means."""

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_forward_backward(x, gamma, beta, dout, eps=1e-5):
    tx = torch.tensor(x, requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    out = F.batch_norm(tx, None, None, tg, tb, training=True, eps=eps)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), tx.grad.numpy(), tg.grad.numpy(), tb.grad.numpy()


def _close(a, b, scale, dtype, ulps):
    """|a - b| within `ulps` ULPs of the terms' scale: both sides round the same terms
    in a different order (PyTorch sums with another blocking), each a few ULP off."""
    unit = np.finfo(dtype).eps
    assert np.all(np.abs(a - b) <= ulps * unit * scale), np.max(np.abs(a - b) / scale) / unit


SHAPES = [(2, 1), (2, 5), (16, 3), (257, 33)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_torch(kernels, shape, dtype):
    rng = np.random.default_rng(21)
    m, n = shape
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 3, n) + rng.uniform(-5, 5, n))
    x = x.astype(dtype)
    gamma, beta = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    out, mean, var = kernels.batchnorm_forward(x, gamma, beta)
    assert out.dtype == mean.dtype == var.dtype == dtype
    r_out, r_dx, r_dg, r_db = _torch_forward_backward(x, gamma, beta, dout)
    inv = 1 / np.sqrt(var + 1e-5)
    xscale = np.abs(x) + np.abs(mean)
    _close(out, r_out, np.abs(gamma) * xscale * inv + np.abs(beta), dtype, 16)
    np.testing.assert_allclose(mean, x.mean(axis=0, dtype=np.float64), rtol=4 * np.finfo(
        dtype).eps, atol=4 * np.finfo(dtype).eps * np.abs(x).max())
    dx, dgamma, dbeta = kernels.batchnorm_backward(dout, x, gamma, mean, var)
    gscale = np.abs(dout).sum(axis=0)
    _close(dbeta, r_db, gscale, dtype, 16)
    _close(dgamma, r_dg, gscale * (xscale * inv).max(axis=0), dtype, 64)
    _close(dx, r_dx, np.abs(gamma) * inv * (np.abs(dout) + gscale / m
                                            * (1 + xscale * inv)), dtype, 64)


def test_inference_and_running_statistics_match_batchnorm1d(kernels):
    rng = np.random.default_rng(22)
    bn = torch.nn.BatchNorm1d(6, momentum=0.1, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(rng.standard_normal(6)))
        bn.bias.copy_(torch.tensor(rng.standard_normal(6)))
    gamma, beta = bn.weight.detach().numpy().copy(), bn.bias.detach().numpy().copy()
    running_mean, running_var = np.zeros(6), np.ones(6)
    for _ in range(5):
        x = rng.standard_normal((32, 6)) * 2 + 1
        bn.train()
        bn(torch.tensor(x))
        _, mean, var = kernels.batchnorm_forward(x, gamma, beta)
        kernels.batchnorm_update_running(running_mean, running_var, mean, var, 32)
    np.testing.assert_allclose(running_mean, bn.running_mean.numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(running_var, bn.running_var.numpy(), rtol=1e-14)
    bn.eval()
    x = rng.standard_normal((10, 6))
    ref = bn(torch.tensor(x)).detach().numpy()
    got = kernels.batchnorm_inference(x, gamma, beta, running_mean, running_var)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14)


def test_constant_feature_and_large_offset(kernels):
    rng = np.random.default_rng(23)
    x = rng.standard_normal((50, 3))
    x[:, 0] = 7.0  # constant: variance 0, output beta, finite gradients
    x[:, 2] = x[:, 2] * 1e-3 + 1e6  # a large offset
    gamma, beta = np.array([2.0, 1.0, 1.0]), np.array([0.5, 0.0, 0.0])
    out, mean, var = kernels.batchnorm_forward(x, gamma, beta)
    assert var[0] == 0.0 and np.all(out[:, 0] == 0.5)
    dx, dg, db = kernels.batchnorm_backward(rng.standard_normal((50, 3)), x, gamma, mean, var)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dg))
    # Offset 1e6, scale 1e-3: the centred feature keeps ~10 significant digits (x holds
    # 16, the offset eats 9): its standardized values have mean 0 and variance 1.
    z = out[:, 2]
    assert abs(z.mean()) < 1e-7 and abs(z.var() - var[2] / (var[2] + 1e-5)) < 1e-7


def test_backward_against_finite_differences(kernels):
    rng = np.random.default_rng(24)
    x = rng.standard_normal((6, 2))
    gamma, beta, dout = rng.standard_normal(2), rng.standard_normal(2), rng.standard_normal(
        (6, 2))

    def loss(xx, gg, bb):
        return float(np.sum(dout * kernels.batchnorm_forward(xx, gg, bb)[0]))

    _, mean, var = kernels.batchnorm_forward(x, gamma, beta)
    dx, dg, db = kernels.batchnorm_backward(dout, x, gamma, mean, var)
    h = 1e-6
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        fd = (loss(x + e, gamma, beta) - loss(x - e, gamma, beta)) / (2 * h)
        assert abs(fd - dx[idx]) < 1e-7
    for k in range(2):
        e = np.zeros(2)
        e[k] = h
        assert abs((loss(x, gamma + e, beta) - loss(x, gamma - e, beta)) / (2 * h) - dg[k]) < 1e-7
        assert abs((loss(x, gamma, beta + e) - loss(x, gamma, beta - e)) / (2 * h) - db[k]) < 1e-7


def test_derivation_is_general_through_reductions():
    """A user-defined normalization (by the fourth central moment) is derived alike."""
    from symdl.derive import batch_backward_formula
    from symdl.formula import Batch

    x, mu, mad = sp.symbols("x mu mad", real=True)
    f = Batch("quartnorm", "Mine", "Fourth-moment norm", "(x - mu) / mean((x - mu)^4)",
              inputs=[x], stats={"mu": x, "mad": (x - mu) ** 4}, outputs={"y": (x - mu) / mad})
    g = batch_backward_formula(f)
    assert set(g.finish) == {"adj_mad", "adj_mu"}
    assert "dx" in g.outputs and g.outputs["dx"].has(sp.Symbol("adj_mad", real=True))


def test_batchnorm_bad_input(kernels):
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="'gamma'"):
        kernels.batchnorm_forward(x, np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="'x'.*2-D"):
        kernels.batchnorm_forward(np.zeros(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="'x'.*empty"):
        kernels.batchnorm_forward(np.zeros((0, 3)), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="'eps'"):
        kernels.batchnorm_forward(x, np.ones(3), np.ones(3), eps=-1)
    with pytest.raises(ValueError, match="'x'"):
        kernels.batchnorm_backward(np.zeros((4, 3)), np.zeros((5, 3)), np.ones(3), np.ones(3),
                                   np.ones(3))
    with pytest.raises(ValueError, match="'m'"):
        kernels.batchnorm_update_running(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3), 1)
    with pytest.raises(TypeError, match="'running_mean'"):
        kernels.batchnorm_update_running([0.0] * 3, np.ones(3), np.zeros(3), np.ones(3), 4)
    # A variance is >= 0 (SymPy knows the forward's var, a mean of squares, is): a
    # negative or nan one gets an error, not nan in every output.
    for bad in (-1.0, float("nan")):
        var = np.array([1.0, bad, 1.0])
        with pytest.raises(ValueError, match="'var'.*>= 0"):
            kernels.batchnorm_backward(x, x, np.ones(3), np.zeros(3), var)
        with pytest.raises(ValueError, match="'running_var'.*>= 0"):
            kernels.batchnorm_inference(x, np.ones(3), np.ones(3), np.zeros(3), var)
        running_mean, running_var = np.zeros(3), np.ones(3)
        with pytest.raises(ValueError, match="'var'.*>= 0"):
            kernels.batchnorm_update_running(running_mean, running_var, np.zeros(3), var, 8)
        with pytest.raises(ValueError, match="'running_var'.*>= 0"):
            kernels.batchnorm_update_running(running_mean, var.copy(), np.zeros(3),
                                             np.ones(3), 8)
        assert np.array_equal(running_var, np.ones(3))  # refused before any update


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_identical_for_any_thread_count_core_and_tile(kernels, dtype):
    """Each column is summed alone, in fixed 16-row blocks combined in block order: the
    serial core, the parallel core on 1 or all threads, and any column-tile width give
    the same bits (a tile width of 8 puts most columns in the vector loops, 24 in the
    scalar remainder too)."""
    import numba

    from symdl.kernels import batchnorm as mod

    rng = np.random.default_rng(25)
    x = (rng.standard_normal((203, 77)) * 3 + rng.uniform(-50, 50, 77)).astype(dtype)
    gamma, beta = rng.standard_normal(77).astype(dtype), rng.standard_normal(77).astype(dtype)
    dout = rng.standard_normal((203, 77)).astype(dtype)
    saved_threshold, saved_tile = mod.PARALLEL_THRESHOLD, mod._batch_tile
    threads = numba.get_num_threads()
    results = []
    try:
        for threshold, nthreads, tile in [(10**12, 1, None), (0, 1, None), (0, threads, None),
                                          (0, threads, 8), (0, threads, 24), (10**12, 1, 80)]:
            mod.PARALLEL_THRESHOLD = threshold
            numba.set_num_threads(nthreads)
            mod._batch_tile = saved_tile if tile is None else (lambda n, t=tile: t)
            out, mean, var = kernels.batchnorm_forward(x, gamma, beta)
            results.append((out, mean, var, *kernels.batchnorm_backward(dout, x, gamma, mean,
                                                                        var)))
    finally:
        mod.PARALLEL_THRESHOLD, mod._batch_tile = saved_threshold, saved_tile
        numba.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert np.array_equal(a, b)


def test_sums_zero_by_the_mean_definition_are_dropped_and_others_kept():
    """The variance's Sum_i 2 (mean - x_i) is zero by the definition of the mean: SymPy
    proves it and the backward does not sum it. A non-affine term (the fourth moment's)
    and an affine one that is not zero stay."""
    from symdl.derive import batch_backward_formula
    from symdl.formula import Batch
    from symdl.library.batchnorm import batchnorm_forward

    g = batch_backward_formula(batchnorm_forward)
    assert "r_var_mean" in g.vanished and "r_var_mean" not in g.reductions
    x, mu, s = sp.symbols("x mu s", real=True)
    quart = Batch("quart", "Mine", "T", "D", inputs=[x], stats={"mu": x, "s": (x - mu) ** 4},
                  outputs={"y": (x - mu) / s})
    assert "r_s_mu" in batch_backward_formula(quart).reductions
    shifted = Batch("shifted", "Mine", "T", "D", inputs=[x],
                    stats={"mu": x, "s": (x - 2 * mu) ** 2}, outputs={"y": (x - mu) / s})
    g = batch_backward_formula(shifted)  # Sum_i -4 (x_i - 2 mu) = 4 m mu, not zero
    assert "r_s_mu" in g.reductions and not g.vanished


def test_infinite_sums_stay_infinite(kernels):
    # The compensated (TwoSum) combination of block sums must not turn an infinite sum
    # into nan (its error term is inf - inf): as NumPy's plain sums.
    x = np.array([[np.inf, 0.0], [1.0, 1.0], [2.0, 2.0]])
    _, mean, _ = kernels.batchnorm_forward(x, np.ones(2), np.zeros(2))
    assert mean[0] == np.inf and mean[1] == 1.0
    big = np.array([[1e300, 0.0], [-1e300, 1.0], [2e300, 2.0]])
    _, _, var = kernels.batchnorm_forward(big, np.ones(2), np.zeros(2))
    assert var[0] == np.inf  # the squares overflow
    dout = np.ones((3, 2))
    dout[0, 0] = np.inf
    _, _, dbeta = kernels.batchnorm_backward(dout, x.clip(0, 2), np.ones(2), np.ones(2),
                                             np.ones(2))
    assert dbeta[0] == np.inf and dbeta[1] == 3.0
