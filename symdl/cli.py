"""symdl: deep-learning formulas written once in SymPy, printed as verified Numba
kernels and a LaTeX formula sheet.

commands: generate, list, show, verify, sheet, bench (`symdl COMMAND --help` for each)."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import FormulaError

if TYPE_CHECKING:
    from .codegen import FormulaModule

# SymPy and the generator are imported inside the commands: `symdl generate` with
# nothing to do answers from the fingerprint (symdl/cache.py) without them.


def _modules(args: argparse.Namespace) -> list[FormulaModule]:
    from .codegen import builtin_modules, file_modules

    return file_modules(args.formulas) if args.formulas else builtin_modules()


def _check_formula_file(path: str | None) -> None:
    """One line for a --formulas argument that is not a formula file."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise FormulaError(f"formula file {path} is a directory: name a Python file "
                           f"(e.g. {p / 'my_formulas.py'})")
    if not p.exists():
        raise FormulaError(f"formula file {path} does not exist")
    if not p.is_file():
        raise FormulaError(f"formula file {path} is not a regular file")
    if p.suffix != ".py":
        raise FormulaError(f"formula file {path} must be a Python file ending in .py")


def _default_out(args: argparse.Namespace) -> Path:
    """Where output goes without --out: a formula file's into ./generated; the built-in
    library's into the checkout's own generated/, wherever the command is run from."""
    if args.out:
        return Path(args.out)
    if args.formulas:
        return Path("generated")
    spec = importlib.util.find_spec("symdl.kernels")
    kernels = Path(list(spec.submodule_search_locations)[0]) if spec else None
    if kernels is None or kernels.parent.name != "generated" or not (
            kernels.parent.parent / "symdl" / "library").is_dir():
        raise FormulaError("symdl is not installed from a source checkout, so the built-in "
                           "kernels have no generated/ directory to update: pass --out DIR")
    return kernels.parent


def _unknown_name(command: str, names: list[str], known: list[str]) -> FormulaError:
    import difflib

    hints = []
    for n in names:
        close = difflib.get_close_matches(n, known, n=3)
        hints.append(f"{n!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return FormulaError(f"{command}: no formula named {', '.join(hints)}; "
                        f"`symdl list` shows them all")


