"""The runtime module of an output package (``kernels/_runtime.py``) and what each
kernel module imports from it.

The helpers that every kernel module used to paste (argument checks, buffer pool, BLAS
thread control, memo, micro-kernels, vectorizable functions, streaming and 32-bit
intrinsics) are rendered once per package from templates/numba/runtime_module.py.j2.
A kernel module imports the runtime names it uses, found in its rendered text. A
runtime function that reads a module setting (directly or through another such
function) is rebound onto the module's globals, so that assigning the setting on that
module still takes effect there.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass

import jinja2

from .backends.numba.lowering import vecmath_functions
from .errors import FormulaError

#: Where the runtime goes, relative to the output directory.
PATH = "kernels/_runtime.py"

#: Module attributes that users assign per kernel module; STREAM_BYTES has its
#: default in the runtime, the others in templates/numba/module.py.j2.
MODULE_SETTINGS = frozenset({"PARALLEL_THRESHOLD", "BATCH_ROWS", "REDUCTION_BLOCK",
                             "STREAM_BYTES"})


def _top_level(body: list[ast.stmt]):
    """The statements run at import, through if/try/with blocks (not into functions)."""
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With):
            for part in ("body", "orelse", "finalbody", "handlers"):
                for sub in getattr(node, part, []):
                    yield from _top_level(sub.body if isinstance(sub, ast.ExceptHandler)
                                          else [sub])


def _defined(body: list[ast.stmt]) -> set[str]:
    """Names a module binds at import."""
    names = set()
    for node in _top_level(body):
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def _names_read(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)}


@dataclass(frozen=True)
class Runtime:
    """The rendered runtime: its text, content hash and what its names read."""

    text: str
    hash: str
    names: frozenset[str]
    reads: dict[str, frozenset[str]]  # a function -> the runtime names and settings it reads
    bound: frozenset[str]  # functions that read a module setting, directly or not

    def imports(self, module_text: str) -> list[tuple[str, bool]]:
        """(name, rebound) for each runtime name a kernel module uses, sorted; the
        module's text is rendered without imports. A rebound function's own reads come
        too (the module then holds what it reads), but not what the module defines."""
        tree = ast.parse(module_text)
        own = _defined(tree.body)
        todo = (_names_read(tree) & self.names) - own
        needed: set[str] = set()
        while todo:
            name = todo.pop()
            needed.add(name)
            if name in self.bound:
                todo |= (self.reads[name] & self.names) - own - needed
        return [(name, name in self.bound) for name in sorted(needed)]


def render(env: jinja2.Environment, sources: list[str]) -> Runtime:
    """The runtime of a package generated from these formula files."""
    text = env.get_template("numba/runtime_module.py.j2").render(
        sources=sources, vecmath=vecmath_functions())
    tree = ast.parse(text)
    names = _defined(tree.body)
    reads: dict[str, set[str]] = {}
    decorated: set[str] = set()
    for node in _top_level(tree.body):
        if isinstance(node, ast.FunctionDef):
            reads.setdefault(node.name, set()).update(
                _names_read(node) & (names | MODULE_SETTINGS))
            if node.decorator_list:
                decorated.add(node.name)
    bound = {f for f, r in reads.items() if r & MODULE_SETTINGS}
    while grown := {f for f, r in reads.items() if r & bound} - bound:
        bound |= grown
    if bound & decorated:  # (an intrinsic or a jitted function cannot take other globals)
        raise FormulaError(f"{PATH}: {sorted(bound & decorated)} read a module setting but "
                           f"are not plain functions; this is a bug in symdl")
    return Runtime(text, hashlib.sha256(text.encode()).hexdigest()[:16], frozenset(names),
                   {f: frozenset(r) for f, r in reads.items()}, frozenset(bound))
