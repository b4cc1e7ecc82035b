"""Dropout, standard and inverted, with a counter-based mask.

Training multiplies each activation by a Bernoulli(q) mask X (q = 1 - p, the keep
probability). The test-time formulas are not written here: ``symdl.derive`` takes the
expectation over X with ``sympy.stats`` (standard dropout: q x, inverted: x).

The mask is X = [u < q] with u = h / 2**32 in [0, 1), h a 32-bit hash of the seed
and the element index, so the same seed gives the same mask for any thread count or
chunking. The seed is mixed once per call into a key (SplitMix64's finalizer, on
64-bit words); per element, Wellons' lowbias32 mixes the index's low 32 bits xor
the key's low half xor the index's high bits times an odd constant. 32-bit words,
because AVX2 multiplies eight 32-bit lanes at once but has no 64-bit multiply: the
loop vectorizes. An element is kept with probability ceil(q 2**32) / 2**32 (all of
them for p = 0).
"""

import sympy as sp

from symdl.bitops import BitXor, Low32, Mul32, ShiftRight, Shr32, Xor32
from symdl.formula import Arg, Mask, MaskedElementwise

SECTION = "Dropout"

x = sp.Symbol("x", real=True)
p = sp.Symbol("p", real=True, nonnegative=True)
q = sp.Symbol("q", positive=True)  # the keep probability
X = sp.Symbol("X", integer=True, nonnegative=True)  # the mask: 1 kept, 0 dropped
seed = sp.Symbol("seed", integer=True, nonnegative=True)
index = sp.Symbol("index", integer=True, nonnegative=True)
key_lo = sp.Symbol("key_lo", integer=True, nonnegative=True)

GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64's increment, 2**64 / golden ratio (odd)
GOLDEN32 = 0x9E3779B9  # 2**32 / golden ratio (odd): spreads the index's high bits


def mix64(z: sp.Expr) -> sp.Expr:
    """SplitMix64's finalizer (Stafford's Mix13): a bijection on 64-bit words."""
    z = (BitXor(z, ShiftRight(z, 30))) * 0xBF58476D1CE4E5B9
    z = (BitXor(z, ShiftRight(z, 27))) * 0x94D049BB133111EB
    return BitXor(z, ShiftRight(z, 31))


def lowbias32(z: sp.Expr) -> sp.Expr:
    """Wellons' lowbias32 (hash-prospector): a bijection on 32-bit words."""
    z = Mul32(Xor32(z, Shr32(z, 16)), 0x7FEB352D)
    z = Mul32(Xor32(z, Shr32(z, 15)), 0x846CA68B)
    return Xor32(z, Shr32(z, 16))


def hash32(index: sp.Expr) -> sp.Expr:
    """The element's 32-bit hash: lowbias32 of the index's low 32 bits xor a key, the
    seed's key_lo xor the index's high 32 bits spread by an odd multiplier (so that
    elements 2**32 apart get different masks)."""
    spread = Xor32(key_lo, Mul32(Low32(ShiftRight(index, 32)), GOLDEN32))
    return lowbias32(Xor32(Low32(index), spread))


dropout = MaskedElementwise(
    "dropout",
    SECTION,
    "Dropout",
    "During training each activation is kept (mask `X` = 1) with the keep probability `q` "
    "or set to 0. The two variants scale at different times: standard dropout at test "
    "time, inverted dropout during training. The test-time output of each is the "
    "expectation of its training output over the mask, derived below.",
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
        key={"key_lo": Low32(mix64(seed * GOLDEN + GOLDEN))},
        # The 32-bit hash scaled to [0, 1): exact in float64, so u < q keeps
        # ceil(q 2**32) of every 2**32 hashes.
        uniform=hash32(index) / 2**32,
    ),
    notes=("The mask is `X` = 1 exactly when `u` < `q`, where `u` in [0, 1) is a 32-bit "
           "counter-based hash (lowbias32) of the seed and the element's index, scaled: "
           "the same seed gives the same mask whatever the thread count.",),
)

FORMULAS = [dropout]
