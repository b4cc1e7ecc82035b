"""CNN shapes: output size, "same" padding and parameter count, as integer formulas.

The cheat sheet's "valid" and "same" output sizes are not separate formulas: SymPy
derives them from the general one by substitution (see ``cases``).
"""

import sympy as sp

from symdl.formula import Arg, ScalarFunction

SECTION = "Convolutional neural networks"

n = sp.Symbol("n", integer=True, nonnegative=True)
f = sp.Symbol("f", integer=True, positive=True)
p = sp.Symbol("p", integer=True, nonnegative=True)
s = sp.Symbol("s", integer=True, positive=True)
n_c = sp.Symbol("n_c", integer=True, positive=True)
n_filters = sp.Symbol("n_filters", integer=True, positive=True)
n_out = sp.Symbol("n_out", integer=True)

same_p = (f - 1) / 2  # exact for odd f, which the argument check enforces

same_padding = ScalarFunction(
    "same_padding",
    SECTION,
    "Same padding",
    'The padding p that keeps the output size equal to the input size (stride 1): '
    'a "same" convolution. Defined for odd filter sizes f.',
    args=[Arg("f", f, check="odd", doc="filter size")],
    outputs={"p": same_p},
    integer=True,
)

conv_output_size = ScalarFunction(
    "conv_output_size",
    SECTION,
    "Output size of a convolution or pooling layer",
    "Along one spatial axis: input size n, filter size f, padding p, stride s. "
    "The output shape is `n_out` × `n_out` × `n_filters` for an `n` × `n` input "
    "(for pooling, the number of channels is kept).",
    args=[Arg("n", n, check="natural", doc="input size"),
          Arg("f", f, check="positive_int", doc="filter size"),
          Arg("padding", p, default=0, check="natural", doc="padding on each side"),
          Arg("stride", s, default=1, check="positive_int", doc="stride")],
    outputs={"n_out": sp.floor((n + 2 * p - f) / s) + 1},
    requires=((n_out >= 1,
               "the output would be empty: the filter (f={f}) does not fit the input "
               "(n={n}) with padding={padding}"),),
    integer=True,
    cases=(('"valid" convolution, no padding', {p: 0, s: 1}),
           ('"same" convolution', {p: same_p, s: 1})),
)

conv_param_count = ScalarFunction(
    "conv_param_count",
    SECTION,
    "Learnable parameters of a convolution layer",
    "The weights and biases of `n_filters` filters of size `f` × `f` over `n_c` input "
    "channels.",
    args=[Arg("f", f, check="positive_int", doc="filter size"),
          Arg("n_c", n_c, check="positive_int", doc="input channels"),
          Arg("n_filters", n_filters, check="positive_int", doc="filters (output channels)")],
    outputs={"n_params": (f * f * n_c + 1) * n_filters},
    integer=True,
    cases=(("one input channel, the source cheat sheet's form (its `n_i` is `n_filters`)",
            {n_c: 1}),),
    notes=("Erratum to the source cheat sheet (symdl's seed, dl-cheatsheet.txt, CNN): its "
           "parameter count (`f`² + 1) `n_i` holds for one input channel only; with `n_c` "
           "channels each filter has `n_c` times as many weights.",),
)

FORMULAS = [conv_output_size, same_padding, conv_param_count]
