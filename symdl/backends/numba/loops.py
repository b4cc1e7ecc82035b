"""The Numba backend's mapping of an iteration space onto loops.

A ``Pointwise`` kernel over the flattened elements gets a serial core (``range``), a
parallel core (``numba.prange``) and, where the work per element is small enough to
be memory-bound, a streaming core with non-temporal stores; the wrapper picks one by
size (``PARALLEL_THRESHOLD``) and by output size (``STREAM_BYTES``). The loops
themselves are structure in ``templates/numba/element_loop.py.j2``.
"""

from __future__ import annotations

import sympy as sp

from ...ir.nodes import Pointwise
from ...vecmath import ALGORITHMS

#: Elementwise kernels of at most this many operations per element, no function among
#: them, are memory-bound: non-temporal vector stores spare the output's write-allocate
#: read, a third of the traffic of y = f(x) (10^7 elements: y = 0.8 x 9.2 -> 6.7 ms in
#: float64, 4.8 -> 3.4 ms in float32).
STREAM_MAX_OPS = 6


def streamable(outputs: dict[str, sp.Expr]) -> bool:
    """Whether a loop gets a streaming core (non-temporal stores, for outputs beyond
    STREAM_BYTES): a memory-bound one, cheap per element, or one that computes a
    vectorizable function (exp, tanh, ...). The latter are bound by their arithmetic on
    two cores, but the saved read still shows: 10^7 elements, out=, medians of 25
    interleaved calls in 3 processes, ordinary -> streamed: sigmoid float32 4.91 ->
    4.71, 4.68 -> 4.40, 4.37 -> 4.21 ms; tanh float32 4.62 -> 4.44, 5.19 -> 5.06,
    4.22 -> 3.93 ms; float64 0 to 3% (sigmoid 10.71 -> 10.52, 11.30 -> 11.29 ms)."""
    cheap = (sum(sp.count_ops(e) for e in outputs.values()) <= STREAM_MAX_OPS
             and not any(e.atoms(sp.Function) for e in outputs.values()))
    return cheap or wide_vectors(outputs)


def wide_vectors(outputs: dict[str, sp.Expr]) -> bool:
    """Whether an element loop asks for the CPU's widest vectors: one that computes a
    vectorizable function (exp, tanh, log1p, erf) is compute-bound, and LLVM's default
    of 256-bit vectors on Intel's AVX-512 CPUs halves its throughput. Measured on this
    2-core Xeon, 10^7 elements, cached: sigmoid float32 6.2 -> 4.9 ms, tanh float64
    17.3 -> 13.7 ms; memory-bound loops gain nothing, so they keep the default
    (templates/numba/vector_width.py.j2 says where it applies)."""
    return any(e.has(*ALGORITHMS) for e in outputs.values())


def pointwise_cores(kernel: Pointwise) -> list[str]:
    """The cores a pointwise kernel gets: serial, parallel, and maybe streaming."""
    stream = len(kernel.outputs) == 1 and not kernel.updates and streamable(kernel.outputs)
    return ["ser", "par"] + (["stream"] if stream else [])
