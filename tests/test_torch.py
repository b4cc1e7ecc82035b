"""PyTorch CPU as an independent reference for the activations and their gradients."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype, ulp", [(np.float64, 4), (np.float32, 4)])
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_forward_and_autograd_match_torch(kernels, name, dtype, ulp):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(10_000) * 6).astype(dtype)
    dy = rng.standard_normal(10_000).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch, name)(tx)
    ty.backward(torch.tensor(dy))
    y = getattr(kernels, name)(x)
    dx = getattr(kernels, name + "_backward")(y, dy)
    eps = np.finfo(dtype).eps
    # Both sides are within a few ULP of the exact value; allow the sum of both bounds.
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=2 * ulp * eps, atol=0)
    scale = np.abs(dy) + np.abs(dx)
    assert np.all(np.abs(dx - tx.grad.numpy()) <= 2 * ulp * eps * scale + np.finfo(dtype).tiny)


def test_backward_matches_torch_backward_ops(kernels):
    rng = np.random.default_rng(6)
    y = rng.uniform(0, 1, 1000)
    dy = rng.standard_normal(1000)
    ref = torch.ops.aten.sigmoid_backward(torch.tensor(dy), torch.tensor(y)).numpy()
    np.testing.assert_allclose(kernels.sigmoid_backward(y, dy), ref, rtol=8 * 2.0**-52, atol=0)
    yt = rng.uniform(-1, 1, 1000)
    ref = torch.ops.aten.tanh_backward(torch.tensor(dy), torch.tensor(yt)).numpy()
    got = kernels.tanh_backward(yt, dy)
    assert np.all(np.abs(got - ref) <= 8 * 2.0**-52 * np.abs(dy))


def test_matvec_matches_torch(kernels):
    rng = np.random.default_rng(7)
    A = rng.standard_normal((100, 70))
    x = rng.standard_normal(70)
    np.testing.assert_allclose(kernels.matvec(A, x), torch.mv(torch.tensor(A),
                                                              torch.tensor(x)).numpy(),
                               rtol=0, atol=70 * 2.0**-52 * np.abs(A).sum(axis=1).max())
