"""Generation: formula modules -> files (kernel modules and the sheet), written atomically.

Pipeline: load formulas (``symdl/library`` or a user file) -> derive (``derive``) ->
lower to kernel plans (``lowering``) -> render Jinja templates (``templates/``) ->
compare with what is on disk, write only what changed.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2

from .derive import expand_formulas
from .formula import Formula, FormulaError, check_identifier
from .lowering import KernelPlan, plan, vecmath_functions
from .sheet import section, sheet_files

#: Named settings printed into each generated module (user-overridable at run time).
PARALLEL_THRESHOLD = 1 << 15  # the crossover measured on a quiet machine: docs/benchmarks.md
REDUCTION_BLOCK = 1 << 13
BATCH_ROWS = 16


@dataclass
class FormulaModule:
    """One formula file: a section of the sheet and one generated kernel module."""

    name: str
    title: str
    source: str
    formulas: list[Formula]
    kernels: list[KernelPlan] = field(default_factory=list)
    plots: list = field(default_factory=list)  # sheet.Plot objects of the section

    def __post_init__(self) -> None:
        check_identifier(self.name, "module name")
        self.formulas = expand_formulas(self.formulas)
        names = [f.name for f in self.formulas]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FormulaError(f"{self.source}: duplicate formula names {dupes}")


def templates_dir() -> Path:
    """Templates ship inside the package as ``symdl.templates`` (see pyproject.toml)."""
    try:
        spec = importlib.util.find_spec("symdl.templates")
        if spec and spec.submodule_search_locations:
            path = Path(list(spec.submodule_search_locations)[0])
            if (path / "numba").is_dir():
                return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "templates"


@cache
def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    loader = jinja2.FileSystemLoader(str(templates_dir()))
    strict = dict(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                  keep_trailing_newline=True, autoescape=False)
    code = jinja2.Environment(loader=loader, extensions=["jinja2.ext.do"], **strict)
    code.filters["add_prefix"] = lambda s, prefix: prefix + s
    code.filters["add_suffix"] = lambda s, suffix: s + suffix
    code.filters["param_signature"] = lambda p: (
        p.name if p.default is None else f"{p.name}={p.default!r}")
    # LaTeX is full of braces and percent signs: use LaTeX-looking delimiters instead.
    tex = jinja2.Environment(loader=loader, block_start_string=r"\BLOCK{",
                             block_end_string="}", variable_start_string=r"\VAR{",
                             variable_end_string="}", comment_start_string=r"\#{",
                             comment_end_string="}", **strict)
    return code, tex


def _module_from_python(mod, name: str, source: str) -> FormulaModule:
    formulas = getattr(mod, "FORMULAS", None)
    if formulas is None:
        formulas = [v for v in vars(mod).values() if isinstance(v, Formula)]
    if not isinstance(formulas, list | tuple) or not all(
            isinstance(f, Formula) for f in formulas):
        raise FormulaError(f"{source}: FORMULAS must be a list of formulas (Elementwise, "
                           f"Batch, ...), got {formulas!r:.80}")
    if not formulas:
        raise FormulaError(f"{source}: defines no formulas (set FORMULAS = [...])")
    title = getattr(mod, "SECTION", formulas[0].section)
    return FormulaModule(name, title, source, list(formulas),
                         plots=list(getattr(mod, "PLOTS", [])))


def builtin_modules() -> list[FormulaModule]:
    """The built-in library, one module per sheet section."""
    from .library import MODULES

    mods = []
    for name in MODULES:
        mod = importlib.import_module(f"symdl.library.{name}")
        mods.append(_module_from_python(mod, name, f"symdl/library/{name}.py"))
    return mods


def file_modules(path: str | os.PathLike) -> list[FormulaModule]:
    """A user's formula file, loaded as one module named after the file."""
    path = Path(path)
    if not path.is_file():
        raise FormulaError(f"formula file {path} does not exist")
    name = path.stem
    check_identifier(name, "formula file name")
    spec = importlib.util.spec_from_file_location(f"symdl_user_formulas_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except FormulaError as err:
        raise FormulaError(f"{path}: {err}") from err
    except SyntaxError as err:
        raise FormulaError(f"{path}:{err.lineno}: syntax error: {err.msg}") from err
    except Exception as err:  # (the user's code: say where, not a traceback of ours)
        raise FormulaError(f"{path}: {type(err).__name__} while loading: {err}") from err
    return [_module_from_python(mod, name, path.name)]


def render(modules: list[FormulaModule], sheet_name: str = "symdl",
           title: str | None = None) -> dict[str, str]:
    """All output files, relative path -> text. Pure: same formulas, same bytes."""
    code, tex = _environments()
    files = {}
    sections = []
    kernel_names = {f.name for m in modules for f in m.formulas}
    for m in modules:
        if m.name in kernel_names:
            # symdl.kernels.<module> would shadow the kernel of the same name.
            raise FormulaError(f"{m.source}: module name {m.name!r} is also a kernel name")
        m.kernels = [plan(f) for f in m.formulas]
        module_hash = hashlib.sha256("".join(k.hash for k in m.kernels).encode()).hexdigest()
        context = dict(title=m.title, source=m.source, kernels=m.kernels, module=m.name,
                       module_hash=module_hash[:16], parallel_threshold=PARALLEL_THRESHOLD,
                       reduction_block=REDUCTION_BLOCK, batch_rows=BATCH_ROWS, vecmath=[],
                       bitops32=False)
        text = code.get_template("numba/module.py.j2").render(**context)
        if any(f"_v{n}(" in text for n in ("exp", "tanh", "log1p")):  # vectorizable functions
            context["vecmath"] = vecmath_functions()
            text = code.get_template("numba/module.py.j2").render(**context)
        if any(f"_{op}32(" in text for op in ("mul", "xor", "shr")):  # 32-bit word intrinsics
            context["bitops32"] = True
            text = code.get_template("numba/module.py.j2").render(**context)
        files[f"kernels/{m.name}.py"] = text
        derived = {}
        for f in m.formulas:
            if f.derived_from:
                derived.setdefault(f.derived_from, []).append(f)
        sections.append(section(m, derived))
    files["kernels/__init__.py"] = code.get_template("numba/init.py.j2").render(modules=modules)
    files |= sheet_files(tex, modules, sections, sheet_name, title)
    return files


@dataclass
class Report:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)  # path -> unified diff


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _origin(text: str) -> str | None:
    """Where a generated file came from, by its first line: "the built-in library", or
    the formula file it names; None for a file that symdl did not generate."""
    first = text.split("\n", 1)[0]
    if "Generated by symdl from " not in first:
        return None
    if "symdl/library/" in first:
        return "the built-in library"
    return first.split("Generated by symdl from ", 1)[1].rsplit(" with ", 1)[0]


