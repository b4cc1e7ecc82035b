"""Vectorizable elementary functions, defined in SymPy and printed like any formula.

Numba cannot vectorize ``math.exp`` here (no SVML in this llvmlite), so a kernel
that calls it runs one element at a time. ``exp_algorithm`` writes exp as plain
arithmetic that LLVM vectorizes: Cody-Waite range reduction x = k*ln2 + r, a Taylor
polynomial for exp(r) (coefficients 1/j! from SymPy), and 2**k built from its bits.
Every constant is computed here from SymPy/mpmath; ``symdl verify`` checks the
result against mpmath over the whole range (overflow, underflow, subnormals, inf, nan).

The node types below print through ``NumbaPrinter`` (``_print_<Node>``): the bit
casts are Numba intrinsics emitted by ``templates/numba/vecmath.py.j2``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import mpmath
import sympy as sp
from sympy.codegen.cfunctions import log1p


class VecExp(sp.Function):
    """exp(x), computed by the vectorizable algorithm of the kernel's dtype."""

    nargs = 1

    def _latex(self, printer) -> str:
        return printer._print(sp.exp(self.args[0]))

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return self

    def _eval_rewrite_as_exp(self, arg, **kwargs) -> sp.Expr:
        return sp.exp(arg)


class VecTanh(sp.Function):
    """tanh(x), computed by the vectorizable algorithm of the kernel's dtype."""

    nargs = 1

    def _latex(self, printer) -> str:
        return printer._print(sp.tanh(self.args[0]))

    def _eval_rewrite_as_tanh(self, arg, **kwargs) -> sp.Expr:
        return sp.tanh(arg)


class VecLog1p(sp.Function):
    """log(1 + x), computed by the vectorizable algorithm of the kernel's dtype."""

    nargs = 1

    def _latex(self, printer) -> str:
        return printer._print(sp.log(1 + self.args[0]))


class IntToFloat(sp.Function):
    """A signed integer converted to the kernel's float type."""

    nargs = 1


class CopySign(sp.Function):
    """|a| with the sign of b (IEEE copysign: a select on the sign bit, vectorizable)."""

    nargs = 2


class FloatBits(sp.Function):
    """The IEEE bits of a float, as a signed 64-bit integer (float32: sign-extended)."""

    nargs = 1
    is_integer = True


class BitsFloat(sp.Function):
    """The float of the given width (32 or 64) whose IEEE bits are the integer i."""

    nargs = 2


class ShiftLeft(sp.Function):
    """i << k on a signed 64-bit integer (k a constant)."""

    nargs = 2
    is_integer = True


class ShiftRightArith(sp.Function):
    """i >> k, arithmetic (floor division by 2**k) on a signed 64-bit integer."""

    nargs = 2
    is_integer = True


@dataclass(frozen=True)
class FloatFormat:
    """What the algorithm needs to know of a binary floating-point format."""

    width: int  # 64 or 32
    mantissa: int  # explicit mantissa bits
    bias: int  # exponent bias
    degree: int  # Taylor degree: remainder below 2**-mantissa / 100 on |r| <= ln2/2
    ln2_hi_bits: int  # ln2_hi has this many significant bits, so k*ln2_hi is exact
    tanh_depth: int  # depth of Lambert's continued fraction for tanh on |x| < TANH_CUT

    @property
    def emax(self) -> int:
        return self.bias + 1  # 2**emax overflows

    @property
    def emin(self) -> int:
        return -(self.bias - 1) - self.mantissa  # the smallest subnormal is 2**emin


FORMATS = {64: FloatFormat(64, 52, 1023, 13, 32, 7), 32: FloatFormat(32, 23, 127, 7, 12, 4)}

#: Below this |x|, tanh is the continued fraction; above, (1 - e)/(1 + e) with
#: e = exp(-2|x|) <= 0.29, where 1 - e has no cancellation.
TANH_CUT = sp.Rational(5, 8)


def _float_bits(value: float, width: int) -> int:
    """The bits of value rounded to the format, as the intrinsic returns them."""
    if width == 64:
        return struct.unpack("<q", struct.pack("<d", value))[0]
    return struct.unpack("<i", struct.pack("<f", value))[0]