def _sheet_name(args: argparse.Namespace) -> str:
    return Path(args.formulas).stem if args.formulas else "symdl"


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_generate(args: argparse.Namespace) -> int:
    from . import cache

    start = time.perf_counter()
    _check_formula_file(args.formulas)
    out = _default_out(args)
    templates = Path(__file__).resolve().parent.parent / "templates"
    if not templates.is_dir():
        from .codegen import templates_dir

        templates = templates_dir()
    print_ = cache.fingerprint(templates, args.formulas)
    same = cache.up_to_date(out, args.formulas, print_)
    if same is not None:
        word = "up to date" if args.check else "unchanged"
        print(f"symdl generate{' --check' if args.check else ''}: {len(same)} file(s) in "
              f"{out}/ {word} (nothing changed since the last generation)")
        return 0
    from .codegen import render, write

    _progress("symdl: deriving and printing formulas ...")
    modules = _modules(args)
    files = render(modules, sheet_name=_sheet_name(args))
    report = write(files, out, check=args.check)
    if not report.stale:
        cache.remember(out, args.formulas, print_, sorted(files),
                       [d for m in modules for d in m.depends])
    if args.check:
        if report.stale:
            for diff in report.stale.values():
                sys.stdout.write(diff)
            print(f"\nsymdl generate --check: {len(report.stale)} stale file(s) in {out}/:")
            for rel in report.stale:
                print(f"  {out / rel}")
            print("Run `symdl generate` to update them (never edit generated/ by hand).")
            return 1
        print(f"symdl generate --check: {len(report.unchanged)} file(s) in {out}/ up to date.")
        return 0
    for rel in report.written:
        print(f"wrote {out / rel}")
    print(f"{len(report.written)} written, {len(report.unchanged)} unchanged "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    _check_formula_file(args.formulas)
    modules = _modules(args)
    formulas = [f for m in modules for f in m.formulas]
    # Columns as wide as their longest entry, so that every row lines up.
    name_w = max(len(f.name) for f in formulas)
    kind_w = max(len(f.kind) for f in formulas)
    for m in modules:
        print(f"{m.title}  ({m.source})")
        for f in m.formulas:
            tag = f"  [derived from {f.derived_from}]" if f.derived_from else ""
            print(f"  {f.name:<{name_w}}  {f.kind:<{kind_w}}  {f.title}{tag}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import sympy as sp

    from .backends.numba.lowering import plan
    from .stable import stabilize

    _check_formula_file(args.formulas)
    modules = _modules(args)
    for m in modules:
        for f in m.formulas:
            if f.name != args.name:
                continue
            print(f"{f.name}: {f.title} ({f.kind}, section {m.title!r}, from {m.source})")
            print(f"  {f.doc}")
            print("definition:" if not f.derived_from else f"derived from {f.derived_from}:")
            for k, e in f.expressions().items():
                print(f"  {k} = {e}")
                if isinstance(e, sp.MatrixExpr):  # (a network's steps: no scalar rewrite)
                    continue
                s = stabilize(e)
                if s != e:
                    print(f"  {k} (as computed) = {s}")
            derived = [g for g in m.formulas if g.derived_from == f.name]
            for g in derived:
                print(f"derived ({g.name}):")
                for k, e in g.expressions().items():
                    print(f"  {k} = {e}")
            for case in getattr(f, "special_cases", ()):
                when = ", ".join(f"{p} = {v:g}" for p, v in case.when.items())
                kept = f"; {', '.join(case.untouched)} left untouched" if case.untouched else ""
                print(f"special case {when}{kept} ({case.why}):")
                for k, e in f.special_results(case).items():
                    print(f"  {k} = {e}")
            k = plan(f)
            print("generated statements (per element):")
            for s in k.body:
                print(f"  {s.target} = {s.value}")
            for special in k.extra.get("special", []):
                print(f"generated statements when {special['condition']}:")
                for s in special["body"]:
                    print(f"  {s.target} = {s.value}")
            print(f"content hash: {k.hash}")
            return 0
    raise _unknown_name("show", [args.name], [f.name for m in modules for f in m.formulas])


def _load_kernels(out: str | None, module: str):
    """The generated module: symdl.kernels for the built-in library, else from --out."""
    if out is None:
        return importlib.import_module(f"symdl.kernels.{module}")
    path = Path(out) / "kernels" / f"{module}.py"
    if not path.exists():
        raise FormulaError(f"{path} does not exist: run `symdl generate` first")
    spec = importlib.util.spec_from_file_location(f"symdl_verify_{module}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    if args.formulas and not args.out:
        raise FormulaError("verify --formulas FILE needs --out DIR: the directory that "
                           "`symdl generate --formulas FILE --out DIR` wrote")
    _check_formula_file(args.formulas)
    modules = _modules(args)
    known = [f.name for m in modules for f in m.formulas]
    missing = [n for n in args.names if n not in known]
    if missing:  # before any compiling: a typo costs nothing
        raise _unknown_name("verify", missing, known)
    failed = 0
    todo = [m for m in modules
            if not args.names or any(f.name in args.names for f in m.formulas)]
    width = max([28] + [len(f.name) for m in todo for f in m.formulas])
    print(f"{'kernel':<{width}} {'dtype':<8} {'max error':>12} {'tolerance':>10}  result")
    for step, m in enumerate(todo, 1):
        _progress(f"symdl verify [{step}/{len(todo)}]: {m.name} (compiling kernels, "
                  f"evaluating in mpmath) ...")
        kernels = _load_kernels(args.out if args.formulas or args.out else None, m.name)
        for r in verify(m.formulas, kernels, names=args.names,
                        conditioned=bool(args.formulas)):
            status = "ok" if r.ok else "FAIL"
            failed += not r.ok
            unit = "ULP" if r.tolerance != 1.0 else "x bound"
            print(f"{r.name:<{width}} {r.dtype:<8} {r.max_ulp:>8.2f} {unit:<3} {r.tolerance:>10}  "
                  f"{status}")
    if args.formulas:
        print("(a formula file's elementwise kernels: the error at each sample is in ULPs "
              "over the formula's condition number there, at least 1)")
    return 1 if failed else 0


def cmd_sheet(args: argparse.Namespace) -> int:
    from .codegen import render, write
    from .sheet import build_pdf, cheatsheet_path

    if args.paper and args.layout != "cheatsheet":
        raise FormulaError("--paper chooses the cheat sheet's paper: use it with "
                           "--layout cheatsheet (the full reference is US Letter)")
    _check_formula_file(args.formulas)
    out = _default_out(args)
    _progress("symdl sheet: deriving and printing formulas ...")
    modules = _modules(args)
    files = render(modules, sheet_name=_sheet_name(args))
    sheet_files = {k: v for k, v in files.items() if k.startswith("sheet/")}
    if args.html:
        from .codegen import templates_dir
        from .html import environment, page

        sheet_files[f"sheet/{_sheet_name(args)}.html"] = page(
            environment(templates_dir()), modules, _sheet_name(args))
    write(sheet_files, out)
    if args.html:
        print(f"Web page: {out / 'sheet' / (_sheet_name(args) + '.html')}")
        if not args.pdf:
            return 0
    tex = out / "sheet" / f"{_sheet_name(args)}.tex"
    if args.layout == "cheatsheet":
        tex = out / cheatsheet_path(_sheet_name(args), args.paper or "a4")
    print(f"LaTeX source: {tex}")
    try:
        _progress("symdl sheet: running latexmk ...")
        pdf = build_pdf(tex)
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1 if args.pdf else 0
    print(f"PDF: {pdf}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .benchmarks import SECTIONS, Options, run

    sections = tuple(args.sections.split(",")) if args.sections else SECTIONS
    bad = sorted(set(sections) - set(SECTIONS))
    if bad:
        raise FormulaError(f"unknown section(s) {bad}; choose from {list(SECTIONS)}")
    return run(Options(quick=args.quick, names=args.names, size=args.size,
                       rounds=args.rounds, out=args.out, sections=sections))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symdl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"symdl {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp_: argparse.ArgumentParser) -> None:
        sp_.add_argument("--formulas", metavar="FILE",
                         help="a formula file (default: the built-in library)")
        sp_.add_argument("--out", metavar="DIR", default=None,
                         help="output directory (default: the checkout's generated/ for "
                              "the built-in library, ./generated for a formula file; for "
                              "verify, the installed symdl.kernels)")

    g = sub.add_parser("generate", help="print kernels and the sheet from the formulas")
    common(g)
    g.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and list stale files if DIR is out of date")
    g.set_defaults(func=cmd_generate)
    ls = sub.add_parser("list", help="list the formulas")
    common(ls)
    ls.set_defaults(func=cmd_list)
    sh = sub.add_parser("show", help="show a formula, its derivatives and generated code")
    common(sh)
    sh.add_argument("name")
    sh.set_defaults(func=cmd_show)
    v = sub.add_parser("verify", help="check generated kernels against SymPy in mpmath")
    common(v)
    v.add_argument("names", nargs="*", metavar="NAME")
    v.set_defaults(func=cmd_verify)
    s = sub.add_parser("sheet", help="write the LaTeX sheet and build its PDF")
    common(s)
    s.add_argument("--pdf", action="store_true", help="fail if the PDF cannot be built")
    s.add_argument("--layout", choices=("full", "cheatsheet"), default="full",
                   help="full: the reference, one formula after another (default); "
                        "cheatsheet: landscape, three columns, a few pages")
    s.add_argument("--paper", choices=("a4", "letter"), default=None,
                   help="the cheat sheet's paper (default: a4)")
    s.add_argument("--html", action="store_true",
                   help="also write sheet/NAME.html, one self-contained web page (MathML, "
                        "SVG plots); no PDF unless --pdf is given too")
    s.set_defaults(func=cmd_sheet)
    b = sub.add_parser("bench", help="time the kernels against NumPy, PyTorch, ... and STREAM")
    b.add_argument("names", nargs="*", metavar="NAME", help="kernels to time (default: all)")
    b.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    b.add_argument("--size", type=int, help="elements per array (default 10^7)")
    b.add_argument("--rounds", type=int, help="timed rounds per implementation")
    b.add_argument("--sections",
                   help="comma-separated: stream,kernels,cache,simd,small,threshold,latency,torch")
    b.add_argument("--out", default="benchmarks/out",
                   help="where to write benchmarks.md/.png/.json (default: benchmarks/out)")
    b.set_defaults(func=cmd_bench)
    return p


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("symdl")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``symdl`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FormulaError, OSError) as err:  # (a user's mistake: one line, no traceback)
        print(f"symdl: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
