"""Pooling: max and average over f x f windows of an NCHW input, stride s (default f).

Each layer is declared as a window reduction in index notation; SymPy derives the
backward pass (average: 1/f**2 to every element of the window; maximum: all of dy to
the selected element). The output size is the CNN shape formula with no padding.
"""

import sympy as sp

from symdl.formula import Window
from symdl.library.cnn import conv_output_size
from symdl.library.cnn import f as size
from symdl.library.cnn import n as extent
from symdl.library.cnn import p as padding
from symdl.library.cnn import s as stride
from symdl.window import MaxOver

SECTION = "Pooling"

n, c, i, j, a, b = sp.symbols("n c i j a b", integer=True, nonnegative=True)
x = sp.IndexedBase("x")
y = sp.IndexedBase("y")
window = ((a, 0, size - 1), (b, 0, size - 1))
element = x[n, c, stride * i + a, stride * j + b]
(out_size,) = conv_output_size.outputs.values()
out_size = out_size.subs(padding, 0)

maxpool2d = Window(
    "maxpool2d",
    SECTION,
    "Max pooling",
    "`x` has shape (`N`, `C`, `H`, `W`); each output is the maximum of an `f` × `f` window, the "
    "windows stride `s` apart (`s` = `f` by default). The gradient goes to the window's "
    "maximum (the first one, in row-major order, on ties, as in PyTorch).",
    output=y[n, c, i, j],
    expr=MaxOver(element, *window),
    size=size, stride=stride, extent=extent, out_size=out_size,
    backward=True,
    notes=("A NaN in a window is its maximum (it propagates, as in PyTorch).",),
)

avgpool2d = Window(
    "avgpool2d",
    SECTION,
    "Average pooling",
    "`x` has shape (`N`, `C`, `H`, `W`); each output is the mean of an `f` × `f` window, the "
    "windows stride `s` apart (`s` = `f` by default).",
    output=y[n, c, i, j],
    expr=sp.Sum(element, *window) / size**2,
    size=size, stride=stride, extent=extent, out_size=out_size,
    backward=True,
)

FORMULAS = [maxpool2d, avgpool2d]
