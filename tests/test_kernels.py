"""The generated kernels: accuracy against SymPy in mpmath, gradients, dtypes, layouts."""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from symdl.codegen import builtin_modules
from symdl.verify import ulp_error, verify

MODULES = {m.name: m for m in builtin_modules()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_kernel_within_tolerance_of_mpmath(module):
    import importlib

    kernels = importlib.import_module(f"symdl.kernels.{module}")
    results = verify(MODULES[module].formulas, kernels, n=600)
    assert results
    bad = [(r.name, r.dtype, r.max_ulp) for r in results if not r.ok]
    assert not bad


def _sigmoid_exact(v):
    with mpmath.workdps(50):
        return 1 / (1 + mpmath.exp(-mpmath.mpf(v)))


finite = st.floats(allow_nan=False, allow_infinity=True, width=64)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(1, 50), elements=finite))
def test_sigmoid_property_4ulp(kernels, xs):
    got = kernels.sigmoid(xs)
    errs = ulp_error(got, [_sigmoid_exact(v) for v in xs], np.dtype(np.float64))
    assert errs.max() <= 4
    assert np.all(np.isfinite(got))


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-1, 1)))
def test_tanh_backward_property_4ulp(kernels, ys):
    dy = np.linspace(-2, 2, ys.size)
    got = kernels.tanh_backward(ys, dy)
    with mpmath.workdps(50):
        exact = [mpmath.mpf(d) * (1 - mpmath.mpf(v) ** 2) for v, d in zip(ys, dy, strict=True)]
    assert ulp_error(got, exact, np.dtype(np.float64)).max() <= 4


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_backward_matches_finite_differences(kernels, name):
    fwd = getattr(kernels, name)
    bwd = getattr(kernels, name + "_backward")
    x = np.linspace(-6, 6, 1001)
    h = 1e-6
    fd = (fwd(x + h) - fwd(x - h)) / (2 * h)
    got = bwd(fwd(x), np.ones_like(x))
    # Central differences: truncation O(h^2 f''') ~ 1e-12, rounding eps/h ~ 1e-10.
    np.testing.assert_allclose(got, fd, rtol=0, atol=1e-9)


def test_extremes_are_finite_without_warnings(kernels):
    x = np.array([-np.inf, -1e4, -745.0, -710.0, 0.0, 710.0, 1e4, np.inf])
    with np.errstate(all="raise"):
        for name in ["sigmoid", "tanh"]:
            y = getattr(kernels, name)(x)
            assert np.all(np.isfinite(y))
            assert np.all(np.isfinite(getattr(kernels, name + "_backward")(y, np.ones_like(y))))
    assert kernels.sigmoid(np.array([np.nan]))[0] != kernels.sigmoid(np.array([np.nan]))[0]


@pytest.mark.parametrize("dtype, expect", [(np.float32, np.float32), (np.float64, np.float64),
                                           (np.int32, np.float64), (np.bool_, np.float64)])
def test_dtype_is_kept_or_promoted(kernels, dtype, expect):
    x = np.arange(6).astype(dtype)
    assert kernels.sigmoid(x).dtype == expect
    assert kernels.tanh(x).dtype == expect


def test_any_shape_and_non_contiguous_inputs(kernels):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 8, 5))
    view = x[:, ::2, 1:4].transpose(2, 0, 1)
    # Accuracy is tested against mpmath elsewhere; here the layout must not change a bit.
    got = kernels.sigmoid(view)
    assert got.shape == view.shape
    np.testing.assert_array_equal(got, kernels.sigmoid(view.copy()))
    out = np.empty((10, 10))[::2, ::2].T  # a strided out=
    res = kernels.tanh(x[:5, 0, :], out=out)
    assert res is out
    np.testing.assert_array_equal(out, kernels.tanh(x[:5, 0, :].copy()))
    assert kernels.sigmoid(np.float64(0.0)).shape == ()
    assert kernels.sigmoid(np.empty((0, 3))).shape == (0, 3)


