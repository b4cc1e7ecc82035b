"""The two printers: SymPy expression -> Numba source, and -> LaTeX.

Modelled on ``sympy/printing/``: one class per target, one ``_print_<Node>`` method
per node type that the target prints differently from its parent printer.
"""

from __future__ import annotations

import re
import unicodedata

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.printing.latex import LatexPrinter
from sympy.printing.pycode import PythonCodePrinter


class NumbaPrinter(PythonCodePrinter):
    """Scalar code valid inside a Numba ``prange`` body.

    - Constants are printed as ``T(c)``, where the kernel binds ``T`` to the dtype
      of its output: a float32 kernel then computes in float32 instead of being
      promoted to float64 by a Python float literal.
    - Piecewise is a conditional expression (never ``numpy.select``).
    - Small integer powers are multiplications; ``x**-1`` is ``T(1)/x``.
    """

    printmethod = "_numbacode"
    language = "Numba"
    # float_type: the constructor of constants, T (the kernel's dtype), or np.float64
    # for loop-invariant coefficients computed in double (see ``wide_code``).
    _default_settings = {**PythonCodePrinter._default_settings, "float_type": "T"}

    def __init__(self, settings: dict | None = None) -> None:
        super().__init__({"fully_qualified_modules": True, **(settings or {})})
        self._T = self._settings["float_type"]

    def _print_Number(self, expr: sp.Number) -> str:
        # The sign stays outside T(...), so that the parent's Add printer sees it.
        value = int(expr) if expr.is_Integer else float(expr)
        return f"-{self._T}({-value!r})" if value < 0 else f"{self._T}({value!r})"

    _print_Float = _print_Rational = _print_Integer = _print_Number
    _print_Half = _print_Zero = _print_One = _print_NegativeOne = _print_Number

    def _print_Exp1(self, expr: sp.Expr) -> str:
        return f"{self._T}({float(sp.E)!r})"

    def _print_Pi(self, expr: sp.Expr) -> str:
        return f"{self._T}({float(sp.pi)!r})"

    def _print_Infinity(self, expr: sp.Expr) -> str:
        return f"{self._T}(math.inf)"

    def _print_NegativeInfinity(self, expr: sp.Expr) -> str:
        return f"{self._T}(-math.inf)"

    def _print_BooleanTrue(self, expr: sp.Expr) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: sp.Expr) -> str:
        return "False"

    def _folded(self, expr: sp.Expr) -> str | None:
        """A constant that SymPy keeps exact (sqrt(2)/sqrt(pi), pi/2) as one literal,
        evaluated in high precision and rounded once. Printed as it stands, each factor
        would round in the kernel's dtype and the product again: GELU's gradient in
        float32 had its 1/sqrt(2 pi) from four roundings (4.5 ULP, where 4 is the bound)."""
        if expr.is_number and not (expr.is_Rational or expr.is_Float) and \
                expr.is_extended_real and expr.is_finite:
            return self._print_Number(sp.Float(expr.evalf(40), 40))
        return None

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        folded = self._folded(expr)
        if folded is not None:
            return folded
        base, e = expr.base, expr.exp
        if e.is_Integer and 2 <= abs(int(e)) <= 4:
            prod = "*".join([self.parenthesize(base, sp.printing.precedence.PRECEDENCE["Mul"])]
                            * abs(int(e)))
            return prod if e > 0 else f"({self._T}(1)/({prod}))"
        if e == -1:
            prec = sp.printing.precedence.PRECEDENCE["Mul"]
            return f"({self._T}(1)/{self.parenthesize(base, prec)})"
        if e == sp.S.Half:
            return f"math.sqrt({self._print(base)})"
        if e == -sp.S.Half:
            return f"({self._T}(1)/math.sqrt({self._print(base)}))"
        if e.is_Integer:
            return f"{self.parenthesize(base, 60)}**{int(e)}"
        return super()._print_Pow(expr, rational)

    def _print_Mul(self, expr: sp.Mul) -> str:
        # A small power prints as a product (x*x), which binds like a product: so the
        # parent's a/x**2 -> "a/" + "x*x" would be wrong. Such denominators are printed
        # here, parenthesized.
        numbers = [a for a in expr.args if a.is_number]
        if len(numbers) > 1 or any(not (a.is_Rational or a.is_Float) for a in numbers):
            constant = sp.Mul(*numbers)
            folded = self._folded(constant)
            if folded is not None and len(numbers) == len(expr.args):
                return folded  # (a product of constants alone: sqrt(2)*pi)
            if folded is not None:
                rest = [a for a in expr.args if not a.is_number]
                value = sp.Float(constant.evalf(40), 40)
                return self._print_Mul(sp.Mul(value, *rest, evaluate=False))
        small = [a for a in expr.args
                 if a.is_Pow and a.exp.is_Integer and -4 <= int(a.exp) <= -2]
        if not small:
            return super()._print_Mul(expr)
        rest = sp.Mul(*[a for a in expr.args if a not in small], evaluate=False)
        den = sp.Mul(*[a.base ** -a.exp for a in small], evaluate=False)
        prec = sp.printing.precedence.PRECEDENCE["Mul"]
        return f"{self.parenthesize(rest, prec)}/({self._print(den)})"

    def _print_BitXor(self, expr: sp.Expr) -> str:
        a, b = expr.args
        return f"({self._print(a)} ^ {self._print(b)})"

    def _print_ShiftRight(self, expr: sp.Expr) -> str:
        a, k = expr.args
        return f"({self._print(a)} >> {self._print(k)})"

    def _print_Low32(self, expr: sp.Expr) -> str:
        return f"np.uint32({self._print(expr.args[0])})"

    # 32-bit word operations: intrinsics of templates/numba/bitops32.py.j2.
    def _print_Mul32(self, expr: sp.Expr) -> str:
        return f"_mul32({', '.join(self._print(a) for a in expr.args)})"

    def _print_Xor32(self, expr: sp.Expr) -> str:
        return f"_xor32({', '.join(self._print(a) for a in expr.args)})"

    def _print_Shr32(self, expr: sp.Expr) -> str:
        return f"_shr32({', '.join(self._print(a) for a in expr.args)})"

    def _print_Add32(self, expr: sp.Expr) -> str:
        return f"_add32({', '.join(self._print(a) for a in expr.args)})"

    def _print_Rotl32(self, expr: sp.Expr) -> str:
        return f"_rotl32({', '.join(self._print(a) for a in expr.args)})"

    # Vectorizable elementary functions and the bit casts they use (symdl/vecmath.py).
    def _print_VecExp(self, expr: sp.Expr) -> str:
        return f"_vexp({self._print(expr.args[0])})"

    def _print_VecExpNonpositive(self, expr: sp.Expr) -> str:
        return f"_vexp_nonpos({self._print(expr.args[0])})"

    def _print_VecTanh(self, expr: sp.Expr) -> str:
        return f"_vtanh({self._print(expr.args[0])})"

    def _print_VecLog1p(self, expr: sp.Expr) -> str:
        return f"_vlog1p({self._print(expr.args[0])})"

    def _print_VecErf(self, expr: sp.Expr) -> str:
        return f"_verf({self._print(expr.args[0])})"

    def _print_VecErfc(self, expr: sp.Expr) -> str:
        return f"_verfc({self._print(expr.args[0])})"

    def _print_VecErfcHalf(self, expr: sp.Expr) -> str:
        return f"_verfc_half({self._print(expr.args[0])})"

    def _print_VecGauss(self, expr: sp.Expr) -> str:
        return f"_vgauss({self._print(expr.args[0])})"

    def _print_Vanishing(self, expr: sp.Expr) -> str:  # symdl/stable.py
        small, rest = (self._print(a) for a in expr.args)
        return f"({self._T}(0) if {small} == {self._T}(0) else ({small})*({rest}))"

    def _print_IntToFloat(self, expr: sp.Expr) -> str:
        return f"{self._T}({IndexPrinter().doprint(expr.args[0])})"

    def _print_NaN(self, expr: sp.Expr) -> str:
        return f"{self._T}(math.nan)"

    def _print_sign(self, expr: sp.Expr) -> str:
        # SymPy's Python printer gives copysign(1, x): +-1 for NaN. A NaN input must
        # give a NaN gradient (Huber's at pred = NaN was 1.0), so the last branch is x.
        x = self._print(expr.args[0])
        one, zero = f"{self._T}(1)", f"{self._T}(0)"
        return (f"({one} if {x} > 0 else (-{one} if {x} < 0 else "
                f"({zero} if {x} == 0 else {x})))")

    def _print_CopySign(self, expr: sp.Expr) -> str:
        a, b = (self._print(arg) for arg in expr.args)
        return f"math.copysign({a}, {b})"

    def _print_FloatBits(self, expr: sp.Expr) -> str:
        return f"_float_bits({NumbaPrinter().doprint(expr.args[0])})"

    def _print_BitsFloat(self, expr: sp.Expr) -> str:
        bits, width = expr.args
        return f"_bits_f{int(width)}({IndexPrinter().doprint(bits)})"

    def _print_ShiftLeft(self, expr: sp.Expr) -> str:
        a, k = expr.args
        return f"({IndexPrinter().doprint(a)} << {int(k)})"

    def _print_ShiftRightArith(self, expr: sp.Expr) -> str:
        a, k = expr.args
        return f"({IndexPrinter().doprint(a)} >> {int(k)})"

    def _print_Indexed(self, expr: sp.Indexed) -> str:
        subscripts = ", ".join(IndexPrinter().doprint(i) for i in expr.indices)
        return f"a_{expr.base.name}[{subscripts}]"

    def _print_Idx(self, expr: sp.Idx) -> str:
        return expr.label.name


