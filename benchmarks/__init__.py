"""symdl's benchmark suite: generated kernels against the peers, and the machine's limit.

Run it with ``symdl bench [--quick] [NAME...]``. Installed as ``symdl.benchmarks``
(see pyproject.toml). Modules:

- ``cases``: one table entry per kernel, with its peers (add new kernels there);
- ``runner``: checks every implementation against a reference, then times it;
- ``stream``: STREAM copy and triad, the machine's memory bandwidth;
- ``extras``: the parallel-threshold sweep and start-up latency;
- ``cache_gap``: kernels loaded from Numba's on-disk cache against fresh compiles;
- ``torch_overhead``: the symdl.torch path against the raw kernel;
- ``report``: terminal table, Markdown report, PNG chart, JSON.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .timing import SAMPLE_S

SECTIONS = ("stream", "kernels", "cache", "simd", "small", "threshold", "latency", "torch")
"""What ``symdl bench --sections`` can choose (default: all). ``simd`` inspects the
serial cores' machine code (slow: each core is compiled once more, uncached), and
times sigmoid and tanh with 512-bit vectors in every function (an opt-in, README)
against the default (512-bit in symdl's compute-bound element loops alone).
``torch``: the symdl.torch path's overhead over the raw kernel, at 1,000 elements and
the run's size. ``cache``: elementwise kernels loaded from Numba's on-disk cache
against the same kernels freshly compiled, each in fresh processes."""


CACHE_PAIRS = 8
"""Pairs of fresh processes (cached, fresh) per kernel in a full run's cache section:
with 3, the ratios of two runs on the shared 2-core Xeon spread from 0.82 to 1.32; with
8, from 0.87 to 1.02 (2026-12-03), below the 5% the section checks."""

QUICK_FEW = 4
"""Kernels that a quick run's small-input and threshold sections cover (the first of
the table: the elementwise ones)."""


@dataclass
class Options:
    """What ``symdl bench`` runs. Sizes default to the full run, or the quick one."""

    quick: bool = False
    names: list[str] = field(default_factory=list)
    size: int | None = None
    rounds: int | None = None
    out: str = "benchmarks/out"
    sections: tuple[str, ...] = SECTIONS
    dtypes: tuple[str, ...] = ("float64", "float32")


_START = time.perf_counter()


def _progress(msg: str) -> None:
    """One line of progress on stderr, with the seconds since the run started."""
    print(f"symdl bench: [{time.perf_counter() - _START:5.1f} s] {msg}", file=sys.stderr,
          flush=True)


def run(opts: Options) -> int:
    """Run the benchmarks, print the table, write the report; 0, or 2 on a bad name."""
    from . import extras, stream
    from .cases import CASES
    from .machine import describe, threading_layer
    from .peers import PEERS, missing_peers
    from .report import Results, chart, dump_json, markdown, terminal
    from .runner import run_case
    from .simd import vectorized

    global _START
    _START = time.perf_counter()
    known = {c.name for c in CASES}
    unknown = [n for n in opts.names if n not in known]
    if unknown:
        print(f"symdl bench: unknown kernel(s) {', '.join(unknown)}; known: "
              f"{', '.join(sorted(known))}", file=sys.stderr)
        return 2
    cases = [c for c in CASES if not opts.names or c.name in opts.names]
    n = opts.size or (20_000 if opts.quick else 10_000_000)
    rounds = opts.rounds or (3 if opts.quick else 11)
    command = "symdl bench" + (" --quick" if opts.quick else "") + \
        (f" --size {opts.size}" if opts.size else "") + "".join(f" {x}" for x in opts.names)
    res = Results(settings={"command": command, "n": n, "rounds": rounds,
                            "sample_ms": SAMPLE_S * 1e3, "quick": opts.quick,
                            "date": time.strftime("%Y-%m-%d %H:%M %Z")},
                  machine=describe(), bounds={c.name: c.bound for c in CASES},
                  speedups={c.name: c.torch_speedup for c in CASES if c.torch_speedup})
    for peer in missing_peers():
        res.notes.append(f"{peer} not installed: its columns are skipped "
                         "(pip install -e '.[bench]')")
    peers = list(PEERS)
    if opts.quick:
        # Inductor compiles each case with a C++ compiler: seconds per case and dtype.
        peers.remove("torch.compile")
        res.notes.append("quick run: torch.compile not run (its compile takes seconds per "
                         "kernel)")
        res.notes.append("quick run: sizes far below the caches' size; a smoke test, "
                         "not a measurement")

    if "stream" in opts.sections:
        _progress("STREAM copy and triad ...")
        res.stream = stream.measure(min(n, 1 << 17) if opts.quick else max(n, 10_000_000),
                                    rounds)
    if "kernels" in opts.sections:
        probe = stream.Probe(res.stream.n) if res.stream else None
        for case in cases:
            for dtype in opts.dtypes:
                _progress(f"{case.name} {dtype}, {n:,} elements ...")
                res.rows += run_case(case, n, dtype, rounds, peers, probe=probe)
    if "cache" in opts.sections:
        _cache_gap(res, n, rounds, opts)
    if "simd" in opts.sections:
        # Quick: one kernel's evidence (each core is compiled once more, uncached).
        simd_cases, simd_dtypes = (cases[:1], opts.dtypes[:1]) if opts.quick else (
            cases, opts.dtypes)
        _progress(f"SIMD evidence (serial cores' machine code), {len(simd_cases)} "
                  "kernel(s) ...")
        for case in simd_cases:
            for dtype in simd_dtypes:
                res.simd[f"{case.name} {dtype}"] = _simd(vectorized, case, dtype)
        _wide(res, n, rounds, opts)
    # Quick: the small-input and threshold sections on the first few (elementwise) cases.
    few = cases[:QUICK_FEW] if opts.quick else cases
    if "small" in opts.sections:
        _progress(f"small inputs (1,000 elements), {len(few)} kernels ...")
        for case in few:
            for dtype in opts.dtypes:
                res.small += run_case(case, 1000, dtype, max(rounds, 5),
                                      ["symdl", "numpy", "torch"])
    if "threshold" in opts.sections:
        sizes = [1 << 10, 1 << 16] if opts.quick else [1 << k for k in range(10, 23)]
        dtypes = opts.dtypes[:1] if opts.quick else opts.dtypes
        _progress(f"parallel threshold sweep, {len(sizes)} sizes, {len(few)} kernels ...")
        res.sweep = extras.threshold_sweep(few, sizes, list(dtypes), max(rounds, 5))
    if "latency" in opts.sections:
        _progress("latency (fresh processes) ...")
        try:
            # Quick: no timing of `symdl generate` from scratch (seconds).
            res.latency = extras.latency(1 if opts.quick else 3, generate=not opts.quick)
        except RuntimeError as err:
            res.notes.append(f"latency not measured: {err}")
    if "torch" in opts.sections:
        _torch_overhead(res, n, rounds, opts)
    res.machine["Numba threading layer"] = threading_layer()
    _notes(res, cases)

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    png = chart(res, out / "benchmarks.png") if res.rows else None
    print(terminal(res))
    _write_report(out / "benchmarks.md", markdown(res, png))
    dump_json(res, out / "benchmarks.json")
    print(f"\nwrote {out / 'benchmarks.md'}" + (f", {out / png}" if png else "")
          + f", {out / 'benchmarks.json'}")
    return 0


def _cache_gap(res, n: int, rounds: int, opts: Options) -> None:
    from .cache_gap import KERNELS, measure

    # Quick: one kernel, one dtype, one pair of processes (a fresh compile takes seconds).
    names = KERNELS[:1] if opts.quick else KERNELS
    dtypes = list(opts.dtypes[:1] if opts.quick else opts.dtypes)
    _progress(f"cached vs freshly compiled kernels, {n:,} elements, fresh processes ...")
    try:
        res.cache = measure(n, dtypes, 1 if opts.quick else CACHE_PAIRS, names, calls=rounds,
                            progress=_progress, fill=not opts.quick)
    except (RuntimeError, OSError, ValueError) as err:
        res.notes.append(f"cached vs fresh not measured: {err}")


def _wide(res, n: int, rounds: int, opts: Options) -> None:
    from .simd import WIDE_KERNELS, measure_wide

    # Quick: one kernel, one dtype, one pair of processes.
    names = WIDE_KERNELS[:1] if opts.quick else WIDE_KERNELS
    dtypes = list(opts.dtypes[:1] if opts.quick else opts.dtypes)
    _progress(f"256- vs 512-bit vectors (opt-in), {n:,} elements, fresh processes ...")
    try:
        res.wide = measure_wide(n, dtypes, 1 if opts.quick else 3, rounds, names,
                                progress=_progress, fill=not opts.quick)
    except (RuntimeError, OSError, ValueError) as err:
        res.notes.append(f"512-bit vectors not measured: {err}")
        return
    if not res.wide:
        res.notes.append("512-bit vectors not measured: this CPU has no AVX-512")


def _torch_overhead(res, n: int, rounds: int, opts: Options) -> None:
    from .peers import optional
    from .torch_overhead import measure

    if optional("torch") is None:
        res.notes.append("torch not installed: the symdl.torch overhead is not measured")
        return
    sizes = sorted({1000, n})
    _progress(f"symdl.torch overhead, {', '.join(f'{s:,}' for s in sizes)} elements ...")
    res.torch_overhead = measure(sizes, list(opts.dtypes), max(rounds, 5))


ANALYSIS_MARK = "<!-- analysis by hand below this line: symdl bench keeps it -->"


def _write_report(path: Path, text: str) -> None:
    """Write the report, keeping a hand-written analysis from the previous one."""
    if path.exists():
        old = path.read_text()
        if ANALYSIS_MARK in old:
            text += "\n" + old[old.index(ANALYSIS_MARK):]
    path.write_text(text)


def _simd(vectorized, case, dtype: str) -> str:
    import symdl.kernels

    from .cases import symdl_variants

    inputs = case.inputs(64, np.random.default_rng(0))
    args = [np.ascontiguousarray(a, dtype=dtype) for a in inputs.values()]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            # One small call compiles (or loads) the serial cores for this dtype.
            symdl_variants(case, list(inputs)).alloc(*args)
            found = [(k, vectorized(getattr(symdl.kernels, k), dtype)) for k in case.kernels]
    except Exception as err:  # noqa: BLE001 - evidence only; never fail the run on it
        return f"? ({type(err).__name__})"
    return found[0][1] if len(found) == 1 else "; ".join(f"{k}: {v}" for k, v in found)


def _notes(res, cases) -> None:
    for case in cases:
        for note in case.notes:
            res.notes.append(f"{case.name}: {note}")
    for r in res.rows:
        if r.status.startswith(("WRONG", "error")):
            res.notes.append(f"{r.kernel} {r.dtype} {r.mode} {r.peer}: {r.status} "
                             "(not timed)")
