"""Did Numba vectorize a kernel's loop? Evidence for what limits a slow kernel.

Numba cannot show the machine code of a core loaded from its on-disk cache, so the
serial core's Python function is compiled once more, uncached, with the same
options, and its assembly searched for packed (SIMD) floating-point arithmetic.
"""

from __future__ import annotations

import re
import sys

import numpy as np

_PACKED = re.compile(r"\bv(?:add|sub|mul|div|fn?m(?:add|sub)\d*)p[sd]\s+%?[xyz]mm")
# libm called through a register: ``movabsq $exp, %rbx`` then ``callq *%rbx``
_CALLS = re.compile(r"\$(exp|expf|tanh|tanhf|log1p|log1pf|log|logf|expm1|expm1f)\b")


def vectorized(kernel, args: list[np.ndarray]) -> str:
    """'yes', 'no', plus ', scalar exp calls' when libm is called one element at a time."""
    import numba

    module = sys.modules[kernel.__module__]
    core = getattr(module, f"_{kernel.__name__}_ser", None)
    if core is None:
        return "?"
    kernel(*args)  # picks and compiles (or loads) the core for these dtypes
    options = {k: v for k, v in core.targetoptions.items() if k != "cache"}
    copy = numba.njit(**options)(core.py_func)
    sigs = []
    for sig in core.signatures:
        copy.compile(sig)
        sigs.append(sig)
    want = np.result_type(*[a.dtype for a in args]).name
    for sig in sigs:
        if want in str(sig[-1]) or want in str(sig[0]):
            asm = copy.inspect_asm(sig)
            calls = sorted(set(_CALLS.findall(asm)))
            tail = f", scalar {'/'.join(calls)} calls" if calls else ""
            return ("yes" if _PACKED.search(asm) else "no") + tail
    return "?"
