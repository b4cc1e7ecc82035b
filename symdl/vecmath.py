"""Vectorizable elementary functions, defined in SymPy and printed like any formula.

Numba cannot vectorize ``math.exp`` here (no SVML in this llvmlite), so a kernel
that calls it runs one element at a time. ``exp_algorithm`` writes exp as plain
arithmetic that LLVM vectorizes: Cody-Waite range reduction x = k*ln2 + r, a
polynomial for exp(r) (a Chebyshev fit by mpmath), and 2**k built from its bits.
Every constant is computed here from SymPy/mpmath; ``symdl verify`` checks the
result against mpmath over the whole range (overflow, underflow, subnormals, inf, nan).

The node types below print through ``NumbaPrinter`` (``_print_<Node>``): the bit
casts are Numba intrinsics emitted by ``templates/numba/vecmath.py.j2``.
"""

from __future__ import annotations

import functools
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


class VecExpNonpositive(VecExp):
    """exp(x) for an x that SymPy proves <= 0 (a logistic curve's exp(-|x|)): its
    result is at most 1, which lets one power of two scale it (exp_steps)."""


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


class VecErf(sp.Function):
    """erf(x), computed by the vectorizable algorithm of the kernel's dtype."""

    nargs = 1

    def _latex(self, printer) -> str:
        return printer._print(sp.erf(self.args[0]))


class VecErfc(sp.Function):
    """erfc(x), computed by the vectorizable algorithm of the kernel's dtype."""

    nargs = 1

    def _latex(self, printer) -> str:
        return printer._print(sp.erfc(self.args[0]))


class VecErfcHalf(sp.Function):
    """erfc(x/sqrt(2)) (the normal distribution's tail: GELU's), with exp(-x**2/2)
    computed from x itself: erfc of a rounded x/sqrt(2) is off by 2*u**2 rounding
    errors, 1,300 ulp at x = -36."""

    nargs = 1

    def _latex(self, printer) -> str:
        return printer._print(sp.erfc(self.args[0] / sp.sqrt(2)))


class VecGauss(sp.Function):
    """exp(-x**2/2) with x**2 split exactly (a rounded x*x costs x**2/2 rounding errors
    of the result, 300 ulp at x = 36)."""

    nargs = 1

    def _latex(self, printer) -> str:
        return printer._print(sp.exp(-self.args[0] ** 2 / 2))


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
    tail_terms: int  # coefficients of exp's tail polynomial (see _tail_coefficients)
    ln2_hi_bits: int  # ln2_hi has this many significant bits, so k*ln2_hi is exact

    @property
    def emax(self) -> int:
        return self.bias + 1  # 2**emax overflows

    @property
    def emin(self) -> int:
        return -(self.bias - 1) - self.mantissa  # the smallest subnormal is 2**emin


FORMATS = {64: FloatFormat(64, 52, 1023, 10, 32), 32: FloatFormat(32, 23, 127, 5, 12)}

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
    return exp_steps(fmt, sp.Symbol("x", real=True))


#: The reduced argument's bound: ln2/2 = 0.3466 and the reduction's rounding.
R_MAX = sp.Rational(35, 100)


@functools.cache
def _tail_coefficients(terms: int) -> list[sp.Float]:
    """exp's tail (expm1(r) - r)/r**2 = 1/2 + r/6 + ... as a polynomial of `terms`
    coefficients, lowest first: mpmath's Chebyshev fit on |r| <= R_MAX, within a few
    percent of the minimax polynomial, where the Taylor series needs two more terms for
    the same accuracy. Each term saved is one multiply-add less per element in every
    loop that computes exp or tanh. With 10 coefficients (float64; Taylor: 12) and 5
    (float32; Taylor: 6) the fit's own error is at most 0.17 and 0.18 ulp of exp, 0.41
    and 0.43 ulp of expm1 (mpmath, 40 digits). Worst error of the whole algorithm
    against mpmath on the tests' arguments: exp 1.03 ulp (float64) and 1.01 ulp
    (float32), tanh 1.91 and 1.85 ulp (Taylor's series, and expm1 as r*(1 + r*tail):
    exp 0.87 and 0.85, tanh 2.07 and 1.88)."""

    def tail(r: mpmath.mpf) -> mpmath.mpf:
        return (mpmath.expm1(r) - r) / r**2 if r else mpmath.mpf(1) / 2

    with mpmath.workdps(40):
        bound = mpmath.mpf(R_MAX.p) / R_MAX.q
        coeffs = mpmath.chebyfit(tail, [-bound, bound], terms)
        return [sp.Float(c, 17) for c in reversed(coeffs)]


