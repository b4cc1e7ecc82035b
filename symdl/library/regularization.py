"""Dropout, standard and inverted, with a counter-based mask.

Training multiplies each activation by a Bernoulli(q) mask X (q = 1 - p, the keep
probability). The test-time formulas are not written here: ``symdl.derive`` takes the
expectation over X with ``sympy.stats`` (standard dropout: q x, inverted: x).

The mask is X = [u < q] with u = h / 2**32 in [0, 1), h the first 32-bit word of
Threefry-2x32-20 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11;
Random123) keyed by the whole 64-bit seed (two 32-bit words) on the counter = the
element's 64-bit index. Threefry is a keyed block cipher: streams of different keys
are independent (not shifted or permuted copies of each other), and a counter-based
generator gives the same mask for any thread count or chunking. Its rounds are 32-bit
additions, rotations and xors (``symdl/bitops.py``), which vectorize on AVX2 (eight
lanes; AVX2 has no 64-bit multiply, which rules out a 64-bit multiplicative mix). An
element is kept with probability ceil(q 2**32) / 2**32 (all of them for p = 0).
"""

import sympy as sp

from symdl.bitops import Add32, Low32, Rotl32, ShiftRight, Xor32
from symdl.formula import Arg, Mask, MaskedElementwise

SECTION = "Dropout"

x = sp.Symbol("x", real=True)
p = sp.Symbol("p", real=True, nonnegative=True)
q = sp.Symbol("q", positive=True)  # the keep probability
X = sp.Symbol("X", integer=True, nonnegative=True)  # the mask: 1 kept, 0 dropped
seed = sp.Symbol("seed", integer=True, nonnegative=True)
index = sp.Symbol("index", integer=True, nonnegative=True)

# Threefry-2x32's rotation constants and Skein's key-schedule parity (Random123,
# threefry.h: R_32x2_*, SKEIN_KS_PARITY32), and the standard round count.
ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
PARITY32 = 0x1BD11BDA
ROUNDS = 20


def word(name: str) -> sp.Symbol:
    """A named unsigned word (a key or a step of the hash)."""
    return sp.Symbol(name, integer=True, nonnegative=True)


def threefry2x32(c0: sp.Expr, c1: sp.Expr, k0: sp.Expr, k1: sp.Expr,
                 rounds: int = ROUNDS) -> tuple[dict[str, sp.Expr], dict[str, sp.Expr],
                                                sp.Symbol, sp.Symbol]:
    """Threefry-2x32 of the counter (c0, c1) under the key (k0, k1).

    Returns the key schedule (named words computed once), the steps (named words per
    element, in order) and the symbols of the two output words.
    """
    key = {"key0": k0, "key1": k1, "key2": Xor32(Xor32(k0, k1), PARITY32)}
    ks = [word(k) for k in key]
    steps = {"x0_0": Add32(c0, ks[0]), "x1_0": Add32(c1, ks[1])}
    x0, x1 = word("x0_0"), word("x1_0")
    for r in range(1, rounds + 1):
        steps[f"x0_{r}"] = Add32(x0, x1)
        steps[f"x1_{r}"] = Xor32(Rotl32(x1, ROTATIONS[(r - 1) % 8]), word(f"x0_{r}"))
        x0, x1 = word(f"x0_{r}"), word(f"x1_{r}")
        if r % 4 == 0:  # key injection j: the schedule's next two words, and j
            j = r // 4
            steps[f"x0_{r}k"] = Add32(x0, ks[j % 3])
            steps[f"x1_{r}k"] = Add32(Add32(x1, ks[(j + 1) % 3]), j)
            x0, x1 = word(f"x0_{r}k"), word(f"x1_{r}k")
    return key, steps, x0, x1


# The key: the seed's two 32-bit halves; the counter: the index's.
_KEY, _STEPS, _H, _ = threefry2x32(Low32(index), Low32(ShiftRight(index, 32)),
                                   Low32(seed), Low32(ShiftRight(seed, 32)))

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
        key=_KEY,
        steps=_STEPS,
        # The first 32-bit output word scaled to [0, 1): exact in float64, so u < q
        # keeps ceil(q 2**32) of every 2**32 words.
        uniform=_H / 2**32,
    ),
    notes=("The mask is `X` = 1 exactly when `u` < `q`, where `u` in [0, 1) is the first "
           "32-bit word of Threefry-2x32-20 (Random123), keyed by the 64-bit seed, of "
           "the element's index, scaled: the same seed gives the same mask whatever "
           "the thread count, and different seeds give independent masks.",),
)

FORMULAS = [dropout]