def test_out_is_written_in_place(kernels):
    x = np.linspace(-3, 3, 100)
    out = np.empty_like(x)
    assert kernels.sigmoid(x, out=out) is out
    np.testing.assert_array_equal(out, kernels.sigmoid(x))


def test_out_overlapping_the_input(kernels):
    # out= x itself is computed in place (element i is read before it is written); an
    # out= that overlaps x shifted must not read elements it already overwrote.
    x = np.linspace(-3, 3, 100_001)
    want = kernels.sigmoid(x)
    y = x.copy()
    assert kernels.sigmoid(y, out=y) is y
    np.testing.assert_array_equal(y, want)
    for shift in (1, -1):
        buf = x.copy()
        src, dst = (buf[:-1], buf[1:]) if shift == 1 else (buf[1:], buf[:-1])
        kernels.sigmoid(src, out=dst)
        np.testing.assert_array_equal(dst, kernels.sigmoid(x[:-1] if shift == 1 else x[1:]))


def test_serial_and_parallel_cores_agree_bitwise(kernels):
    from symdl.kernels import activations, linalg, metrics

    rng = np.random.default_rng(2)
    x = rng.standard_normal(100_000)
    labels = rng.integers(0, 2, (2, 100_000))
    A = rng.standard_normal((403, 301))  # (rows in blocks of 8, and 3 left over)
    modules = (activations, metrics, linalg)
    big = activations.PARALLEL_THRESHOLD
    try:
        results = []
        for threshold in (0, 10**12):
            for m in modules:
                m.PARALLEL_THRESHOLD = threshold
            results.append((kernels.sigmoid(x), kernels.precision_recall(*labels),
                            kernels.matvec(A, x[:301])))
    finally:
        for m in modules:
            m.PARALLEL_THRESHOLD = big
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
    np.testing.assert_array_equal(results[0][2], results[1][2])


def test_streaming_cores_write_what_the_others_write(kernels):
    """The non-temporal cores (outputs beyond STREAM_BYTES) give the same bits, into
    every element of out, at every alignment of out within a 64-byte line (the core
    stores the ordinary way up to the first line boundary, then in aligned vectors) and
    at lengths shorter than that head, or ending within a task."""
    from symdl.kernels import activations, regularization

    rng = np.random.default_rng(5)
    modules = (activations, regularization)
    saved = [(m.STREAM_BYTES, m.PARALLEL_THRESHOLD) for m in modules]
    calls = {
        "sigmoid": lambda y, x, out: kernels.sigmoid(x * 30, out=out),
        "tanh": lambda y, x, out: kernels.tanh(x * 10, out=out),
        "sigmoid_backward": lambda y, x, out: kernels.sigmoid_backward(y, x, out=out),
        "tanh_backward": lambda y, x, out: kernels.tanh_backward(y, x, out=out),
        "dropout_inference": lambda y, x, out: kernels.dropout_inference(x, 0.3, False,
                                                                        out=out),
        "dropout_inference inverted": lambda y, x, out: kernels.dropout_inference(x, 0.3,
                                                                                 out=out),
    }
    # (streaming cores exist: memory-bound loops and those of exp and tanh)
    assert activations._sigmoid_backward_stream and activations._tanh_stream
    try:
        for dtype in (np.float64, np.float32):
            lanes = 64 // np.dtype(dtype).itemsize
            for n in (1, 7, 40, (1 << 16) + 3, 3 * (1 << 16)):
                x = rng.standard_normal(n).astype(dtype)
                y = rng.random(n).astype(dtype)
                for name, call in calls.items():
                    for m in modules:
                        m.STREAM_BYTES, m.PARALLEL_THRESHOLD = 10**15, 0
                    want = call(y, x, np.empty(n, dtype))
                    for m in modules:
                        m.STREAM_BYTES = 0
                    line = np.full(n + 2 * lanes, np.nan, dtype)
                    start = (-line.ctypes.data) % 64 // line.itemsize  # (a line boundary)
                    for offset in range(lanes):
                        out = line[start + offset:start + offset + n]
                        out[:] = np.nan
                        assert activations._streams(out)
                        assert call(y, x, out) is out
                        np.testing.assert_array_equal(
                            out, want, err_msg=f"{name}, {dtype.__name__}, n={n}, {offset=}")
    finally:
        for m, (stream, threshold) in zip(modules, saved, strict=True):
            m.STREAM_BYTES, m.PARALLEL_THRESHOLD = stream, threshold