def _reduction(fmt: FloatFormat, x: sp.Expr, small: sp.Expr | None, prefix: str
               ) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol, sp.Symbol]:
    """Cody-Waite reduction x + small = k ln2 + r, |r| <= ln2/2 (plus roundings), for
    exp and expm1: the statements, t (whose low bits hold k, see _power_of_two) and q =
    expm1(r) = r + r**2*tail, the tail (1/2 + r/6 + ...) in Estrin's scheme. q is one
    fused multiply-add of r**2 (Estrin's first square) and the tail, where r*(1 +
    r*tail) took two: a vector loop of exp is bound by its multiplies. The rounding of
    r**2 moves the result by r**2*tail*2**-p, under an eighth of an ulp; exp is 1 + q.
    (Estrin down to the last term instead: max error 1.1 -> 1.6 ulp float32, 1.1 ->
    2.1 ulp float64, measured.)"""
    ln2 = sp.log(2)
    shifter = sp.Rational(3, 2) * 2**fmt.mantissa  # t - shifter rounds to an integer
    scale = 2**fmt.ln2_hi_bits
    ln2_hi = sp.Rational(int(mpmath.nint(mpmath.log(2) * scale)), scale)
    ln2_lo = sp.Float(sp.N(ln2 - ln2_hi, 40), 17)
    xs, t, k, r1, r0, r, q = sp.symbols([prefix + n for n in "xs t k r1 r0 r q".split()],
                                        real=True)
    powers, poly = estrin(_tail_coefficients(fmt.tail_terms), r)
    inv_ln2 = sp.Float(sp.N(1 / ln2, 40), 17)
    # Separate statements, so that SymPy cannot merge ln2_hi and ln2_lo: x - k*ln2_hi
    # is exact (k*ln2_hi has few bits), the small correction comes second.
    if small is None:
        reduce = [(t, x * inv_ln2 + shifter, "float"), (k, t - shifter, "float"),
                  (r1, x - k * ln2_hi, "float"), (r, r1 - k * ln2_lo, "float")]
    else:  # k from x + small; the reduced argument stays within ln2/2 (+ rounding)
        reduce = [(xs, x + small, "float"), (t, xs * inv_ln2 + shifter, "float"),
                  (k, t - shifter, "float"), (r1, x - k * ln2_hi, "float"),
                  (r0, r1 - k * ln2_lo, "float"), (r, r0 + small, "float")]
    r2 = sp.Symbol(f"{r.name}2", real=True)  # (Estrin's first square, when it has one)
    if not powers or powers[0][0] != r2:
        powers.insert(0, (r2, r * r))
    return [*reduce, *[(sym, value, "float") for sym, value in powers],
            (q, r + r2 * poly, "float")], t, q


def _k_bits(fmt: FloatFormat, t: sp.Symbol) -> sp.Expr:
    """k from the reduction's t, as an integer: t's bits less those of the shifter."""
    return FloatBits(t) - _float_bits(float(sp.Rational(3, 2) * 2**fmt.mantissa), fmt.width)


def _power_of_two(fmt: FloatFormat, k: sp.Expr) -> sp.Expr:
    """2**k for an integer k within the format's normal exponents, from its bits."""
    return BitsFloat(ShiftLeft(k + fmt.bias, fmt.mantissa), fmt.width)


