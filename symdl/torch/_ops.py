"""Kernels as PyTorch custom operators, and differentiable functions built from them.

Nothing here computes a formula: each operator calls a generated kernel on the
tensors' memory, and each gradient is a generated ``_backward`` or ``_grad`` kernel.
What a kernel is, is read from the module's signatures:

- ``f`` with ``f_backward(..., d<out>, ...)``: the backward kernel's arguments before
  the upstream gradient ``d<out>`` name the forward's inputs (pooling's ``x``) or its
  output (sigmoid's ``y``); those after it are the forward's scalar arguments
  (pooling's ``f``, ``stride``). It returns the gradient of the forward's one array
  input.
- ``f`` with ``f_grad(...)`` (a cost): the gradient kernel takes the forward's
  arguments and returns one gradient per array argument, which the chain rule scales
  by the cost's upstream gradient.

Every required argument of the forward kernel that is not a scalar of its backward
kernel is an array (a tensor); arguments with defaults are scalars.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from symdl.torch._convert import check_tensor, compute_dtype, from_numpy, result_dtype, to_numpy

# Arguments of the NumPy kernels that the tensor functions do not take: a torch
# result is always a fresh tensor.
_OUTPUT_ARGUMENTS = ("out", "mask")


def _arguments(kernel: Callable) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(kernel).parameters.values()
            if p.name not in _OUTPUT_ARGUMENTS]


def _schema_type(p: inspect.Parameter) -> str:
    """The custom-op schema type of a scalar argument, from its default."""
    d = p.default
    if d is inspect.Parameter.empty:
        return "Scalar"
    if d is None:
        return "Scalar?"
    if isinstance(d, bool):
        return "bool"
    return "int" if isinstance(d, int) else "float"


@dataclass
class KernelOp:
    """A kernel as a custom operator: tensors first, then scalars, in its order."""

    qualname: str
    kernel: Callable
    tensors: list[str]
    scalars: list[inspect.Parameter]
    n_results: int
    fake: Callable[..., object]
    op: object = field(init=False)

    def __post_init__(self) -> None:
        args = [f"Tensor {n}" for n in self.tensors]
        args += [f"{_schema_type(p)} {p.name}" for p in self.scalars]
        results = "Tensor" if self.n_results == 1 else (
            "(" + ", ".join(["Tensor"] * self.n_results) + ")")
        schema = f"({', '.join(args)}) -> {results}"
        self.op = torch.library.custom_op(self.qualname, self._run, mutates_args=(),
                                          device_types="cpu", schema=schema)
        self.op.register_fake(self.fake)

    def _run(self, *args: object) -> torch.Tensor | tuple[torch.Tensor, ...]:
        tensors = list(args[:len(self.tensors)])
        scalars = {p.name: v for p, v in zip(self.scalars, args[len(self.tensors):], strict=True)}
        arrays = [to_numpy(t) for t in tensors]
        result = self.kernel(*arrays, **scalars)
        dtype = result_dtype(tensors)
        if self.n_results == 1:
            return from_numpy(result, dtype)
        return tuple(from_numpy(r, dtype) for r in result)


def probe_shapes(kernel: Callable, tensors: Sequence[torch.Tensor], scalars: dict
                 ) -> list[tuple[int, ...]]:
    """The shapes of a kernel's results, for a fake (shape-only) implementation: the
    kernel run on zeros of the inputs' shapes, so no shape rule is written twice. Only
    while torch.compile traces, once per compiled shape."""
    dtype = np.float32 if compute_dtype(list(tensors)) == torch.float32 else np.float64
    result = kernel(*[np.zeros([int(s) for s in t.shape], dtype) for t in tensors], **scalars)
    results = result if isinstance(result, tuple) else (result,)
    return [np.shape(r) for r in results]


@dataclass
class Differentiable:
    """A forward kernel and its gradient kernel as one differentiable function."""

    namespace: str
    name: str
    kernel: Callable
    gradient: Callable
    is_cost: bool  # (the gradient kernel is f_grad: no upstream gradient argument)

    def __post_init__(self) -> None:
        fwd = _arguments(self.kernel)
        bwd = _arguments(self.gradient)
        fwd_names = {p.name for p in fwd}
        if self.is_cost:
            before, after = [p.name for p in bwd], []
            self.upstream = None
        else:
            k = next((i for i, p in enumerate(bwd) if p.name.startswith("d")
                      and p.name not in fwd_names), None)
            if k is None:
                raise ValueError(f"{self.gradient.__name__}: no upstream gradient argument")
            before = [p.name for p in bwd[:k]]
            after = [p.name for p in bwd[k + 1:]]
            self.upstream = bwd[k].name
        self.params = fwd
        self.tensors = [p.name for p in fwd
                        if p.default is inspect.Parameter.empty and p.name not in after]
        if not self.tensors:
            raise ValueError(f"{self.name}: no array argument found from the signatures of "
                             f"{self.name} and {self.gradient.__name__}; leave it out "
                             f"(skip=({self.name!r},)) and wrap it by hand")
        self.scalars = [p for p in fwd if p.name not in self.tensors]
        # What the gradient kernel reads before the upstream gradient: forward inputs by
        # name, anything else is the forward's output.
        self.saved = before
        self.uses_output = any(n not in fwd_names for n in before)
        self.gradient_scalars = [p for p in bwd if p.name in after]
        self.forward_op = KernelOp(f"{self.namespace}::{self.name}", self.kernel, self.tensors,
                                   self.scalars, 1, self._fake_forward).op
        grad_tensors = before + ([self.upstream] if self.upstream else [])
        self.gradient_op = KernelOp(f"{self.namespace}::{self.gradient.__name__}",
                                    self.gradient, grad_tensors, self.gradient_scalars,
                                    len(self.tensors), self._fake_gradient).op
        self.forward_op.register_autograd(self._backward, setup_context=self._setup_context)

    def _fake_forward(self, *args: object) -> torch.Tensor:
        tensors = list(args[:len(self.tensors)])
        dtype = result_dtype(tensors)
        if self.is_cost:
            return tensors[0].new_empty((), dtype=dtype)
        if self.uses_output:  # elementwise: the output has the input's shape
            return torch.empty(tensors[0].shape, dtype=dtype, device=tensors[0].device)
        scalars = {p.name: v for p, v in zip(self.scalars, args[len(self.tensors):], strict=True)}
        (shape,) = probe_shapes(self.kernel, tensors, scalars)
        return tensors[0].new_empty(shape, dtype=dtype)

    def _fake_gradient(self, *args: object) -> torch.Tensor | tuple[torch.Tensor, ...]:
        names = self.saved + ([self.upstream] if self.upstream else [])
        by_name = dict(zip(names, args[:len(names)], strict=True))  # (then the scalars)
        dtype = result_dtype([t for t in by_name.values()])
        # The gradient of each array input has that input's shape (an elementwise
        # kernel's input has its output's shape).
        like = [by_name.get(n, args[0]) for n in self.tensors]
        grads = tuple(torch.empty(t.shape, dtype=dtype, device=t.device) for t in like)
        return grads[0] if len(grads) == 1 else grads

    def _setup_context(self, ctx, inputs, output) -> None:
        tensors = dict(zip(self.tensors, inputs, strict=False))  # (then the scalars)
        ctx.save_for_backward(*[tensors.get(n, output) for n in self.saved])
        values = dict(zip([p.name for p in self.scalars], inputs[len(self.tensors):],
                          strict=True))
        ctx.gradient_scalars = [values[p.name] for p in self.gradient_scalars]

    def _backward(self, ctx, grad: torch.Tensor) -> tuple:
        needs = ctx.needs_input_grad[:len(self.tensors)]
        nothing = (None,) * len(self.scalars)
        if not any(needs):  # (no input requires grad: no backward work)
            return (None,) * len(self.tensors) + nothing
        saved = ctx.saved_tensors
        if self.is_cost:
            grads = self.gradient_op(*saved, *ctx.gradient_scalars)
            grads = grads if isinstance(grads, tuple) else (grads,)
            # The chain rule: the cost's gradients scaled by its upstream gradient.
            grads = tuple(g * grad for g in grads)
        else:
            grads = self.gradient_op(*saved, grad, *ctx.gradient_scalars)
            grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(g if need else None for g, need in zip(grads, needs, strict=True)) + nothing

    def function(self) -> Callable:
        """The public function: the kernel's arguments (less out=/mask=), checked."""
        params = ", ".join(str(p) if p.default is inspect.Parameter.empty
                           else f"{p.name}=_default_{p.name}" for p in self.params)
        checks = "".join(f"    _check({self.name!r}, {n!r}, {n})\n" for n in self.tensors)
        call = ", ".join(self.tensors + [p.name for p in self.scalars])
        # Generated as plain Python (fixed arguments, no *args binding), so that
        # torch.compile traces through it without a graph break.
        source = f"def {self.name}({params}):\n{checks}    return _op({call})\n"
        scope = {"_check": check_tensor, "_op": self.forward_op}
        scope |= {f"_default_{p.name}": p.default for p in self.params
                  if p.default is not inspect.Parameter.empty}
        exec(source, scope)  # noqa: S102  (the source is built above from identifiers)
        fn = scope[self.name]
        fn.__doc__ = (f"{self.kernel.__doc__ or ''}\n\n    Takes and returns CPU tensors; "
                      f"differentiable through {self.gradient.__name__}.")
        fn.__module__ = "symdl.torch"
        return fn
