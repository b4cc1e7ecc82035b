"""The machine's limit: STREAM copy and triad bandwidth with a parallel Numba loop.

Two reference passes are timed beside them. They are not part of the limit; they show
how far below it a kernel that mostly reads can go on this machine: a read-only pass (a
parallel sum), and a flat loop with pooling forward's traffic (each element written is
the maximum of 4 elements read, y[k] = max(a[4k], ..., a[4k+3])), nothing but its
loads and stores.

Bytes are counted the way the kernels' are: what is read, what is written, and the
extra read of the destination that an ordinary store into memory not in cache
costs (write-allocate). The classic STREAM figure, which does not count that read,
is reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .timing import interleaved_medians


@dataclass(frozen=True)
class Stream:
    n: int
    copy_s: float
    triad_s: float
    read_s: float | None = None
    read4_s: float | None = None

    @property
    def copy_gbs(self) -> float:
        """Copy c = a: read a, write c (+ write-allocate read of c)."""
        return 3 * 8 * self.n / self.copy_s / 1e9

    @property
    def triad_gbs(self) -> float:
        """Triad a = b + s*c: read b and c, write a (+ write-allocate read of a)."""
        return 4 * 8 * self.n / self.triad_s / 1e9

    @property
    def classic_copy_gbs(self) -> float:
        return 2 * 8 * self.n / self.copy_s / 1e9

    @property
    def classic_triad_gbs(self) -> float:
        return 3 * 8 * self.n / self.triad_s / 1e9

    @property
    def read_gbs(self) -> float | None:
        """Sum of a: read a only (not part of the limit)."""
        return 8 * self.n / self.read_s / 1e9 if self.read_s else None

    @property
    def read4_gbs(self) -> float | None:
        """y[k] = max(a[4k..4k+3]) for k < n // 4: read 4 elements, write 1 (+ its
        write-allocate read). Not part of the limit."""
        return 6 * 8 * (self.n // 4) / self.read4_s / 1e9 if self.read4_s else None

    @property
    def limit_gbs(self) -> float:
        """The best of copy and triad: what a memory-bound kernel can hope for."""
        return max(self.copy_gbs, self.triad_gbs)


def _cores():
    # A module of their own, imported here: numba loads only when STREAM is timed.
    from .stream_cores import copy, read, read4, triad

    return copy, triad, read, read4


class Probe:
    """STREAM copy and triad on float64 arrays of n elements (use n >> last-level cache),
    as functions to time, alone or interleaved with a kernel's implementations (so that
    the limit is measured under the same load as the kernel)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._copy, self._triad, self._read, self._read4 = _cores()
        self.a, self.b, self.c = np.full(n, 1.0), np.full(n, 2.0), np.zeros(n)
        self.q = np.zeros(n // 4)

    def thunks(self) -> dict:
        return {"stream copy": lambda: self._copy(self.a, self.c),
                "stream triad": lambda: self._triad(self.a, self.b, self.c, 3.0),
                "stream read": lambda: self._read(self.b),
                "stream read4": lambda: self._read4(self.b, self.q)}

    def result(self, medians: dict) -> Stream:
        return Stream(self.n, medians["stream copy"], medians["stream triad"],
                      medians.get("stream read"), medians.get("stream read4"))


def measure(n: int, rounds: int) -> Stream:
    """STREAM copy and triad on float64 arrays of n elements, timed on their own."""
    probe = Probe(n)
    return probe.result(interleaved_medians(probe.thunks(), rounds))
