"""Dropout: the mask's statistics, the scaling, the expectation identity, determinism."""

import math

import numba
import numpy as np
import pytest
import sympy as sp

MASK32 = 2**32 - 1
ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)  # Random123 threefry.h, R_32x2_*


def _threefry2x32(counter: tuple[int, int], key: tuple[int, int], rounds: int = 20
                  ) -> tuple[int, int]:
    """Threefry-2x32 (Salmon et al., SC'11), written here from Random123's threefry.h
    in plain Python ints; checked against Random123's known-answer vectors below."""
    ks = [key[0], key[1], 0x1BD11BDA ^ key[0] ^ key[1]]
    x0, x1 = (counter[0] + ks[0]) & MASK32, (counter[1] + ks[1]) & MASK32
    for r in range(rounds):
        x0 = (x0 + x1) & MASK32
        k = ROTATIONS[r % 8]
        x1 = (((x1 << k) | (x1 >> (32 - k))) & MASK32) ^ x0
        if r % 4 == 3:
            j = (r + 1) // 4
            x0 = (x0 + ks[j % 3]) & MASK32
            x1 = (x1 + ks[(j + 1) % 3] + j) & MASK32
    return x0, x1


def _uniform(seed: int, index: int) -> float:
    """The documented mask hash: the first word of Threefry-2x32-20 keyed by the seed's
    (low, high) 32-bit halves, of the counter (index low, index high), over 2**32."""
    key = (seed & MASK32, seed >> 32)
    return _threefry2x32((index & MASK32, index >> 32), key)[0] / 2.0**32


@pytest.mark.parametrize("counter, key, expected", [
    # Random123's kat_vectors, "threefry2x32 20" lines: ctr, key, output.
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x243F6A88, 0x85A308D3), (0x13198A2E, 0x03707344), (0xC4923A9C, 0x483DF7A0)),
])
def test_threefry_reference_matches_random123(counter, key, expected):
    assert _threefry2x32(counter, key) == expected


def test_mask_is_the_documented_hash(kernels):
    x = np.ones(1000)
    for seed, p in [(0, 0.5), (12345, 0.3), (2**64 - 1, 0.9), (7, 0.0), (2**40 + 3, 0.5)]:
        _, mask = kernels.dropout(x, p, seed)
        want = [_uniform(seed, i) < 1 - p for i in range(x.size)]
        assert mask.tolist() == want


def test_mask_threshold_is_exact_and_high_index_bits_count(kernels):
    """X = [h < ceil(q 2**32)]: kept fraction exactly representable; the hash of an
    index with high bits (beyond 2**32, checked on the formula: no 32 GB array here)
    differs from that of its low bits."""
    from symdl.library.regularization import dropout
    from symdl.verify import mask_reference

    i = 2**32 + 5
    u_hi, u_lo = mask_reference(dropout, 99, [i, 5])
    assert float(u_hi) == _uniform(99, i) and float(u_lo) == _uniform(99, 5)
    assert u_hi != u_lo
    # p so that q * 2**32 is not an integer: the threshold rounds up, both dtypes.
    x = np.ones(4096)
    for dtype in (np.float32, np.float64):
        _, mask = kernels.dropout(x.astype(dtype), 0.3, 11)
        q = 1 - 0.3  # (in float64 for both dtypes: the mask does not depend on it)
        want = [_uniform(11, k) < q for k in range(x.size)]
        assert mask.tolist() == want


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_fraction_and_scaling(kernels, p, dtype):
    n = 1_000_000
    x = np.random.default_rng(1).standard_normal(n).astype(dtype)
    q = 1 - p
    for inverted in (True, False):
        y, mask = kernels.dropout(x, p, seed=99, inverted=inverted)
        assert y.dtype == dtype and mask.dtype == np.bool_ and y.shape == mask.shape == x.shape
        # Binomial(n, q): the kept fraction is within 5 standard deviations of q.
        assert abs(mask.mean() - q) < 5 * math.sqrt(q * (1 - q) / n)
        assert np.all(y[~mask] == 0)
        # q = 1 - p in float64, rounded once to the array's dtype (as PyTorch's
        # scale); then one correctly rounded division.
        kept = x[mask] / dtype(1 - p) if inverted else x[mask]
        np.testing.assert_array_equal(y[mask], kept)


