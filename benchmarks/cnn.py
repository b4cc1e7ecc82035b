"""Benchmark entries for the CNN layers: conv2d (forward, and forward + backward) and
max / average pooling with their backward passes.

conv2d runs on one fixed shape (x (32, 16, 64, 64), w (32, 16, 3, 3), stride 1,
padding 1; --quick and small runs shrink the batch and the image), against PyTorch
(F.conv2d, autograd) and NumPy (im2col with sliding_window_view + einsum). Pooling
(f = 2, stride 2) runs on x (32, 16, h, h) of about n elements; its peers are NumPy
reshapes and F.max_pool2d / F.avg_pool2d with autograd or the aten backward.
"""

from __future__ import annotations

from math import sqrt

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .spec import Case, Inputs, Step, Variants

# ---- inputs ------------------------------------------------------------------------
CONV = {"stride": 1, "padding": 1}
CONV_SHAPE = (32, 16, 64, 64)  # (N, C, H, W) of x; w is (32, 16, 3, 3)
CONV_OUT, CONV_F = 32, 3
POOL = {"f": 2, "stride": 2}
POOL_PLANES = (32, 16)  # (N, C); the planes are h x h with N*C*h*h about n


def _conv_inputs(backward: bool):
    """x, w, the bias (and dy) of the fixed shape; fewer images (then smaller ones)
    when n is below x's size."""

    def make(n: int, rng: np.random.Generator) -> Inputs:
        big_n, c, big_h, _ = CONV_SHAPE
        frac = min(1.0, n / (big_n * c * big_h * big_h))
        m = max(1, round(big_n * frac))
        h = min(big_h, max(CONV_F, round(sqrt(n / (m * c)))))
        x = rng.standard_normal((m, c, h, h))
        w = rng.standard_normal((CONV_OUT, c, CONV_F, CONV_F)) / sqrt(c * CONV_F**2)
        arrays = {"x": x, "w": w, "b": rng.standard_normal(CONV_OUT)}
        if backward:
            ho = (h + 2 * CONV["padding"] - CONV_F) // CONV["stride"] + 1
            arrays["dy"] = rng.standard_normal((m, CONV_OUT, ho, ho))
        return arrays

    return make


