"""One `_runtime.py` per output package (issue 18): the kernel modules import it, the
package needs only numpy and numba, symdl owns the file like its other outputs, and
Numba's on-disk cache (keyed by each kernel module's file) is reused across processes
and invalidated when the runtime changes."""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from symdl import codegen

ROOT = Path(__file__).resolve().parent.parent
SYMDL = [sys.executable, "-m", "symdl.cli"]

SOFTPLUS = """\
import sympy as sp
from symdl.formula import Elementwise

x = sp.Symbol("x", real=True)
FORMULAS = [Elementwise("softplus", "Mine", "Softplus", "A smooth ReLU.", inputs=[x],
                        outputs={"y": sp.log(1 + sp.exp(x))}, backward=True)]
"""

# The head of a script run in a fresh interpreter: it records the cores that Numba
# compiles (a core loaded from the on-disk cache is not compiled).
COUNT = """\
import json, numba, numpy as np
from numba.core import event

compiled = []

class Count(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__name__)

    def on_end(self, ev):
        pass

event.register("numba:compile", Count())
"""

# A user's package, run where symdl cannot be imported (a meta path finder refuses it).
RUN = """\
import importlib, importlib.util, sys

class NoSymdl:
    def find_spec(self, name, path=None, target=None):
        if name == "symdl" or name.startswith("symdl."):
            raise ImportError("symdl is blocked in this process")

sys.meta_path.insert(0, NoSymdl())
""" + COUNT + """\
how, where = sys.argv[1], sys.argv[2]
if how == "package":
    m = importlib.import_module(where)
else:  # the module file alone, by its path
    spec = importlib.util.spec_from_file_location("alone", where)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
x = np.linspace(-30.0, 30.0, m.PARALLEL_THRESHOLD + 5)  # the parallel core
values = []
for a in (x[:7], x):  # (and the serial core)
    y = m.softplus(a)
    values.append(float(np.max(np.abs(y - np.logaddexp(0.0, a)) / np.logaddexp(0.0, a))))
    values.append(float(np.max(np.abs(m.softplus_backward(y, np.ones_like(y))
                                      - 1 / (1 + np.exp(-a))))))
cores = {k: d for k, d in vars(m).items() if isinstance(d, numba.core.dispatcher.Dispatcher)}
hits = sum(sum(d.stats.cache_hits.values()) for d in cores.values())
used = sorted(k for k, d in cores.items() if d.overloads)
rt = sys.modules[m._runtime.__name__]
print(json.dumps({"compiled": compiled, "hits": hits, "used": used, "errors": values,
                  "symdl": any(k.split(".")[0] == "symdl" for k in sys.modules),
                  "shared": m._float_array is rt._float_array, "runtime": rt.__file__}))
"""


def _generate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SYMDL, "generate", "--formulas", "mine.py", "--out", "out",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)