def exp_steps(fmt: FloatFormat, x: sp.Expr, small: sp.Expr | None = None, prefix: str = "",
              nonpositive: bool = False
              ) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """exp(x + small), small a correction below 1 in magnitude that is added to the
    reduced argument, not to x (erfc's exp(-x**2 + ...), whose x**2 is split in two:
    their sum would round to x's ulp, 500 ulps of the result at x = 27). ``prefix``
    names the statements apart from the caller's. ``nonpositive``: x + small <= 0."""
    # The clamp keeps k within the scaling's reach; beyond it the result is 0 or inf
    # anyway. NaN fails both comparisons and passes through unchanged.
    hi = sp.Integer(int(mpmath.ceil(fmt.emax * mpmath.log(2))) + 1)
    lo = sp.Integer(int(mpmath.floor((fmt.emin - 1) * mpmath.log(2))) - 1)
    xc, p, ki, k1, s1, s2, y = sp.symbols([prefix + n for n in "xc p ki k1 s1 s2 y".split()],
                                          real=True)
    reduce, t, q = _reduction(fmt, xc, small, prefix)
    steps = [
        (xc, sp.Piecewise((lo, x < lo), (x, True)) if nonpositive else
         sp.Piecewise((hi, x > hi), (lo, x < lo), (x, True)), "float"),
        *reduce,
        (p, 1 + q, "float"),
    ]
    if nonpositive:
        # k <= 0: 2**(k + c) is a normal number for every k down to the clamp's, and p
        # times it is exact; the product with 2**-c rounds once, as the two-step
        # scaling's last product does (the same results, bit for bit), with three
        # vector instructions fewer.
        c = -(fmt.bias - 1) - (int(mpmath.floor(lo / mpmath.log(2))) - 1)
        return [*steps, (ki, _k_bits(fmt, t), "int"),
                (s1, _power_of_two(fmt, ki + c), "float"), (s2, p * s1, "float"),
                (y, s2 * sp.Rational(1, 2**c), "float")], y
    steps += [
        # 2**k in two factors, so that a result below the normal range is scaled right
        (ki, _k_bits(fmt, t), "int"),
        (k1, ShiftRightArith(ki, 1), "int"),
        (s1, _power_of_two(fmt, k1), "float"),
        (s2, _power_of_two(fmt, ki - k1), "float"),
        (y, p * s1 * s2, "float"),
    ]
    return steps, y


def exp_nonpositive_algorithm(fmt: FloatFormat
                              ) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """exp(x) for x <= 0 (VecExpNonpositive): one power of two scales the result."""
    return exp_steps(fmt, sp.Symbol("x", real=True), nonpositive=True)


def tanh_algorithm(fmt: FloatFormat) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """tanh(x) for the format, from expm1 (tanh_expm1_steps)."""
    return tanh_expm1_steps(fmt)


#: tanh's argument is clamped to this: beyond it, tanh rounds to +-1 in both formats
#: (1 - tanh(20) = 8.5e-18 < 2**-54), and exp(-2*20) = 2**-57.7 is a normal number, so
#: one power of two scales it (no two-step scaling for subnormal results).
TANH_CLAMP = sp.Integer(20)