# Characters TeX acts on in text, and what shows them literally (T1 fonts: < > | print).
TEX_TEXT = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
            "^": r"\textasciicircum{}", "`": r"\textasciigrave{}",
            "\u00b9": r"\textsuperscript{1}", "\u00b2": r"\textsuperscript{2}",
            "\u00b3": r"\textsuperscript{3}", "\u00d7": r"$\times$", "\u2212": "-{}",
            "\u2190": r"$\leftarrow$", "\u2192": r"$\rightarrow$", "\u2264": r"$\leq$",
            "\u2265": r"$\geq$"}


def tex_escape(text: str) -> str:
    """Plain text -> LaTeX text that shows it literally: TeX's special characters
    escaped, straight double quotes paired as opening and closing ones, line breaks and
    other control characters as spaces; a Greek letter as its math symbol; a character
    the T1 fonts lack as its code point (``[U+2211]``), never a failed build."""
    out = []
    quotes = 0
    for k, c in enumerate(text):
        if c == "-" and text[k + 1:k + 2] == "-":
            out.append("-{}")  # no -- or --- ligature: what was typed is shown
        elif c == '"':
            out.append("``" if quotes % 2 == 0 else "''")
            quotes += 1
        elif c in TEX_TEXT:
            out.append(TEX_TEXT[c])
        elif c < " " or c == "\x7f":
            out.append(" ")
        elif c <= "~" or "\u00c0" <= c <= "\u017f" and c not in "\u00d7\u00f7":
            out.append(c)
        elif unicodedata.name(c, "").startswith("GREEK SMALL LETTER "):
            greek = unicodedata.name(c).rsplit(" ", 1)[1].lower()
            out.append(rf"$\{greek}$" if greek != "omicron" else "o")
        else:
            out.append(f"[U+{ord(c):04X}]")
    return "".join(out)


