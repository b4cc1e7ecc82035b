"""Batch normalization (Ioffe and Szegedy, 2015): training forward, backward derived by
SymPy through the batch statistics, inference with running statistics, and the
running-statistics update (PyTorch's convention)."""

import sympy as sp

from symdl.formula import Batch, Elementwise, Param

SECTION = "Batch normalization"

x, gamma, beta = sp.symbols("x gamma beta", real=True)
mean, var, eps = sp.symbols("mean var eps", real=True)

batchnorm_forward = Batch(
    "batchnorm_forward",
    SECTION,
    "Batch norm, training mode",
    "`x` has shape (`m`, `C`): statistics per feature over the mini-batch, then normalize, "
    "scale and shift. Returns (out, mean, var), var being the biased (1/m) variance.",
    inputs=[x],
    features=[gamma, beta],
    params=[Param("eps", 1e-5, "nonnegative", "added to the variance")],
    stats={"mean": x, "var": (x - mean) ** 2},
    outputs={"out": gamma * (x - mean) / sp.sqrt(var + eps) + beta},
    backward=True,
    notes=(
        "Usually applied before the activation.",
        "Why it helps: it reduces covariate shift and decouples the layers, allowing higher "
        "learning rates and deeper networks; it makes the contours of the cost more uniform "
        "across dimensions; and it regularizes slightly, through the noise of the batch "
        "statistics.",
    ),
)

running_mean, running_var = sp.symbols("running_mean running_var", real=True)

batchnorm_inference = Batch(
    "batchnorm_inference",
    SECTION,
    "Batch norm, inference",
    "At test time the batch statistics are replaced by the running statistics "
    "accumulated during training.",
    inputs=[x],
    features=[gamma, beta, running_mean, running_var],
    params=[Param("eps", 1e-5, "nonnegative", "added to the variance")],
    # The training formula with its statistics substituted: not retyped.
    outputs={"out": batchnorm_forward.outputs["out"].xreplace(
        {mean: running_mean, var: running_var})},
    domains={"running_var": "nonnegative"},
    notes=(
        "Why running averages at test time: mini-batches may be small at test time (even a "
        "single example); smaller mini-batches make the batch statistics more likely to "
        "differ from those seen in training; and moving averages are better estimates of "
        "the population statistics.",
    ),
)

momentum, m = sp.symbols("momentum m", real=True)

batchnorm_update_running = Elementwise(
    "batchnorm_update_running",
    SECTION,
    "Batch norm, running statistics",
    "Exponential moving averages of the batch statistics, in place, in PyTorch's "
    "convention: the running variance takes the unbiased batch variance.",
    inputs=[running_mean, running_var, mean, var],
    params=[Param("m", None, "count", "the batch size"),
            Param("momentum", 0.1, "unit_interval", "weight of the new batch")],
    updates={
        "running_mean": (1 - momentum) * running_mean + momentum * mean,
        "running_var": (1 - momentum) * running_var + momentum * var * m / (m - 1),
    },
    domains={"running_var": "nonnegative", "var": "nonnegative"},
)

FORMULAS = [batchnorm_forward, batchnorm_inference, batchnorm_update_running]