def tanh_expm1_steps(fmt: FloatFormat
                     ) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """tanh(x) = copysign((1 - e)/(1 + e), x), e = exp(-2|x|) = 2**k*(1 + expm1(r)) from
    exp's reduction (r = -2|x| - k ln2), the one formula for every |x|: no second
    polynomial and no select. Numerator and denominator are each one rounding of their
    exact value: (1 - 2**k) - 2**k*expm1(r) and (1 + 2**k) + 2**k*expm1(r), where
    2**k*expm1(r) is exact (a power of two times a float) and so are 1 -+ 2**k (k >= -24
    in float32; beyond, both round to 1 and so does tanh). For k = 0 the numerator is
    -expm1(r) itself, which keeps its relative accuracy as x -> 0 (tanh x ~ x); beyond,
    1 - e has no cancellation. Against -m/(m + 2) from m = expm1(-2|x|) (float32 with
    (1 - e)/(1 + e) from a rounded e beyond |x| = 5/8): worst error against mpmath, on
    test_tanh_within_two_and_a_half_ulp's arguments, 2.68 -> 2.07 ulp (float64) and 2.54
    -> 1.88 ulp (float32); four vector instructions fewer in float32 (no select), the
    same count in float64. (1.91 and 1.85 ulp with expm1 = r + r**2*tail, fitted.)"""
    x = sp.Symbol("x", real=True)
    a, y, ki, sc, lo, hi, num, den, y_ = sp.symbols("a y ki sc lo hi num den y_", real=True)
    reduce, t, em1 = _reduction(fmt, y, None, "")  # em1 = expm1(r)
    return [
        # (NaN fails the comparison and passes through to the result)
        (a, sp.Piecewise((TANH_CLAMP, sp.Abs(x) > TANH_CLAMP), (sp.Abs(x), True)), "float"),
        (y, -2 * a, "float"),
        *reduce,
        (ki, _k_bits(fmt, t), "int"),
        (sc, _power_of_two(fmt, ki), "float"),
        # (1 -+ 2**k statements of their own: SymPy would flatten the sums, and
        # (1 - 2**k*em1) - 2**k cancels as x -> 0)
        (lo, 1 - sc, "float"),
        (hi, 1 + sc, "float"),
        (num, lo - sc * em1, "float"),
        (den, hi + sc * em1, "float"),
        (y_, CopySign(num / den, x), "float"),
    ], y_


def log1p_algorithm(fmt: FloatFormat) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """log1p(x): u = 1 + x = 2**k * m with m in [sqrt(2)/2, sqrt(2)) read off u's bits,
    plus the rounding error of 1 + x, (x - (u - 1))/u, so tiny x keep every digit.
    log(m) = 2*atanh(s), s = f/(2 + f), f = m - 1 (exact), an odd series from SymPy,
    rearranged as log(m) = f - s*(f - R), R = s**2*(2/3 + 2 s**2/5 + ...) (as 2 s = f -
    s f): the leading term f is exact and the rounded quotient s only scales the small
    correction s*(f - R), at most f/5, where s*(2 + series) took all of its error:
    worst error against mpmath on test_log1p_within_two_ulp's arguments 2.50 -> 1.38
    ulp (float32) and 2.69 -> 1.27 ulp (float64), with as many multiplies."""
    x = sp.Symbol("x", real=True)
    u, ub, kb, k, m, f, s, s2, d, logm, um1, c, lo, lo2, khi, y, yy = sp.symbols(
        "u ub kb k m f s s2 d logm um1 c lo lo2 khi y yy", real=True)
    largest = sp.Float(float(2 - sp.Rational(1, 2**fmt.mantissa)) * 2.0**(fmt.bias), 17)
    half_sqrt2 = _float_bits(float(sp.sqrt(2) / 2), fmt.width)
    s_max = (sp.sqrt(2) - 1) / (sp.sqrt(2) + 1)  # |s| at the ends of m's range
    terms = 1
    while float(s_max ** (2 * terms) / (2 * terms + 1)) > 2.0 ** -(fmt.mantissa + 8):
        terms += 1
    # R/s**2: the series 2/3 + 2 s**2/5 + ... (2*atanh(s) = 2 s + s*R)
    series = sp.Rational(2, 2 * terms - 1)
    for j in reversed(range(1, terms - 1)):
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
        (f, m - 1, "float"),  # exact (Sterbenz)
        (s, f / (m + 1), "float"),
        (s2, s * s, "float"),
        # One operation a statement where the order matters (SymPy would reorder a sum):
        (d, f - s2 * series, "float"),
        (logm, f - s * d, "float"),
        (um1, u - 1, "float"),  # exact (Sterbenz) where the correction matters
        (c, (x - um1) / u, "float"),
        (lo, logm + c, "float"),
        (lo2, lo + k * ln2_lo, "float"),
        (khi, k * ln2_hi, "float"),  # exact: ln2_hi has few bits
        (y, khi + lo2, "float"),
        # Outside (-1, largest finite]: -inf at -1, nan below, inf and nan pass through;
        # +-0 gives itself (the sums above give +0 for -0).
        (yy, sp.Piecewise((x, sp.Eq(x, 0)), (y, (x > -1) & (x <= largest)),
                          (-sp.oo, sp.Eq(x, -1)), (sp.nan, x < -1), (x, True)), "float"),
    ]
    return steps, yy