def _pool_inputs(backward: bool):
    """x (N, C, h, h) of about n elements, h a multiple of f (and dy for backward)."""

    def make(n: int, rng: np.random.Generator) -> Inputs:
        planes = POOL_PLANES[0] * POOL_PLANES[1]
        f = POOL["f"]
        h = max(f, f * round(sqrt(n / planes) / f))
        arrays = {"x": rng.standard_normal((*POOL_PLANES, h, h))}
        if backward:
            arrays["dy"] = rng.standard_normal((*POOL_PLANES, h // f, h // f))
        return arrays

    return make


# ---- conv2d: NumPy with im2col (sliding windows) and einsum --------------------------
def _np_windows(x, f, stride, padding):
    """x's f x f windows, (N, C, Ho, Wo, f, f), of x zero-padded by padding."""
    p = padding
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    return sliding_window_view(xp, (f, f), axis=(2, 3))[:, :, ::stride, ::stride]


def _np_conv2d(x, w, b, stride, padding):
    win = _np_windows(x, w.shape[2], stride, padding)
    return np.einsum("nchwab,ocab->nohw", win, w, optimize=True) + b[:, None, None]


def _np_conv2d_backward(x, w, dy, stride, padding):
    f, s, p = w.shape[2], stride, padding
    win = _np_windows(x, f, s, padding)
    dw = np.einsum("nohw,nchwab->ocab", dy, win, optimize=True)
    dwin = np.einsum("nohw,ocab->nchwab", dy, w, optimize=True)
    n, c, h, wd = x.shape
    ho, wo = dy.shape[2:]
    dxp = np.zeros((n, c, h + 2 * p, wd + 2 * p), dtype=dy.dtype)
    for a in range(f):
        for bb in range(f):
            dxp[:, :, a:a + s * ho:s, bb:bb + s * wo:s] += dwin[..., a, bb]
    return dxp[:, :, p:p + h, p:p + wd], dw, dy.sum(axis=(0, 2, 3))


def _np_conv2d_train(x, w, b, dy, stride, padding):
    return (_np_conv2d(x, w, b, stride, padding),
            *_np_conv2d_backward(x, w, dy, stride, padding))


def _torch_conv2d(torch):
    F = torch.nn.functional

    def forward(x, w, b, stride, padding):
        with torch.no_grad():
            return F.conv2d(x, w, b, stride=stride, padding=padding)

    return Variants(forward)


def _torch_conv2d_train(torch):
    F = torch.nn.functional

    def autograd(x, w, b, dy, stride, padding):
        x, w, b = (a.detach().requires_grad_() for a in (x, w, b))
        y = F.conv2d(x, w, b, stride=stride, padding=padding)
        return (y.detach(), *torch.autograd.grad(y, (x, w, b), dy))

    return {"autograd": Variants(autograd)}


def _conv_atol(a: Inputs, ref) -> float:
    # A sum of K = C*f*f products rounds with error at most about K*eps*sum|w||x|.
    w = a["w"]
    k = w.shape[1] * w.shape[2] * w.shape[3]
    bound = _np_conv2d(np.abs(a["x"]), np.abs(w), np.abs(a["b"]), **CONV)
    return float(k * bound.max())


def _conv_train_atol(a: Inputs, ref) -> tuple[float, ...]:
    # Each part's sum, bounded the same way: terms times the sum of the magnitudes
    # (dx: O*f*f terms; dw and db: N*Ho*Wo terms).
    x, w, dy = np.abs(a["x"]), np.abs(a["w"]), np.abs(a["dy"])
    o, _, f, _ = w.shape
    n, _, ho, wo = dy.shape
    dx, dw, db = _np_conv2d_backward(x, w, dy, **CONV)
    return (_conv_atol(a, ref[0]), float(o * f * f * dx.max()),
            float(n * ho * wo * dw.max()), float(n * ho * wo * db.max()))


# ---- pooling: NumPy reshapes (f == stride, h a multiple of f) ------------------------
def _blocks(x, f):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // f, f, w // f, f)


def _np_maxpool(x, f, stride):
    return _blocks(x, f).max(axis=(3, 5))


def _np_maxpool_backward(x, dy, f, stride):
    xb = _blocks(x, f)
    # Random inputs have no ties: the mask marks each window's one maximum.
    mask = xb == xb.max(axis=(3, 5), keepdims=True)
    return (mask * dy[:, :, :, None, :, None]).reshape(x.shape)


def _np_avgpool(x, f, stride):
    return _blocks(x, f).mean(axis=(3, 5))


def _np_avgpool_backward(x, dy, f, stride):
    n, c, ho, wo = dy.shape
    spread = np.broadcast_to((dy / (f * f))[:, :, :, None, :, None], (n, c, ho, f, wo, f))
    return spread.reshape(x.shape)


def _torch_pool(torch, name):
    fn = getattr(torch.nn.functional, name)

    def forward(x, f, stride):
        with torch.no_grad():
            return fn(x, f, stride)

    return Variants(forward)


def _torch_pool_backward(torch, name):
    fn = getattr(torch.nn.functional, name)
    aten = torch.ops.aten

    def autograd(x, dy, f, stride):
        x = x.detach().requires_grad_()
        return torch.autograd.grad(fn(x, f, stride), x, dy)[0]

    def aten_max(x, dy, f, stride):
        # The forward again for the indices (autograd keeps them from the forward).
        y, idx = aten.max_pool2d_with_indices(x, [f, f], [stride, stride])
        return aten.max_pool2d_with_indices_backward(dy, x, [f, f], [stride, stride], [0, 0],
                                                     [1, 1], False, idx)

    def aten_avg(x, dy, f, stride):
        return aten.avg_pool2d_backward(dy, x, [f, f], [stride, stride], [0, 0], False, True,
                                        None)

    return {"autograd": Variants(autograd),
            "aten": Variants(aten_max if name == "max_pool2d" else aten_avg)}


def _avgpool_backward_traffic(a: Inputs) -> int:
    # x only gives the shape: read dy, write dx (write-allocate counted).
    return a["dy"].nbytes + 2 * a["x"].nbytes


# ---- the table ---------------------------------------------------------------------
CNN_CASES: list[Case] = [
    Case(
        "conv2d",
        _conv_inputs(False),
        numpy=Variants(_np_conv2d),
        torch=_torch_conv2d,
        bound="own",
        torch_speedup=0.8,  # issue 6: within 1.25x of PyTorch's time
        atol=_conv_atol,
        params=CONV,
        notes=("x (32, 16, 64, 64), w (32, 16, 3, 3), bias, stride 1, padding 1 (--quick and "
               "small runs shrink the batch and the image); NumPy: im2col with "
               "sliding_window_view and einsum; PyTorch: F.conv2d.",),
    ),
    Case(
        "conv2d+backward",
        _conv_inputs(True),
        numpy=Variants(_np_conv2d_train),
        torch=_torch_conv2d_train,
        bound="own",
        torch_speedup=0.8,  # issue 6: within 1.25x of PyTorch's time
        atol=_conv_train_atol,
        params=CONV,
        pipeline=(Step("conv2d", ("x", "w", "b"), ("y",)),
                  Step("conv2d_backward", ("x", "w", "dy"), ("dx", "dw", "db"))),
        returns=("y", "dx", "dw", "db"),
        notes=("conv2d + conv2d_backward on the conv2d shapes; PyTorch: F.conv2d + "
               "autograd.",),
    ),
]

for _kind, _torch_name in (("max", "max_pool2d"), ("avg", "avg_pool2d")):
    _np_fwd = _np_maxpool if _kind == "max" else _np_avgpool
    _np_bwd = _np_maxpool_backward if _kind == "max" else _np_avgpool_backward
    CNN_CASES += [
        Case(
            f"{_kind}pool2d",
            _pool_inputs(False),
            numpy=Variants(_np_fwd),
            torch=lambda t, _n=_torch_name: _torch_pool(t, _n),
            params=POOL,
            reference="read4",
            notes=("f = 2, stride 2 on x (32, 16, h, h) of about n elements; NumPy: a "
                   f"reshape and .{_kind if _kind == 'max' else 'mean'}; PyTorch: "
                   f"F.{_torch_name}.",),
        ),
        Case(
            f"{_kind}pool2d_backward",
            _pool_inputs(True),
            numpy=Variants(_np_bwd),
            torch=lambda t, _n=_torch_name: _torch_pool_backward(t, _n),
            params=POOL,
            traffic=None if _kind == "max" else _avgpool_backward_traffic,
            notes=(f"dx from x and dy; PyTorch: F.{_torch_name} + autograd (the forward "
                   "included), and the aten backward"
                   + (" (after the forward, for the indices)." if _kind == "max" else ".")
                   + ("" if _kind == "max" else " Bytes: read dy, write dx (x gives only "
                      "the shape)."),),
        ),
    ]
