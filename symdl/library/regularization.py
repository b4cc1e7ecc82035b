"""Dropout, standard and inverted, with a counter-based mask.

Training multiplies each activation by a Bernoulli(q) mask X (q = 1 - p, the keep
probability). The test-time formulas are not written here: ``symdl.derive`` takes the
expectation over X with ``sympy.stats`` (standard dropout: q x, inverted: x).

The mask is X = [u < q] with u in [0, 1) a hash of the seed and the element index
(SplitMix64: the index-th output of a SplitMix64 stream whose state is the mixed
seed), so the same seed gives the same mask for any thread count or chunking.
"""

import sympy as sp

from symdl.bitops import BitXor, ShiftRight
from symdl.formula import Arg, Mask, MaskedElementwise

SECTION = "Dropout"

x = sp.Symbol("x", real=True)
p = sp.Symbol("p", real=True, nonnegative=True)
q = sp.Symbol("q", positive=True)  # the keep probability
X = sp.Symbol("X", integer=True, nonnegative=True)  # the mask: 1 kept, 0 dropped
seed = sp.Symbol("seed", integer=True, nonnegative=True)
index = sp.Symbol("index", integer=True, nonnegative=True)
key = sp.Symbol("key", integer=True, nonnegative=True)

GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment, 2**64 / golden ratio (odd)


def mix64(z: sp.Expr) -> sp.Expr:
    """SplitMix64's finalizer (Stafford's Mix13): a bijection on 64-bit words."""
    z = (BitXor(z, ShiftRight(z, 30))) * 0xBF58476D1CE4E5B9
    z = (BitXor(z, ShiftRight(z, 27))) * 0x94D049BB133111EB
    return BitXor(z, ShiftRight(z, 31))


dropout = MaskedElementwise(
    "dropout",
    SECTION,
    "Dropout",
    "During training each activation is kept with probability q = 1 - p (mask X = 1) "
    "or set to 0. Standard dropout scales by q at test time; inverted dropout scales "
    "by 1/q during training and leaves the test phase untouched.",
    inputs=[x],
    args=[Arg("p", p, check="unit_interval_open", doc="drop probability"),
          Arg("seed", seed, check="seed", doc="seed of the mask")],
    let={q: 1 - p},
    flag="inverted",
    flag_default=True,
    variants={True: {"y": X * x / q}, False: {"y": X * x}},
    mask=Mask(
        symbol=X,
        keep=q,
        seed=seed,
        index=index,
        key={"key": mix64(seed * GOLDEN + GOLDEN)},
        # The top 53 bits of the word, scaled to [0, 1): exact in float64.
        uniform=ShiftRight(mix64(key + (index + 1) * GOLDEN), 11) / 2**53,
    ),
    notes=("The mask is X = 1 exactly when u < q, where u in [0, 1) is a SplitMix64 hash "
           "of the seed and the element's index: the same seed gives the same mask "
           "whatever the thread count.",),
)

FORMULAS = [dropout]
