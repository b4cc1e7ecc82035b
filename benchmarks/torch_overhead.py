"""What the symdl.torch path costs over calling the NumPy kernel directly: tensor
conversion, the custom operator's dispatch and, with gradients, autograd's graph.

Each entry times the same generated kernel(s) both ways, interleaved, and checks that
the two results are bit-identical (they are the same kernel on the same memory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .timing import interleaved_medians


@dataclass
class OverheadRow:
    what: str
    dtype: str
    n: int
    raw_s: float
    torch_s: float
    status: str  # "ok" when the tensor path gave the raw kernel's result bit for bit

    @property
    def overhead_s(self) -> float:
        return self.torch_s - self.raw_s


def _entries(n: int, dtype: str) -> dict[str, tuple[Callable, Callable, Callable]]:
    """name -> (raw call, torch call, check): calls return comparable arrays."""
    import torch

    import symdl.kernels as k
    import symdl.torch as st

    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(dtype)
    dy = rng.standard_normal(n).astype(dtype)
    xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
    xg = xt.clone().requires_grad_()

    def raw_backward():
        return k.sigmoid_backward(k.sigmoid(x), dy)

    def torch_backward():
        xg.grad = None
        st.sigmoid(xg).backward(dyt)
        return xg.grad.numpy()

    theta, grad = rng.standard_normal(n).astype(dtype), (rng.standard_normal(n) * 0.1
                                                          ).astype(dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    p = torch.nn.Parameter(torch.from_numpy(theta.copy()))
    p.grad = torch.from_numpy(grad)
    opt = st.optim.Adam([p])

    def raw_adam():
        # (the optimizer's step number keeps growing; the kernel's cost does not
        # depend on it)
        k.adam_step(theta, grad, m, v, 10)
        return theta

    def torch_adam():
        opt.step()
        return p.detach().numpy()

    def same(a, b):
        return np.array_equal(np.asarray(a), np.asarray(b))

    def adam_check():  # one step each from the same state gives the same parameters
        t2, m2, v2 = theta.copy(), m.copy(), v.copy()
        p2 = torch.nn.Parameter(torch.from_numpy(t2.copy()))
        p2.grad = torch.from_numpy(grad)
        o2 = st.optim.Adam([p2])
        k.adam_step(t2, grad, m2, v2, 1)
        o2.step()
        return same(t2, p2.detach().numpy())

    return {
        "sigmoid forward": (lambda: k.sigmoid(x), lambda: st.sigmoid(xt),
                           lambda: same(k.sigmoid(x), st.sigmoid(xt).numpy())),
        "sigmoid forward + backward": (raw_backward, torch_backward,
                                       lambda: same(raw_backward(), torch_backward())),
        "adam step": (raw_adam, torch_adam, adam_check),
    }


def measure(sizes: list[int], dtypes: list[str], rounds: int) -> list[OverheadRow]:
    """Time each entry raw and through symdl.torch, for each size and dtype."""
    rows = []
    for dtype in dtypes:
        for n in sizes:
            for what, (raw, through_torch, check) in _entries(n, dtype).items():
                status = "ok" if check() else "WRONG: differs from the raw kernel"
                t = interleaved_medians({"raw": raw, "torch": through_torch}, rounds)
                rows.append(OverheadRow(what, dtype, n, t["raw"], t["torch"], status))
    return rows
