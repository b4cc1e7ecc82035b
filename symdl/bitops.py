"""Unsigned 64-bit integer operations as SymPy node types, for counter-based hashes.

Addition and multiplication modulo 2**64 are ordinary SymPy ``Add``/``Mul`` (reduction
mod 2**64 is a ring homomorphism, so SymPy's rewrites stay valid); xor and the right
shift are not, so they are node types of their own, printed by each printer's
``_print_BitXor`` / ``_print_ShiftRight``. With integer arguments they evaluate
exactly (reducing their operands mod 2**64 first), which gives verification a
pure-SymPy reference for the printed hash. ``Low32``, ``Add32``, ``Mul32``, ``Xor32``,
``Shr32`` and ``Rotl32`` work on 32-bit words, for hashes that vectorize.
"""

from __future__ import annotations

import sympy as sp

WORD = 2**64
HALF = 2**32


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


class Low32(sp.Function):
    """a mod 2**32: the low half of a word, as an unsigned 32-bit word."""

    nargs = 1
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, a):
        if a.is_Integer:
            return sp.Integer(int(a) % HALF)
        return None


class _Op32(sp.Function):
    """An operation on unsigned 32-bit words (operands reduced mod 2**32 first).

    A kernel computes it in 32-bit lanes (an intrinsic each: Numba would widen
    32-bit integers to 64 bits), so that a hash vectorizes on AVX2, which multiplies
    eight 32-bit lanes at once but has no 64-bit multiply."""

    nargs = 2
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return sp.Integer(cls.apply(int(a) % HALF, int(b)) % HALF)
        return None


class Mul32(_Op32):
    """a * b mod 2**32."""

    apply = staticmethod(lambda a, b: a * (b % HALF))


class Xor32(_Op32):
    """a xor b on 32-bit words."""

    apply = staticmethod(lambda a, b: a ^ (b % HALF))


class Shr32(_Op32):
    """a >> k (logical shift) on a 32-bit word; k is a constant."""

    apply = staticmethod(lambda a, k: a >> k)


class Add32(_Op32):
    """a + b mod 2**32."""

    apply = staticmethod(lambda a, b: a + b)


class Rotl32(_Op32):
    """a rotated left by k bits on a 32-bit word; k is a constant in [1, 31]."""

    apply = staticmethod(lambda a, k: (a << k) | (a >> (32 - k)))


def word(expr: sp.Expr) -> sp.Expr:
    """The exact value of an evaluated hash expression as a word (reduce mod 2**64)."""
    return sp.Integer(int(expr) % WORD)
