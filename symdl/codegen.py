"""Generation: formula modules -> files (kernel modules and the sheet), written atomically.

Pipeline: load formulas (``symdl/library`` or a user file) -> derive (``derive``) ->
lower to kernel plans (``backends.numba.lowering``) -> render Jinja templates (``templates/``) ->
compare with what is on disk, write only what changed.
"""

from __future__ import annotations

import difflib
import fcntl
import hashlib
import importlib
import importlib.util
import os
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2

from . import hygiene, runtime
from .backends.numba.lowering import KernelPlan, plan
from .derive import expand_formulas
from .formula import Formula, FormulaError, check_identifier
from .guard import formula_step
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
    # The user's own modules that loading the formula file imported: the output
    # depends on them too (symdl/cache.py re-hashes them for `--check`).
    depends: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_identifier(self.name, "module name")
        expanded = []
        for f in self.formulas:
            with formula_step(f"{self.source}: formula {f.name!r}", "deriving"):
                expanded += expand_formulas([f])
        self.formulas = expanded
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
    # Prose (titles, descriptions, notes) reaches Python only through these two.
    code.filters["pyescape"] = docstring_escape
    code.filters["docstring"] = lambda text: f'"""{_indent(docstring_escape(text))}\n    """'
    # LaTeX is full of braces and percent signs: use LaTeX-looking delimiters instead.
    tex = jinja2.Environment(loader=loader, block_start_string=r"\BLOCK{",
                             block_end_string="}", variable_start_string=r"\VAR{",
                             variable_end_string="}", comment_start_string=r"\#{",
                             comment_end_string="}", **strict)
    return code, tex


def _indent(text: str, width: int = 4) -> str:
    """Jinja's indent filter: every line but the first, blank lines left empty."""
    pad = " " * width
    return "\n".join([text.split("\n")[0]] + [pad + ln if ln else ln
                                              for ln in text.split("\n")[1:]])


def docstring_escape(text: str) -> str:
    """``text`` as the inside of a triple-double-quoted Python literal, so that the
    literal's value is exactly ``text``: whatever a formula's prose holds (quotes,
    backslashes, control characters), it can neither end the literal nor become an
    escape sequence."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"' and (i + 1 == len(text) or text[i + 1] == '"'):
            out.append('\\"')  # no run of three, and none against the closing quotes
        elif ch in "\n\t" or (ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF):
            out.append(ch)
        else:  # \r, NUL, other control characters, lone surrogates
            out.append(ch.encode("unicode_escape").decode("ascii")
                       if not 0xD800 <= ord(ch) <= 0xDFFF else f"\\u{ord(ch):04x}")
    return "".join(out)


def _check_compiles(text: str, rel: str) -> None:
    """A generated module that does not compile is never written: a template or an
    escaping bug must stop generation, not ship a module that fails at import."""
    try:
        compile(text, rel, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as err:
        line = f" (line {err.lineno})" if getattr(err, "lineno", None) else ""
        raise FormulaError(f"{rel}: the generated module does not compile{line}: "
                           f"{getattr(err, 'msg', err)}; this is a bug in symdl, nothing "
                           f"was written") from None


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
    before = set(sys.modules)
    # As `python my_formulas.py` would: modules beside the file can be imported.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(mod)
    except FormulaError as err:
        raise FormulaError(f"{path}: {err}") from err
    except SyntaxError as err:
        raise FormulaError(f"{path}:{err.lineno}: syntax error: {err.msg}") from err
    except Exception as err:  # (the user's code: say where, not a traceback of ours)
        raise FormulaError(f"{path}: {type(err).__name__} while loading: {err}") from err
    finally:
        sys.path.remove(str(path.resolve().parent))
    module = _module_from_python(mod, name, path.name)
    module.depends = _user_files(sys.modules[k] for k in set(sys.modules) - before)
    return [module]


def _user_files(modules) -> list[str]:
    """The source files of modules that are neither Python's own, nor installed
    packages (their versions), nor symdl (hashed whole): the user's own modules."""
    paths = sysconfig.get_paths()
    system = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    system.add(Path(__file__).resolve().parent)
    files = set()
    for m in modules:
        f = getattr(m, "__file__", None)
        if not f or not f.endswith(".py"):
            continue
        f = Path(f).resolve()
        if not any(f.is_relative_to(s) for s in system):
            files.add(str(f))
    return sorted(files)


