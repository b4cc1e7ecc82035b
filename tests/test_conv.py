"""conv2d against PyTorch (F.conv2d and autograd), gradients derived by SymPy, bad input."""

import importlib
import itertools
import zlib

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (N, C, H, W, O, f): channels in != out, odd and even sizes and filters.
SHAPES = [(2, 3, 7, 8, 4, 3), (1, 2, 6, 6, 5, 2), (3, 1, 5, 9, 2, 1), (2, 4, 9, 7, 3, 4)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, stride, padding, bias", [
    (s, st, p, b) for s, st, p, b in itertools.product(SHAPES, (1, 2), (0, 1, 2), (True, False))
    if s[2] + 2 * p >= s[5] and s[3] + 2 * p >= s[5]])
def test_forward_and_backward_match_torch(kernels, shape, stride, padding, bias, dtype):
    _check_against_torch(kernels, shape, stride, padding, bias, dtype)


def _check_against_torch(kernels, shape, stride, padding, bias, dtype):
    nb, c, h, w_, o, f = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, stride, padding, bias)).encode()))
    x = rng.standard_normal((nb, c, h, w_)).astype(dtype)
    w = rng.standard_normal((o, c, f, f)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ty = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    dy = rng.standard_normal(ty.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    y = kernels.conv2d(x, w, b, stride=stride, padding=padding)
    dx, dw, db = kernels.conv2d_backward(x, w, dy, stride=stride, padding=padding)
    assert y.dtype == dx.dtype == dw.dtype == db.dtype == dtype
    assert y.shape == ty.shape and dx.shape == x.shape and dw.shape == w.shape
    # Both sides sum the same k products in different orders (BLAS blocking, oneDNN):
    # each is within k ULPs of the products' magnitude sum, so they differ by 2k at most.
    eps = np.finfo(dtype).eps
    ax, aw, ady = np.abs(x), np.abs(w), np.abs(dy)
    k = c * f * f
    ref_db = tb.grad.numpy() if bias else dy.sum(axis=(0, 2, 3))
    for got, ref, scale, terms in [
        (y, ty.detach().numpy(), aw.max() * ax.max() * k, k + 1),
        (dx, tx.grad.numpy(), ady.max() * aw.max() * o * f * f, o * f * f),
        (dw, tw.grad.numpy(), ady.max() * ax.max() * dy[0, 0].size * nb, dy[0, 0].size * nb),
        (db, ref_db, ady.max() * dy[0, 0].size * nb, dy[0, 0].size * nb),
    ]:
        np.testing.assert_allclose(got, ref, rtol=0, atol=2 * terms * eps * scale)


# Stride 1 with output rows of at least one block (16 float32 or 8 float64 columns)
# takes the direct lowering (register blocks of 4 channels): blocks that reach past the
# output channels (O = 6, 3) or columns (Wo = 17, ..., 23) go through the tail buffer.
DIRECT_SHAPES = [(2, 3, 11, 21, 6, 3), (3, 2, 9, 32, 8, 1), (1, 5, 20, 21, 3, 5),
                 (2, 16, 18, 18, 4, 2)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, padding, bias", [
    (s, p, b) for s, p, b in itertools.product(DIRECT_SHAPES, (0, 1, 2), (True, False))])
def test_direct_lowering_matches_torch(kernels, monkeypatch, shape, padding, bias, dtype):
    conv = importlib.import_module("symdl.kernels.conv")
    calls, dx_calls = [], []
    direct, dx_direct = conv._conv2d_run_direct, conv._conv2d_backward_dx_direct
    monkeypatch.setattr(conv, "_conv2d_run_direct", lambda *a: calls.append(1) or direct(*a))
    monkeypatch.setattr(conv, "_conv2d_backward_dx_direct",
                        lambda *a: dx_calls.append(1) or dx_direct(*a))
    _check_against_torch(kernels, shape, 1, padding, bias, dtype)
    assert calls == [1]  # (the forward took the direct lowering)
    # The input gradient too, one call per image, where dy padded by f - 1 - p is not
    # negative padding (and dx's rows hold a block).
    f, width = shape[5], shape[3]
    cols = conv.MK_VECTORS * (conv.MK_VECTOR_BYTES // np.dtype(dtype).itemsize)
    assert len(dx_calls) == (shape[0] if padding <= f - 1 and width >= cols else 0)


# Rows of at least one wide block (64 float32 or 32 float64 columns) take it on CPUs with
# AVX-512 (4 channels by 4 vectors of 64 bytes): the blocks past the output's channels
# (O = 5, 9) or columns (Wo = 70, 129) go through the tail buffer, as the narrow ones'.
WIDE_SHAPES = [(2, 3, 9, 70, 5, 3), (1, 5, 6, 131, 9, 3), (2, 16, 10, 64, 32, 3)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, padding", [(s, p) for s in WIDE_SHAPES for p in (0, 1)])
def test_wide_block_matches_torch_and_the_narrow_block(kernels, monkeypatch, shape, padding,
                                                       dtype):
    """Either block sums each output in the same order: the same bits, forward and
    backward; and on an AVX-512 CPU rows that span the wide block take it."""
    conv = importlib.import_module("symdl.kernels.conv")
    _check_against_torch(kernels, shape, 1, padding, True, dtype)
    rng = np.random.default_rng(11)
    nb, c, h, w_, o, f = shape
    x = rng.standard_normal((nb, c, h, w_)).astype(dtype)
    w = rng.standard_normal((o, c, f, f)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    chosen = []
    pick = conv._mk_wide
    monkeypatch.setattr(conv, "_mk_wide", lambda *a: chosen.append(pick(*a)) or chosen[-1])
    y = kernels.conv2d(x, w, b, padding=padding)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = kernels.conv2d_backward(x, w, dy, padding=padding)
    # (forward: rows of Wo outputs; input gradient: rows of W)
    span = 4 * 64 // np.dtype(dtype).itemsize if conv._runtime.MK_WIDE_VECTORS else np.inf
    # (the input gradient's parts each pick: one or more calls)
    assert chosen[0] == (y.shape[3] >= span) and len(chosen) >= 2
    assert set(chosen[1:]) == {w_ >= span}
    monkeypatch.setattr(conv, "_mk_wide", lambda *a: False)
    np.testing.assert_array_equal(kernels.conv2d(x, w, b, padding=padding), y)
    for got, want in zip(kernels.conv2d_backward(x, w, dy, padding=padding), grads,
                         strict=True):
        np.testing.assert_array_equal(got, want)


def test_wide_block_where_numba_compiles_for_avx512():
    """The wide block exists where the CPU that Numba compiles for has AVX-512 (its
    features as LLVM names them), and only rows that span it take it."""
    import llvmlite.binding as ll
    import numba

    conv = importlib.import_module("symdl.kernels.conv")
    runtime = conv._runtime
    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        pytest.skip("NUMBA_CPU_NAME/NUMBA_CPU_FEATURES set: the host is not the target")
    avx512 = "+avx512f" in ll.get_host_cpu_features().flatten().split(",")
    assert (runtime.MK_WIDE_VECTORS, runtime.MK_WIDE_VECTOR_BYTES) == (
        (4, 64) if avx512 else (0, 0))
    assert conv._mk_wide(64, 4) == avx512 and conv._mk_wide(32, 8) == avx512
    assert not conv._mk_wide(63, 4) and not conv._mk_wide(31, 8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_direct_lowering_does_not_depend_on_the_parts(kernels, monkeypatch, dtype):
    # The parts cut the (image, block of 4 channels) pairs: a batch of one image is
    # shared out too, and a part may start or end inside an image.
    conv = importlib.import_module("symdl.kernels.conv")
    rng = np.random.default_rng(5)
    for n, o in ((5, 7), (1, 13)):
        x = rng.standard_normal((n, 3, 12, 20)).astype(dtype)
        w = rng.standard_normal((o, 3, 3, 3)).astype(dtype)
        b = rng.standard_normal(o).astype(dtype)
        results = []
        for threshold, threads in ((10**9, 1), (1, 2), (1, 3)):
            monkeypatch.setattr(conv, "PARALLEL_THRESHOLD", threshold)
            monkeypatch.setattr(conv.numba, "get_num_threads", lambda threads=threads: threads)
            results.append(kernels.conv2d(x, w, b, padding=1))
        for other in results[1:]:
            np.testing.assert_array_equal(other, results[0])


def test_direct_lowering_is_chosen_from_the_index_expressions():
    # The planner reads the subscripts: unit steps along the filter and, at stride 1,
    # along the output. A formula reading x at 2*a (a dilated filter) gets no direct path.
    from symdl.backends.numba.lowering import plan
    from symdl.formula import Correlation
    from symdl.library import conv

    assert plan(conv.conv2d).extra["direct"]
    s, p, a, b = conv.stride, conv.padding, conv.a, conv.b
    x, w = conv.x, conv.w
    n, o, c, i, j = conv.n, conv.o, conv.c, conv.i, conv.j
    dilated = Correlation(
        "conv2d_dilated", conv.SECTION, "Dilated", "x read at 2a.",
        output=conv.y[n, o, i, j],
        expr=sp.Sum(w[o, c, a, b] * x[n, c, s * i + 2 * a - p, s * j + 2 * b - p],
                    (c, 0, conv.n_c - 1), (a, 0, conv.size - 1), (b, 0, conv.size - 1))
        + conv.bias[o],
        size=conv.size, stride=s, padding=p, extent=conv.extent, out_size=conv.out_size)
    assert not plan(dilated).extra["direct"]
    # The input gradient: SymPy's scatter, solved for the output index, is a
    # correlation of dy with the flipped filter at stride 1 for conv2d only.
    from symdl.derive import correlation_backward_formula

    assert plan(correlation_backward_formula(conv.conv2d)).extra["direct_dx"]
    assert not plan(correlation_backward_formula(dilated)).extra["direct_dx"]


def _conv_variant(name, summand=None, scale=1):
    """conv2d's definition with another summand, or its Sum scaled."""
    from symdl.formula import Correlation
    from symdl.library import conv

    s, p, a, b, c = conv.stride, conv.padding, conv.a, conv.b, conv.c
    xi = conv.x[conv.n, c, s * conv.i + a - p, s * conv.j + b - p]
    wi = conv.w[conv.o, c, a, b]
    limits = (c, 0, conv.n_c - 1), (a, 0, conv.size - 1), (b, 0, conv.size - 1)
    return Correlation(
        name, conv.SECTION, name, "A variant of conv2d.", output=conv.y[conv.n, conv.o, conv.i,
                                                                        conv.j],
        expr=scale * sp.Sum(wi * xi if summand is None else summand(wi, xi), *limits)
        + conv.bias[conv.o],
        size=conv.size, stride=s, padding=p, extent=conv.extent, out_size=conv.out_size)


def test_lowering_refuses_a_summand_it_does_not_compute():
    # im2col + BLAS compute Sum(w * x): another summand is refused with the formula's
    # name, not printed as a kernel that ignores it. A scaled Sum prints its forward
    # (2 * Sum + bias, from the formula), but its gradients carry the 2, which the
    # BLAS backward would lose: refused too.
    from symdl.backends.numba.lowering import plan
    from symdl.derive import correlation_backward_formula
    from symdl.formula import FormulaError

    with pytest.raises(FormulaError, match="conv2d_squared: the summand must be"):
        plan(_conv_variant("conv2d_squared", lambda w, x: w * x**2))
    with pytest.raises(FormulaError, match="conv2d_swapped: the summand must be"):
        plan(_conv_variant("conv2d_swapped", lambda w, x: w.base[(w.indices[1], w.indices[0],
                                                                  *w.indices[2:])] * x))
    doubled = _conv_variant("conv2d_doubled", scale=2)
    assert plan(doubled).body[0].value == "T(2)*_acc + bv"
    with pytest.raises(FormulaError, match="conv2d_doubled_backward: the gradient of"):
        plan(correlation_backward_formula(doubled))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mpmath_check_evaluates_the_formula_and_catches_a_wrong_kernel(kernels, dtype):
    # symdl verify's reference is the formula's own Sum and SymPy's gradients, term by
    # term in mpmath: the kernels pass; a kernel for another summand, or a gradient off
    # by 100 ULPs, fails.
    from symdl.derive import correlation_backward_formula
    from symdl.library import conv
    from symdl.verify import verify_correlation

    backward = correlation_backward_formula(conv.conv2d)
    rng = np.random.default_rng

    def squared(x, w, b, **kw):
        return kernels.conv2d(x * x, w, b, **kw)

    def off(*args, **kw):
        dx, dw, db = kernels.conv2d_backward(*args, **kw)
        return dx, dw, db * (1 + 100 * np.finfo(dtype).eps)

    assert verify_correlation(conv.conv2d, kernels.conv2d, dtype, rng(3)).ok
    assert verify_correlation(backward, kernels.conv2d_backward, dtype, rng(3)).ok
    assert not verify_correlation(conv.conv2d, squared, dtype, rng(3)).ok
    assert not verify_correlation(backward, off, dtype, rng(3)).ok


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_images_run_in_parts_on_threads(kernels, monkeypatch, dtype):
    """Large batches run in parts on several threads (NumPy's BLAS on one thread each):
    the results match PyTorch and do not depend on the number of parts, and BLAS's
    thread count is restored afterwards, also when a part fails."""
    conv = importlib.import_module("symdl.kernels.conv")
    blas_threads = conv._BLAS.api[0]() if conv._BLAS.api is not None else None
    rng = np.random.default_rng(11)
    x = rng.standard_normal((9, 3, 8, 7)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    dy = rng.standard_normal((9, 4, 4, 4)).astype(dtype)
    results = []
    for parts in (1, 2, 3, 9):
        monkeypatch.setattr(conv, "_blas_parts", lambda items, size, parts=parts: min(parts, items))
        results.append((kernels.conv2d(x, w, b, stride=2, padding=1),
                        *kernels.conv2d_backward(x, w, dy, stride=2, padding=1)))
        if blas_threads is not None:
            assert conv._BLAS.api[0]() == blas_threads and conv._BLAS.users == 0
    for other in results[1:]:
        for got, ref in zip(other, results[0], strict=True):
            np.testing.assert_array_equal(got, ref)
    _check_against_torch(kernels, (9, 3, 8, 7, 4, 3), 2, 1, True, dtype)

    def fail(bias, y2):
        raise RuntimeError("a part failed")

    monkeypatch.setattr(conv, "_conv2d_finish", fail)
    with pytest.raises(RuntimeError, match="a part failed"):
        kernels.conv2d(x, w, b)
    if blas_threads is not None:
        assert conv._BLAS.api[0]() == blas_threads and conv._BLAS.users == 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kept_work_buffers_start_clean(kernels, dtype):
    """Each thread keeps its padded image between calls: its zero border must not hold
    an earlier call's interior when another padding gives the same padded shape."""
    for h, padding in [(6, 1), (4, 2), (6, 1), (2, 3), (4, 2)]:
        _check_against_torch(kernels, (2, 2, h, h, 3, 3), 1, padding, True, dtype)
    # The direct lowering's copies of x and of dy: widths 20 and 30 at padding 1 give
    # copies of one shape in float32 (34 columns), whose interiors differ.
    for width in (20, 30, 20):
        _check_against_torch(kernels, (2, 2, 5, width, 3, 3), 1, 1, True, dtype)


def test_backward_against_finite_differences(kernels):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    dy = rng.standard_normal((1, 3, 3, 2))
    dx, dw, db = kernels.conv2d_backward(x, w, dy, stride=2, padding=1)

    def loss(xx, ww, bb):
        return float(np.sum(dy * kernels.conv2d(xx, ww, bb, stride=2, padding=1)))

    h = 1e-6
    for arr, grad, pos in ((x, dx, 0), (w, dw, 1), (b, db, 2)):
        for idx in np.ndindex(arr.shape):
            e = np.zeros_like(arr)
            e[idx] = h
            args_p, args_m = [x, w, b], [x, w, b]
            args_p[pos], args_m[pos] = arr + e, arr - e
            assert abs((loss(*args_p) - loss(*args_m)) / (2 * h) - grad[idx]) < 1e-7


def test_gradients_are_derived_by_sympy():
    from symdl.derive import correlation_backward_formula
    from symdl.library import conv

    g = correlation_backward_formula(conv.conv2d)
    dw_target, dw = g.gradients["w"]
    dx_target, dx = g.gradients["x"]
    _, db = g.gradients["bias"]
    assert not dw.atoms(sp.KroneckerDelta)  # a gather: w's indices are bare
    assert len(dx.atoms(sp.KroneckerDelta)) == 2  # a scatter at s*i + a - p, s*j + b - p
    assert [lim[0].name for lim in db.limits] == ["n", "i", "j"]  # the bias is outside the Sum
    assert db.function == sp.IndexedBase("dy")[conv.n, sp.Symbol("o", integer=True), conv.i,
                                                conv.j]


def test_dtypes_layouts_and_empty(kernels):
    x = np.arange(2 * 1 * 4 * 4).reshape(2, 1, 4, 4)  # ints -> float64
    w = np.ones((1, 1, 2, 2), dtype=np.float32)
    assert kernels.conv2d(x, w).dtype == np.float64
    xf = np.asfortranarray(np.random.default_rng(4).standard_normal((2, 3, 5, 5)))
    wf = np.ones((2, 3, 3, 3))
    np.testing.assert_array_equal(kernels.conv2d(xf, wf, padding=1),
                                  kernels.conv2d(np.ascontiguousarray(xf), wf, padding=1))
    assert kernels.conv2d(np.zeros((0, 3, 5, 5)), wf).shape == (0, 2, 3, 3)
    # No input channels: the Sum is empty, the output is the bias alone, the bias
    # gradient still the sum of dy.
    b = np.array([1.5, -2.0])
    y = kernels.conv2d(np.zeros((2, 0, 5, 5)), np.zeros((2, 0, 3, 3)), b)
    np.testing.assert_array_equal(y, np.broadcast_to(b[:, None, None], (2, 2, 3, 3)))
    dy = np.random.default_rng(5).standard_normal((2, 2, 3, 3))
    dx, dw, db = kernels.conv2d_backward(np.zeros((2, 0, 5, 5)), np.zeros((2, 0, 3, 3)), dy)
    assert dx.shape == (2, 0, 5, 5) and dw.shape == (2, 0, 3, 3)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-15)


@pytest.mark.parametrize("call, match, exc", [
    (lambda k: k.conv2d(np.zeros((3, 4, 4)), np.zeros((1, 3, 2, 2))), "'x'.*4-D", ValueError),
    (lambda k: k.conv2d(np.zeros((1, 3, 4, 4)), np.zeros((1, 2, 2, 2))), "'w'", ValueError),
    (lambda k: k.conv2d(np.zeros((1, 3, 4, 4)), np.zeros((1, 3, 2, 3))), "'w'", ValueError),
    (lambda k: k.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 5, 5))), "'w'.*larger",
     ValueError),
    (lambda k: k.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 0, 0))), "'w'.*empty filters",
     ValueError),
    (lambda k: k.conv2d_backward(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 0, 0)),
                                 np.zeros((1, 1, 5, 5))), "'w'.*empty filters", ValueError),
    (lambda k: k.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((2, 1, 2, 2)), np.zeros(3)), "'b'",
     ValueError),
    (lambda k: k.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2)), stride=0), "'stride'",
     ValueError),
    (lambda k: k.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2)), padding=-1),
     "'padding'", ValueError),
    (lambda k: k.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2)), stride=1.5), "'stride'",
     TypeError),
    (lambda k: k.conv2d_backward(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2)),
                                 np.zeros((1, 1, 2, 2))), "'dy'.*expected", ValueError),
])
def test_bad_input_is_named(kernels, call, match, exc):
    with pytest.raises(exc, match=match):
        call(kernels)


