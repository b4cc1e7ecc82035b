"""symdl's kernels as differentiable PyTorch functions, modules and optimizers.

Importing this package imports torch (nothing else in symdl does). Each function
takes CPU tensors and returns tensors, shares their memory with the kernels where
the layout allows, is differentiable through the derived backward kernels and is a
``torch.library.custom_op`` (``symdl::<name>``), so it works under ``torch.compile``.

dtypes: float32 and float64 are computed as they are; float16 and bfloat16 are
computed in float32 and returned in the input's dtype; other dtypes are refused.
CUDA tensors are refused (there is no GPU backend yet).

``wrap(module)`` does the same for a package of your own formulas.
"""

from __future__ import annotations

import importlib

from symdl.torch import _glue
from symdl.torch._wrap import wrap

# Kernels whose shape needs the hand-written glue of _glue.py.
_GLUE = ("batchnorm_forward", "conv2d")
_MODULES = ("activations", "pooling", "gan", "backprop")


def _builtin() -> dict:
    functions = {}
    for name in _MODULES:
        module = importlib.import_module(f"symdl.kernels.{name}")
        functions |= vars(wrap(module, namespace="symdl", skip=_GLUE))
    return functions


_FUNCTIONS = _builtin()
globals().update(_FUNCTIONS)

batchnorm_forward = _glue.batchnorm_forward
batchnorm_inference = _glue.batchnorm_inference
batchnorm_update_running = _glue.batchnorm_update_running
conv2d = _glue.conv2d
dropout = _glue.dropout
dropout_inference = _glue.dropout_inference
_GLUE_NAMES = ["batchnorm_forward", "batchnorm_inference", "batchnorm_update_running", "conv2d",
               "dropout", "dropout_inference"]

__all__ = sorted([*_FUNCTIONS, *_GLUE_NAMES, "wrap"])

# (imported last: they use the functions above)
from symdl.torch import nn, optim  # noqa: E402

__all__ += ["nn", "optim"]
