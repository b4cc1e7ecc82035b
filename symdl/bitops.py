"""Unsigned 64-bit integer operations as SymPy node types, for counter-based hashes.

Addition and multiplication modulo 2**64 are ordinary SymPy ``Add``/``Mul`` (reduction
mod 2**64 is a ring homomorphism, so SymPy's rewrites stay valid); xor and the right
shift are not, so they are node types of their own, printed by each printer's
``_print_BitXor`` / ``_print_ShiftRight``. With integer arguments they evaluate
exactly (reducing their operands mod 2**64 first), which gives verification a
pure-SymPy reference for the printed hash.
"""

from __future__ import annotations

import sympy as sp

WORD = 2**64


class BitXor(sp.Function):
    """a xor b on unsigned 64-bit words."""

    nargs = 2
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return sp.Integer((int(a) % WORD) ^ (int(b) % WORD))
        return None


class ShiftRight(sp.Function):
    """a >> k (logical shift) on an unsigned 64-bit word; k is a constant."""

    nargs = 2
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, a, k):
        if a.is_Integer and k.is_Integer:
            return sp.Integer((int(a) % WORD) >> int(k))
        return None


def word(expr: sp.Expr) -> sp.Expr:
    """The exact value of an evaluated hash expression as a word (reduce mod 2**64)."""
    return sp.Integer(int(expr) % WORD)