# ---- erf and erfc ----------------------------------------------------------------
# Rational approximations published in Sun's fdlibm s_erf.c (1993, "Permission to
# use, copy, modify, and distribute this software is freely granted"; as in FreeBSD
# lib/msun/src/s_erf.c): the coefficients below are its constants, typed as published.
# fdlibm's float version (s_erff.c) uses the same constants rounded to float, as
# T(c) does here. Its method, by interval of |u|:
#   [0, 0.84375):    erf(u) = u + u*P0(u**2)/Q0(u**2)
#   [0.84375, 1.25): erf(u) = sign(u)*(erx + P1(s)/Q1(s)), s = |u| - 1
#   [1.25, 28):      erfc(|u|) = exp(-z**2 - 0.5625)*exp((z - |u|)*(z + |u|) + R/S)/|u|,
#                    R, S polynomials in 1/u**2 (two sets, split at 1/0.35), z = |u|
#                    with the low half of its mantissa cleared, so that z**2 and
#                    z**2 + 0.5625 are exact
# Here every interval is computed and one selected (no branch: the loop vectorizes),
# the second set of R, S by selecting coefficients, and exp is the vectorizable one.
_ERX = "8.45062911510467529297e-01"  # erf(1) rounded to 24 bits
_PP = ["1.28379167095512558561e-01", "-3.25042107247001499370e-01",
       "-2.84817495755985104766e-02", "-5.77027029648944159157e-03",
       "-2.37630166566501626084e-05"]
_QQ = ["1", "3.97917223959155352819e-01", "6.50222499887672944485e-02",
       "5.08130628187576562776e-03", "1.32494738004321644526e-04",
       "-3.96022827877536812320e-06"]
_PA = ["-2.36211856075265944077e-03", "4.14856118683748331666e-01",
       "-3.72207876035701323847e-01", "3.18346619901161753674e-01",
       "-1.10894694282396677476e-01", "3.54783043256182359371e-02",
       "-2.16637559486879084300e-03"]
_QA = ["1", "1.06420880400844228286e-01", "5.40397917702171048937e-01",
       "7.18286544141962662868e-02", "1.26171219808761642112e-01",
       "1.36370839120290507362e-02", "1.19844998467991074170e-02"]
_RA = ["-9.86494403484714822705e-03", "-6.93858572707181764372e-01",
       "-1.05586262253232909814e+01", "-6.23753324503260060396e+01",
       "-1.62396669462573470355e+02", "-1.84605092906711035994e+02",
       "-8.12874355063065934246e+01", "-9.81432934416914548592e+00"]
_SA = ["1", "1.96512716674392571292e+01", "1.37657754143519042600e+02",
       "4.34565877475229228821e+02", "6.45387271733267880336e+02",
       "4.29008140027567833386e+02", "1.08635005541779435134e+02",
       "6.57024977031928170135e+00", "-6.04244152148580987438e-02"]
_RB = ["-9.86494292470009928597e-03", "-7.99283237680523006574e-01",
       "-1.77579549177547519889e+01", "-1.60636384855821916062e+02",
       "-6.37566443368389627722e+02", "-1.02509513161107724954e+03",
       "-4.83519191608651397019e+02"]