# ---- one mechanism: the gradients of any contraction in index notation ----------------
def _evaluate(expr, arrays: dict, sizes: dict) -> float:
    """expr (Sums over Indexed) at concrete sizes and array values, by SymPy."""
    expr = expr.xreplace(sizes).doit()
    values = {ix: sp.Float(arrays[ix.base.name][tuple(int(k) for k in ix.indices)])
              for ix in expr.atoms(sp.Indexed)}
    return float(expr.xreplace(values))


def _gradient_arrays(grads: dict, name: str, shape: tuple, arrays: dict, sizes: dict):
    """Array d<name> of the given shape, from its derived (target, value) pair."""
    target, value = grads[name]
    out = np.empty(shape)
    for idx in np.ndindex(shape):
        at = dict(zip(target.indices, (sp.Integer(k) for k in idx), strict=True))
        out[idx] = _evaluate(value.xreplace(at), arrays, sizes)
    return out


def test_the_same_derivation_gives_matvec_gradients():
    # matvec is a Contraction in index notation; the derivation that gives conv2d's
    # gradients gives dA = dy x^T and dx = A^T dy (checked against NumPy).
    from symdl.derive import contraction_gradients
    from symdl.library import linalg

    rng = np.random.default_rng(11)
    arrays = {"A": rng.standard_normal((3, 4)), "x": rng.standard_normal(4),
              "dy": rng.standard_normal(3)}
    sizes = {linalg.m: 3, linalg.n: 4}
    grads = contraction_gradients(linalg.matvec)
    assert sorted(grads) == ["A", "x"]
    assert not grads["A"][1].atoms(sp.Sum)  # an outer product: nothing to sum
    dA = _gradient_arrays(grads, "A", (3, 4), arrays, sizes)
    dx = _gradient_arrays(grads, "x", (4,), arrays, sizes)
    np.testing.assert_allclose(dA, np.outer(arrays["dy"], arrays["x"]), rtol=1e-14)
    np.testing.assert_allclose(dx, arrays["A"].T @ arrays["dy"], rtol=1e-14)