def test_inverted_scaling_matches_torch(kernels):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal(100_000)
    p = 0.3
    y, mask = kernels.dropout(x, p, seed=5)
    torch.manual_seed(0)
    ty = torch.nn.functional.dropout(torch.tensor(x), p, training=True).numpy()
    tmask = ty != 0
    # PyTorch multiplies by 1/q, we divide by q: 1 ULP apart at most.
    np.testing.assert_allclose(ty[tmask], x[tmask] / (1 - p), rtol=2.0**-52, atol=0)
    np.testing.assert_allclose(y[mask], x[mask] / (1 - p), rtol=0, atol=0)
    # Both keep about q of the elements.
    assert abs(tmask.mean() - mask.mean()) < 0.01
    te = torch.nn.functional.dropout(torch.tensor(x), p, training=False).numpy()
    np.testing.assert_array_equal(kernels.dropout_inference(x, p), te)


@pytest.mark.parametrize("inverted", [True, False])
def test_mean_over_seeds_approaches_inference(kernels, inverted):
    x = np.random.default_rng(3).standard_normal(500) * 3
    p, seeds = 0.4, 4000
    q = 1 - p
    total = np.zeros_like(x)
    for s in range(seeds):
        total += kernels.dropout(x, p, seed=s, inverted=inverted)[0]
    mean = total / seeds
    want = kernels.dropout_inference(x, p, inverted=inverted)
    np.testing.assert_array_equal(want, x if inverted else q * x)
    # Per element the mean of S Bernoulli draws: std = |x| sqrt(q (1 - q)) / (scale sqrt(S)).
    std = np.abs(x) * math.sqrt(q * (1 - q)) / math.sqrt(seeds) / (q if inverted else 1)
    assert np.max(np.abs(mean - want) / std) < 5.5


