"""``wrap(module)``: a kernel module's differentiable kernels as torch functions."""

from __future__ import annotations

import re
import types

from symdl.interop import differentiable_kernels
from symdl.torch._ops import Differentiable

_WRAPPED: dict[int, types.SimpleNamespace] = {}


def wrap(module: types.ModuleType, namespace: str | None = None,
         skip: tuple[str, ...] = ()) -> types.SimpleNamespace:
    """Differentiable torch functions for a generated kernel module.

    Every forward kernel with a derived ``<name>_backward`` (elementwise, pooling) or
    ``<name>_grad`` (a cost) kernel becomes ``<name>(...)``: the kernel's arguments
    less ``out=``, CPU tensors in, tensors out, differentiable through the gradient
    kernel, registered as a ``torch.library.custom_op`` (``<namespace>::<name>``) so
    that ``torch.compile`` sees one operator. Works for a package written by
    ``symdl generate --formulas F --out D`` as for ``symdl.kernels``.

    Args:
        module: a generated kernel module, e.g. ``mypkg.kernels.my_formulas``.
        namespace: the custom operators' namespace (default: ``symdl_`` and the
            module's name).
        skip: kernel names to leave out (kernels whose shape needs hand-written glue).

    Returns:
        A namespace with one function per differentiable kernel. Wrapping the same
        module again returns the same namespace (an operator is registered once).
    """
    if id(module) in _WRAPPED:
        return _WRAPPED[id(module)]
    if namespace is None:
        namespace = "symdl_" + re.sub(r"\W", "_", module.__name__)
    functions = {}
    for name, (forward, gradient, is_cost) in differentiable_kernels(module).items():
        if name not in skip:
            functions[name] = Differentiable(namespace, name, forward, gradient,
                                             is_cost).function()
    _WRAPPED[id(module)] = wrapped = types.SimpleNamespace(**functions)
    return wrapped
