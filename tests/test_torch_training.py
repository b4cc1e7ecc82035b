"""End to end: a small network trained with symdl.torch's pieces (BatchNorm1d, Tanh,
Dropout, Sigmoid-free logits into symdl's cross-entropy cost, symdl's Adam) follows
the loss curve of the same network in pure PyTorch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("symdl.torch")

from symdl.kernels import dropout as dropout_kernel  # noqa: E402

P = 0.2
STEPS = 40


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g, dtype=torch.float64)
    label = (x[:, 0] * x[:, 1] + x[:, 2] > 0)  # not linearly separable
    return x[label], x[~label]


class TorchDropout(torch.nn.Module):
    """Pure-torch inverted dropout with symdl's mask for the seed torch's generator
    gives (the same draw as symdl.torch.nn.Dropout), so that both networks drop the
    same units; the arithmetic is torch's."""

    def forward(self, x):
        seed = int(torch.randint(0, 2**62, ()).item())
        _, mask = dropout_kernel(np.ones(tuple(x.shape)), P, seed)
        return x * torch.from_numpy(mask).to(x.dtype) / (1 - P)


def _network(ours: bool):
    torch.manual_seed(3)  # the same initial weights for both
    nn = st.nn if ours else torch.nn
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16, dtype=torch.float64),
        nn.BatchNorm1d(16, dtype=torch.float64),
        nn.Tanh(),
        st.nn.Dropout(P) if ours else TorchDropout(),
        torch.nn.Linear(16, 1, dtype=torch.float64),
    )


def _train(ours: bool) -> list[float]:
    pos, neg = _data()
    net = _network(ours)
    opt = (st.optim.Adam if ours else torch.optim.Adam)(net.parameters(), lr=0.02)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch.manual_seed(4)  # the dropout seeds
    losses = []
    for _ in range(STEPS):
        logits = net(torch.cat([pos, neg]))[:, 0]
        l_pos, l_neg = logits[:len(pos)], logits[len(pos):]
        if ours:
            loss = st.gan_d_loss_logits(l_pos, l_neg)
        else:  # the same cost: each class's cross-entropy averaged over its own batch
            loss = (bce(l_pos, torch.ones_like(l_pos))
                    + bce(l_neg, torch.zeros_like(l_neg)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_follows_pure_pytorch_loss_curve():
    ours, ref = np.array(_train(True)), np.array(_train(False))
    assert ref[-1] < 0.6 * ref[0]  # it learns
    # Both runs differ by rounding only (1e-16 relative per operation), which Adam's
    # normalized steps carry forward without growth beyond a few orders of magnitude
    # over 40 steps (measured: 8e-16 at most); 1e-9 leaves room and still catches any
    # wrong gradient or update, which changes the curve at the first steps by far more.
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=0)
