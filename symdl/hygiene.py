"""User names against the names of the generated code, kernel by kernel.

A formula's symbols become Python names in its kernel's functions, beside the names
the template uses for itself (loop bounds, tile widths, temporaries). Where the two
meet, the kernel computes something else (a ``Batch`` input named ``w`` was
overwritten by the column-tile width) or does not compile (a parameter named ``C``).
Names that start with ``_`` are the generator's alone (``check_identifier`` refuses
them); the rest that each template uses are listed here, and a formula that uses one
of them, or a name the template derives from another of its names (``a_x`` for the
array of ``x``), is refused in one line. ``tests/test_hygiene.py`` renders every kind
and fails if a template uses a name that this table does not reserve.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

import sympy as sp

from .errors import FormulaError

#: Prefixes a template puts before a user's name (a_x: the array of x; p_lr: the
#: parameter as passed; o_, f_, e_, s_, r_: outputs, features, errors, sums, results).
PREFIXES = ("a", "p", "o", "f", "e", "s", "r", "flat")

#: Names a template uses beside the user's, by template; numbered families as regexes.
RESERVED: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    "axis": ["T", "axis", "i", "n", "range"],
    "batch": ["C", "T", "b", "blk", "c", "c0", "c1", "dtype", "err", "i", "m", "min", "nb",
              "range", "rows", "t", "tile", "tot", "w"],
    "batch_map": ["T", "abs", "dtype", "i", "range"],
    "batch_reduction": ["F", "T", "abs", "b", "block", "count", "dtype", "float", "hi", "i",
                        "j", "lo", "max", "min", "n", "partials", "r", "range"],
    "contraction": ["T", "dtype", "range", "result", "sizes"],
    "correlation": ["H", "Ho", "Hp", "Hq", "K", "N", "O", "T", "ValueError", "W", "Wo",
                    "Wpa", "arrays", "blocks", "bp", "bv", "c0", "cb", "chunk", "chunks",
                    "cols", "db_groups", "dcols", "dst", "dtype", "dw_group", "dw_groups",
                    "dwn", "dxflat", "dxp", "dy2", "dyflat", "dyp", "g", "group", "groups",
                    "h", "lanes", "max", "min", "o0", "ob", "padded", "padding", "part",
                    "parts", "q", "range", "result", "row", "src", "start", "stride", "tail",
                    "task", "tasks", "threads", "v", "w2", "w2t", "wf", "wflat", "wfp", "wide",
                    "wp", "xflat", "xp", "xps", "y2", "yflat", "zero", "p_stride", "p_padding",
                    "p_size", "a_y2"],
    "elementwise": ["PAR_BLOCK", "T", "abs", "dtype", "i", "max", "min", "n", "out", "range",
                    "result", "shape", "streamed"],
    "masked": ["T", "TypeError", "U", "ValueError", "bool", "dtype", "float", "i",
               "inverted", "isinstance", "mask", "min", "n", "out", "range", "shape",
               "streamed"],
    # (max, min: the builtins an activation prints as, ReLU's max(T(0), Z1))
    "network": ["T", "abs", "c", "dtype", "i", "len", "max", "min", "range", "saved", "sizes",
                "spare", "spare_copies"],
    "reduction": ["T", "b", "block", "float", "i", "m", "min", "n", "partials", "range",
                  "totals", "v"],
    "scalar": ["ValueError", "advice", "diagnosis", "BiasVarianceResult"],
    "window": ["C", "H", "Ho", "N", "T", "ValueError", "W", "Wo", "acc", "accr", "cols",
               "direct", "dtype", "dyv", "e", "h", "kar", "kbr", "kpr", "out", "pl",
               "planes", "range", "result", "rows", "shape", "stride", "v"],
}.items()}

#: Numbered families of template names, by template (batch: pf2_4, blk0, tot1, err1).
NUMBERED = {"batch": re.compile(r"(pf\d+(_\d+)?|blk\d+|tot\d+|err\d+)"),
            "network": re.compile(r"s_\w+_v")}


def template_key(template: str) -> str:
    """numba/batch.py.j2 -> batch."""
    return template.rsplit("/", 1)[-1].split(".", 1)[0]


def user_names(formula: object) -> set[str]:
    """Every name a formula gives: its symbols (scalar, indexed, index), the keys of
    its mappings (outputs, sums, steps, statistics) and its parameters. Prose is not a
    name and is skipped."""
    names: set[str] = set()
    # The batch size of a Batch or Reduction is the template's own m (the row count):
    # that very symbol is meant to meet it; another symbol named m is not.
    count = getattr(type(formula), "count", None)

    def visit(v: object) -> None:
        if isinstance(v, sp.Basic):
            for a in v.atoms(sp.Symbol, sp.IndexedBase, sp.Idx):
                if a != count:
                    names.add(str(a.label) if isinstance(a, sp.Idx) else str(a.name))
        elif isinstance(v, Mapping):
            for k, item in v.items():
                if isinstance(k, str):
                    names.add(k)
                visit(k)
                visit(item)
        elif isinstance(v, list | tuple | set | frozenset):
            for item in v:
                visit(item)
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            for f in dataclasses.fields(v):
                if f.name not in ("doc", "title", "section", "notes", "why"):
                    visit(getattr(v, f.name))
            if hasattr(v, "name") and isinstance(v.name, str) and hasattr(v, "default"):
                names.add(v.name)  # a Param
            if hasattr(v, "layers") and hasattr(v, "argument_names"):
                # A Network names its arrays with strings; its kernels load the biases
                # and the read-out under those names.
                names.update(v.argument_names())

    visit(formula)
    return names


def reserved_for(template: str, names: Iterable[str]) -> dict[str, str]:
    """The names among ``names`` that the template's generated code uses: name -> why."""
    names = set(names)
    table = RESERVED.get(template_key(template), frozenset())
    numbered = NUMBERED.get(template_key(template))
    clash = {}
    for n in sorted(names):
        if n in table or (numbered is not None and numbered.fullmatch(n)):
            clash[n] = "a local of the generated code"
        else:
            for p in PREFIXES:
                rest = n.removeprefix(p + "_")
                if rest != n and rest in names:
                    clash[n] = f"the generated code's name for {rest!r}"
    return clash


def check(formula: object, template: str, kernel: str) -> None:
    """Refuse a formula whose names meet its kernel's own, in one line. A derived
    formula's names are symdl's (d<name>, r_<name>), checked through its source's."""
    if getattr(formula, "derived_from", None):
        return
    clash = reserved_for(template, user_names(formula))
    if clash:
        name, why = next(iter(clash.items()))
        raise FormulaError(
            f"{kernel}: the name {name!r} is {why} in a {template_key(template)} kernel; "
            f"rename it" + (f" (also: {', '.join(list(clash)[1:])})" if len(clash) > 1 else ""))
