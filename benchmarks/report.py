"""Output: a terminal table, a Markdown report, a PNG chart of the ratios, raw JSON.

A ratio is peer time / symdl time in the same mode on the same inputs: above 1,
symdl is faster.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .cache_gap import MAX_GAP, CacheRow
from .extras import SweepRow, crossover
from .peers import PEERS
from .runner import Row
from .simd import WideRow
from .stream import Stream

# Targets of issue 3 (later issues add their own through the cases: torch_speedup).
MEMORY_FRACTION = 0.90  # memory-bound kernels: >= 90% of the machine's limit
COMPUTE_SPEEDUP = 1.2  # transcendental kernels: >= 1.2x faster than PyTorch and JAX
# bound "peer" (batch norm forward + backward): faster than PyTorch and JAX
# bound "own": only the case's own target (torch_speedup; conv2d: within 1.25x of PyTorch)
LATENCY_TARGETS = {
    "import symdl.kernels": 0.3,
    "sigmoid first call beyond second, serial core (1e3)": 0.05,
    "sigmoid first call beyond second, parallel core (2^20)": 0.05,
    "symdl generate, nothing changed": 1.0,
    "symdl generate, from scratch": 20.0,
}


@dataclass
class Results:
    """Everything one ``symdl bench`` run measured."""

    settings: dict
    machine: dict
    stream: Stream | None = None
    rows: list[Row] = field(default_factory=list)
    small: list[Row] = field(default_factory=list)
    sweep: list[SweepRow] = field(default_factory=list)
    latency: dict[str, float] = field(default_factory=dict)
    simd: dict[str, str] = field(default_factory=dict)  # "kernel dtype" -> yes/no
    torch_overhead: list = field(default_factory=list)  # torch_overhead.OverheadRow
    cache: list[CacheRow] = field(default_factory=list)  # cached vs freshly compiled
    wide: list[WideRow] = field(default_factory=list)  # 256- vs 512-bit vectors
    notes: list[str] = field(default_factory=list)
    bounds: dict[str, str] = field(default_factory=dict)  # kernel -> memory/compute/peer
    speedups: dict[str, float] = field(default_factory=dict)  # kernel -> x PyTorch's speed


# ---- helpers ---------------------------------------------------------------------------
def _groups(rows: list[Row]) -> dict[tuple[str, str, str], dict[str, Row]]:
    """(kernel, dtype, mode) -> peer -> row, keeping only modes symdl has; of a peer's
    several ways (torch fused, foreach, ...) the fastest that was timed."""
    out: dict[tuple[str, str, str], dict[str, Row]] = {}
    for r in rows:
        peers = out.setdefault((r.kernel, r.dtype, r.mode), {})
        old = peers.get(r.peer)
        if old is None or (r.seconds is not None and (old.seconds is None
                                                      or r.seconds < old.seconds)):
            peers[r.peer] = r
    return {k: v for k, v in out.items() if v.get("symdl") and v["symdl"].seconds}


def _time(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _difference(s: float) -> str:
    """A time difference, signed (noise can make a small overhead negative)."""
    return ("-" if s < 0 else "+") + _time(abs(s))


def _ratio(peer: Row | None, ref: Row) -> float | None:
    if peer is None or peer.seconds is None or ref.seconds is None:
        return None
    return peer.seconds / ref.seconds


def _limit(row: Row, stream: Stream | None) -> float | None:
    """The STREAM limit timed in the same rounds as the row, else the separate one."""
    return row.limit_gbs or (stream.limit_gbs if stream else None)


def _pct(row: Row, stream: Stream | None) -> str:
    limit = _limit(row, stream)
    if limit is None or row.gbs is None:
        return "-"
    return f"{100 * row.gbs / limit:.0f}%"


QUICK_NA = "n/a (quick)"
"""What a quick run prints where a figure needs the full sizes to mean anything."""


def _quick(res: Results) -> bool:
    return bool(res.settings.get("quick"))


def _cache_ratio(res: Results, r: CacheRow, processes: bool = False) -> str:
    """Cached / fresh, in one process (or in separate ones); at quick sizes a call lasts
    microseconds and the ratio is noise."""
    if _quick(res):
        return QUICK_NA
    return f"{r.process_ratio if processes else r.ratio:.2f}"


def _here(r: CacheRow, side: str) -> str:
    """The one-process time of a side, or '-' where it was not measured."""
    seconds = r.here_cached_s if side == "cached" else r.here_fresh_s
    return "-" if seconds is None else _time(seconds)


def _wide_ratio(res: Results, r: WideRow) -> str:
    return QUICK_NA if _quick(res) else f"{r.speedup:.2f}"


def _status(row: Row | None) -> str:
    if row is None:
        return "-"
    return row.status if row.status != "ok" else ""


def _width(peer: str) -> int:
    return max(10, len(peer) + 1)


# ---- terminal ---------------------------------------------------------------------------
def terminal(res: Results) -> str:
    lines = []
    if res.stream and _quick(res):
        lines.append(f"machine limit (STREAM): {QUICK_NA} ({res.stream.n:,} elements fit "
                     "in cache)")
    elif res.stream:
        s = res.stream
        lines.append(f"machine limit (STREAM, write-allocate counted): copy {s.copy_gbs:.1f} "
                     f"GB/s, triad {s.triad_gbs:.1f} GB/s"
                     + (f" (read only: {s.read_gbs:.1f} GB/s)" if s.read_gbs else "")
                     + (f" (read 4, write 1: {s.read4_gbs:.1f} GB/s)" if s.read4_gbs else ""))
    head = f"{'kernel':<28}{'dtype':<8}{'mode':<8}{'symdl':>11}{'%lim':>6}"
    head += "".join(f"{p:>{_width(p)}}" for p in PEERS[1:])
    lines += ["", "ratio = peer time / symdl time (above 1: symdl faster)", head,
              "-" * len(head)]
    for (kernel, dtype, mode), peers in _groups(res.rows).items():
        ref = peers["symdl"]
        cells = []
        for p in PEERS[1:]:
            r = _ratio(peers.get(p), ref)
            w = _width(p)
            cells.append(f"{r:>{w - 1}.2f}x" if r is not None else f"{'-':>{w}}")
        pct = "n/a" if _quick(res) else _pct(ref, res.stream)
        lines.append(f"{kernel:<28}{dtype:<8}{mode:<8}{_time(ref.seconds):>11}"
                     f"{pct:>6}" + "".join(cells))
    if _quick(res) and res.rows:
        lines += ["", "(quick: %lim n/a; ratios at these sizes measure call overheads, not the "
                  "kernels)"]
    if res.cache:
        lines += ["", "cached vs freshly compiled (ratio above 1: cached slower; in one "
                  "process, alternating calls, and in separate processes):"]
        lines += [f"  {r.kernel:<28}{r.dtype:<8}{r.n:>12,}  cached {_here(r, 'cached'):>10}  "
                  f"fresh {_here(r, 'fresh'):>10}  ratio {_cache_ratio(res, r)}  "
                  f"(processes {_time(r.cached_s)} / {_time(r.fresh_s)}: "
                  f"{_cache_ratio(res, r, processes=True)})"
                  for r in res.cache]
    if res.wide:
        lines += ["", "512-bit vectors everywhere, an opt-in (README, 'Using the kernels'); "
                  "fresh processes; above 1: the opt-in faster:"]
        lines += [f"  {r.kernel:<28}{r.dtype:<8}{r.n:>12,}  default {_time(r.default_s):>10}  "
                  f"512-bit {_time(r.wide_s):>10}  ratio {_wide_ratio(res, r)}"
                  for r in res.wide]
    if res.small:
        lines += ["", "small inputs (1,000 elements), per call:"]
        for (kernel, dtype, mode), peers in _groups(res.small).items():
            t = peers.get("torch")
            r = _ratio(t, peers["symdl"])
            lines.append(f"  {kernel:<28}{dtype:<8}{mode:<8} symdl "
                         f"{_time(peers['symdl'].seconds):>10}  torch "
                         f"{_time(t.seconds if t else None):>10}"
                         + (f"  ratio {r:.2f}x" if r else ""))
    if res.sweep:
        lines += ["", "parallel core pays from (elements):"]
        for (kernel, dtype), rows in _sweep_groups(res.sweep).items():
            lines.append(f"  {kernel:<28}{dtype:<8}{_fmt_n(crossover(rows))}")
    if res.latency:
        lines += ["", "latency:"]
        lines += [f"  {k:<58}{_time(v):>10}" for k, v in res.latency.items()]
    if res.torch_overhead:
        lines += ["", "symdl.torch path against the raw kernel, per call:"]
        lines += [f"  {r.what:<28}{r.dtype:<8}{r.n:>12,}  raw {_time(r.raw_s):>10}  "
                  f"symdl.torch {_time(r.torch_s):>10}  overhead {_difference(r.overhead_s):>11}"
                  + ("" if r.status == "ok" else f"  {r.status}") for r in res.torch_overhead]
    lines += [""] + [f"note: {n}" for n in res.notes]
    return "\n".join(lines)


def _sweep_groups(rows: list[SweepRow]) -> dict[tuple[str, str], list[SweepRow]]:
    out: dict[tuple[str, str], list[SweepRow]] = {}
    for r in rows:
        out.setdefault((r.kernel, r.dtype), []).append(r)
    return out


def _fmt_n(n: int | None) -> str:
    return "never (serial always faster)" if n is None else f"{n:,}"


# ---- targets ----------------------------------------------------------------------------
def targets(res: Results) -> list[tuple[str, bool, str]]:
    """(target, met, measured) for each target of issue 3 that this run measured; none
    in a quick run, whose sizes are far from the targets' sizes."""
    out: list[tuple[str, bool, str]] = []
    if _quick(res):
        return out
    for r in res.cache:
        out.append((f"{r.kernel} {r.dtype}: cached at most {MAX_GAP - 1:.0%} slower than "
                    "fresh", r.ratio <= MAX_GAP,
                    f"{r.ratio:.2f}x ({_here(r, 'cached')} vs {_here(r, 'fresh')} in one "
                    f"process; {r.process_ratio:.2f}x in separate ones)"))
    for (kernel, dtype, mode), peers in _groups(res.rows).items():
        ref = peers["symdl"]
        bound = res.bounds.get(kernel, "memory")
        others = [p for k, p in peers.items() if k != "symdl" and p.seconds]
        if bound == "memory":
            if _limit(ref, res.stream) and ref.gbs:
                frac = ref.gbs / _limit(ref, res.stream)
                out.append((f"{kernel} {dtype} {mode}: >= 90% of the memory limit",
                            frac >= MEMORY_FRACTION, f"{100 * frac:.0f}%"))
            if others:
                best = min(others, key=lambda p: p.seconds)
                r = best.seconds / ref.seconds
                out.append((f"{kernel} {dtype} {mode}: no slower than the fastest peer",
                            r >= 1.0, f"fastest peer {best.peer}: {r:.2f}x"))
        elif bound != "own":
            rivals = [p for p in others if p.peer in ("torch", "torch.compile", "jax")]
            want = COMPUTE_SPEEDUP if bound == "compute" else 1.0
            if rivals:
                best = min(rivals, key=lambda p: p.seconds)
                r = best.seconds / ref.seconds
                way = f" ({best.variant})" if best.variant else ""
                goal = f">= {want}x faster than" if want > 1 else "faster than"
                out.append((f"{kernel} {dtype} {mode}: {goal} PyTorch/JAX",
                            r >= want, f"best {best.peer}{way}: {r:.2f}x"))
        want = res.speedups.get(kernel)
        r = _ratio(peers.get("torch"), ref)
        if want and r is not None:
            way = f" ({peers['torch'].variant})" if peers["torch"].variant else ""
            goal = (f">= {want}x faster than PyTorch" if want >= 1 else
                    f"within {1 / want:g}x of PyTorch's time")
            out.append((f"{kernel} {dtype} {mode}: {goal}", r >= want,
                        f"best torch{way}: {r:.2f}x"))
    for (kernel, dtype, mode), peers in _groups(res.small).items():
        r = _ratio(peers.get("torch"), peers["symdl"])
        if r is not None:
            out.append((f"{kernel} {dtype} {mode} at 1,000 elements: no slower than PyTorch",
                        r >= 1.0, f"{_time(peers['symdl'].seconds)} vs "
                                  f"{_time(peers['torch'].seconds)} ({r:.2f}x)"))
    for key, limit in LATENCY_TARGETS.items():
        if key in res.latency:
            out.append((f"{key} < {_time(limit)}", res.latency[key] < limit,
                        _time(res.latency[key])))
    return out