def _run(cwd: Path, how: str, where: str, pythonpath: Path) -> dict:
    import json

    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    r = subprocess.run([sys.executable, "-c", RUN, how, where], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("user")
    (d / "mine.py").write_text(SOFTPLUS)
    r = _generate(d)
    assert r.returncode == 0, r.stderr
    return d


def _accurate(result: dict) -> None:
    # softplus: a few ulps relative; its derivative (from the rounded y) within 1e-15
    # absolute, as the logistic function is at most 1.
    f, df, f_par, df_par = result["errors"]
    assert max(f, f_par) <= 8 * 2**-52 and max(df, df_par) <= 1e-15, result


def test_the_package_holds_one_runtime_that_its_module_imports(package):
    kernels = package / "out" / "kernels"
    runtime = (kernels / "_runtime.py").read_text()
    module = (kernels / "mine.py").read_text()
    assert codegen._origin(runtime.split("\n", 1)[0]) == "mine.py"
    defined = {n.name for n in ast.walk(ast.parse(module)) if isinstance(n, ast.FunctionDef)}
    for helper in ("_check_param", "_float_array", "_new", "_output", "_streams", "_vexp"):
        assert f"def {helper}(" in runtime
        assert helper not in defined
    # Numba's cache is keyed by the module's file: it names the runtime's content.
    assert hashlib.sha256(runtime.encode()).hexdigest()[:16] in module.split('"""', 1)[0]
    assert sorted(p.name for p in kernels.glob("*.py")) == ["__init__.py", "_runtime.py",
                                                           "mine.py"]


@pytest.mark.parametrize("how", ["package", "alone"])
def test_the_package_runs_without_symdl_and_reloads_from_numbas_cache(package, how):
    """A fresh process that cannot import symdl runs the kernels, on the package's own
    runtime; a second one compiles nothing: every core comes from the disk cache,
    also when the package is imported under another name (out.kernels.mine, then
    kernels.mine)."""
    first = ("package", "out.kernels.mine") if how == "package" else (
        "alone", str(package / "out" / "kernels" / "mine.py"))
    again = ("package", "kernels.mine") if how == "package" else first
    one = _run(package, *first, pythonpath=package)
    two = _run(package / "out", *again, pythonpath=package / "out")
    for result in (one, two):
        assert not result["symdl"] and result["shared"], result
        assert Path(result["runtime"]) == package / "out" / "kernels" / "_runtime.py"
        _accurate(result)
    assert two["compiled"] == [] and two["hits"] >= 4, two


def test_builtin_kernels_reload_from_numbas_cache(tmp_path):
    code = COUNT + textwrap.dedent("""\
        from symdl.kernels import activations, metrics
        x = np.linspace(-3.0, 3.0, 101)
        assert np.allclose(activations.tanh(x), np.tanh(x), rtol=4e-16, atol=0)
        assert np.allclose(activations.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=4e-16, atol=0)
        t, p = (x > 0).astype(float), (np.abs(x) > 1).astype(float)
        assert metrics.precision_recall(t, p) == ((t * p).sum() / p.sum(), (t * p).sum() / t.sum())
        hits = sum(sum(d.stats.cache_hits.values()) for m in (activations, metrics)
                   for d in vars(m).values() if isinstance(d, numba.core.dispatcher.Dispatcher))
        print(json.dumps({"compiled": compiled, "hits": hits}))
        """)
    runs = [subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    import json

    again = json.loads(runs[1].stdout.splitlines()[-1])
    assert again["compiled"] == [] and again["hits"] >= 3, again


def test_a_runtime_change_rewrites_every_module_so_their_cores_recompile(package, tmp_path,
                                                                         monkeypatch):
    """Numba's cache does not see a change in a callee of another file: a changed
    runtime (here: its template) must change every kernel module's file."""
    d = tmp_path / "user"
    shutil.copytree(package, d, ignore=shutil.ignore_patterns(".symdl.lock", "__pycache__"))
    warm = _run(d, "package", "out.kernels.mine", pythonpath=d)
    assert set(warm["compiled"]) >= set(warm["used"]) and len(warm["used"]) >= 4, warm
    assert _run(d, "package", "out.kernels.mine", pythonpath=d)["compiled"] == []
    templates = tmp_path / "templates"
    shutil.copytree(codegen.templates_dir(), templates)
    with (templates / "numba" / "runtime_module.py.j2").open("a") as fh:
        fh.write("\n_CHANGED = True\n")
    monkeypatch.setattr(codegen, "templates_dir", lambda: templates)
    codegen._environments.cache_clear()
    try:
        files = codegen.render(codegen.file_modules(d / "mine.py"))
    finally:
        codegen._environments.cache_clear()
    old = {rel: (d / "out" / rel).read_text() for rel in files
           if rel.startswith("kernels/") and rel != "kernels/__init__.py"}  # (no cores)
    assert {rel for rel in old if files[rel] != old[rel]} == set(old) == {
        "kernels/_runtime.py", "kernels/mine.py"}
    codegen.write(files, d / "out")
    again = _run(d, "package", "out.kernels.mine", pythonpath=d)
    assert set(again["compiled"]) >= set(again["used"]) == set(warm["used"]), again
    _accurate(again)


def test_check_sees_a_hand_edited_runtime_and_generate_restores_it(package, tmp_path):
    d = tmp_path / "user"
    shutil.copytree(package, d, ignore=shutil.ignore_patterns(".symdl.lock"))
    runtime = d / "out" / "kernels" / "_runtime.py"
    text = runtime.read_text()
    runtime.write_text(text.replace("_POOL_MIN = 4 << 20", "_POOL_MIN = 1 << 20"))
    r = _generate(d, "--check")
    assert r.returncode == 1 and "kernels/_runtime.py" in r.stdout + r.stderr, r
    assert _generate(d).returncode == 0
    assert runtime.read_text() == text


def test_a_hand_written_runtime_is_refused_and_kept(tmp_path):
    (tmp_path / "mine.py").write_text(SOFTPLUS)
    kernels = tmp_path / "out" / "kernels"
    kernels.mkdir(parents=True)
    mine = "# my own helpers\ndef _check_param(*args):\n    return args\n"
    (kernels / "_runtime.py").write_text(mine)
    r = _generate(tmp_path)
    assert r.returncode == 2 and "_runtime.py was not generated by symdl" in r.stderr, r
    assert (kernels / "_runtime.py").read_text() == mine
    assert not (kernels / "mine.py").exists()


WIDTH_PROBE = """
import json, sys
import llvmlite.binding as ll
import numba, numpy as np
from symdl.kernels import activations, regularization

x = np.linspace(-5, 5, 64)
activations.sigmoid(x); activations.sigmoid_backward(x, x); regularization.dropout(x, 0.5, 7)
out = {}
for name, core in [("sigmoid", activations._sigmoid_ser),
                   ("sigmoid_backward", activations._sigmoid_backward_ser),
                   ("dropout", regularization._dropout_true_ser)]:
    sig = core.signatures[0]
    out[name] = ['"prefer-vector-width"="512"' in core.inspect_llvm(sig),
                 "zmm" in core.inspect_asm(sig)]
features = ll.get_host_cpu_features().flatten().split(",")
out["avx512"] = "+avx512f" in features
out["cpu"] = numba.config.CPU_NAME or ll.get_host_cpu_name()
print(json.dumps(out))
"""


def test_compute_bound_element_loops_ask_for_512_bit_vectors(tmp_path):
    """An element loop that computes exp (sigmoid) or a dropout mask's hash carries
    LLVM's "prefer-vector-width"="512" on its function, so that on an AVX-512 CPU it
    vectorizes with zmm registers (LLVM's default there is 256 bits); a memory-bound
    loop (sigmoid's backward, y*(1 - y)*dy) does not, and keeps LLVM's default for the
    CPU (256 bits on Intel's AVX-512 CPUs, 512 on AMD's Zen 4). A fresh Numba cache, so
    that the cores compile here and their IR can be read."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", WIDTH_PROBE], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = __import__("json").loads(r.stdout.strip().splitlines()[-1])
    narrow = got["cpu"] in ("skylake-avx512", "cascadelake", "cooperlake", "cannonlake")
    assert got["sigmoid"][0] is not narrow and got["dropout"][0] is not narrow, got
    assert got["sigmoid_backward"][0] is False, got
    if got["cpu"].startswith(("skylake", "cascadelake", "cooperlake", "icelake", "tigerlake",
                              "sapphirerapids", "emeraldrapids", "graniterapids",
                              "rocketlake")):
        assert got["sigmoid_backward"][1] is False, got  # (LLVM's prefer-256-bit tuning)
    if got["avx512"] and not narrow:
        assert got["sigmoid"][1] and got["dropout"][1], got
