"""Activations: sigmoid and tanh, with backward kernels derived by SymPy."""

import sympy as sp

from symdl.formula import Elementwise

SECTION = "Activations"

x = sp.Symbol("x", real=True)

sigmoid = Elementwise(
    "sigmoid",
    SECTION,
    "Sigmoid",
    "Squashes any real number into (0, 1); the output of a binary classifier.",
    inputs=[x],
    outputs={"y": 1 / (1 + sp.exp(-x))},
    backward=True,
    plot=(-6.0, 6.0),
)

tanh = Elementwise(
    "tanh",
    SECTION,
    "Hyperbolic tangent",
    "Squashes any real number into (-1, 1), centred at zero.",
    inputs=[x],
    outputs={"y": sp.tanh(x)},
    backward=True,
    plot=(-3.0, 3.0),
)

FORMULAS = [sigmoid, tanh]