_SB = ["1", "3.03380607434824582924e+01", "3.25792512996573918826e+02",
       "1.53672958608443695994e+03", "3.19985821950859553908e+03",
       "2.55305040643316442583e+03", "4.74528541206955367215e+02",
       "-2.24409524465858183362e+01"]
#: Beyond these |u| erf is +-1 and erfc 0 (or 2) in both formats (fdlibm's cuts).
ERF_ONE, ERFC_ZERO = 6, 28
#: Mantissa bits that z = trunc(|x|) clears: the low word of a double (fdlibm's),
#: 13 of a float (glibc's 0xffffe000: fdlibm's 0xfffff000 leaves z**2 + 9/16 25 bits
#: at x = 7.97, an error of 47 ulp measured): z keeps 21 (11) bits, so that z**2 and
#: q*z**2 + 9/16, for |x| < 40 and q = 1 or 1/2, are exact.
_SPLIT_LOW = {64: 32, 32: 13}


def _const(text: str) -> sp.Float:
    """A published constant: the double nearest the decimal, exactly (printed T(c))."""
    return sp.Float(float(text), 17)


def _horner(coeffs: list[sp.Expr], s: sp.Symbol) -> sp.Expr:
    """c0 + s*(c1 + s*(c2 + ...)), in that order (SymPy keeps a two-term sum whole)."""
    poly = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        poly = c + s * poly
    return poly


def _erf_parts(fmt: FloatFormat, u: sp.Expr, ax: sp.Expr, q: sp.Rational
               ) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], dict[str, sp.Symbol]]:
    """The three intervals' values for the argument u (statements computing it from x
    come first): 'small' erf(u) - u, 'mid' P1/Q1, 'tail' erfc(|u|) (valid only in its
    interval). The tail's u**2 is q*ax**2, q a power of two, ax = |x| (x itself when
    u = x, or u = x/sqrt(2) with q = 1/2): z**2 and (ax - z)*(ax + z) are then exact
    pieces of u**2 however u itself was rounded."""
    a, s, r0, s1, pq, a2, t, num, den, zb, z, e1, e2, tail = sp.symbols(
        "a s r0 s1 pq a2 t num den zb z e1 e2 tail", real=True)
    # fdlibm's 1/0.35: the first set of R, S below it. The set is picked by weights
    # w, 1 - w in {0, 1}: c1*w + c2*(1 - w) is c1 or c2 exactly, and the function holds
    # one select instead of 16 (many selects in a function inlined into a parallel loop
    # trip Numba's SSA check with warnings).
    w, v_ = sp.symbols("w v_", real=True)
    pick = [_const(c1) * w + _const(c2) * v_ if c1 != c2 else _const(c1)
            for c1, c2 in zip(_RA, _RB + ["0"], strict=True)]
    pick_s = [_const(c1) * w + _const(c2) * v_ if c1 != c2 else _const(c1)
              for c1, c2 in zip(_SA, _SB + ["0"], strict=True)]
    low = _SPLIT_LOW[fmt.width]
    steps = [
        (a, sp.Abs(u), "float"),
        (s, u * u, "float"),
        (r0, u * _horner([_const(c) for c in _PP], s) / _horner([_const(c) for c in _QQ], s),
         "float"),
        (s1, a - 1, "float"),
        (pq, _horner([_const(c) for c in _PA], s1) / _horner([_const(c) for c in _QA], s1),
         "float"),
        # (1 below 1: keeps 1/a**2 finite where the tail is not used)
        (a2, sp.Piecewise((a, a > 1), (1, True)), "float"),
        (t, 1 / (a2 * a2), "float"),
        (w, sp.Piecewise((1, a < sp.Rational(20, 7)), (0, True)), "float"),
        (v_, 1 - w, "float"),
        (num, _horner(pick, t), "float"),
        (den, _horner(pick_s, t), "float"),
        (zb, ShiftLeft(ShiftRightArith(FloatBits(ax), low), low), "int"),
        (z, BitsFloat(zb, fmt.width), "float"),
        (e1, -q * (z * z) - sp.Rational(9, 16), "float"),
        (e2, num / den - q * ((ax - z) * (ax + z)), "float"),
    ]
    # exp(e1 + e2) as one exp of a split argument (no second call: two inlined calls
    # of _vexp in one function trip Numba's SSA check with a warning)
    ex, ey = exp_steps(fmt, e1, e2, "x_")
    steps += [*ex, (tail, ey / a2, "float")]
    return steps, {"a": a, "small": r0, "mid": pq, "tail": tail}


