"""Hand-written glue for kernels whose shape the generic wrapper does not cover:
batch norm (three results, a gradient that takes two of them), conv2d (an optional
bias tensor) and dropout (a random mask). Every number still comes from a generated
kernel: these functions only route tensors to kernels and back."""

from __future__ import annotations

import inspect

import torch

from symdl.kernels import batchnorm as _bn
from symdl.kernels import cnn as _cnn
from symdl.kernels import conv as _conv
from symdl.kernels import regularization as _reg
from symdl.torch._convert import check_tensor, from_numpy, result_dtype, to_numpy
from symdl.torch._ops import KernelOp


def _param(name: str, default: object) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)


# ---- batch norm ----------------------------------------------------------------------
def _fake_bn_forward(x, gamma, beta, eps):
    dtype = result_dtype([x, gamma, beta])
    return (x.new_empty(x.shape, dtype=dtype), x.new_empty(gamma.shape, dtype=dtype),
            x.new_empty(gamma.shape, dtype=dtype))


def _fake_bn_backward(dout, x, gamma, mean, var, eps):
    dtype = result_dtype([dout, x, gamma, mean, var])
    return (x.new_empty(x.shape, dtype=dtype), x.new_empty(gamma.shape, dtype=dtype),
            x.new_empty(gamma.shape, dtype=dtype))


_EPS = _param("eps", 1e-05)
_bn_forward = KernelOp("symdl::batchnorm_forward", _bn.batchnorm_forward, ["x", "gamma", "beta"],
                       [_EPS], 3, _fake_bn_forward).op
_bn_backward = KernelOp("symdl::batchnorm_backward", _bn.batchnorm_backward,
                        ["dout", "x", "gamma", "mean", "var"], [_EPS], 3, _fake_bn_backward).op


def _bn_setup(ctx, inputs, output):
    x, gamma, _, eps = inputs
    _, mean, var = output
    ctx.save_for_backward(x, gamma, mean, var)
    ctx.eps = eps
    ctx.mark_non_differentiable(mean, var)


def _bn_grad(ctx, dout, _dmean, _dvar):
    needs = ctx.needs_input_grad[:3]
    if not any(needs):
        return None, None, None, None
    x, gamma, mean, var = ctx.saved_tensors
    grads = _bn_backward(dout, x, gamma, mean, var, ctx.eps)
    return (*(g if need else None for g, need in zip(grads, needs, strict=True)), None)


_bn_forward.register_autograd(_bn_grad, setup_context=_bn_setup)


