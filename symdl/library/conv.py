"""Convolution (cross-correlation, NCHW, as PyTorch's conv2d) in index notation.

y[n, o, i, j] = Sum over c, a, b of w[o, c, a, b] * x[n, c, s*i + a - p, s*j + b - p]
+ bias[o]; SymPy derives the gradients with respect to x, w and the bias.
"""

import sympy as sp

from symdl.formula import Correlation
from symdl.library.cnn import conv_output_size
from symdl.library.cnn import f as size
from symdl.library.cnn import n as extent
from symdl.library.cnn import p as padding
from symdl.library.cnn import s as stride

SECTION = "Convolution"

n, o, c, i, j, a, b = sp.symbols("n o c i j a b", integer=True, nonnegative=True)
n_c = sp.Symbol("C", integer=True, positive=True)
x, w, bias, y = (sp.IndexedBase(k) for k in ("x", "w", "bias", "y"))
(out_size,) = conv_output_size.outputs.values()

conv2d = Correlation(
    "conv2d",
    SECTION,
    "Convolution layer",
    "`x` has shape (`N`, `C`, `H`, `W`), `w` (`O`, `C`, `f`, `f`), the bias (`O`,) or None; "
    "stride `s` and zero padding `p` on each side. As in deep-learning libraries (and "
    'PyTorch), the "convolution" is a cross-correlation: the filter is not flipped.',
    output=y[n, o, i, j],
    expr=sp.Sum(w[o, c, a, b] * x[n, c, stride * i + a - padding, stride * j + b - padding],
                (c, 0, n_c - 1), (a, 0, size - 1), (b, 0, size - 1)) + bias[o],
    size=size, stride=stride, padding=padding, extent=extent, out_size=out_size,
    backward=True,
)

FORMULAS = [conv2d]