# ---- Markdown ---------------------------------------------------------------------------
def markdown(res: Results, chart: str | None) -> str:
    s = res.settings
    md = ["# symdl benchmarks", "",
          f"Generated by `{s['command']}` on {s['date']}. Medians of {s['rounds']} "
          "interleaved rounds after a warm-up call (a call shorter than "
          f"{s.get('sample_ms', 2):g} ms is timed in a run of calls that lasts that long: "
          "see SAMPLE_S in benchmarks/timing.py); every result was checked against the "
          "float64 hand-written NumPy formula before its time counted. **Ratio** = peer "
          "time / symdl time in the same mode on the same inputs: above 1, symdl is faster. "
          "`alloc`: the call returns a fresh array; `out`: it writes into a preallocated "
          "one (`out=`); `inplace`: it updates its inputs (an optimizer step; each check on "
          "fresh copies, compared on the updated arrays). A peer's several ways (PyTorch "
          "fused, foreach, autograd, ...) are all checked and timed; the fastest is shown. "
          "Effective bandwidth = minimal bytes read + written (an ordinary store into a "
          "fresh output also reads the destination line first: write-allocate; an in-place "
          "update does not) / median time.",
          "", "## Machine", ""]
    md += [f"- **{k}**: {v}" for k, v in res.machine.items()]
    md += ["", "## Machine limit (STREAM, parallel Numba loop)", ""]
    if res.stream:
        st = res.stream
        quick = _quick(res)

        def gbs(v: float) -> str:
            # Quick sizes fit in cache: a bandwidth there is not the memory's.
            return QUICK_NA if quick else f"{v:.1f}"

        md += [f"{st.n:,} float64 elements per array.", "",
               "| | GB/s, write-allocate counted | GB/s, classic STREAM count |",
               "| --- | ---: | ---: |",
               f"| copy | {gbs(st.copy_gbs)} | {gbs(st.classic_copy_gbs)} |",
               f"| triad | {gbs(st.triad_gbs)} | {gbs(st.classic_triad_gbs)} |",
               *([f"| read only (a sum; not the limit) | {gbs(st.read_gbs)} | "
                  f"{gbs(st.read_gbs)} |"] if st.read_gbs else []),
               *([f"| read 4, write 1 (a flat max of 4: pooling forward's traffic; not the "
                  f"limit) | {gbs(st.read4_gbs)} | {gbs(st.read4_gbs * 5 / 6)} |"]
                 if st.read4_gbs else []), ""]
        if not quick:
            md += [f"Timed on its own: the better of copy and triad is **{st.limit_gbs:.1f} "
                   "GB/s**. Because other processes share this machine, STREAM is also timed "
                   "in the same interleaved rounds as each kernel, and each kernel's "
                   "percentage below is of the limit measured beside it (shown after the "
                   "percentage).", ""]
        if st.read_gbs and not quick:
            md += [f"Reading alone runs at {st.read_gbs / st.limit_gbs:.0%} of the limit: a "
                   "kernel that mostly reads (pooling forward reads 4 elements per element "
                   "written) meets its own ceiling below 100%."
                   + (f" A flat loop with pooling forward's traffic and nothing else runs at "
                      f"{st.read4_gbs / st.limit_gbs:.0%} of it." if st.read4_gbs else ""), ""]
    else:
        md += ["Not measured in this run.", ""]
    md += [f"## Kernels ({s['n']:,} elements)", ""]
    if chart:
        md += [f"![ratios]({chart})", ""]
    md += _results_table(res, res.rows)
    if res.cache:
        md += ["", "## Cached against freshly compiled kernels", "",
               "*Cached* loads the cores from Numba's on-disk cache (as every user runs "
               "them), *fresh* compiles them. *One process*: a process that loaded the "
               "cached cores also compiles them anew, uncached, and calls the kernel with "
               "the one and the other in turn, on the same data: only the machine code "
               "differs (the target's figure). *Processes*: each side in fresh processes, "
               "alternating, fresh ones with `NUMBA_CACHE_DIR` pointing to an empty "
               "directory; these also differ in what the process did before (a fresh one "
               "has just spent seconds compiling). Medians over the processes of each "
               "one's median call, writing into a preallocated output.", "",
               "| kernel | dtype | elements | one process: cached | fresh | cached / fresh "
               "| processes: cached | fresh | cached / fresh |",
               "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        md += [f"| {r.kernel} | {r.dtype} | {r.n:,} | {_here(r, 'cached')} | "
               f"{_here(r, 'fresh')} | {_cache_ratio(res, r)} | {_time(r.cached_s)} | "
               f"{_time(r.fresh_s)} | {_cache_ratio(res, r, processes=True)} |"
               for r in res.cache]
    if res.wide:
        md += ["", "## 512-bit vectors everywhere (opt-in)", "",
               "LLVM uses 256-bit vectors on these CPUs by default; symdl's compute-bound "
               "element loops, sigmoid's and tanh's among them, ask for 512-bit ones on "
               "their own functions (README, 'Using the kernels'). With "
               "`NUMBA_CPU_FEATURES=<host features>,-prefer-256-bit` every function gets "
               "them: this is what that adds. Each side in fresh processes, alternating; "
               "median over the processes of each one's median call.", "",
               "| kernel | dtype | elements | default | 512-bit | default / 512-bit |",
               "| --- | --- | ---: | ---: | ---: | ---: |"]
        md += [f"| {r.kernel} | {r.dtype} | {r.n:,} | {_time(r.default_s)} | "
               f"{_time(r.wide_s)} | {_wide_ratio(res, r)} |" for r in res.wide]
    if res.small:
        md += ["", "## Small inputs (1,000 elements, per call)", ""]
        md += _results_table(res, res.small, pct=False)
    if res.sweep:
        md += ["", "## Where the parallel core starts to pay", "",
               "Each kernel timed with `PARALLEL_THRESHOLD` forced to 0 (parallel core) "
               "and to 2^62 (serial core), interleaved. Crossover: the smallest size "
               "from which the parallel core is faster at every larger size measured.", ""]
        sizes = sorted({r.n for r in res.sweep})
        md += ["| kernel | dtype | crossover | " + " | ".join(f"{n:,}" for n in sizes) + " |",
               "| --- | --- | --- | " + " | ".join("---:" for _ in sizes) + " |"]
        for (kernel, dtype), rows in _sweep_groups(res.sweep).items():
            by = {r.n: r for r in rows}
            cells = [f"{by[n].serial_s / by[n].parallel_s:.2f}" if n in by else "-"
                     for n in sizes]
            md.append(f"| {kernel} | {dtype} | {_fmt_n(crossover(rows))} | "
                      + " | ".join(cells) + " |")
        md += ["", "Cells: serial time / parallel time (above 1: the parallel core is "
               "faster)."]
    if res.latency:
        md += ["", "## Latency (fresh processes, warm caches)", "", "| what | median |",
               "| --- | ---: |"]
        md += [f"| {k} | {_time(v)} |" for k, v in res.latency.items()]
    if res.torch_overhead:
        md += ["", "## The symdl.torch path against the raw kernel", "",
               "The same generated kernels called on NumPy arrays and through `symdl.torch` "
               "(tensor conversion, custom-op dispatch, autograd's graph with gradients), "
               "interleaved, per call; both give the same result bit for bit.", "",
               "| what | dtype | elements | raw | symdl.torch | overhead | result |",
               "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
        md += [f"| {r.what} | {r.dtype} | {r.n:,} | {_time(r.raw_s)} | {_time(r.torch_s)} | "
               f"{_difference(r.overhead_s)} | {r.status} |" for r in res.torch_overhead]
    tg = targets(res)
    if tg:
        md += ["", "## Targets of issues 3-6", "", "| target | met | measured |",
               "| --- | --- | --- |"]
        md += [f"| {t} | {'yes' if ok else '**no**'} | {m} |" for t, ok, m in tg]
    if res.notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in res.notes]
    return "\n".join(md) + "\n"


