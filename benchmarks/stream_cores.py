"""STREAM's loops (see stream.py), cached on disk: compiling them took 4 s of every run,
a quick one's included."""

import sys
import types

import numba

# Numba's cache pickles a core's globals by module name and imports that name again on
# load; this file is imported as symdl.benchmarks.stream_cores (installed) and as
# benchmarks.stream_cores (from a checkout). So the cores get globals under one name,
# as the generated kernels' cores do (_runtime._cores).
_NAME = "_symdl_bench_stream_cores"
_GLOBALS = sys.modules.setdefault(_NAME, types.ModuleType(_NAME)).__dict__
_GLOBALS["numba"] = numba


def _jit(**flags):
    def decorate(fn):
        fn = types.FunctionType(fn.__code__, _GLOBALS, fn.__name__)
        return numba.njit(parallel=True, nogil=True, cache=True, **flags)(fn)

    return decorate


@_jit()
def copy(a, c):
    for i in numba.prange(a.size):
        c[i] = a[i]


@_jit(fastmath={"contract"})
def triad(a, b, c, s):
    for i in numba.prange(a.size):
        a[i] = b[i] + s * c[i]


@_jit(fastmath=True)
def read(a):
    total = 0.0
    for i in numba.prange(a.size):
        total += a[i]
    return total


@_jit()
def read4(a, y):
    # Blocks indexed from 0 through views: with a[4 * k] over the whole array, LLVM
    # loads the elements one at a time (12% slower, measured).
    for b in numba.prange((y.size + 4095) // 4096):
        lo, hi = b * 4096, min(y.size, (b + 1) * 4096)
        ab, yb = a[4 * lo:4 * hi], y[lo:hi]
        for k in range(hi - lo):
            yb[k] = max(max(ab[4 * k], ab[4 * k + 1]), max(ab[4 * k + 2], ab[4 * k + 3]))
