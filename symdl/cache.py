"""A fingerprint of everything generation depends on, so that `symdl generate` can
tell in milliseconds that nothing changed, without importing SymPy or deriving.

The fingerprint hashes the generator's sources (symdl/, its formula library), the
templates, the user's formula file and the versions of SymPy and Jinja2. The record
of the last generation (fingerprint, a hash of each file written, and a hash of each
of the user's own modules that the formula file imported) lives in the user cache
directory, never in generated/. If anything differs, or a file on disk no longer
matches its record, generation runs in full.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "symdl"


def fingerprint(templates: Path, formulas: str | None) -> str:
    """Hash of the inputs of a generation."""
    h = hashlib.sha256()
    files = sorted(PACKAGE.rglob("*.py")) + sorted(p for p in templates.rglob("*.j2"))
    if formulas:
        files.append(Path(formulas).resolve())
    for p in files:
        h.update(str(p.relative_to(p.anchor)).encode())
        h.update(p.read_bytes())
    for dist in ("sympy", "jinja2"):
        h.update(f"{dist}={metadata.version(dist)}".encode())
    return h.hexdigest()


def _record_path(out: Path, formulas: str | None) -> Path:
    key = hashlib.sha256(f"{out.resolve()}|{formulas and Path(formulas).resolve()}".encode())
    return _cache_dir() / f"generate-{key.hexdigest()[:24]}.json"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def up_to_date(out: Path, formulas: str | None, print_: str) -> list[str] | None:
    """The recorded files if the last generation into out had this fingerprint and
    every file it wrote is still on disk unchanged; else None."""
    try:
        record = json.loads(_record_path(out, formulas).read_text())
    except (OSError, ValueError):
        return None
    if record.get("fingerprint") != print_:
        return None
    depends = record.get("depends", {})
    if any(_digest(Path(path)) != d for path, d in depends.items()):
        return None  # a module the formula file imports has changed (or is gone)
    files = record.get("files", {})
    if not files or any(_digest(out / rel) != d for rel, d in files.items()):
        return None
    on_disk = {p.relative_to(out).as_posix()
               for p in [*out.glob("kernels/*.py"), *out.glob("sheet/*.tex")]}
    if on_disk != {rel for rel in files if rel.startswith(("kernels/", "sheet/"))}:
        return None  # an extra file there: let the full generation judge it
    return sorted(files)


def remember(out: Path, formulas: str | None, print_: str, rels: list[str],
             depends: list[str] = ()) -> None:
    """Record a generation (best effort: a read-only cache only costs speed).

    ``depends``: the user's modules the formula file imported, re-hashed next time."""
    path = _record_path(out, formulas)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        files = {rel: _digest(out / rel) for rel in rels}
        deps = {p: _digest(Path(p)) for p in depends}
        path.write_text(json.dumps({"fingerprint": print_, "files": files, "depends": deps},
                                   indent=1))
    except OSError:
        pass
