"""Dropout masks of different seeds are independent (issue 17, item 4b).

The former mask hashed index ^ key with a 32-bit key: the masks of two seeds were
XOR-permutations of each other (mask'(i) = mask(i ^ d)), and among the first 2**19
seeds 44 pairs gave identical 64-element masks. The mask is now Threefry-2x32-20
keyed by the whole 64-bit seed.
"""

import math

import numpy as np
import pytest
from conftest import sizes


def _mask_words(kernels, seeds, n=64, p=0.5):
    """Each seed's mask of n elements (one dropout call each), packed into bytes."""
    x, out, mask = np.ones(n), np.empty(n), np.empty(n, np.bool_)
    words = np.empty((len(seeds), n // 8), np.uint8)
    for row, seed in enumerate(seeds):
        kernels.dropout(x, p, seed, out=out, mask=mask)
        words[row] = np.packbits(mask)
    return words


def test_no_identical_or_xor_permuted_masks_among_the_first_seeds(kernels):
    """Over the first 2**19 seeds, 64-element masks: no two are equal, and none is
    another's with the indices xor-ed by a constant d < 64, mask'(i) = mask(i ^ d)
    (the former scheme's relation between seeds). The absolute Walsh-Hadamard spectrum
    of a mask is unchanged by such a permutation, and two random 64-element masks share
    it with probability about 128 / 2**64 (its xor-translates and complements): all
    spectra distinct rules out both, as it fails with about 2**38 * 2**-57 = 2**-19 for
    independent masks."""
    bits = np.unpackbits(_mask_words(kernels, range(2**19)), axis=1)
    signs = 1.0 - 2.0 * bits.astype(np.float32)
    hadamard = np.array([[1.0]], np.float32)
    while hadamard.shape[0] < 64:
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    spectra = np.abs(signs @ hadamard).astype(np.uint8)  # exact: integers |.| <= 64
    rows = np.ascontiguousarray(spectra).view(np.dtype((np.void, 64))).ravel()
    assert np.unique(rows).size == rows.size


def test_no_shifted_copies(kernels):
    # A seed's mask is no other seed's shifted by 1..64 elements: each 64-element
    # window of each mask (128 elements) against every mask's first 64.
    seeds = range(2**12)
    bits = np.stack([np.unpackbits(w) for w in _mask_words(kernels, seeds, n=128)])
    firsts = np.packbits(bits[:, :64], axis=1).view(np.uint64).ravel()
    for shift in range(1, 65):
        windows = np.packbits(bits[:, shift:shift + 64], axis=1).view(np.uint64).ravel()
        assert not np.isin(windows, firsts).any(), shift


@pytest.mark.parametrize("serial", [True, False])
def test_related_seeds_give_uncorrelated_masks(kernels, serial):
    # Seeds one apart, one bit apart (low and high halves of the 64-bit seed), and
    # seeds whose former 32-bit keys related their masks by an index permutation:
    # agreement of two independent Bernoulli(1/2) masks is 1/2 within 5 sigma, also
    # after xor-ing the indices with small constants (the former scheme's relation).
    n = max(sizes("regularization")[0 if serial else 1], 4096)
    x = np.ones(n)
    sigma = 0.5 / math.sqrt(n)
    base = 2024
    idx = np.arange(n)
    ref = kernels.dropout(x, 0.5, base)[1]
    for other in [base + 1, base ^ 1, base ^ (1 << 31), base ^ (1 << 32), base ^ (1 << 63),
                  base + 2**32]:
        mask = kernels.dropout(x, 0.5, other)[1]
        assert abs(np.mean(mask == ref) - 0.5) < 5 * sigma, other
        for d in (1, 2, 3, 7, 64):
            perm = idx ^ d
            ok = perm < n
            agree = np.mean(mask[ok] == ref[perm[ok]])
            assert abs(agree - 0.5) < 5 * 0.5 / math.sqrt(ok.sum()), (other, d)