def _named_elementwise(expr: sp.Basic) -> sp.Expr | None:
    """f(Z) for f applied to each element of a matrix Z, where f is a named function
    (the sheet's relu' for a network's activation derivative); else None."""
    f = expr.function
    if isinstance(f, sp.Lambda) and isinstance(f.expr, AppliedUndef) and \
            f.expr.args == f.variables:
        return f.expr.func(expr.expr)
    return None


class SheetLatexPrinter(LatexPrinter):
    """LaTeX for the formula sheet: SymPy's printer, with code names made readable.

    - ``dy`` (the incoming gradient of y) prints as ``\\mathrm{d}y``;
    - ``adj_var`` (the adjoint of a statistic) as an overlined ``var``;
    - a word such as ``grad`` or ``square_avg`` upright as one word (``\\mathrm``), not
      as a product of italic letters; ``eps`` as epsilon;
    - a product with such a word in it gets a visible ``\\cdot`` (``lr \\cdot m``);
    - a sum shows its positive terms first, as formulas are written (``x - mean``,
      ``n + 2 p - f``), where SymPy's canonical order would put ``-mean + x``;
    - ``expm1``/``log1p`` as upright names, Heaviside as H (theta is a parameter).
    """

    WORDS = {"eps": r"\epsilon"}

    def __init__(self, gradient_names: frozenset[str] = frozenset(), **settings) -> None:
        super().__init__(settings)
        self._gradient_names = gradient_names
        self._plain_product = self._settings["mul_symbol_latex"]

    def _word(self, name: str) -> str:
        if name in self.WORDS:
            return self.WORDS[name]
        if not re.fullmatch(r"[A-Za-z0-9]+", name):
            # A user's symbol name that is not a word: shown as text, never run by TeX.
            return rf"\text{{{tex_escape(name)}}}"
        plain = super()._print_Symbol(sp.Symbol(name))
        if len(name) > 1 and plain == name:  # not a Greek letter, not a single letter
            return rf"\mathrm{{{name}}}"
        return plain

    def _is_word(self, name: str) -> bool:
        """A multi-letter name that is neither Greek nor one of WORDS (``momentum``)."""
        return name not in self.WORDS and self._word(name).startswith((r"\mathrm", r"\text"))

    def _print_Add(self, expr: sp.Add, order: str | None = None) -> str:
        terms = self._as_ordered_terms(expr, order=order)
        # Stable: positive terms in SymPy's order, then the subtracted ones.
        terms = ([t for t in terms if not t.could_extract_minus_sign()]
                 + [t for t in terms if t.could_extract_minus_sign()])
        tex = ""
        for i, term in enumerate(terms):
            if i and term.could_extract_minus_sign():
                tex += " - "
                term = -term
            elif i:
                tex += " + "
            term_tex = self._print(term)
            if self._needs_add_brackets(term):
                term_tex = rf"\left({term_tex}\right)"
            tex += term_tex
        return tex

    def _print_Mul(self, expr: sp.Mul) -> str:
        def wordy(a: sp.Basic) -> bool:
            base = a.base if a.is_Pow else a
            if isinstance(base, sp.Indexed):
                base = base.base.label
            if isinstance(base, sp.Symbol):
                return base.name in self._gradient_names or any(
                    self._is_word(part) for part in base.name.split("_")[:1])
            return False

        saved = self._settings["mul_symbol_latex"]
        # Set either way: a factor's own product is printed inside this call.
        self._settings["mul_symbol_latex"] = (r" \cdot " if any(wordy(a) for a in expr.args)
                                              else self._plain_product)
        try:
            return super()._print_Mul(expr)
        finally:
            self._settings["mul_symbol_latex"] = saved

    def _print_expm1(self, expr: sp.Expr, exp: str | None = None) -> str:
        return self._named_function("expm1", expr, exp)

    def _print_log1p(self, expr: sp.Expr, exp: str | None = None) -> str:
        return self._named_function("log1p", expr, exp)

    def _print_Heaviside(self, expr: sp.Expr, exp: str | None = None) -> str:
        return self._named_function("H", expr, exp)

    def _print_ElementwiseApplyFunction(self, expr: sp.Expr) -> str:
        # A named function applied to each element of a matrix (the sheet's relu'(Z1)
        # for a network's activation derivative) prints as f(Z1); a Lambda as SymPy does.
        named = _named_elementwise(expr)
        return self._print(named) if named is not None else \
            super()._print_ElementwiseApplyFunction(expr)

    def _named_function(self, name: str, expr: sp.Expr, exp: str | None) -> str:
        tex = rf"\operatorname{{{name}}}\left({self._print(expr.args[0])}\right)"
        return rf"{tex}^{{{exp}}}" if exp else tex

    def _print_BitXor(self, expr: sp.Expr) -> str:
        a, b = (self.parenthesize(x, 50) for x in expr.args)
        return rf"{a} \oplus {b}"

    def _print_ShiftRight(self, expr: sp.Expr) -> str:
        a, k = (self.parenthesize(x, 50) for x in expr.args)
        return rf"{a} \gg {k}"

    def _print_Low32(self, expr: sp.Expr) -> str:
        return rf"\left({self._print(expr.args[0])}\right) \bmod 2^{{32}}"

    def _print_Mul32(self, expr: sp.Expr) -> str:
        a, b = (self.parenthesize(x, 50) for x in expr.args)
        return rf"\left({a} \cdot {b}\right) \bmod 2^{{32}}"

    _print_Xor32 = _print_BitXor
    _print_Shr32 = _print_ShiftRight

    def _print_Add32(self, expr: sp.Expr) -> str:
        a, b = (self.parenthesize(x, 50) for x in expr.args)
        return rf"\left({a} + {b}\right) \bmod 2^{{32}}"

    def _print_Rotl32(self, expr: sp.Expr) -> str:
        a, k = (self.parenthesize(x, 50) for x in expr.args)
        return rf"\operatorname{{rotl}}_{{32}}\left({a}, {k}\right)"

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        if expr in self._settings["symbol_names"]:  # names a formula gives for the sheet
            return self._settings["symbol_names"][expr]
        name = expr.name
        if name in self._gradient_names:
            return r"\mathrm{d}" + self._print_Symbol(sp.Symbol(name[1:]))
        if name.startswith("adj_"):
            return rf"\overline{{{self._print_Symbol(sp.Symbol(name[4:]))}}}"
        base, _, sub = name.partition("_")
        if not sub or not base:
            return self._word(name)
        if self._is_word(base) and re.fullmatch(r"[A-Za-z0-9_]+", name):
            # momentum_buf is one name (the kernel's argument), not momentum with a subscript.
            return r"\mathrm{" + name.replace("_", r"\_") + "}"
        return f"{self._word(base)}_{{{','.join(self._word(p) for p in sub.split('_'))}}}"


