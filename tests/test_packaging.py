"""A non-editable install works as well as the editable one; no compile at import."""

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _reuse_packages_of_this_interpreter(venv_dir: Path) -> None:
    """Let the new venv import this interpreter's packages (numba, numpy, ...).

    `system_site_packages=True` would give the *base* interpreter's, which lack them
    when the tests themselves run in a virtual environment. A .pth line appends this
    interpreter's site directories after the venv's own, so the wheel installed into
    the venv wins, and their .pth files (an editable symdl's finder) are not run."""
    py = venv_dir / "bin" / "python"
    target = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                             "['purelib'])"], capture_output=True, text=True, check=True)
    # (and the site directories it reaches, as a venv made with --system-site-packages
    # does: numpy may live there)
    dirs = dict.fromkeys([sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
                         + [p for p in sys.path if p.endswith(("site-packages",
                                                               "dist-packages"))])
    Path(target.stdout.strip(), "_symdl_test_parent.pth").write_text("\n".join(dirs) + "\n")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv (reusing this interpreter's packages) with `pip install .`."""
    d = tmp_path_factory.mktemp("venv")
    venv.create(d, system_site_packages=False, with_pip=True)
    _reuse_packages_of_this_interpreter(d)
    py = d / "bin" / "python"
    wheels = tmp_path_factory.mktemp("wheels")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                          "--no-build-isolation", "-w", str(wheels), str(ROOT)],
                         capture_output=True, text=True, cwd=wheels)
    assert run.returncode == 0, run.stderr
    (wheel,) = wheels.glob("symdl-*.whl")
    run = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
                         capture_output=True, text=True, cwd=wheels)
    assert run.returncode == 0, run.stderr
    return py


def _run(py, code, cwd, **env):
    return subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **env}, timeout=300)


def test_installed_package_imports_and_runs_from_site_packages(installed, tmp_path):
    code = ("import symdl.kernels as k, numpy as np;"
            "print(k.__file__); print(k.sigmoid(np.zeros(3)).tolist());"
            "import symdl.kernels.activations as a; print(a._runtime.__file__)")
    r = _run(installed, code, tmp_path)
    assert r.returncode == 0, r.stderr
    path, values, runtime = r.stdout.splitlines()
    assert "site-packages" in path and str(ROOT) not in path
    assert values == "[0.5, 0.5, 0.5]"
    # The kernel modules' shared runtime ships in the wheel, beside them.
    assert Path(runtime) == Path(path).parent / "_runtime.py"


def test_installed_cli_generates_into_a_directory(installed, tmp_path):
    symdl = Path(installed).parent / "symdl"
    r = subprocess.run([str(symdl), "generate", "--out", str(tmp_path / "gen")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for rel in ["kernels/activations.py", "kernels/_runtime.py", "kernels/__init__.py",
                "sheet/symdl.tex"]:
        assert (tmp_path / "gen" / rel).read_bytes() == (ROOT / "generated" / rel).read_bytes()


def test_import_compiles_nothing_and_is_lazy(installed, tmp_path):
    code = ("import sys, time; t = time.perf_counter(); import symdl.kernels;"
            "print('numba' in sys.modules, time.perf_counter() - t)")
    r = _run(installed, code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "False"  # numba not even imported yet


def test_read_only_install_falls_back_to_a_user_cache(installed, tmp_path):
    """cache=True must not fail where the package directory cannot be written."""
    r = _run(installed, "import symdl.kernels as k; print(k.__path__[0])", tmp_path)
    pkg = Path(r.stdout.strip())
    subprocess.run(["rm", "-rf", str(pkg / "__pycache__")], check=True)
    code = "import symdl.kernels as k, numpy as np; print(k.tanh(np.zeros(2)).tolist())"
    cmd = [str(installed), "-c", code]
    mode = pkg.stat().st_mode
    if os.geteuid() == 0:
        # root writes through chmod: mount the package directory read-only instead,
        # in a private mount namespace.
        cmd = ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{pkg}" "{pkg}" && exec "$@"',
               "sh", *cmd]
    try:
        pkg.chmod(0o555)
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                           env={**os.environ, "HOME": str(tmp_path),
                                "XDG_CACHE_HOME": str(tmp_path / ".cache")})
    finally:
        pkg.chmod(mode)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[0.0, 0.0]"
    assert not (pkg / "__pycache__").exists()
    assert list(tmp_path.rglob("*.nbi")), "the cache index went to the user cache directory"


if sys.platform == "win32":  # pragma: no cover
    pytest.skip("POSIX venv layout assumed", allow_module_level=True)


def test_every_subpackage_of_symdl_ships_in_the_wheel():
    """A new folder under symdl/ that pyproject.toml's explicit list forgets installs
    nothing: the editable install hides the miss, a user's `pip install .` fails."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "symdl").rglob("__init__.py")}
    assert on_disk - listed == set()
    for pkg in on_disk:
        assert config["package-dir"][pkg] == pkg.replace(".", "/")