def test_streaming_cores_refuse_an_output_off_its_itemsize():
    """An output whose address is not a multiple of its itemsize has no element on a
    64-byte boundary: it is written by the ordinary core, and still correctly."""
    from symdl.kernels import activations

    saved = activations.STREAM_BYTES, activations.PARALLEL_THRESHOLD
    try:
        activations.STREAM_BYTES, activations.PARALLEL_THRESHOLD = 0, 0
        n = 1000
        raw = np.zeros(n * 8 + 8, np.uint8)
        skip = (1 - raw.ctypes.data) % 8  # (to an address 1 past a multiple of 8)
        out = raw[skip:skip + n * 8].view(np.float64)
        assert out.ctypes.data % 8 == 1 and not out.flags.aligned
        assert not activations._streams(out)
        y, dy = np.linspace(-1, 1, n), np.linspace(2, 3, n)
        got = np.empty(n)
        got[:] = np.asarray(activations.tanh_backward(y, dy, out=out))
        np.testing.assert_array_equal(got, dy * (1 - y) * (y + 1))
    finally:
        activations.STREAM_BYTES, activations.PARALLEL_THRESHOLD = saved


def test_matvec_against_exact_sum(kernels):
    rng = np.random.default_rng(3)
    for m, n in [(1, 1), (5, 3), (300, 200)]:
        A = rng.standard_normal((m, n))
        x = rng.standard_normal(n)
        got = kernels.matvec(A, x)
        with mpmath.workdps(40):
            for i in range(m):
                exact = mpmath.fsum(mpmath.mpf(A[i, j]) * mpmath.mpf(x[j]) for j in range(n))
                bound = n * 2.0**-53 * float(np.abs(A[i] * x).sum())
                assert abs(float(got[i] - exact)) <= bound
    assert kernels.matvec(np.ones((3, 0)), np.ones(0)).tolist() == [0.0, 0.0, 0.0]
    At = rng.standard_normal((7, 4)).T  # non-contiguous
    np.testing.assert_allclose(kernels.matvec(At, np.ones(7)), At.sum(axis=1), rtol=1e-14)


def test_precision_recall_counts(kernels):
    t = np.array([1, 1, 0, 0, 1, 0], dtype=np.int8)
    p = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    prec, rec = kernels.precision_recall(t, p)
    assert (prec, rec) == (2 / 3, 2 / 3)
    assert kernels.precision_recall([0, 0, 0], [0, 0, 0]) == (0.0, 0.0)
    assert kernels.precision_recall([1, 1], [0, 0]) == (0.0, 0.0)
    assert kernels.precision_recall([0, 0], [1, 1]) == (0.0, 0.0)
    assert kernels.precision_recall([], []) == (0.0, 0.0)


def test_precision_recall_against_a_plain_count():
    from symdl.kernels import precision_recall

    rng = np.random.default_rng(4)
    t = rng.integers(0, 2, 123_457)
    p = rng.integers(0, 2, 123_457)
    tp = int(np.sum(t & p))
    assert precision_recall(t, p) == (tp / int(p.sum()), tp / int(t.sum()))


def test_generated_formula_hash_is_in_the_header(root):
    from symdl.library import activations

    text = (root / "generated/kernels/activations.py").read_text()
    assert f"sigmoid: {activations.sigmoid.content_hash()}" in text
    assert "DO NOT EDIT" in text.splitlines()[1]