def erf_algorithm(fmt: FloatFormat) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """erf(x), fdlibm's method (see above) with every interval computed and one selected."""
    x = sp.Symbol("x", real=True)
    yf, y = sp.symbols("yf y", real=True)
    steps, v = _erf_parts(fmt, x, sp.Abs(x), sp.S.One)
    a = v["a"]
    erx = _const(_ERX)
    steps += [
        # (a statement of its own: after a < 6, SymPy would drop the NaN case as never
        # reached; one comparison a select, as in erfc)
        (yf, sp.Piecewise((CopySign(1, x), a >= ERF_ONE), (x, True)), "float"),  # NaN
        (y, sp.Piecewise(
            (x + v["small"], a < sp.Rational(27, 32)),
            (CopySign(erx + v["mid"], x), a < sp.Rational(5, 4)),
            (CopySign(1 - v["tail"], x), a < ERF_ONE),
            (yf, True)), "float")]
    return steps, y


def _erfc_from(fmt: FloatFormat, x: sp.Symbol, u: sp.Expr, q: sp.Rational
               ) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """erfc(u) for u = x (q = 1) or u = x/sqrt(2) (q = 1/2)."""
    uu, sm, c1, um, hh, c2, c3, m, c4, ys, ym, yt, yf, y = sp.symbols(
        "uu sm c1 um hh c2 c3 m c4 ys ym yt yf y", real=True)
    steps = [(uu, u, "float")]
    parts, v = _erf_parts(fmt, uu, sp.Abs(x), q)
    steps += parts
    a = v["a"]
    one_minus_erx = sp.Float(1 - float(_ERX), 17)  # exact: erx has 24 bits
    # One operation a statement where fdlibm's order matters (SymPy would merge 1 + erx
    # into one constant, inexact in float32, and reorder sums).
    steps += [
        (sm, uu + v["small"], "float"),
        (c1, 1 - sm, "float"),  # u < 1/4
        (um, uu - sp.S.Half, "float"),
        (hh, v["small"] + um, "float"),
        (c2, sp.S.Half - hh, "float"),  # 1/4 <= u < 0.84375
        (c3, one_minus_erx - v["mid"], "float"),
        (m, _const(_ERX) + v["mid"], "float"),
        (c4, 1 + m, "float"),
        # Selects on one comparison each (no and/or: short-circuit blocks inside a
        # parallel loop trip Numba's SSA check with warnings)
        (ys, sp.Piecewise((c1, uu < sp.Rational(1, 4)), (c2, True)), "float"),
        (ym, sp.Piecewise((c3, uu > 0), (c4, True)), "float"),
        (yt, sp.Piecewise((v["tail"], uu > 0), (2 - v["tail"], True)), "float"),
        (yf, sp.Piecewise((0, uu > 0), (2, uu < 0), (uu, True)), "float"),  # NaN: NaN
        (y, sp.Piecewise((ys, a < sp.Rational(27, 32)), (ym, a < sp.Rational(5, 4)),
                         (yt, a < ERFC_ZERO), (yf, True)), "float"),
    ]
    return steps, y


def erfc_algorithm(fmt: FloatFormat) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """erfc(x), fdlibm's method (see above) with every interval computed and one selected."""
    x = sp.Symbol("x", real=True)
    return _erfc_from(fmt, x, x, sp.S.One)