def render(modules: list[FormulaModule], sheet_name: str = "symdl",
           title: str | None = None) -> dict[str, str]:
    """All output files, relative path -> text. Pure: same formulas, same bytes."""
    code, tex = _environments()
    files = {}
    sections = []
    kernel_names = {f.name for m in modules for f in m.formulas}
    rt = runtime.render(code, [m.source for m in modules])
    _check_compiles(rt.text, runtime.PATH)
    files[runtime.PATH] = rt.text
    for m in modules:
        if m.name in kernel_names:
            # symdl.kernels.<module> would shadow the kernel of the same name.
            raise FormulaError(f"{m.source}: module name {m.name!r} is also a kernel name")
        m.kernels = []
        for f in m.formulas:
            with formula_step(f"{m.source}: formula {f.name!r}", "lowering to a kernel"):
                m.kernels.append(plan(f))
            hygiene.check(f, m.kernels[-1].template, f"{m.source}: formula {f.name!r}")
        # The runtime's hash too: the cores inline its intrinsics (see module.py.j2).
        module_hash = hashlib.sha256(
            ("".join(k.hash for k in m.kernels) + rt.hash).encode()).hexdigest()
        context = dict(title=m.title, source=m.source, kernels=m.kernels, module=m.name,
                       module_hash=module_hash[:16], parallel_threshold=PARALLEL_THRESHOLD,
                       reduction_block=REDUCTION_BLOCK, batch_rows=BATCH_ROWS,
                       runtime_hash=rt.hash, runtime_names=[])
        # Rendered twice: the imports from the runtime are the names the text uses.
        context["runtime_names"] = rt.imports(
            code.get_template("numba/module.py.j2").render(**context))
        text = code.get_template("numba/module.py.j2").render(**context)
        _check_compiles(text, f"kernels/{m.name}.py")
        files[f"kernels/{m.name}.py"] = text
        derived = {}
        for f in m.formulas:
            if f.derived_from:
                derived.setdefault(f.derived_from, []).append(f)
        with formula_step(m.source, "printing the sheet"):
            sections.append(section(m, derived))
    init = code.get_template("numba/init.py.j2").render(modules=modules)
    _check_compiles(init, "kernels/__init__.py")
    files["kernels/__init__.py"] = init
    files |= sheet_files(tex, modules, sections, sheet_name, title)
    return files


@dataclass
class Report:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)  # path -> unified diff


def _file_mode(path: Path) -> int:
    """The mode a written file gets: the one it had, else the ordinary one for the
    umask (0644 under 022), as `open()` would give; mkstemp's own is 0600."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
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


def _first_line(path: Path) -> str:
    """A file's first line, whatever its encoding (a stray binary or Latin-1 file in
    the output directory is simply not one of ours)."""
    with path.open("rb") as fh:
        return fh.readline(4096).decode("utf-8", errors="replace")


def _outputs_on_disk(out: Path, folders: set[str]) -> list[Path]:
    return sorted(p for p in [*out.glob("kernels/*.py"), *out.glob("sheet/*.tex")]
                  if p.parent.name in folders and p.is_file())


def _check_origins(files: dict[str, str], out: Path) -> set[str]:
    """The origins being written. Refuse to write one formula file's output over
    another's (or the built-in library's), and over any file that symdl did not write:
    it would replace their package __init__ and remove their modules."""
    new = {_origin(text) for text in files.values()} - {None}
    folders = {rel.split("/", 1)[0] for rel in files}
    for old in _outputs_on_disk(out, folders):
        origin = _origin(_first_line(old))
        if origin is not None and origin not in new:
            raise FormulaError(
                f"{old} was generated from {origin}, not from {', '.join(sorted(new))}: "
                f"give this output a directory of its own (--out DIR); nothing was written")
        rel = old.relative_to(out).as_posix()
        if origin is None and rel in files:
            raise FormulaError(
                f"{old} was not generated by symdl (its first line is not symdl's header) "
                f"and would be overwritten: move it, or choose another --out DIR; "
                f"nothing was written")
    return new


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold the output directory's lock: two generations into one directory run one
    after the other, so the second sees the first's files (and refuses them if they
    came from another source) instead of both checking, then both writing."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".symdl.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def write(files: dict[str, str], out: Path, check: bool = False) -> Report:
    """Write (or, with check, compare) the files under out; touch only what changed."""
    if check:
        return _write(files, out, check)
    with _locked(out):
        return _write(files, out, check)


def _write(files: dict[str, str], out: Path, check: bool) -> Report:
    new = _check_origins(files, out)
    report = Report()
    # A generated file that the formulas no longer produce (a renamed module) goes too;
    # only files whose first line says symdl generated them from this very source are
    # touched, and only in the folders being written (`symdl sheet` writes sheet/
    # alone: kernels/ stays).
    folders = {rel.split("/", 1)[0] for rel in files}
    for old in _outputs_on_disk(out, folders):
        rel = old.relative_to(out).as_posix()
        if rel in files or _origin(_first_line(old)) not in new:
            continue
        if check:
            report.stale[rel] = f"{rel}: no longer generated by the formulas\n"
        else:
            old.unlink()
            report.written.append(f"{rel} (removed)")
    for rel, text in sorted(files.items()):
        path = out / rel
        old = path.read_bytes().decode("utf-8", errors="replace") if path.exists() else None
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
