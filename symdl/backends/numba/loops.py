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
#: them, get a streaming core: non-temporal vector stores, which spare the output's
#: write-allocate read, a third of the traffic of y = f(x). Worth it where the loop is
#: memory-bound (10^7 elements: y = 0.8 x 9.2 -> 6.7 ms in float64, 4.8 -> 3.4 ms in
#: float32). Not for the loops of exp, tanh and the like: streaming the outputs of
#: sigmoid and tanh (10^7 elements, float64 and float32) measured 0.93x to 1.06x.
STREAM_MAX_OPS = 6


def streamable(outputs: dict[str, sp.Expr]) -> bool:
    """Cheap enough per element to be memory-bound: a loop for non-temporal stores."""
    return (sum(sp.count_ops(e) for e in outputs.values()) <= STREAM_MAX_OPS
            and not any(e.atoms(sp.Function) for e in outputs.values()))


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