def numba_code(expr: sp.Expr) -> str:
    """Print one scalar expression for a Numba kernel body."""
    return NumbaPrinter().doprint(expr)


def wide_code(expr: sp.Expr) -> str:
    """Print a scalar expression to be computed in float64 whatever the kernel's dtype
    (constants as np.float64(c)): a coefficient derived from parameters, rounded once."""
    return NumbaPrinter({"float_type": "np.float64"}).doprint(expr)


def latex(expr: sp.Expr, gradient_names: frozenset[str] = frozenset(),
          symbol_names: dict | None = None) -> str:
    """Print one expression for the sheet (``symbol_names``: symbol -> LaTeX name)."""
    settings = {"symbol_names": symbol_names} if symbol_names else {}
    return SheetLatexPrinter(gradient_names, **settings).doprint(expr)


class IndexPrinter(NumbaPrinter):
    """Integer index arithmetic (loop bounds, subscripts): numbers stay Python ints;
    floor(a/b) is a // b."""

    def _print_Number(self, expr: sp.Number) -> str:
        if not expr.is_Integer:  # (int() would truncate 1/4 to 0 without a word)
            raise ValueError(f"index arithmetic must stay integral, got {expr}")
        return str(int(expr))

    _print_Float = _print_Rational = _print_Integer = _print_Number
    _print_Half = _print_Zero = _print_One = _print_NegativeOne = _print_Number

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        return f"{self.parenthesize(expr.base, 60)}**{self._print(expr.exp)}"

    def _print_floor(self, expr: sp.floor) -> str:
        num, den = sp.fraction(sp.together(expr.args[0]))
        if den == 1:
            return self._print(num)
        return f"({self._print(num)}) // ({self._print(den)})"