def estrin(coeffs: list[sp.Expr], r: sp.Symbol) -> tuple[list[tuple[sp.Symbol, sp.Expr]],
                                                            sp.Expr]:
    """sum(coeffs[j] * r**j) in Estrin's scheme: pairs c0 + c1 r, then pairs of pairs
    with r**2, r**4, ... (each a statement of its own, so SymPy keeps the grouping).
    Its longest chain of dependent operations is about log2(degree) multiply-adds
    where Horner's is degree, so that a vector loop keeps more iterations in flight:
    sigmoid's loop (41 instructions per 8 float32) was bound by Horner's chain of 7
    dependent FMAs. With exp's tail in this scheme (exp_algorithm), per element on one
    core: sigmoid float32 1.48 -> 1.33 ns, float64 3.15 -> 2.31 ns; tanh float32 1.71
    -> 1.58 ns, float64 4.23 -> 2.61 ns. Returns the power statements and the
    polynomial."""
    powers: list[tuple[sp.Symbol, sp.Expr]] = []
    terms, step, exponent = list(coeffs), r, 1
    while len(terms) > 1:
        if len(terms) % 2:
            terms.append(sp.S.Zero)
        # (unevaluated sums: SymPy would flatten and reorder them)
        terms = [sp.Add(terms[2 * k], step * terms[2 * k + 1], evaluate=False)
                 if terms[2 * k + 1] != 0 else terms[2 * k] for k in range(len(terms) // 2)]
        if len(terms) > 1:
            exponent *= 2
            square = sp.Symbol(f"{r.name}{exponent}", real=True)
            powers.append((square, step * step))
            step = square
    return powers, terms[0]


def exp_algorithm(fmt: FloatFormat) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """exp(x) as statements (symbol, expression, 'float' or 'int') and the result symbol."""
    x = sp.Symbol("x", real=True)
    ln2 = sp.log(2)
    # The clamp keeps k within the two-step scaling's reach; beyond it the result is
    # 0 or inf anyway. NaN fails both comparisons and passes through unchanged.
    hi = sp.Integer(int(mpmath.ceil(fmt.emax * mpmath.log(2))) + 1)
    lo = sp.Integer(int(mpmath.floor((fmt.emin - 1) * mpmath.log(2))) - 1)
    shifter = sp.Rational(3, 2) * 2**fmt.mantissa  # t - shifter rounds to an integer
    scale = 2**fmt.ln2_hi_bits
    ln2_hi = sp.Rational(int(mpmath.nint(mpmath.log(2) * scale)), scale)
    ln2_lo = sp.Float(sp.N(ln2 - ln2_hi, 40), 17)
    xc, t, k, r1, r, p, ki, k1, s1, s2, y = sp.symbols("xc t k r1 r p ki k1 s1 s2 y",
                                                       real=True)
    # 1 + r*(1 + r*tail): the tail (1/2 + r/6 + ...) in Estrin's scheme, the last two
    # steps Horner's, so that the result's rounding stays that of 1 + r*(...) (all
    # Estrin: max error 1.1 -> 1.6 ulp float32, 1.1 -> 2.1 ulp float64, measured).
    tail = [sp.Rational(1, sp.factorial(j)) for j in range(2, fmt.degree + 1)]
    powers, poly = estrin(tail, r)
    poly = 1 + r * (1 + r * poly)
    steps = [
        (xc, sp.Piecewise((hi, x > hi), (lo, x < lo), (x, True)), "float"),
        (t, xc * sp.Float(sp.N(1 / ln2, 40), 17) + shifter, "float"),
        (k, t - shifter, "float"),
        # Two statements, so that SymPy cannot merge ln2_hi and ln2_lo: x - k*ln2_hi is
        # exact (k*ln2_hi has few bits), the small correction comes second.
        (r1, xc - k * ln2_hi, "float"),
        (r, r1 - k * ln2_lo, "float"),
        *[(sym, value, "float") for sym, value in powers],
        (p, poly, "float"),
        (ki, FloatBits(t) - _float_bits(float(shifter), fmt.width), "int"),
        (k1, ShiftRightArith(ki, 1), "int"),
        (s1, BitsFloat(ShiftLeft(k1 + fmt.bias, fmt.mantissa), fmt.width), "float"),
        (s2, BitsFloat(ShiftLeft(ki - k1 + fmt.bias, fmt.mantissa), fmt.width), "float"),
        (y, p * s1 * s2, "float"),
    ]
    return steps, y


def tanh_convergent(depth: int) -> tuple[sp.Expr, sp.Expr]:
    """Lambert's continued fraction tanh x = x/(1 + x^2/(3 + x^2/(5 + ...))), cut at
    ``depth`` and simplified by SymPy to x*p(s)/q(s) with s = x^2: (p(s), q(s))."""
    x, s = sp.symbols("x s", real=True)
    d = sp.Integer(2 * depth + 1)
    for j in reversed(range(depth)):
        d = (2 * j + 1) + x**2 / d
    num, den = sp.fraction(sp.cancel(x / d))
    p = sp.expand(sp.cancel(num / x)).subs(x**2, s)
    q = sp.expand(den).subs(x**2, s)
    lead = sp.Poly(q, s).LC() if q.has(s) else q
    return sp.expand(p / lead), sp.expand(q / lead)


def tanh_algorithm(fmt: FloatFormat) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """tanh(x): a rational function near 0, exp-based beyond; both branches are
    computed and one selected, so the loop vectorizes. The numerator and denominator
    are selected, then divided once: a division per element, not one per branch (the
    divider bounded the vector loop), with the same quotient (1 - e >= 0, so
    copysign(1 - e, x)/(1 + e) = copysign((1 - e)/(1 + e), x))."""
    x = sp.Symbol("x", real=True)
    a, s, num, den, e, y = sp.symbols("a s num den e y", real=True)
    p, q = tanh_convergent(fmt.tanh_depth)
    near = a < TANH_CUT
    steps = [
        (a, sp.Abs(x), "float"),
        (s, x * x, "float"),
        (e, VecExp(-2 * a), "float"),
        (num, sp.Piecewise((x * sp.horner(p, wrt=s), near), (CopySign(1 - e, x), True)),
         "float"),
        (den, sp.Piecewise((sp.horner(q, wrt=s), near), (1 + e, True)), "float"),
        (y, num / den, "float"),
    ]
    return steps, y


def log1p_algorithm(fmt: FloatFormat) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """log1p(x): u = 1 + x = 2**k * m with m in [sqrt(2)/2, sqrt(2)) read off u's bits,
    log(m) = 2*atanh(s) with s = (m - 1)/(m + 1) (an odd series from SymPy), plus the
    rounding error of 1 + x, (x - (u - 1))/u, so tiny x keep every digit."""
    x = sp.Symbol("x", real=True)
    u, ub, kb, k, m, s, s2, logm, um1, c, lo, lo2, khi, y, yy = sp.symbols(
        "u ub kb k m s s2 logm um1 c lo lo2 khi y yy", real=True)
    largest = sp.Float(float(2 - sp.Rational(1, 2**fmt.mantissa)) * 2.0**(fmt.bias), 17)
    half_sqrt2 = _float_bits(float(sp.sqrt(2) / 2), fmt.width)
    s_max = (sp.sqrt(2) - 1) / (sp.sqrt(2) + 1)  # |s| at the ends of m's range
    terms = 1
    while float(s_max ** (2 * terms) / (2 * terms + 1)) > 2.0 ** -(fmt.mantissa + 8):
        terms += 1
    series = sp.Rational(2, 2 * terms - 1)
    for j in reversed(range(terms - 1)):
        series = sp.Rational(2, 2 * j + 1) + s2 * series
    scale = 2**fmt.ln2_hi_bits
    ln2_hi = sp.Rational(int(mpmath.nint(mpmath.log(2) * scale)), scale)
    ln2_lo = sp.Float(sp.N(sp.log(2) - ln2_hi, 40), 17)
    steps = [
        (u, 1 + x, "float"),
        (ub, FloatBits(u), "int"),
        (kb, ShiftRightArith(ub - half_sqrt2, fmt.mantissa), "int"),
        (m, BitsFloat(ub - ShiftLeft(kb, fmt.mantissa), fmt.width), "float"),
        (k, IntToFloat(kb), "float"),
        (s, (m - 1) / (m + 1), "float"),
        (s2, s * s, "float"),
        (logm, s * series, "float"),
        # One operation a statement where the order matters (SymPy would reorder a sum):
        (um1, u - 1, "float"),  # exact (Sterbenz) where the correction matters
        (c, (x - um1) / u, "float"),
        (lo, logm + c, "float"),
        (lo2, lo + k * ln2_lo, "float"),
        (khi, k * ln2_hi, "float"),  # exact: ln2_hi has few bits
        (y, khi + lo2, "float"),
        # Outside (-1, largest finite]: -inf at -1, nan below, inf and nan pass through.
        (yy, sp.Piecewise((y, (x > -1) & (x <= largest)), (-sp.oo, sp.Eq(x, -1)),
                          (sp.nan, x < -1), (x, True)), "float"),
    ]
    return steps, yy


#: The vectorizable functions: SymPy function -> (node, printed name, algorithm).
ALGORITHMS = {sp.exp: (VecExp, "vexp", exp_algorithm),
              sp.tanh: (VecTanh, "vtanh", tanh_algorithm),
              log1p: (VecLog1p, "vlog1p", log1p_algorithm)}


def vectorize(expr: sp.Expr) -> sp.Expr:
    """Replace exp, tanh and log1p by their vectorizable forms (printed _vexp, ...)."""
    for func, (node, _, _) in ALGORITHMS.items():
        expr = expr.replace(func, node)
    return expr
