"""The README's "Use with PyTorch" and "Use with JAX" examples run verbatim, each in a
fresh interpreter, and print what their comments say."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


EXAMPLES = [(title, k, code) for title in ("Use with PyTorch", "Use with JAX")
            for k, code in enumerate(_python_blocks(_section(title)))]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory holding the README's own formula file, generated into mypkg/ (the
    package the PyTorch section's wrap example imports)."""
    d = tmp_path_factory.mktemp("readme")
    (formulas,) = [b for b in _python_blocks(_section("Adding or editing a formula"))
                   if b.startswith("# my_formulas.py")]
    (d / "my_formulas.py").write_text(formulas)
    run = subprocess.run([sys.executable, "-m", "symdl.cli", "generate", "--formulas",
                          "my_formulas.py", "--out", "mypkg/"], cwd=d, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return d


def test_both_sections_have_examples():
    titles = {t for t, _, _ in EXAMPLES}
    assert titles == {"Use with PyTorch", "Use with JAX"}


@pytest.mark.parametrize("title, k, code", EXAMPLES, ids=[f"{t}-{k}" for t, k, _ in EXAMPLES])
def test_readme_example_runs(title, k, code, workdir):
    if title == "Use with JAX":
        pytest.importorskip("jax")  # (a test extra: CI installs it, test_jax.py fails there)
    run = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    expected = [line.split("# ", 1)[1].strip() for line in code.splitlines()
                if line.startswith("print(") and "# " in line]
    assert run.stdout.splitlines() == expected
