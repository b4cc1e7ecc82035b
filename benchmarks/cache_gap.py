"""Kernels loaded from Numba's on-disk cache against the same kernels freshly compiled.

Users run cached kernels, and a cached core is not always the code that was compiled:
Numba links a parallel loop into its caller and optimizes the linked copy again, and
the cache keeps that copy (issue 19 measured sigmoid 1.9x slower cached). Each side
runs in fresh processes: "cached" with the user's cache (filled by a first, untimed
process), "fresh" with NUMBA_CACHE_DIR set to an empty directory, so that every core
is compiled in the process that times it. The two alternate, and each figure is the
median over the processes of each process's median call.

Processes differ in more than their code (a fresh one has just spent seconds in LLVM),
so each cached process also times the same kernel with its cores compiled anew in that
process, the two alternating call by call: the same data, the same process, only the
machine code differs. That pair is what the target checks; the pair of processes is
reported beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

KERNELS = ("sigmoid", "tanh", "sigmoid_backward", "tanh_backward", "adam_step",
           "gan_g_loss_nonsaturating_logits", "gan_g_loss_nonsaturating_logits_grad")
"""Kernels compared by default: transcendental and memory-bound elementwise ones, an
optimizer step (in place) and a cost and its gradient (a reduction, a batch map)."""

MAX_GAP = 1.05
"""Target of issue 19: a cached kernel is at most 5% slower than a fresh one."""


@dataclass
class CacheRow:
    kernel: str
    dtype: str
    n: int
    cached_s: float  # in processes that load the cores from the cache
    fresh_s: float  # in processes that compile them
    here_cached_s: float | None = None  # in one process, alternating call by call
    here_fresh_s: float | None = None

    @property
    def ratio(self) -> float:
        """Cached time / fresh time, in one process where measured (the machine code
        alone), else in separate processes: above 1, the cached kernel is slower."""
        if self.here_cached_s is not None and self.here_fresh_s is not None:
            return self.here_cached_s / self.here_fresh_s
        return self.process_ratio

    @property
    def process_ratio(self) -> float:
        """Cached time / fresh time in separate fresh processes."""
        return self.cached_s / self.fresh_s


# One process: times each kernel (writing into a preallocated output, as a training loop
# would) after a warm-up call, which loads the core from the cache or compiles it.
_TIMER = textwrap.dedent("""
    import json, sys, time, types
    import numba
    import numpy as np
    import symdl.kernels as k
    n, names, dtypes, calls, here = json.loads(sys.argv[1])

    def fresh_cores(fn):
        # fn's module, and a fresh, uncached compile of each of its cores (the
        # dispatchers named _<kernel>_...), to swap in for the cached ones
        module = sys.modules[fn.__module__]
        cores = [(name, core) for name, core in vars(module).items()
                 if name.startswith("_" + fn.__name__ + "_") and hasattr(core, "py_func")]
        fresh = {}
        # Serial cores first: a parallel one calls its kernel's serial loops, found in
        # its globals (the cores' namespace), and gets the fresh ones in a copy of them.
        for name, core in sorted(cores, key=lambda c: bool(c[1].targetoptions.get("parallel"))):
            options = {o: v for o, v in core.targetoptions.items()
                       if o not in ("cache", "nopython")}
            func = core.py_func
            if options.get("parallel"):
                func = types.FunctionType(func.__code__, {**func.__globals__, **fresh},
                                          func.__name__)
            fresh[name] = numba.njit(**options)(func)
        return module, fresh
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal(n) * 4, rng.standard_normal(n)
    y = rng.uniform(0.0, 1.0, n)
    # Arguments by kernel; out= where the kernel has it (a single array result).
    use = {"sigmoid_backward": "y dy", "tanh_backward": "y dy",
           "adam_step": "theta grad m v"}
    out = {}
    for dtype in dtypes:
        a = {"x": x.astype(dtype), "y": y.astype(dtype), "dy": dy.astype(dtype),
             "theta": x.astype(dtype), "grad": dy.astype(dtype),
             "m": (dy * 0.1).astype(dtype), "v": (y * 0.01).astype(dtype)}
        buf = np.empty(n, dtype)
        for name in names:
            fn = getattr(k, name)
            args = [a[v] for v in use.get(name, "x").split()]
            kw = {"t": 10} if name == "adam_step" else {}
            if name in ("sigmoid", "tanh", "sigmoid_backward", "tanh_backward"):
                kw["out"] = buf
            fn(*args, **kw)
            times = []
            for _ in range(calls):
                t = time.perf_counter()
                fn(*args, **kw)
                times.append(time.perf_counter() - t)
            out[name + " " + dtype] = sorted(times)[len(times) // 2]
            if not here:
                continue
            module, fresh = fresh_cores(fn)
            cached = {c: getattr(module, c) for c in fresh}
            vars(module).update(fresh)
            fn(*args, **kw)  # compiles the fresh cores that this call uses
            if not any(core.signatures for core in fresh.values()):
                sys.exit(f"{name}: its cores could not be swapped for fresh ones")
            pairs = {"cached": [], "fresh": []}
            for i in range(4 * calls):  # 2 x calls on each side
                side = ("cached", "fresh")[i % 2]
                vars(module).update(cached if side == "cached" else fresh)
                t = time.perf_counter()
                fn(*args, **kw)
                pairs[side].append(time.perf_counter() - t)
            vars(module).update(cached)
            for side, times in pairs.items():
                out[f"{name} {dtype} here {side}"] = sorted(times)[len(times) // 2]
    print(json.dumps(out))
""")


def _process(n: int, names: list[str], dtypes: list[str], calls: int,
             cache_dir: str | None, extra_env: dict[str, str] | None = None,
             here: bool = False) -> dict[str, float]:
    """Each kernel's median call in one fresh process: {"name dtype": seconds}; with
    ``here``, also its cores compiled anew in that process against those it loaded,
    alternating call by call ("name dtype here fresh", "name dtype here cached")."""
    env = {**os.environ, **(extra_env or {})}
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    r = subprocess.run([sys.executable, "-c", _TIMER, json.dumps([n, names, dtypes, calls, here])],
                       capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr else "failed")
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(n: int, dtypes: list[str], repeats: int, names: tuple[str, ...] = KERNELS,
            calls: int = 11, progress: Callable[[str], None] | None = None,
            fill: bool = True) -> list[CacheRow]:
    """Cached and fresh time of each kernel and dtype, over ``repeats`` pairs of
    processes (after one process that fills the user's cache, unless ``fill`` is
    False: then a cold cache makes the "cached" side compile)."""
    names_, dtypes_ = list(names), list(dtypes)
    if fill:
        _process(n, names_, dtypes_, 1, None)  # fills the on-disk cache; not timed
    runs: dict[str, list[dict[str, float]]] = {"cached": [], "fresh": []}
    for i in range(repeats):
        if progress:
            progress(f"cached vs fresh, pair {i + 1} of {repeats} ...")
        order = ("cached", "fresh") if i % 2 == 0 else ("fresh", "cached")
        for side in order:
            if side == "cached":
                runs[side].append(_process(n, names_, dtypes_, calls, None, here=True))
            else:
                with tempfile.TemporaryDirectory(prefix="symdl-fresh-") as empty:
                    runs[side].append(_process(n, names_, dtypes_, calls, empty))
    rows = []
    for dtype in dtypes_:
        for name in names_:
            key = f"{name} {dtype}"
            rows.append(CacheRow(
                name, dtype, n, statistics.median(r[key] for r in runs["cached"]),
                statistics.median(r[key] for r in runs["fresh"]),
                statistics.median(r[key + " here cached"] for r in runs["cached"]),
                statistics.median(r[key + " here fresh"] for r in runs["cached"])))
    return rows
