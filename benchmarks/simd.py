"""Did Numba vectorize a kernel's loop? Evidence for what limits a slow kernel.

Numba cannot show the machine code of a core loaded from its on-disk cache, so the
serial core's Python function is compiled once more, uncached, with the same
options, and its assembly searched for packed (SIMD) floating-point arithmetic.
"""

from __future__ import annotations

import re
import sys

# Packed arithmetic, max/min, compares and blends (pooling), or full-width vector moves
# (a copy's loop).
_PACKED = re.compile(r"\bv(?:(?:add|sub|mul|div|max|min|fn?m(?:add|sub)\d*|cmp\w*|blendv)p[sd]"
                     r"\s+%?[xyz]mm|movu?p[sd]\s+%?[yz]mm)")
# libm called through a register: ``movabsq $exp, %rbx`` then ``callq *%rbx``
_CALLS = re.compile(r"\$(exp|expf|tanh|tanhf|log1p|log1pf|log|logf|expm1|expm1f)\b")


def vectorized(kernel, dtype: str) -> str:
    """'yes', 'no', plus ', scalar exp calls' when libm is called one element at a time,
    for the kernel's serial cores already compiled for ``dtype`` (call it first);
    'no' if any of them (one per batch of a cost, per variant) is not vectorized."""
    import numba

    module = sys.modules[kernel.__module__]
    # _<kernel>_ser, or one core per batch (_b0_ser) or per variant (_true_ser), or the
    # elementwise steps of a network pass (_run_map1, _resume_map1).
    name = re.compile(rf"_{kernel.__name__}(?:(?:_b\d+|_true|_false)?_ser|_(?:run|resume)_map\d+)")
    cores = [c for k, c in vars(module).items() if name.fullmatch(k)]
    verdicts, calls = [], set()
    for core in cores:
        options = {k: v for k, v in core.targetoptions.items() if k != "cache"}
        copy = numba.njit(**options)(core.py_func)
        for sig in core.signatures:
            if dtype not in str(sig[0]) and dtype not in str(sig[-1]):
                continue
            copy.compile(sig)
            asm = copy.inspect_asm(sig)
            calls.update(_CALLS.findall(asm))
            verdicts.append(bool(_PACKED.search(asm)))
    if not verdicts:
        return "?"
    tail = f", scalar {'/'.join(sorted(calls))} calls" if calls else ""
    return ("yes" if all(verdicts) else "no") + tail