def batchnorm_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                      eps: float = 1e-05) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch norm, training mode, on tensors (``symdl.kernels.batchnorm_forward``).

    Differentiable in x, gamma and beta through ``batchnorm_backward``.

    Returns:
        out: the normalized, scaled and shifted batch, shaped like x (m, C).
        mean: the per-feature batch mean (C,), not differentiable.
        var: the per-feature biased (1/m) batch variance (C,), not differentiable.
    """
    for name, t in (("x", x), ("gamma", gamma), ("beta", beta)):
        check_tensor("batchnorm_forward", name, t)
    return _bn_forward(x, gamma, beta, eps)


# ---- conv2d --------------------------------------------------------------------------
def _conv_shape(x, w, stride, padding):
    n, _, h, v = x.shape
    o, _, f, _ = w.shape
    return (n, o, _cnn.conv_output_size(int(h), int(f), padding, stride),
            _cnn.conv_output_size(int(v), int(f), padding, stride))


@torch.library.custom_op("symdl::conv2d", mutates_args=(), device_types="cpu")
def _conv_forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int,
                  padding: int) -> torch.Tensor:
    tensors = [x, w] if b is None else [x, w, b]
    y = _conv.conv2d(to_numpy(x), to_numpy(w), None if b is None else to_numpy(b),
                     stride=stride, padding=padding)
    return from_numpy(y, result_dtype(tensors))


@_conv_forward.register_fake
def _(x, w, b, stride, padding):
    tensors = [x, w] if b is None else [x, w, b]
    return x.new_empty(_conv_shape(x, w, stride, padding), dtype=result_dtype(tensors))


@torch.library.custom_op("symdl::conv2d_backward", mutates_args=(), device_types="cpu")
def _conv_backward(x: torch.Tensor, w: torch.Tensor, dy: torch.Tensor, stride: int,
                   padding: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dtype = result_dtype([x, w, dy])
    dx, dw, db = _conv.conv2d_backward(to_numpy(x), to_numpy(w), to_numpy(dy),
                                       stride=stride, padding=padding)
    return from_numpy(dx, dtype), from_numpy(dw, dtype), from_numpy(db, dtype)


@_conv_backward.register_fake
def _(x, w, dy, stride, padding):
    dtype = result_dtype([x, w, dy])
    return (x.new_empty(x.shape, dtype=dtype), x.new_empty(w.shape, dtype=dtype),
            x.new_empty(w.shape[:1], dtype=dtype))


def _conv_setup(ctx, inputs, output):
    x, w, _, stride, padding = inputs
    ctx.save_for_backward(x, w)
    ctx.stride, ctx.padding = stride, padding


def _conv_grad(ctx, dy):
    needs = ctx.needs_input_grad[:3]
    if not any(needs):
        return None, None, None, None, None
    x, w = ctx.saved_tensors
    grads = _conv_backward(x, w, dy, ctx.stride, ctx.padding)
    return (*(g if need else None for g, need in zip(grads, needs, strict=True)), None, None)


_conv_forward.register_autograd(_conv_grad, setup_context=_conv_setup)


def conv2d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, stride: int = 1,
           padding: int = 0) -> torch.Tensor:
    """Convolution layer on tensors (``symdl.kernels.conv2d``): x (N, C, H, W), w
    (O, C, f, f), b (O,) or None. Differentiable through ``conv2d_backward``."""
    check_tensor("conv2d", "x", x)
    check_tensor("conv2d", "w", w)
    if b is not None:
        check_tensor("conv2d", "b", b)
    return _conv_forward(x, w, b, stride, padding)


# ---- dropout -------------------------------------------------------------------------
# The seed travels as a 0-d int64 tensor: drawn by torch.randint, it stays in the graph
# under torch.compile (an int drawn with .item() would break it), and the backward
# reads the same seed, hence the same mask.
@torch.library.custom_op("symdl::dropout", mutates_args=(), device_types="cpu")
def _dropout(x: torch.Tensor, p: float, seed: torch.Tensor, inverted: bool) -> torch.Tensor:
    y, _ = _reg.dropout(to_numpy(x), p, int(seed), inverted)
    return from_numpy(y, result_dtype([x]))


@_dropout.register_fake
def _(x, p, seed, inverted):
    return x.new_empty(x.shape, dtype=result_dtype([x]))


def _dropout_setup(ctx, inputs, output):
    _, ctx.p, seed, ctx.inverted = inputs
    ctx.save_for_backward(seed)


def _dropout_grad(ctx, dy):
    if not ctx.needs_input_grad[0]:
        return None, None, None, None
    (seed,) = ctx.saved_tensors
    # y = mask * x (/ q): linear in x, so dx is the same kernel, with the same mask
    # (the same seed), applied to dy.
    return _dropout(dy, ctx.p, seed, ctx.inverted), None, None, None


_dropout.register_autograd(_dropout_grad, setup_context=_dropout_setup)


def dropout(x: torch.Tensor, p: float, seed: int | None = None,
            inverted: bool = True) -> torch.Tensor:
    """Dropout on a tensor (``symdl.kernels.dropout``), differentiable in x.

    seed: the mask's seed (an integer in [0, 2**63)); None draws one from torch's
    default generator, so ``torch.manual_seed`` makes runs repeatable.
    """
    check_tensor("dropout", "x", x)
    if seed is None:
        seed_tensor = torch.randint(0, 2**62, (), dtype=torch.int64)
    elif isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63:
        seed_tensor = torch.tensor(seed, dtype=torch.int64)
    else:
        raise ValueError(f"symdl.torch.dropout(): argument 'seed' must be an integer in "
                         f"[0, 2**63) or None, got {seed!r}")
    return _dropout(x, p, seed_tensor, inverted)


@torch.library.custom_op("symdl::dropout_inference", mutates_args=(), device_types="cpu")
def _dropout_inference(x: torch.Tensor, p: float, inverted: bool) -> torch.Tensor:
    return from_numpy(_reg.dropout_inference(to_numpy(x), p, inverted), result_dtype([x]))


@_dropout_inference.register_fake
def _(x, p, inverted):
    return x.new_empty(x.shape, dtype=result_dtype([x]))


def _dropout_inference_setup(ctx, inputs, output):
    _, ctx.p, ctx.inverted = inputs


def _dropout_inference_grad(ctx, dy):
    # The expectation over the mask is linear in x: dx is the same kernel on dy.
    return _dropout_inference(dy, ctx.p, ctx.inverted), None, None


_dropout_inference.register_autograd(_dropout_inference_grad,
                                     setup_context=_dropout_inference_setup)


def dropout_inference(x: torch.Tensor, p: float, inverted: bool = True) -> torch.Tensor:
    """Dropout at test time on a tensor (``symdl.kernels.dropout_inference``): the
    expectation of the training output over the mask; differentiable in x."""
    check_tensor("dropout_inference", "x", x)
    return _dropout_inference(x, p, inverted)


_bn_inference = KernelOp(
    "symdl::batchnorm_inference", _bn.batchnorm_inference,
    ["x", "gamma", "beta", "running_mean", "running_var"], [_EPS], 1,
    lambda x, gamma, beta, rm, rv, eps: x.new_empty(
        x.shape, dtype=result_dtype([x, gamma, beta, rm, rv]))).op


def _bn_inference_setup(ctx, inputs, output):
    pass


def _bn_inference_grad(ctx, dout):
    raise RuntimeError("batchnorm_inference (BatchNorm1d in eval mode) has no derived "
                       "gradient: train in train() mode, or evaluate under torch.no_grad()")


_bn_inference.register_autograd(_bn_inference_grad, setup_context=_bn_inference_setup)


def batchnorm_inference(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                        running_mean: torch.Tensor, running_var: torch.Tensor,
                        eps: float = 1e-05) -> torch.Tensor:
    """Batch norm at test time on tensors (``symdl.kernels.batchnorm_inference``).
    Not differentiable: a backward pass through it raises RuntimeError."""
    for name, t in (("x", x), ("gamma", gamma), ("beta", beta),
                    ("running_mean", running_mean), ("running_var", running_var)):
        check_tensor("batchnorm_inference", name, t)
    return _bn_inference(x, gamma, beta, running_mean, running_var, eps)


def batchnorm_update_running(running_mean: torch.Tensor, running_var: torch.Tensor,
                             mean: torch.Tensor, var: torch.Tensor, m: int,
                             momentum: float = 0.1) -> None:
    """Update running statistics in place (``symdl.kernels.batchnorm_update_running``),
    on the tensors' memory; no autograd (buffers)."""
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("mean", mean), ("var", var)):
        check_tensor("batchnorm_update_running", name, t)
    with torch.no_grad():
        _bn.batchnorm_update_running(running_mean.numpy(), running_var.numpy(),
                                     to_numpy(mean), to_numpy(var), m, momentum)
    # (written through NumPy, which autograd cannot see)
    torch.autograd.graph.increment_version([running_mean, running_var])
