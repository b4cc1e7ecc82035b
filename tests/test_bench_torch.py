"""`symdl bench --sections torch`: the symdl.torch path against the raw kernel, at
1,000 elements and the run's size, checked bit for bit, in the report and the JSON."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")


def test_bench_torch_overhead_section_runs(tmp_path):
    run = subprocess.run([sys.executable, "-m", "symdl.cli", "bench", "--quick", "--size",
                          "3000", "--rounds", "1", "--sections", "torch", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "symdl.torch path against the raw kernel" in run.stdout
    data = json.loads((tmp_path / "benchmarks.json").read_text())
    rows = data["torch_overhead"]
    assert {(r["what"], r["dtype"], r["n"]) for r in rows} == {
        (w, d, n) for w in ("sigmoid forward", "sigmoid forward + backward", "adam step")
        for d in ("float64", "float32") for n in (1000, 3000)}
    assert all(r["status"] == "ok" and r["raw_s"] > 0 and r["torch_s"] > 0 for r in rows)
    report = (tmp_path / "benchmarks.md").read_text()
    assert "## The symdl.torch path against the raw kernel" in report
