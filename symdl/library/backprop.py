"""Backprop: the cheat sheet's two-layer sigmoid network, f = w3^T sigma(W2 sigma(W1 x)).

The network is a ``Network`` definition: depth, the weight names and each layer's
activation (a library formula) are its parameters, the widths stay symbolic. SymPy
derives the backward pass (``symdl.derive.network_backward_formula``).
"""

from symdl.formula import Layer, Network
from symdl.library.activations import sigmoid

SECTION = "Backprop"

mlp = Network(
    "mlp_forward",
    SECTION,
    "Two-layer network",
    "A fully connected network without biases, sigmoid activations and a linear "
    "read-out, applied to each row of X (one sample x per row).",
    input="X",
    sample="x",
    layers=(Layer("W1", sigmoid), Layer("W2", sigmoid)),
    readout="w3",
    notes=(
        "Erratum to the source cheat sheet (symdl's seed, dl-cheatsheet.txt, "
        "backpropagation): its worked solution is not copied here, as its step (iv) "
        "defines `delta_1` in terms of itself and it mixes up the layers' superscripts "
        "(an activation of layer 3, an input of layer 1). The chain above is derived by "
        "SymPy instead: `delta_l` is the gradient with respect to `Z_l`, and each weight "
        "gradient is `delta_l` times the layer's input, transposed.",
        "The kernels compute the gradient of the batch's sum of f(`x_i`), each term "
        "weighted by its `df_i`: each sample's deltas are scaled by its `df_i`, and the "
        "weight gradients are summed over the samples.",
    ),
)

FORMULAS = [mlp]
