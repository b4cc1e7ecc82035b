"""Derivation: SymPy's derivatives, rewritten in terms of the forward output."""

import pytest
import sympy as sp

from symdl.derive import DerivationError, backward_formula, in_terms_of_output
from symdl.formula import Elementwise
from symdl.library import activations

x = sp.Symbol("x", real=True)
y = sp.Symbol("y", real=True)


@pytest.mark.parametrize(
    "f, expected",
    [
        (1 / (1 + sp.exp(-x)), y * (1 - y)),  # sigmoid
        (sp.tanh(x), 1 - y**2),  # tanh
        (sp.log(1 + sp.exp(x)), 1 - sp.exp(-y)),  # softplus: not on the sheet
        (1 / (1 + sp.exp(-2 * x)), 2 * y * (1 - y)),  # an edited sigmoid
    ],
)
def test_derivative_in_terms_of_output(f, expected):
    got = in_terms_of_output(sp.diff(f, x), x, f, y)
    assert x not in got.free_symbols
    assert sp.simplify(got - expected) == 0


def test_derivative_that_cannot_be_expressed_in_the_output_is_refused():
    # sin is not invertible on the sampled interval: no single g with sin' = g(sin x).
    with pytest.raises(DerivationError):
        in_terms_of_output(sp.cos(x), x, sp.sin(x), y)


def test_backward_formula_of_the_library_sigmoid():
    bwd = backward_formula(activations.sigmoid)
    assert bwd.name == "sigmoid_backward"
    assert [s.name for s in bwd.inputs] == ["y", "dy"]
    (dx,) = bwd.outputs.values()
    yy, dy = bwd.inputs
    assert sp.simplify(dx - dy * yy * (1 - yy)) == 0


def test_backward_of_a_user_formula():
    softplus = Elementwise("softplus", "Mine", "Softplus", "smooth relu", inputs=[x],
                           outputs={"y": sp.log(1 + sp.exp(x))}, backward=True)
    (dx,) = backward_formula(softplus).outputs.values()
    yy = sp.Symbol("y", real=True)
    dy = sp.Symbol("dy", real=True)
    assert sp.simplify(dx - dy * (1 - sp.exp(-yy))) == 0


def test_index_arithmetic_prints_integer_division_and_refuses_fractions():
    from symdl.printers import IndexPrinter

    m = sp.Symbol("m", integer=True, positive=True)
    printer = IndexPrinter()
    assert eval(printer.doprint(sp.floor(m / 4)), {"m": 11}) == 2
    assert eval(printer.doprint(m - sp.Mod(m, 4)), {"m": 11}) == 8
    with pytest.raises(ValueError, match="integral"):
        printer.doprint(m / 4)  # (printing 1/4 as int(1/4) = 0 would be silently wrong)


def test_an_exact_constant_prints_as_one_literal_rounded_once():
    """sqrt(2)/sqrt(pi) (GELU's gradient) printed factor by factor rounds each factor
    in the kernel's dtype and then the product: four roundings in float32. It prints
    as one literal of the constant's value, which T(...) rounds once; a rational
    coefficient, a symbol's power and pi alone print as before."""
    from symdl.printers import numba_code

    x = sp.Symbol("x", real=True)
    value = float(sp.sqrt(2 / sp.pi))
    assert numba_code(sp.sqrt(2) * x / sp.sqrt(sp.pi)) == f"T({value!r})*x"
    assert numba_code(-sp.sqrt(2) * x / (2 * sp.sqrt(sp.pi))) == f"-T({value / 2!r})*x"
    assert numba_code(sp.sqrt(3)) == f"T({float(sp.sqrt(3))!r})"
    assert numba_code(sp.log(2) * x) == f"T({float(sp.log(2))!r})*x"
    assert numba_code(3 * x / x**2) == "T(3)/x"
    assert numba_code(sp.pi) == f"T({float(sp.pi)!r})"
    assert numba_code(sp.sqrt(2) * sp.pi) == f"T({float(sp.sqrt(2) * sp.pi)!r})"
    assert numba_code(sp.sqrt(x)) == "math.sqrt(x)"
    assert (numba_code(sp.exp(-x**2 / 2) * sp.sqrt(2) / sp.sqrt(sp.pi))
            == f"T({value!r})*math.exp(-T(0.5)*x*x)")