def test_the_same_derivation_gives_a_network_layers_gradients():
    # A layer Z = A W^T over a batch of rows, written in index notation, gets from the
    # same derivation the gradients that the network's matrix calculus derives
    # (dW_1 = delta_1 x^T summed over samples, and W^T delta for the layer's input).
    from symdl.derive import contraction_gradients, network_backward_formula
    from symdl.formula import Contraction
    from symdl.library import backprop

    m, n0, n1 = (sp.Symbol(k, integer=True, positive=True) for k in ("m", "n0", "n1"))
    s, u, k = sp.Idx("s", m), sp.Idx("u", n1), sp.Idx("k", n0)
    W, A, Z = (sp.IndexedBase(k) for k in ("W", "A", "Z"))
    layer = Contraction("layer", "Backprop", "Layer", "Z = A W^T.", output=Z[s, u],
                        expr=sp.Sum(W[u, k] * A[s, k], (k, 0, n0 - 1)), arg_order=("A", "W"))
    grads = contraction_gradients(layer)

    rng = np.random.default_rng(12)
    arrays = {"A": rng.standard_normal((2, 3)), "W": rng.standard_normal((4, 3)),
              "dZ": rng.standard_normal((2, 4))}
    sizes = {m: 2, n0: 3, n1: 4}
    dW = _gradient_arrays(grads, "W", (4, 3), arrays, sizes)
    dA = _gradient_arrays(grads, "A", (2, 3), arrays, sizes)

    # The network's derivation, per sample: dW1 = delta1 x^T, and the input's gradient
    # W1^T delta1; summed over the samples for the weight, as its kernel does.
    g = network_backward_formula(backprop.mlp)
    sym = backprop.mlp.symbols()
    delta1 = sp.MatrixSymbol("delta1", sym["Z1"].shape[0], 1)
    per_sample_dW, per_sample_dx = [], []
    for row in range(2):
        values = {delta1: sp.Matrix(arrays["dZ"][row]), sym["x"]: sp.Matrix(arrays["A"][row]),
                  sym["W1"]: sp.Matrix(arrays["W"])}
        per_sample_dW.append(np.array(g.steps["dW1"].subs(values).doit(), dtype=float))
        per_sample_dx.append(np.array(g.steps["dX"].subs(values).doit(), dtype=float).ravel())
    np.testing.assert_allclose(dW, sum(per_sample_dW), rtol=1e-13)
    np.testing.assert_allclose(dA, np.array(per_sample_dx), rtol=1e-13)
    np.testing.assert_allclose(dW, arrays["dZ"].T @ arrays["A"], rtol=1e-13)


def test_the_correlation_is_a_contraction():
    from symdl.formula import Contraction
    from symdl.library import conv

    assert isinstance(conv.conv2d, Contraction)
    assert [t[1] != [] for t in conv.conv2d.terms()].count(True) == 1  # the Sum; + bias


def test_contraction_gradients_ask_for_names_where_indices_are_expressions():
    from symdl.derive import DerivationError, contraction_gradients
    from symdl.library import conv

    with pytest.raises(DerivationError, match="name the axes of dx"):
        contraction_gradients(conv.conv2d)  # x is read at s*i + a - p: no index to reuse
    grads = contraction_gradients(conv.conv2d, {"x": ["n", "c", "h", "v"]})
    assert str(grads["x"][0]) == "dx[n, c, h, v]" and str(grads["w"][0]) == "dw[o, c, a, b]"
