"""Overlap is decided by the actual elements, and never changes a result (issue 17,
items 2 and 3).

Disjoint views of one array (the columns of an optimizer's state, of running
statistics, the fields of a record array) are accepted; a read input that partly
overlaps an updated array gives the result of the same call on copies.
"""

import numpy as np
import pytest
from conftest import sizes

DTYPES = [np.float32, np.float64]


def _n(module, serial):
    return sizes(module)[0 if serial else 1]


def _rand(n, dtype, seed, low=0.1, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, n).astype(dtype)


def _assert_same(got, expected):
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False])
def test_optimizer_state_as_columns_of_one_array(kernels, dtype, serial):
    n = _n("optimizers", serial)
    grad = _rand(n, dtype, 1)
    for step, k in [(lambda *a: kernels.adam_step(*a, 3), 3),
                    (lambda *a: kernels.rmsprop_step(*a, momentum=0.9), 3)]:
        state = np.stack([_rand(n, dtype, s) for s in range(2, 2 + k)], axis=1)
        copies = [state[:, j].copy() for j in range(k)]
        step(state[:, 0], grad, state[:, 1], state[:, 2])  # refused as overlapping before
        step(copies[0], grad, copies[1], copies[2])
        _assert_same([state[:, j] for j in range(k)], copies)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False])
def test_running_statistics_as_columns(kernels, dtype, serial):
    n = _n("batchnorm", serial)
    stats = np.stack([_rand(n, dtype, 5), _rand(n, dtype, 6)], axis=1)  # (C, 2)
    mean, var = _rand(n, dtype, 7), _rand(n, dtype, 8)
    rm, rv = stats[:, 0].copy(), stats[:, 1].copy()
    kernels.batchnorm_update_running(stats[:, 0], stats[:, 1], mean, var, 16)
    kernels.batchnorm_update_running(rm, rv, mean, var, 16)
    _assert_same([stats[:, 0], stats[:, 1]], [rm, rv])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False])
def test_dropout_out_and_mask_as_fields_of_a_record_array(kernels, dtype, serial):
    n = _n("regularization", serial)
    x = _rand(n, dtype, 9, -1, 1)
    record = np.zeros(n, dtype=[("y", dtype), ("mask", np.bool_)])
    y, mask = kernels.dropout(x, 0.3, 42, out=record["y"], mask=record["mask"])
    ref_y, ref_mask = kernels.dropout(x, 0.3, 42)
    _assert_same([record["y"], record["mask"], y, mask], [ref_y, ref_mask, ref_y, ref_mask])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False])
def test_updated_arrays_that_do_overlap_are_still_refused(kernels, dtype, serial):
    n = _n("optimizers", serial)
    big = _rand(n + 1, dtype, 10)
    with pytest.raises(ValueError, match="'v' overlaps 'm'"):
        kernels.adam_step(_rand(n, dtype, 11), _rand(n, dtype, 12), big[1:], big[:-1], 1)
    out = np.zeros(n, dtype)
    with pytest.raises(ValueError, match="'out' and 'mask' overlap"):
        kernels.dropout(_rand(n, dtype, 13), 0.3, 1, out=out, mask=out.view(np.bool_)[:n])


def _shifted(n, dtype, seed, shift):
    """(read input, updated array): n elements each, views of one array, the input
    `shift` elements after the updated array (before it for shift < 0)."""
    big = _rand(n + abs(shift), dtype, seed)
    return (big[shift:], big[:-shift]) if shift > 0 else (big[:shift], big[-shift:])


def _adam(kernels, theta, grad, m, v):
    kernels.adam_step(theta, grad, m, v, 3)


def _rmsprop(kernels, theta, grad, square_avg, buf):
    kernels.rmsprop_step(theta, grad, square_avg, buf, momentum=0.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False])
@pytest.mark.parametrize("shift", [1, -1, 5])
@pytest.mark.parametrize("step, slot", [(_adam, 2), (_adam, 3), (_adam, 0), (_rmsprop, 2),
                                        (_rmsprop, 3)])
def test_read_input_partly_overlapping_an_updated_one(kernels, dtype, serial, shift, step,
                                                      slot):
    # grad (argument 1) a shifted view of the array at `slot` (theta, m or v; theta,
    # square_avg or momentum_buf): the result of the same call on copies.
    n = _n("optimizers", serial)
    grad, updated = _shifted(n, dtype, 20, shift)
    args = [_rand(n, dtype, 21), grad, _rand(n, dtype, 22), _rand(n, dtype, 23)]
    args[slot] = updated
    copies = [a.copy() for a in args]
    step(kernels, *args)
    step(kernels, *copies)
    _assert_same([args[k] for k in (0, 2, 3)], [copies[k] for k in (0, 2, 3)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False])
@pytest.mark.parametrize("shift", [1, -1])
def test_batch_statistics_partly_overlapping_running_ones(kernels, dtype, serial, shift):
    n = _n("batchnorm", serial)
    for slot in (0, 1):  # mean over running_mean, var over running_var
        read, updated = _shifted(n, dtype, 30 + slot, shift)
        args = [_rand(n, dtype, 32), _rand(n, dtype, 33), _rand(n, dtype, 34),
                _rand(n, dtype, 35)]
        args[slot], args[2 + slot] = updated, read
        copies = [a.copy() for a in args]
        kernels.batchnorm_update_running(*args, 8)
        kernels.batchnorm_update_running(*copies, 8)
        _assert_same(args[:2], copies[:2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("serial", [True, False])
def test_exact_alias_of_an_input_and_an_updated_array_stays_in_place(kernels, dtype, serial):
    # grad is m itself: element i is read before it is written, so no copy is needed
    # and the result is that of the call on copies.
    n = _n("optimizers", serial)
    theta, m, v = _rand(n, dtype, 40), _rand(n, dtype, 41), _rand(n, dtype, 42)
    copies = [theta.copy(), m.copy(), m.copy(), v.copy()]
    kernels.adam_step(theta, m, m, v, 2)
    kernels.adam_step(*copies, 2)
    _assert_same([theta, m, v], [copies[0], copies[2], copies[3]])