def erfc_half_algorithm(fmt: FloatFormat
                        ) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """erfc(x/sqrt(2)): x/sqrt(2) rounded only where erfc is well conditioned; the
    tail's exp(-x**2/2) from x's exact pieces."""
    x = sp.Symbol("x", real=True)
    return _erfc_from(fmt, x, x * sp.Float(sp.N(1 / sp.sqrt(2), 40), 17), sp.S.Half)


def gauss_algorithm(fmt: FloatFormat) -> tuple[list[tuple[sp.Symbol, sp.Expr, str]], sp.Symbol]:
    """exp(-x**2/2) = exp(-z**2/2)*exp(-(x - z)*(x + z)/2) with z = x with the low half of
    its mantissa cleared: z**2/2 is exact, the second factor's argument small."""
    x = sp.Symbol("x", real=True)
    ax, zb, z = sp.symbols("ax zb z", real=True)
    low = _SPLIT_LOW[fmt.width]
    steps = [
        # (clamped: inf - inf would be NaN; exp(-64**2/2) is 0 in both formats)
        (ax, sp.Piecewise((64, sp.Abs(x) > 64), (sp.Abs(x), True)), "float"),
        (zb, ShiftLeft(ShiftRightArith(FloatBits(ax), low), low), "int"),
        (z, BitsFloat(zb, fmt.width), "float"),
    ]
    ex, y = exp_steps(fmt, -(z * z) / 2, -((ax - z) * (ax + z)) / 2, "x_")
    return steps + ex, y


#: The vectorizable functions: SymPy function -> (node, printed name, algorithm).
ALGORITHMS = {sp.exp: (VecExp, "vexp", exp_algorithm),
              VecExpNonpositive: (VecExpNonpositive, "vexp_nonpos", exp_nonpositive_algorithm),
              sp.tanh: (VecTanh, "vtanh", tanh_algorithm),
              log1p: (VecLog1p, "vlog1p", log1p_algorithm),
              sp.erf: (VecErf, "verf", erf_algorithm),
              sp.erfc: (VecErfc, "verfc", erfc_algorithm),
              VecErfcHalf: (VecErfcHalf, "verfc_half", erfc_half_algorithm),
              VecGauss: (VecGauss, "vgauss", gauss_algorithm)}


def _special(expr: sp.Expr) -> sp.Expr:
    """erfc(c*x) with c = +-1/sqrt(2) -> VecErfcHalf(+-x); exp(-x**2/2) -> VecGauss(x):
    the forms whose argument's rounding costs ~x**2 ulps (GELU's, the normal density's)."""
    half = 1 / sp.sqrt(2)

    def erfc_half(e: sp.Expr) -> sp.Expr | None:
        if not isinstance(e, sp.erfc):
            return None
        c, rest = e.args[0].as_independent(*e.args[0].free_symbols, as_Add=False)
        if rest != 1 and c in (half, -half):
            return VecErfcHalf(rest if c == half else -rest)
        return None

    def gauss(e: sp.Expr) -> sp.Expr | None:
        if not isinstance(e, sp.exp):
            return None
        c, rest = e.args[0].as_independent(*e.args[0].free_symbols, as_Add=False)
        if c == -sp.S.Half and rest.is_Pow and rest.exp == 2:
            return VecGauss(rest.base)
        return None

    expr = expr.replace(lambda e: erfc_half(e) is not None, erfc_half)
    expr = expr.replace(lambda e: gauss(e) is not None, gauss)
    return expr.replace(lambda e: isinstance(e, sp.exp) and e.args[0].is_nonpositive is True,
                        lambda e: VecExpNonpositive(e.args[0]))


def vectorize(expr: sp.Expr) -> sp.Expr:
    """Replace exp, tanh, log1p, erf and erfc by their vectorizable forms (printed
    _vexp, ...)."""
    expr = _special(expr)
    for func, (node, _, _) in ALGORITHMS.items():
        if func is not node:
            expr = expr.replace(func, node)
    return expr
