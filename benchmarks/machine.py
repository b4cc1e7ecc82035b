"""What the numbers were measured on: CPU, memory, threads, versions, load."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys

from .peers import PEER_MODULE, version


def _lscpu() -> dict[str, str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in
            (line.partition(":") for line in text.splitlines()) if v}


def _vector_isa(flags: str) -> str:
    """The widest SIMD extension among lscpu's flags (AVX-512, AVX2, ...)."""
    have = set(flags.split())
    for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"),
                       ("sse4_2", "SSE4.2")):
        if flag in have:
            return name
    return "SIMD ?"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            kib = int(re.search(r"MemTotal:\s+(\d+)", fh.read()).group(1))
        return kib / 2**20
    except (OSError, AttributeError):
        return None


THREAD_ENV = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS",
              "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")


def describe() -> dict[str, str]:
    """The machine and software, as printed at the top of the report."""
    import llvmlite
    import numba
    import numpy
    import sympy

    cpu = _lscpu()
    mem = _memory_gib()
    info = {
        # With the family, model and widest vector extension: VMs report one model name
        # ("AMD EPYC") for several CPU generations, and reports must be comparable.
        "CPU": f"{cpu.get('Model name', platform.processor() or '?')} (family "
               f"{cpu.get('CPU family', '?')}, model {cpu.get('Model', '?')}, "
               f"{_vector_isa(cpu.get('Flags', ''))})",
        "cores": f"{os.cpu_count()} logical CPUs "
                 f"({cpu.get('Core(s) per socket', '?')} core(s) per socket, "
                 f"{cpu.get('Thread(s) per core', '?')} thread(s) per core)",
        "caches": ", ".join(f"{k.split()[0]} {cpu[k]}" for k in
                            ("L1d cache", "L2 cache", "L3 cache") if k in cpu),
        "memory": f"{mem:.1f} GiB" if mem else "?",
        "hypervisor": cpu.get("Hypervisor vendor", "none"),
        "OS": platform.platform(),
        "Python": sys.version.split()[0],
        "NumPy": numpy.__version__,
        "Numba": f"{numba.__version__} (llvmlite {llvmlite.__version__}), "
                 f"{numba.config.NUMBA_NUM_THREADS} threads",
        "SymPy": sympy.__version__,
    }
    for peer, module in PEER_MODULE.items():
        info[peer] = version(module)
    info["matplotlib"] = version("matplotlib")
    from .peers import optional

    torch = optional("torch")
    if torch is not None:
        info["torch"] += f", {torch.get_num_threads()} threads"
    # Thread-pool settings change every ratio on a small shared machine (README, "Threads").
    env = [f"{k}={os.environ[k]}" for k in THREAD_ENV if k in os.environ]
    info["thread environment"] = ", ".join(env) or "none set (" + ", ".join(THREAD_ENV) + ")"
    try:
        info["load average at start"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        pass
    return info


def threading_layer() -> str:
    """Numba's threading layer (known only after a parallel core has run)."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return "not started"