def test_same_mask_for_any_thread_count_chunking_and_shape(kernels):
    import importlib

    module = importlib.import_module("symdl.kernels.regularization")

    x = np.random.default_rng(4).standard_normal(300_000)
    ref_y, ref_mask = kernels.dropout(x, 0.25, seed=2024)
    before_threads, before_threshold = numba.get_num_threads(), module.PARALLEL_THRESHOLD
    try:
        for threads in sorted({1, 2, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            y, mask = kernels.dropout(x, 0.25, seed=2024)
            np.testing.assert_array_equal(mask, ref_mask)
            np.testing.assert_array_equal(y, ref_y)
        module.PARALLEL_THRESHOLD = 10**12  # the serial core
        y, mask = kernels.dropout(x, 0.25, seed=2024)
        np.testing.assert_array_equal(mask, ref_mask)
    finally:
        numba.set_num_threads(before_threads)
        module.PARALLEL_THRESHOLD = before_threshold
    # A prefix gets the prefix of the mask; a reshaped array the same flat mask.
    np.testing.assert_array_equal(kernels.dropout(x[:1000], 0.25, 2024)[1], ref_mask[:1000])
    np.testing.assert_array_equal(kernels.dropout(x.reshape(600, 500), 0.25, 2024)[1],
                                  ref_mask.reshape(600, 500))
    # Another seed: an independent mask (agreement q^2 + p^2 = 0.625 expected).
    other = kernels.dropout(x, 0.25, seed=2025)[1]
    assert abs(np.mean(other == ref_mask) - 0.625) < 0.01
    # Neighbouring elements are uncorrelated.
    m = ref_mask.astype(float)
    assert abs(np.corrcoef(m[:-1], m[1:])[0, 1]) < 0.01


def test_p_zero_keeps_everything(kernels):
    x = np.arange(10.0)
    y, mask = kernels.dropout(x, 0.0, seed=1)
    assert mask.all() and np.array_equal(y, x)
    assert kernels.dropout(np.empty((0, 3)), 0.5, 1)[0].shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_and_mask_arguments(kernels, dtype):
    x = np.random.default_rng(3).standard_normal((300, 170)).astype(dtype)
    want_y, want_mask = kernels.dropout(x, 0.3, seed=11)
    out, mask = np.empty_like(x), np.empty(x.shape, bool)
    y, m = kernels.dropout(x, 0.3, 11, out=out, mask=mask)
    assert y is out and m is mask
    np.testing.assert_array_equal(out, want_y)
    np.testing.assert_array_equal(mask, want_mask)
    # Strided outputs, and x itself as out (in place).
    out, mask = np.empty((600, 170), dtype)[::2], np.empty((300, 340), bool)[:, ::2]
    kernels.dropout(x, 0.3, 11, out=out, mask=mask)
    np.testing.assert_array_equal(out, want_y)
    np.testing.assert_array_equal(mask, want_mask)
    inplace = x.copy()
    kernels.dropout(inplace, 0.3, 11, out=inplace)
    np.testing.assert_array_equal(inplace, want_y)
    out = np.empty_like(x)
    assert kernels.dropout_inference(x, 0.3, inverted=False, out=out) is out
    np.testing.assert_array_equal(out, kernels.dropout_inference(x, 0.3, inverted=False))


@pytest.mark.parametrize("kwargs, name, exc", [
    (dict(out=np.empty(4)), "'out'", ValueError),
    (dict(out=np.empty(3, np.float32)), "'out'", TypeError),
    (dict(out=[0.0, 0.0, 0.0]), "'out'", TypeError),
    (dict(mask=np.empty(3)), "'mask'", TypeError),
    (dict(mask=np.empty(2, bool)), "'mask'", ValueError),
    (dict(mask=np.empty(3, bool)[::1].view()), None, None),
])
def test_bad_out_and_mask_are_named(kernels, kwargs, name, exc):
    if exc is None:  # a writeable view is fine
        kernels.dropout(np.ones(3), 0.5, 1, **kwargs)
        return
    with pytest.raises(exc, match=name):
        kernels.dropout(np.ones(3), 0.5, 1, **kwargs)
    readonly = np.empty(3, bool)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="'mask'"):
        kernels.dropout(np.ones(3), 0.5, 1, mask=readonly)
    # A mask in out's own bytes would overwrite the output it was delivered after.
    shared = np.empty(3)
    with pytest.raises(ValueError, match="'out' and 'mask' overlap"):
        kernels.dropout(np.ones(3), 0.5, 1, out=shared, mask=shared.view(bool)[:3])


@pytest.mark.parametrize("kwargs, name, exc", [
    (dict(p=1.0, seed=0), "'p'", ValueError),
    (dict(p=-0.1, seed=0), "'p'", ValueError),
    (dict(p=math.nan, seed=0), "'p'", ValueError),
    (dict(p="0.5", seed=0), "'p'", TypeError),
    (dict(p=0.5, seed=-1), "'seed'", ValueError),
    (dict(p=0.5, seed=2**64), "'seed'", ValueError),
    (dict(p=0.5, seed=1.5), "'seed'", TypeError),
    (dict(p=0.5, seed=1, inverted="yes"), "'inverted'", TypeError),
])
def test_bad_arguments_are_named(kernels, kwargs, name, exc):
    with pytest.raises(exc, match=name):
        kernels.dropout(np.ones(3), **kwargs)
    if "seed" not in name and "inverted" not in kwargs:
        with pytest.raises(exc, match=name):
            kernels.dropout_inference(np.ones(3), kwargs["p"])


def test_expectation_identity_on_the_sheet():
    from symdl.codegen import builtin_modules, render
    from symdl.derive import mask_expectations
    from symdl.library import regularization

    # The expectation over the mask, as the derivation takes it from the formula: the
    # inverted variant's training mean is x itself, the standard one's q x (what its
    # inference kernel computes).
    x, q = regularization.x, regularization.q
    derived = mask_expectations(regularization.dropout)
    assert sp.simplify(derived[True]["y"][1] - x) == 0
    assert sp.simplify(derived[False]["y"][1] - q * x) == 0
    tex = render(builtin_modules())["sheet/symdl.tex"]
    assert r"\operatorname{E}\left[\frac{x X}{q}\right] = x \derived" in tex
    assert r"\operatorname{E}\left[x X\right] = q x \derived" in tex
    assert r"X \sim \operatorname{Bernoulli}\left(q\right)" in tex