def _check_origins(files: dict[str, str], out: Path) -> None:
    """Refuse to write one formula file's output over another's (or the built-in
    library's): it would replace their package __init__ and remove their modules."""
    new = {_origin(text) for text in files.values()} - {None}
    folders = {rel.split("/", 1)[0] for rel in files}
    for old in sorted([*out.glob("kernels/*.py"), *out.glob("sheet/*.tex")]):
        if old.parent.name not in folders:
            continue
        with old.open(encoding="utf-8", errors="replace") as fh:
            origin = _origin(fh.readline())
        if origin is not None and origin not in new:
            raise FormulaError(
                f"{old} was generated from {origin}, not from {', '.join(sorted(new))}: "
                f"give this output a directory of its own (--out DIR); nothing was written")


def write(files: dict[str, str], out: Path, check: bool = False) -> Report:
    """Write (or, with check, compare) the files under out; touch only what changed."""
    _check_origins(files, out)
    report = Report()
    # A generated file that the formulas no longer produce (a renamed module) goes too;
    # only files that say they were generated by symdl are touched, and only in the
    # folders being written (`symdl sheet` writes sheet/ alone: kernels/ stays).
    folders = {rel.split("/", 1)[0] for rel in files}
    for old in sorted([*out.glob("kernels/*.py"), *out.glob("sheet/*.tex")]):
        rel = old.relative_to(out).as_posix()
        if rel.split("/", 1)[0] not in folders or rel in files:
            continue
        if "Generated by symdl" in old.read_text(encoding="utf-8")[:200]:
            if check:
                report.stale[rel] = f"{rel}: no longer generated by the formulas\n"
            else:
                old.unlink()
                report.written.append(f"{rel} (removed)")
    for rel, text in sorted(files.items()):
        path = out / rel
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            report.unchanged.append(rel)
        elif check:
            diff = difflib.unified_diff((old or "").splitlines(True), text.splitlines(True),
                                        f"{rel} (on disk)", f"{rel} (from the formulas)")
            report.stale[rel] = "".join(diff)
        else:
            _atomic_write(path, text)
            report.written.append(rel)
    return report
