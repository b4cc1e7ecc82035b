"""symdl.torch.nn: BatchNorm1d, Dropout and the activations as modules, against torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
snn = pytest.importorskip("symdl.torch.nn")

EPS64 = torch.finfo(torch.float64).eps


def test_batchnorm1d_matches_torch_in_train_and_eval_mode():
    torch.manual_seed(0)
    m, C = 32, 6
    ours = snn.BatchNorm1d(C, momentum=0.2, dtype=torch.float64)
    ref = torch.nn.BatchNorm1d(C, momentum=0.2, dtype=torch.float64)
    with torch.no_grad():
        for mod in (ours, ref):
            mod.weight.copy_(torch.linspace(0.5, 2, C))
            mod.bias.copy_(torch.linspace(-1, 1, C))
    # Batch statistics are sums of m terms: each side is within about m * eps of the
    # exact mean and variance, so normalized outputs (|out| <= a few) within
    # 4 * m * eps of each other; the gradients, sums of m terms again, too.
    tol = 4 * m * EPS64
    for step in range(4):
        x = (torch.randn(m, C, dtype=torch.float64) * 3 + step).requires_grad_()
        xr = x.detach().clone().requires_grad_()
        y, yr = ours(x), ref(xr)
        torch.testing.assert_close(y, yr, rtol=0, atol=tol)
        dy = torch.randn(m, C, dtype=torch.float64)
        y.backward(dy)
        yr.backward(dy)
        torch.testing.assert_close(x.grad, xr.grad, rtol=0, atol=tol * dy.abs().max())
        for a, b in ((ours.weight.grad, ref.weight.grad), (ours.bias.grad, ref.bias.grad)):
            torch.testing.assert_close(a, b, rtol=0, atol=tol * m * dy.abs().max())
        torch.testing.assert_close(ours.running_mean, ref.running_mean, rtol=tol, atol=0)
        torch.testing.assert_close(ours.running_var, ref.running_var, rtol=tol, atol=0)
    assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == 4
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ours.eval()
    ref.eval()
    x = torch.randn(10, C, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=8 * EPS64 * 10)
    # torch's state loads into ours
    fresh = snn.BatchNorm1d(C, dtype=torch.float64)
    fresh.load_state_dict(ref.state_dict())
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), ref(x), rtol=0, atol=8 * EPS64 * 10)


def test_batchnorm1d_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="must be 2-D"):
        snn.BatchNorm1d(3)(torch.zeros(2, 3, 4))
    bn = snn.BatchNorm1d(3).eval()
    x = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="no derived gradient"):
        bn(x).sum().backward()


def test_dropout_module_keeps_scales_and_routes_gradients_by_the_same_mask():
    torch.manual_seed(1)
    p = 0.3
    d = snn.Dropout(p)
    x = (torch.rand(20_000, dtype=torch.float64) + 1).requires_grad_()
    torch.manual_seed(2)
    y = d(x)
    kept = y.detach() != 0
    # Kept elements are x / (1 - p) (one rounding each side); the count is
    # Binomial(n, 0.7): 6 standard deviations either side.
    torch.testing.assert_close(y.detach()[kept], x.detach()[kept] / (1 - p), rtol=2 * EPS64,
                               atol=0)
    n = x.numel()
    assert abs(kept.sum().item() - n * (1 - p)) <= 6 * np.sqrt(n * p * (1 - p))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.double() / (1 - p), rtol=2 * EPS64, atol=0)
    torch.manual_seed(2)
    assert torch.equal(snn.Dropout(p)(x.detach()), y.detach())  # repeatable by seed
    d.eval()
    assert torch.equal(d(x.detach()), x.detach())  # expectation of inverted dropout
    with pytest.raises(ValueError, match="argument 'p'"):
        snn.Dropout(1.0)


def test_activation_modules():
    x = torch.randn(50, dtype=torch.float64)
    torch.testing.assert_close(snn.Sigmoid()(x), torch.sigmoid(x), rtol=8 * EPS64, atol=0)
    torch.testing.assert_close(snn.Tanh()(x), torch.tanh(x), rtol=8 * EPS64, atol=0)
    assert isinstance(snn.Tanh(), torch.nn.Module)


def test_dropout_module_compiles_without_graph_break():
    torch._dynamo.reset()
    p = 0.25
    net = torch.nn.Sequential(snn.Tanh(), snn.Dropout(p))
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    y = compiled(x)
    y.sum().backward()
    kept = y.detach() != 0
    torch.testing.assert_close(y.detach()[kept], torch.tanh(x.detach())[kept] / (1 - p),
                               rtol=8 * EPS64, atol=0)
    # The backward used the forward's mask (the same seed). 1 - y**2 carries y's few
    # ULP of error as an absolute error of a few eps (|y| <= 1), on either side.
    ref = kept.double() * (1 - torch.tanh(x.detach()) ** 2) / (1 - p)
    torch.testing.assert_close(x.grad, ref, rtol=0, atol=16 * EPS64 / (1 - p))
    with pytest.raises(ValueError, match="argument 'seed'"):
        import symdl.torch as st

        st.dropout(x, p, seed=-1)
