"""Did Numba vectorize a kernel's loop? Evidence for what limits a slow kernel.

Numba cannot show the machine code of a core loaded from its on-disk cache, so the
serial core's Python function is compiled once more, uncached, with the same
options, and its assembly searched for packed (SIMD) floating-point arithmetic.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

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


# ---- 512-bit vectors: an opt-in, measured ----------------------------------------------
WIDE_KERNELS = ("sigmoid", "tanh")
"""Kernels timed with and without 512-bit vectors (compute-bound ones: a memory-bound
kernel runs at the memory's speed either way)."""


@dataclass
class WideRow:
    kernel: str
    dtype: str
    n: int
    default_s: float  # LLVM's choice for the CPU (256-bit vectors on AVX-512 Xeons)
    wide_s: float  # NUMBA_CPU_FEATURES=<host features>,-prefer-256-bit

    @property
    def speedup(self) -> float:
        """Default time / 512-bit time: above 1, the opt-in is faster."""
        return self.default_s / self.wide_s


def wide_features() -> str | None:
    """NUMBA_CPU_FEATURES for 512-bit vectors: the host's features with LLVM's
    preference for 256-bit vectors turned off; None where the CPU lacks AVX-512."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten()
    if "+avx512f" not in features.split(","):
        return None
    return features + ",-prefer-256-bit"


def measure_wide(n: int, dtypes: list[str], repeats: int, calls: int,
                 names: tuple[str, ...] = WIDE_KERNELS,
                 progress: Callable[[str], None] | None = None,
                 fill: bool = True) -> list[WideRow]:
    """Each kernel with LLVM's default vector width and with 512-bit vectors, each side
    in fresh processes (the CPU features are process-wide and part of Numba's cache
    key), alternating, after one untimed process per side that fills its cache; the
    median over the processes of each one's median call (without ``fill``, the timed
    processes compile: a quick run's smoke test). Empty without AVX-512."""
    from .cache_gap import _process

    features = wide_features()
    if features is None:
        return []
    sides = {"default": {}, "wide": {"NUMBA_CPU_FEATURES": features}}
    for env in sides.values() if fill else ():
        _process(n, list(names), list(dtypes), 1, None, env)  # compiles or loads; untimed
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    for i in range(repeats):
        if progress:
            progress(f"256- vs 512-bit vectors, pair {i + 1} of {repeats} ...")
        for side in (("default", "wide") if i % 2 == 0 else ("wide", "default")):
            runs[side].append(_process(n, list(names), list(dtypes), calls, None,
                                       sides[side]))
    return [WideRow(k, d, n, statistics.median(r[f"{k} {d}"] for r in runs["default"]),
                    statistics.median(r[f"{k} {d}"] for r in runs["wide"]))
            for d in dtypes for k in names]
