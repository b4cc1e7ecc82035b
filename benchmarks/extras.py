"""Beyond the big arrays: where the parallel core starts to pay, and start-up latency."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cases import Case, symdl_variants
from .runner import out_buffers
from .timing import OtherLoad, interleaved_medians

NEVER = 1 << 62  # a PARALLEL_THRESHOLD no array reaches: always the serial core


@dataclass
class SweepRow:
    kernel: str
    dtype: str
    n: int
    serial_s: float
    parallel_s: float
    other_load: float


def threshold_sweep(cases: list[Case], sizes: list[int], dtypes: list[str],
                    rounds: int) -> list[SweepRow]:
    """Time each kernel's serial and parallel core (PARALLEL_THRESHOLD forced high/low)."""
    import symdl.kernels

    rows = []
    for case in cases:
        modules = {sys.modules[getattr(symdl.kernels, k).__module__] for k in case.kernels}
        saved = {m: m.PARALLEL_THRESHOLD for m in modules}
        try:
            for dtype in dtypes:
                for n in sizes:
                    inputs = case.inputs(n, np.random.default_rng(0))
                    v = symdl_variants(case, list(inputs))
                    args = [np.ascontiguousarray(a, dtype=dtype) for a in inputs.values()]
                    out = None if v.out is None else out_buffers(v.alloc(*args),
                                                                  np.dtype(dtype))
                    if out is not None:

                        def call(v=v, args=args, out=out):
                            return v.out(*args, out=out)
                    else:

                        def call(v=v, args=args):  # in-place kernels update args
                            return v.alloc(*args)

                    def forced(threshold, call=call, modules=modules):
                        def run():
                            for m in modules:
                                m.PARALLEL_THRESHOLD = threshold
                            return call()

                        return run

                    with OtherLoad() as other:
                        t = interleaved_medians({"ser": forced(NEVER), "par": forced(0)},
                                                rounds)
                    rows.append(SweepRow(case.name, dtype, n, t["ser"], t["par"],
                                         other.cores))
        finally:
            for m, threshold in saved.items():
                m.PARALLEL_THRESHOLD = threshold
    return rows


def crossover(rows: list[SweepRow]) -> int | None:
    """The smallest size from which the parallel core is faster at every size measured
    (None if it never is; the rows are those of one kernel and dtype)."""
    best = None
    for r in sorted(rows, key=lambda r: r.n, reverse=True):
        if r.parallel_s < r.serial_s:
            best = r.n
        else:
            break
    return best


# ---- latency, each in a fresh process ------------------------------------------------
_FIRST_CALL = textwrap.dedent("""
    import time
    t = time.perf_counter()
    import numpy as np
    import numba
    t_numba = time.perf_counter() - t
    from benchmarks_probe import probe
    t = time.perf_counter(); probe(1.0); t_probe = time.perf_counter() - t
    import symdl.kernels as k
    small, big = np.zeros(1000), np.zeros(1 << 20)
    t = time.perf_counter(); k.sigmoid(small); t_ser1 = time.perf_counter() - t
    t = time.perf_counter(); k.sigmoid(small); t_ser2 = time.perf_counter() - t
    t = time.perf_counter(); k.sigmoid(big); t_par1 = time.perf_counter() - t
    t = time.perf_counter(); k.sigmoid(big); t_par2 = time.perf_counter() - t
    print(t_numba, t_probe, t_ser1, t_ser2, t_par1, t_par2)
""")

_PROBE = textwrap.dedent("""
    import numba

    @numba.njit(cache=True)
    def probe(x):
        return x + 1.0
""")


def _python(code: str, cwd: str | None = None) -> list[float]:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=cwd, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr else "failed")
    return [float(v) for v in r.stdout.split()]


def _timed(cmd: list[str]) -> float:
    import time

    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True, timeout=600)
    return time.perf_counter() - t


def latency(repeats: int, generate: bool = True) -> dict[str, float]:
    """Start-up costs in fresh processes, medians of ``repeats`` runs after a warm-up run.

    - ``import symdl.kernels`` (lazy: numba is not imported) and of one kernel module;
    - Numba's own one-time start (import + first call of a trivial cached function),
      then the first call of ``sigmoid`` beyond its second call (warm on-disk cache),
      on the serial core (1,000 elements) and the parallel core (2^20 elements);
    - ``symdl generate`` into an empty directory, then again when nothing changed
      (unless ``generate`` is False).
    """
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    imp = ("import time; t = time.perf_counter(); import {m}; "
           "print(time.perf_counter() - t)")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "benchmarks_probe.py").write_text(_PROBE)
        for i in range(repeats + 1):
            kernels = _python(imp.format(m="symdl.kernels"))[0]
            module = _python(imp.format(m="symdl.kernels.activations"))[0]
            t_numba, t_probe, s1, s2, p1, p2 = _python(_FIRST_CALL, cwd=tmp)
            if i == 0:
                continue  # warm-up: file-system cache, Numba's on-disk caches
            add("import symdl.kernels", kernels)
            add("import symdl.kernels.activations (imports numba)", module)
            add("numba start: import numba + first cached call", t_numba + t_probe)
            add("sigmoid first call beyond second, serial core (1e3)", s1 - s2)
            add("sigmoid first call beyond second, parallel core (2^20)", p1 - p2)
        gen = [sys.executable, "-m", "symdl.cli", "generate", "--out"]
        for _ in range(max(1, repeats) if generate else 0):
            with tempfile.TemporaryDirectory() as d:
                add("symdl generate, from scratch", _timed(gen + [d]))
                add("symdl generate, nothing changed", _timed(gen + [d]))
    return {k: statistics.median(v) for k, v in out.items()}
