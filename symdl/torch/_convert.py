"""Tensors to the kernels' NumPy arrays and back, zero-copy where the layout allows.

The dtype policy (documented in the README): float32 and float64 tensors go to the
kernels as they are; float16 and bfloat16 ones are computed in float32 (NumPy has no
bfloat16, and the kernels compute in float32 or float64) and the results are returned
in the input's dtype, as PyTorch's own CPU kernels for these types do; any other dtype
(integers, complex, bool) is refused with a TypeError naming the argument.
"""

from __future__ import annotations

import numpy as np
import torch

NATIVE = (torch.float32, torch.float64)
HALF = (torch.float16, torch.bfloat16)


def check_tensor(fn: str, name: str, t: object) -> None:
    """Refuse, with a message naming the argument, what the kernels cannot take."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"symdl.torch.{fn}(): argument '{name}' must be a torch.Tensor, "
                        f"got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(
            f"symdl.torch.{fn}(): argument '{name}' is on {t.device}, but symdl's kernels "
            f"run on the CPU only (there is no GPU backend yet): pass {name}.cpu()")
    if t.dtype not in NATIVE and t.dtype not in HALF:
        raise TypeError(f"symdl.torch.{fn}(): argument '{name}' must be a float16, bfloat16, "
                        f"float32 or float64 tensor, got {t.dtype}")


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The tensor's data as an array: a view (no copy) for float32/float64, strided or
    not (the kernels take strided arrays); a float32 copy for float16/bfloat16."""
    t = t.detach()
    if t.dtype in HALF:
        t = t.float()
    return t.numpy()


def compute_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    """The dtype a kernel computes these tensors in: float32 unless one is float64
    (the kernels' own rule, with float16/bfloat16 counted as float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def result_dtype(tensors: list[torch.Tensor]) -> torch.dtype:
    """The dtype results are returned in: the inputs' half dtype when they all share
    one, else the compute dtype."""
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) == 1 and next(iter(dtypes)) in HALF:
        return next(iter(dtypes))
    return compute_dtype(tensors)


def from_numpy(a: np.ndarray | float, dtype: torch.dtype) -> torch.Tensor:
    """A kernel's result as a tensor of dtype: shares the array's memory when the
    dtype is the array's own. A scalar (a cost) becomes a 0-d tensor."""
    if not isinstance(a, np.ndarray):
        return torch.tensor(float(a), dtype=dtype)
    if not a.flags.writeable:  # (torch warns on read-only arrays)
        a = a.copy()
    t = torch.from_numpy(a)
    return t if t.dtype == dtype else t.to(dtype)
