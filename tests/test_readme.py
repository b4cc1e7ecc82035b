"""The README's two commands stay true: CI runs exactly its test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [ln for ln in lines[:20] if ln.startswith("pip install")]


def test_readme_opens_with_the_two_commands():
    main_job, tests = _commands()
    assert main_job.endswith("symdl generate")
    assert "pytest" in tests and "symdl generate --check" in tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in ci
