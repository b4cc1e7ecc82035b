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

#: Elementwise kernels of at most this many operations per element, no function among
#: them, get a streaming core. A non-temporal store keeps LLVM from vectorizing the
#: loop (it needs aligned vector stores): worth it only where the loop is memory-bound
#: even in scalar code (measured on y = 0.8 x, 10^7 float64: 5.2 -> 3.7 ms).
STREAM_MAX_OPS = 6


def streamable(outputs: dict[str, sp.Expr]) -> bool:
    """Cheap enough per element for a scalar loop with non-temporal stores."""
    return (sum(sp.count_ops(e) for e in outputs.values()) <= STREAM_MAX_OPS
            and not any(e.atoms(sp.Function) for e in outputs.values()))


def pointwise_cores(kernel: Pointwise) -> list[str]:
    """The cores a pointwise kernel gets: serial, parallel, and maybe streaming."""
    stream = len(kernel.outputs) == 1 and not kernel.updates and streamable(kernel.outputs)
    return ["ser", "par"] + (["stream"] if stream else [])
