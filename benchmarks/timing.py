"""Timing: medians of interleaved repeats after warm-up, and the machine's load.

Implementations compared with each other are timed round-robin (one sample of each,
then the next round), so that a burst of load from another process on this shared
2-core machine hits all of them alike instead of one.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Mapping


def load() -> float:
    """The 1-minute load average (other work on the machine while measuring)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many cores other processes kept busy while a block of code ran.

    ``with OtherLoad() as w: ...`` then ``w.cores``: machine-wide busy CPU time minus
    this process's own, divided by the wall time (nan where /proc is missing).
    """

    def __enter__(self) -> OtherLoad:
        self._busy, self._own, self._t = _busy_cpu_seconds(), _own(), time.perf_counter()
        self.cores = float("nan")
        return self

    def __exit__(self, *exc) -> None:
        busy, wall = _busy_cpu_seconds(), time.perf_counter() - self._t
        if busy is not None and self._busy is not None and wall > 0:
            self.cores = max(0.0, (busy - self._busy - (_own() - self._own)) / wall)


def _own() -> float:
    t = os.times()
    return t.user + t.system


#: Seconds one timed sample lasts (calls repeated back to back until then). Long enough
#: that a call shorter than it is timed in a run of calls, as in a training loop, not
#: alone after another implementation's turn: the first parallel call after a
#: single-threaded peer (NumPy) wakes an idle core, and on this VM that costs a short
#: call dearly (maxpool2d float32 on 40 MB, measured: 1.15 ms back to back, 1.66 ms
#: right after a NumPy call, 3.0 ms after 50 ms idle). Every implementation, PyTorch's
#: parallel ones included, is timed the same way.
SAMPLE_S = 10e-3


def _batch(fn: Callable[[], object], per_call: float, sample: float) -> int:
    """Calls per sample, so that one sample lasts about ``sample`` seconds."""
    return max(1, min(10_000, int(sample / max(per_call, 1e-7))))


def interleaved_medians(fns: Mapping[str, Callable[[], object]], rounds: int,
                        sample: float = SAMPLE_S) -> dict[str, float]:
    """Median seconds per call of each function; call each once first (warm-up).

    Calls shorter than ``sample`` seconds are timed in batches that last about that
    long, so that the clock's resolution, the loop's overhead and the wake-up of idle
    cores after another implementation's turn do not count (see SAMPLE_S).
    """
    batches = {}
    for key, fn in fns.items():
        fn()  # warm-up: compilation, caches, first-touch page faults of buffers
        t = time.perf_counter()
        fn()
        batches[key] = _batch(fn, time.perf_counter() - t, sample)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for key, fn in fns.items():
                k = batches[key]
                t = time.perf_counter()
                for _ in range(k):
                    fn()
                samples[key].append((time.perf_counter() - t) / k)
    finally:
        if enabled:
            gc.enable()
    return {k: statistics.median(v) for k, v in samples.items()}