def _results_table(res: Results, rows: list[Row], pct: bool = True) -> list[str]:
    head = "| kernel | dtype | mode | symdl |"
    if pct:
        head += " GB/s (% of limit GB/s) | SIMD (serial core) |"
    head += "".join(f" {p} |" for p in PEERS[1:])
    md = [head, "|" + " --- |" * (head.count("|") - 1)]
    for (kernel, dtype, mode), peers in _groups(rows).items():
        ref = peers["symdl"]
        line = f"| {kernel} | {dtype} | {mode} | {_time(ref.seconds)} |"
        if pct:
            lim = _limit(ref, res.stream)
            bw = (f"{ref.gbs:.1f} ({_pct(ref, res.stream)} of {lim:.1f}" if ref.gbs and lim
                  else "-")
            if ref.gbs and lim and ref.reference_gbs:
                bw += (f"; {ref.gbs / ref.reference_gbs:.0%} of {ref.reference_gbs:.1f}, "
                       "the same traffic in a bare loop")
            bw += ")" if ref.gbs and lim else ""
            # At quick sizes the data sit in cache: a percentage of the memory limit
            # would read 400x.
            bw = QUICK_NA if _quick(res) else bw
            line += f" {bw} | {res.simd.get(f'{kernel} {dtype}', '-')} |"
        for p in PEERS[1:]:
            r = peers.get(p)
            ratio = _ratio(r, ref)
            if ratio is not None:
                way = f", {r.variant}" if r.variant else ""
                line += f" {ratio:.2f}x ({_time(r.seconds)}{way}) |"
            else:
                line += f" {_status(r) or '-'} |"
        md.append(line)
    loads = [r.other_load for r in rows if not math.isnan(r.other_load)]
    if loads:
        md += ["", f"Other processes kept {min(loads):.2f} to {max(loads):.2f} cores busy "
                   "while these were measured (from /proc/stat)."]
    return md


