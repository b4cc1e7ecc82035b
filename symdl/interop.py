"""What a generated kernel module offers to wrappers for other frameworks
(``symdl.torch``, ``symdl.jax``), read from its kernels' names and signatures alone,
so that a user's generated package is wrapped as the built-in one is."""

from __future__ import annotations

import inspect
from collections.abc import Callable


def differentiable_kernels(module: object) -> dict[str, tuple[Callable, Callable, bool]]:
    """The module's forward kernels with a derived gradient kernel, by name: (forward,
    gradient, is_cost). Kernels whose forward returns several arrays, or whose
    gradient takes the forward's results (batch norm's mean and var), need glue."""
    names = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
    found = {}
    for name in names:
        for suffix, is_cost in (("_backward", False), ("_grad", True)):
            base = name.removesuffix("_forward")
            gradient = getattr(module, base + suffix, None)
            if name.endswith(("_backward", "_grad")) or gradient is None:
                continue
            found[name] = (getattr(module, name), gradient, is_cost)
    return found


def output_based(forward: Callable, gradient: Callable) -> bool:
    """Whether gradient is an elementwise backward kernel ``(y, dy)`` taking the
    forward's output y and its upstream gradient dy (sigmoid_backward), rather than
    the forward's inputs (maxpool2d_backward(x, dy, f, stride))."""
    fwd = [p.name for p in inspect.signature(forward).parameters.values()]
    bwd = [p.name for p in inspect.signature(gradient).parameters.values() if p.name != "out"]
    return len(bwd) == 2 and bwd[1] == "d" + bwd[0] and bwd[0] not in fwd
