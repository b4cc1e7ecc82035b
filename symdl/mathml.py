"""SymPy expression -> presentation MathML, for the web page (``symdl sheet --html``).

SymPy's MathML printer, with the sheet's conventions (those of ``SheetLatexPrinter``):
words upright, gradients as d y, m-hat, a visible product beside a word, positive
terms first, Piecewise as a brace, Heaviside as H, partial derivatives with the
partial sign.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.mathml import MathMLPresentationPrinter

from .printers import SheetLatexPrinter, _named_elementwise
from .window import MaxOver


class Partial(sp.Expr):
    """An unevaluated partial derivative d(num)/d(den) of any two objects (a matrix
    expression by a matrix, a cost by one element of a batch): printed, never computed."""

    def __new__(cls, num: sp.Basic, den: sp.Basic) -> Partial:
        return sp.Expr.__new__(cls, num, den)


class SheetMathMLPrinter(MathMLPresentationPrinter):
    """Presentation MathML with the sheet's names and order."""

    def __init__(self, gradient_names: frozenset[str] = frozenset()) -> None:
        super().__init__({})
        self._gradient_names = gradient_names
        self._words = SheetLatexPrinter()

    def _el(self, tag: str, *children, text: str | None = None, **attrs):
        node = self.dom.createElement(tag)
        for k, v in attrs.items():
            node.setAttribute(k, v)
        if text is not None:
            node.appendChild(self.dom.createTextNode(text))
        for c in children:
            node.appendChild(c)
        return node

    def _print_ElementwiseApplyFunction(self, expr: sp.Expr):
        # As in SheetLatexPrinter: a named function applied to each element, f(Z1).
        named = _named_elementwise(expr)
        return self._print(named) if named is not None else self._print_Basic(expr)

    def _print_Symbol(self, sym: sp.Symbol, style: str = "plain"):
        name = sym.name
        if name in self._gradient_names:
            return self._el("mrow", self._el("mi", text="d", mathvariant="normal"),
                            self._print(sp.Symbol(name[1:])))
        if name.startswith("adj_"):
            return self._el("mover", self._print(sp.Symbol(name[4:])),
                            self._el("mo", text="\u00af"), accent="true")
        if name == "eps":
            return self._el("mi", text="\u03f5")
        if name.endswith("hat") and len(name) > 3 and not self._is_word(name[:-3]):
            return self._el("mover", self._print(sp.Symbol(name[:-3])),
                            self._el("mo", text="^"), accent="true")
        base = name.split("_")[0]
        if not re.fullmatch(r"[A-Za-z0-9_]+", name) or (base and self._is_word(base)):
            return self._el("mi", text=name)  # one word: upright (an mi of several letters)
        return super()._print_Symbol(sym, style)

    def _is_word(self, name: str) -> bool:
        return self._words._is_word(name)

    def _as_ordered_terms(self, expr: sp.Basic, order: str | None = None) -> list:
        terms = super()._as_ordered_terms(expr, order=order)
        if not expr.is_Add:
            return terms
        return ([t for t in terms if not t.could_extract_minus_sign()]
                + [t for t in terms if t.could_extract_minus_sign()])

    def _print_Mul(self, expr: sp.Mul):
        def wordy(a: sp.Basic) -> bool:
            base = a.base if a.is_Pow else a
            if isinstance(base, sp.Indexed):
                base = base.base.label
            return isinstance(base, sp.Symbol) and (
                base.name in self._gradient_names or self._is_word(base.name.split("_")[0]))

        saved = self._settings["mul_symbol"]
        self._settings["mul_symbol"] = "dot" if any(wordy(a) for a in expr.args) else None
        try:
            return super()._print_Mul(expr)
        finally:
            self._settings["mul_symbol"] = saved

    def _print_Piecewise(self, expr: sp.Piecewise):
        rows = []
        for value, cond in expr.args:
            when = (self._el("mtext", text="otherwise") if cond is sp.true else
                    self._el("mrow", self._el("mtext", text="for\u00a0"), self._print(cond)))
            rows.append(self._el("mtr", self._el("mtd", self._print(value)),
                                 self._el("mtd", when)))
        return self._el("mrow", self._el("mo", text="{"),
                        self._el("mtable", *rows, columnalign="left"))

    def _call(self, name: str, *args: sp.Basic):
        inner = [self._print(args[0])]
        for a in args[1:]:
            inner += [self._el("mo", text=","), self._print(a)]
        return self._el("mrow", self._el("mi", text=name), self._el("mo", text="("),
                        *inner, self._el("mo", text=")"))

    def _print_Heaviside(self, expr: sp.Expr):
        return self._call("H", expr.args[0])  # theta is the optimizers' parameters

    def _print_expm1(self, expr: sp.Expr):
        return self._call("expm1", expr.args[0])

    def _print_log1p(self, expr: sp.Expr):
        return self._call("log1p", expr.args[0])

    def _print_Expectation(self, expr: sp.Expr):
        return self._el("mrow", self._el("mi", text="E", mathvariant="normal"),
                        self._el("mo", text="["), self._print(expr.args[0]),
                        self._el("mo", text="]"))

    def _print_KroneckerDelta(self, expr: sp.Expr):
        i, j = expr.args
        return self._el("msub", self._el("mi", text="\u03b4"),
                        self._el("mrow", self._print(i), self._el("mo", text=","),
                                 self._print(j)))

    def _partial(self, num: sp.Basic, den: sp.Basic):
        return self._el("mfrac", self._el("mrow", self._el("mo", text="\u2202"),
                                          self._print(num)),
                        self._el("mrow", self._el("mo", text="\u2202"), self._print(den)))

    def _print_Partial(self, expr: Partial):
        return self._partial(*expr.args)

    def _print_Derivative(self, expr: sp.Derivative):
        if len(expr.variables) == 1:
            return self._partial(expr.expr, expr.variables[0])
        return super()._print_Derivative(expr)

    def _print_MaxOver(self, expr: MaxOver):
        rows = [self._el("mtr", self._el("mtd", self._el(
            "mrow", self._print(lo), self._el("mo", text="\u2264"), self._print(v),
            self._el("mo", text="\u2264"), self._print(hi)))) for v, lo, hi in expr.limits]
        return self._el("mrow", self._el("munder", self._el("mo", text="max"),
                                         self._el("mtable", *rows)),
                        self._print(expr.function))


def mathml(expr: sp.Basic, gradient_names: frozenset[str] = frozenset()) -> str:
    """The presentation MathML of one expression (without the enclosing <math>)."""
    return SheetMathMLPrinter(gradient_names).doprint(expr)