# ---- chart ------------------------------------------------------------------------------
def chart(res: Results, path: Path) -> str | None:
    """A PNG of the ratios; None (with a note) when matplotlib is missing."""
    from .peers import optional

    if optional("matplotlib") is None:
        res.notes.append("matplotlib not installed: no chart (pip install -e '.[bench]')")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(res.rows)
    dtypes = sorted({k[1] for k in groups}, reverse=True)
    # (one inch per two kernels and modes, so that the rotated labels do not overlap)
    width_in = max(12.0, 0.5 * max(sum(k[1] == d for k in groups) for d in dtypes))
    fig, axes = plt.subplots(len(dtypes), 1, figsize=(width_in, 5.2 * len(dtypes)),
                             squeeze=False)
    peers = list(PEERS[1:])
    width = 0.8 / len(peers)
    for ax, dtype in zip(axes[:, 0], dtypes, strict=True):
        keys = [k for k in groups if k[1] == dtype]
        for j, p in enumerate(peers):
            xs, ys = [], []
            for i, k in enumerate(keys):
                r = _ratio(groups[k].get(p), groups[k]["symdl"])
                if r is not None:
                    xs.append(i + (j - (len(peers) - 1) / 2) * width)
                    ys.append(r)
            ax.bar(xs, ys, width, label=p)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(keys)), [f"{k[0]} {k[2]}" for k in keys], fontsize=8,
                      rotation=55, ha="right", rotation_mode="anchor")
        ax.set_xlim(-0.6, len(keys) - 0.4)
        ax.set_ylabel("peer time / symdl time")
        ax.set_title(f"{dtype}, {res.settings['n']:,} elements (above 1: symdl faster)")
        ax.legend(fontsize=8, ncol=len(peers))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def dump_json(res: Results, path: Path) -> None:
    data = dataclasses.asdict(res)
    if res.stream:
        data["stream"].update(copy_gbs=res.stream.copy_gbs, triad_gbs=res.stream.triad_gbs,
                              read_gbs=res.stream.read_gbs, read4_gbs=res.stream.read4_gbs)
    path.write_text(json.dumps(data, indent=1, default=str))