def test_sympy_is_the_reference_for_backward():
    """SymPy derives tanh's backward (dy (1 - tanh(x)^2)) and rewrites it in terms of
    the output y: the expression that verify takes as the backward's reference."""
    from symdl.derive import backward_formula
    from symdl.library import activations

    (dx,) = backward_formula(activations.tanh).outputs.values()
    y, dy = sp.symbols("y dy", real=True)
    assert sp.simplify(dx - dy * (1 - sp.tanh(sp.atanh(y)) ** 2)) == 0
    assert math.isclose(float(dx.subs({y: 0.5, dy: 2})), 1.5)


def test_large_outputs_reuse_buffers_no_array_uses(kernels):
    """Outputs of 4 MiB or more come from the pool: a buffer is handed out again only
    when no array (the result, or any view of it) is alive; the pool keeps at most its
    limit."""
    import sys

    pool = sys.modules["_symdl_pool"]
    x = np.random.default_rng(6).standard_normal(600_000)  # 4.8 MB of float64
    a = kernels.sigmoid(x)
    b = kernels.sigmoid(x)
    assert not np.shares_memory(a, b)
    view = a[::7]
    address = a.__array_interface__["data"][0]
    del a
    c = kernels.sigmoid(x)
    assert not np.shares_memory(c, view) and not np.shares_memory(c, b)  # a's view is alive
    del view
    d = kernels.sigmoid(-x)
    assert d.__array_interface__["data"][0] == address  # a's buffer, now free, again
    np.testing.assert_array_equal(d, kernels.sigmoid(-x.copy()))
    np.testing.assert_array_equal(b, c)
    saved = pool.limit
    try:
        pool.limit = 10 << 20
        kept = [kernels.sigmoid(np.ones(n)) for n in range(600_000, 600_010)]
        assert sum(buf.nbytes for buf in pool.buffers) <= pool.limit
        assert all((k == kernels.sigmoid(np.ones(1))[0]).all() for k in kept)  # intact
    finally:
        pool.limit = saved


def test_batch_gradients_come_from_the_pool(kernels):
    """A kernel of several batches (the GAN costs' gradients) takes its large outputs
    from the pool too: two outputs of one size get two buffers, and a later call
    reuses them once the arrays are gone (fresh pages for each call cost a page fault
    per 4 KiB, which made the discriminator's gradient 2-4x slower beside other
    libraries' allocations, measured in `symdl bench`)."""
    import sys

    rng = np.random.default_rng(7)
    l_real, l_fake = rng.standard_normal(600_000), rng.standard_normal(600_000)
    g_real, g_fake = kernels.gan_d_loss_logits_grad(l_real, l_fake)
    assert not np.shares_memory(g_real, g_fake)
    pool = sys.modules["_symdl_pool"]
    assert all(any(np.shares_memory(g, b) for b in pool.buffers) for g in (g_real, g_fake))
    addresses = {g.__array_interface__["data"][0] for g in (g_real, g_fake)}
    expected = (g_real.copy(), g_fake.copy())
    del g_real, g_fake
    again = kernels.gan_d_loss_logits_grad(l_real, l_fake)
    assert {g.__array_interface__["data"][0] for g in again} == addresses
    for got, want in zip(again, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_pool_off_with_zero_bytes():
    """SYMDL_POOL_BYTES=0: large outputs are plain fresh arrays, none kept."""
    import os
    import subprocess
    import sys

    code = ("import sys, numpy as np; import symdl.kernels as k\n"
            "a = k.sigmoid(np.ones(600_000)); b = k.dropout(np.ones(600_000), 0.5, 1)\n"
            "print(len(sys.modules['_symdl_pool'].buffers))")
    env = {**os.environ, "SYMDL_POOL_BYTES": "0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"