class ScalarPrinter(NumbaPrinter):
    """Plain Python for scalar functions (shape formulas, recipes): no ``T(...)``.

    Integers stay Python ints; ``floor(a/b)`` of integers is ``a // b`` (exact, where
    ``math.floor(a / b)`` would round through a float).
    """

    def _print_Integer(self, expr: sp.Integer) -> str:
        return str(int(expr))

    _print_Zero = _print_One = _print_NegativeOne = _print_Integer

    def _print_Rational(self, expr: sp.Rational) -> str:
        return repr(float(expr))

    _print_Half = _print_Float = _print_Rational

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp.is_Integer and expr.exp > 0:
            return f"{self.parenthesize(expr.base, 60)}**{int(expr.exp)}"
        return PythonCodePrinter._print_Pow(self, expr, rational)

    def _print_Exp1(self, expr: sp.Expr) -> str:
        return repr(float(expr))

    _print_Pi = _print_Exp1

    def _print_floor(self, expr: sp.floor) -> str:
        num, den = sp.fraction(sp.together(expr.args[0]))
        if den == 1:
            return f"math.floor({self._print(num)})"
        return f"({self._print(num)}) // ({self._print(den)})"


def scalar_code(expr: sp.Basic) -> str:
    """Print one expression (or condition) of a scalar function as plain Python."""
    return ScalarPrinter().doprint(expr)


class WordPrinter(NumbaPrinter):
    """Unsigned 64-bit integer arithmetic (hashes): integers print as ``U(c)``, with the
    kernel binding ``U`` to ``np.uint64``, so that nothing is promoted to int64 or float
    (and + and * wrap mod 2**64); a fraction (a scale to [0, 1)) prints as a float64."""

    def _print_Integer(self, expr: sp.Integer) -> str:
        # The sign outside U(...): the parent's Add printer then subtracts a word.
        value = int(expr)
        return f"-U({-value})" if value < 0 else f"U({value})"

    _print_Zero = _print_One = _print_NegativeOne = _print_Integer

    def _print_Rational(self, expr: sp.Rational) -> str:
        return repr(float(expr))

    _print_Half = _print_Rational

    def _print_ceiling(self, expr: sp.Expr) -> str:
        # A word: an int64 from math.ceil compared with a uint64 would make Numba
        # compare both as float64.
        return f"U(math.ceil({self._print(expr.args[0])}))"


def word_code(expr: sp.Expr) -> str:
    """Print one unsigned 64-bit integer expression for a Numba kernel body."""
    return WordPrinter().doprint(expr)
