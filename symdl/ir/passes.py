"""Passes over the kernel IR: small rewrites, each one testable on its own.

``schedule`` is the pipeline that every kernel's expressions go through, in order:
    1. ``stabilize``           same function, better rounding (symdl.stable);
    2. the kind's own rewrite  (``post``: e.g. signed-zero safety at a domain's edge);
    3. ``select_functions``    the backend's choice of implementations (Numba: the
                               vectorizable exp, tanh, log1p of symdl.vecmath);
    4. ``hoist_invariants``    the largest subexpressions known at an outer loop level
                               move to that level (1 - beta1**t in Adam: once a call);
    5. ``cse``                 common subexpressions become temporaries, each placed at
                               the outermost level where all it uses is known.
The result is a ``Block``: still SymPy, not printed.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from ..stable import stabilize
from .nodes import Assign, Block, Element, Local

Rewrite = Callable[[sp.Expr], sp.Expr]


def hoist_invariants(exprs: list[sp.Expr], invariant: set[sp.Symbol], prefix: str
                     ) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    """Replace the largest subexpressions that depend only on ``invariant`` symbols
    (not bare symbols or numbers) by temporaries, computed once before the loop."""
    if not invariant:
        return [], exprs
    found: dict[sp.Expr, sp.Symbol] = {}

    def visit(e: sp.Expr) -> sp.Expr:
        if e.is_Atom or isinstance(e, sp.logic.boolalg.Boolean) and not e.free_symbols:
            return e
        if e.free_symbols and e.free_symbols <= invariant and not isinstance(
                e, sp.Piecewise | ExprCondPair | sp.logic.boolalg.Boolean):
            if e not in found:
                found[e] = sp.Symbol(f"{prefix}{len(found)}")
            return found[e]
        if e.is_Mul or e.is_Add:
            # 2*lr*m/(1 - beta1**t): the invariant factors together form one temporary.
            inv = [a for a in e.args if a.free_symbols and a.free_symbols <= invariant]
            if len(inv) >= 2:
                rest = [a for a in e.args if a not in inv]
                return e.func(visit(e.func(*inv)), *[visit(a) for a in rest])
        return e.func(*[visit(a) for a in e.args])

    out = [visit(e) for e in exprs]
    return [(s, e) for e, s in found.items()], out


def schedule(results: dict[Local | Element, sp.Expr], levels: list[set[sp.Symbol]],
             select_functions: Rewrite, prefix: str = "_c", post: Rewrite | None = None,
             accumulate: frozenset[Local] = frozenset()) -> Block:
    """The ordered assignments that compute ``results`` (target -> value).

    ``levels`` are the symbols known at each enclosing loop level (level 0: the scalar
    parameters); the temporaries are named ``prefix`` + a number, and the hoisted ones
    ``prefix`` + a level letter + a number. Targets in ``accumulate`` are summed
    (``+=``) instead of assigned.
    """
    targets = list(results)
    exprs = [select_functions((post or (lambda e: e))(stabilize(e)))
             for e in results.values()]
    hoisted: list[list[tuple[sp.Symbol, sp.Expr]]] = []
    known_at: list[set[sp.Symbol]] = []
    known: set[sp.Symbol] = set()
    for k, inv in enumerate(levels):
        known |= inv
        pre, exprs = hoist_invariants(exprs, known, f"{prefix}{'pfgh'[k]}")
        known |= {sym for sym, _ in pre}
        hoisted.append(pre)
        known_at.append(set(known))
    temps, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(prefix), order="canonical")
    body = []
    for sym, e in temps:
        level = next((k for k, kn in enumerate(known_at) if e.free_symbols <= kn), None)
        if level is None:
            body.append(Assign(Local(str(sym)), e))
        else:
            hoisted[level].append((sym, e))
            for kn in known_at[level:]:
                kn.add(sym)
    body += [Assign(t, e, "+=" if t in accumulate else "=")
             for t, e in zip(targets, reduced, strict=True)]
    return Block([[Assign(Local(str(sym)), e) for sym, e in pre] for pre in hoisted], body)
