"""Thin ``nn.Module``s over symdl's torch functions: the activations, ``Dropout`` and
``BatchNorm1d`` with running statistics (state_dict keys as torch's)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

import symdl.torch as st
from symdl.torch import _glue


def activation_module(function: Callable[[torch.Tensor], torch.Tensor],
                      name: str) -> type[nn.Module]:
    """An ``nn.Module`` class applying a one-argument function (``symdl.torch.sigmoid``,
    or one of ``symdl.torch.wrap(module)``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return function(x)

    return type(name, (nn.Module,), {"forward": forward, "__doc__":
                                     f"Applies {function.__name__} element by element."})


Sigmoid = activation_module(st.sigmoid, "Sigmoid")
Tanh = activation_module(st.tanh, "Tanh")


class Dropout(nn.Module):
    """Inverted dropout (as ``torch.nn.Dropout``) by symdl's dropout kernels.

    In training each call draws the mask's seed from torch's default generator (so
    ``torch.manual_seed`` repeats runs); in eval mode the output is the
    expectation over the mask (``dropout_inference``: x itself, for inverted
    dropout).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p < 1:
            raise ValueError(f"Dropout: argument 'p' must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return st.dropout(x, self.p)
        return _glue.dropout_inference(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm1d(nn.Module):
    """Batch norm over (batch, features) inputs, as ``torch.nn.BatchNorm1d`` on 2-D
    input, by symdl's batch-norm kernels: batch statistics and the running averages
    (torch's convention: the running variance takes the unbiased batch variance) in
    training, the running statistics in eval mode. Same parameters, buffers and
    state_dict keys as torch's.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if momentum is None:
            raise ValueError("BatchNorm1d: momentum=None (a cumulative average) is not "
                             "supported; the running-statistics kernel takes a momentum")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        factory = {"device": device, "dtype": dtype}
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features, **factory))
            self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        else:
            self.register_buffer("_ones", torch.ones(num_features, **factory), persistent=False)
            self.register_buffer("_zeros", torch.zeros(num_features, **factory),
                                 persistent=False)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"BatchNorm1d: input must be 2-D (batch, features), got shape "
                             f"{tuple(x.shape)}")
        gamma, beta = (self.weight, self.bias) if self.affine else (self._ones, self._zeros)
        if self.training or not self.track_running_stats:
            out, mean, var = st.batchnorm_forward(x, gamma, beta, self.eps)
            if self.training and self.track_running_stats:
                self.num_batches_tracked += 1
                _glue.batchnorm_update_running(self.running_mean, self.running_var,
                                               mean.to(self.running_mean.dtype),
                                               var.to(self.running_var.dtype), x.shape[0],
                                               self.momentum)
            return out
        return _glue.batchnorm_inference(x, gamma, beta, self.running_mean, self.running_var,
                                         self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")
