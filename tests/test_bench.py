"""Smoke test of `symdl bench --quick`: it runs, checks the peers, writes its report.

No timing is asserted (the machine is shared and noisy); what is asserted is that
every implementation's result was checked, and that the generated kernels passed.
"""

import json
import sys

import numpy as np
import pytest

from symdl.benchmarks import peers
from symdl.benchmarks.cases import CASES
from symdl.benchmarks.runner import check
from symdl.cli import main


@pytest.fixture
def without_optional_peers(monkeypatch):
    """As in CI, which installs only .[test]: no numexpr, JAX or matplotlib."""
    for name in ("numexpr", "jax", "matplotlib"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    peers.optional.cache_clear()
    yield
    peers.optional.cache_clear()


def test_quick_bench_runs_and_reports(tmp_path, capsys, without_optional_peers):
    code = main(["bench", "--quick", "--size", "3000", "--rounds", "1", "--out",
                 str(tmp_path), "--sections", "stream,kernels,small,threshold"])
    assert code == 0
    out = capsys.readouterr().out
    assert "machine limit (STREAM" in out and "parallel core pays from" in out
    for name in ("numexpr", "jax", "matplotlib"):
        assert f"{name} not installed" in out
    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Targets of issue 3" in report
    assert not (tmp_path / "benchmarks.png").exists()
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    kernels = {r["kernel"] for r in data["rows"]}
    assert kernels == {c.name for c in CASES}
    symdl_rows = [r for r in data["rows"] if r["peer"] == "symdl" and r["seconds"]]
    # Both dtypes of every kernel were checked against the reference, then timed.
    assert len({(r["kernel"], r["dtype"]) for r in symdl_rows}) == 2 * len(CASES)
    assert all(r["status"] == "ok" for r in symdl_rows)
    assert all(r["status"] != "ok" for r in data["rows"] if r["peer"] in ("numexpr", "jax"))


def test_unknown_kernel_is_refused(tmp_path, capsys):
    assert main(["bench", "--quick", "no_such_kernel", "--out", str(tmp_path)]) == 2
    assert "unknown kernel" in capsys.readouterr().err


def test_check_flags_a_wrong_result():
    ref = np.array([0.25, 0.5, 0.75])
    assert check(ref.astype(np.float32), ref, np.dtype(np.float32)) == "ok"
    assert check(ref + 1e-6, ref, np.dtype(np.float64)).startswith("WRONG")
    assert check(ref[:2], ref, np.dtype(np.float64)).startswith("WRONG shape")


def test_report_keeps_the_hand_written_analysis(tmp_path, capsys):
    from symdl.benchmarks import ANALYSIS_MARK

    (tmp_path / "benchmarks.md").write_text(f"old\n{ANALYSIS_MARK}\nThe gap is exp.\n")
    assert main(["bench", "--quick", "--rounds", "1", "--sections", "stream",
                 "--out", str(tmp_path)]) == 0
    report = (tmp_path / "benchmarks.md").read_text()
    assert report.startswith("# symdl benchmarks") and "old" not in report
    assert report.endswith(f"{ANALYSIS_MARK}\nThe gap is exp.\n")
