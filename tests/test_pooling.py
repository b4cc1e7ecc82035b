"""Max and average pooling against PyTorch (forward and autograd), mpmath, edge cases."""

import itertools
import zlib

import mpmath
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH = {"maxpool2d": F.max_pool2d, "avgpool2d": F.avg_pool2d}
# (shape, f, stride): strides 1 and 2 and the default (f), odd and even sizes,
# overlapping windows (stride < f), windows that do not tile the input.
CASES = [((2, 3, 7, 8), 2, None), ((2, 3, 7, 8), 3, 1), ((1, 2, 9, 9), 3, 2),
         ((2, 2, 5, 6), 2, 1), ((3, 1, 6, 6), 1, None), ((1, 1, 4, 4), 4, None),
         ((2, 2, 11, 10), 3, None), ((1, 3, 10, 11), 4, 2)]


def _torch(name, x, dy, f, stride):
    tx = torch.tensor(x, requires_grad=True)
    ty = TORCH[name](tx, f, stride=stride)
    ty.backward(torch.tensor(dy))
    return ty.detach().numpy(), tx.grad.numpy()


def _out_shape(shape, f, stride):
    s = stride or f
    return (*shape[:2], (shape[2] - f) // s + 1, (shape[3] - f) // s + 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(TORCH))
@pytest.mark.parametrize("shape, f, stride", CASES)
def test_forward_and_backward_match_torch(kernels, name, shape, f, stride, dtype):
    # (crc32, not hash(): hash(None) changes from run to run, and a failure must repeat)
    rng = np.random.default_rng(zlib.crc32(repr((shape, f, stride)).encode()))
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(_out_shape(shape, f, stride)).astype(dtype)
    ref_y, ref_dx = _torch(name, x, dy, f, stride)
    y = getattr(kernels, name)(x, f, stride)
    dx = getattr(kernels, name + "_backward")(x, dy, f, stride)
    assert y.dtype == dx.dtype == dtype and y.shape == ref_y.shape and dx.shape == x.shape
    eps = np.finfo(dtype).eps
    if name == "maxpool2d":  # a selection and sums of selected dy: same values, same order
        np.testing.assert_array_equal(y, ref_y)
        overlap = f * f  # at most f*f windows hold one element: as many roundings
        np.testing.assert_allclose(dx, ref_dx, rtol=0, atol=overlap * eps * np.abs(dy).max())
    else:
        # PyTorch sums the window in the same order and divides by f*f; the backward
        # multiplies by the rounded 1/f**2 instead of dividing: 1 ULP per term, f*f terms.
        np.testing.assert_allclose(y, ref_y, rtol=0, atol=2 * eps * np.abs(x).max())
        np.testing.assert_allclose(dx, ref_dx, rtol=0, atol=2 * f * f * eps * np.abs(dy).max())


def test_max_ties_go_to_the_first_maximum_and_nan_propagates(kernels):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 5.0  # a tie in the first window
    x[0, 0, 2, 3] = np.nan
    dy = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    ref_y, ref_dx = _torch("maxpool2d", x, dy, 2, None)
    y = kernels.maxpool2d(x, 2)
    dx = kernels.maxpool2d_backward(x, dy, 2)
    np.testing.assert_array_equal(y, ref_y)  # NaN where PyTorch has NaN
    np.testing.assert_array_equal(dx, ref_dx)
    assert dx[0, 0, 0, 0] == 1.0 and dx[0, 0, 1, 1] == 0.0 and dx[0, 0, 2, 3] == 4.0
    # All -inf: the first element is selected (PyTorch's starting index).
    x = np.full((1, 1, 2, 2), -np.inf)
    assert kernels.maxpool2d_backward(x, np.ones((1, 1, 1, 1)), 2)[0, 0, 0, 0] == 1.0


def test_avgpool_against_mpmath(kernels):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 7, 7)) * 10.0 ** rng.uniform(-3, 3, (2, 2, 7, 7))
    y = kernels.avgpool2d(x, 3, 2)
    with mpmath.workdps(50):
        for n, c, i, j in np.ndindex(y.shape):
            win = x[n, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            exact = mpmath.fsum(mpmath.mpf(float(v)) for v in win.ravel()) / 9
            # 9 terms summed recursively and one division: 10 ULPs of the terms' scale
            assert abs(y[n, c, i, j] - exact) <= 10 * np.finfo(float).eps * np.abs(win).sum() / 9


def test_avgpool_backward_against_finite_differences(kernels):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 2, 5, 5))
    dy = rng.standard_normal((1, 2, 3, 3))
    dx = kernels.avgpool2d_backward(x, dy, 3, 1)
    h = 1e-6
    for idx in itertools.islice(np.ndindex(x.shape), 0, None, 3):
        e = np.zeros_like(x)
        e[idx] = h
        fd = (np.sum(dy * kernels.avgpool2d(x + e, 3, 1))
              - np.sum(dy * kernels.avgpool2d(x - e, 3, 1))) / (2 * h)
        assert abs(fd - dx[idx]) < 1e-8


@pytest.mark.parametrize("name", sorted(TORCH))
def test_parallel_and_serial_cores_agree(kernels, name, monkeypatch):
    import importlib

    mod = importlib.import_module("symdl.kernels.pooling")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 12, 13)).astype(np.float32)
    dy = rng.standard_normal((3, 5, 11, 12)).astype(np.float32)
    monkeypatch.setattr(mod, "PARALLEL_THRESHOLD", 1 << 40)
    ser = getattr(kernels, name)(x, 2, 1), getattr(kernels, name + "_backward")(x, dy, 2, 1)
    monkeypatch.setattr(mod, "PARALLEL_THRESHOLD", 1)
    par = getattr(kernels, name)(x, 2, 1), getattr(kernels, name + "_backward")(x, dy, 2, 1)
    for a, b in zip(ser, par, strict=True):
        np.testing.assert_array_equal(a, b)


def test_dtypes_and_layouts(kernels):
    x = np.arange(2 * 2 * 6 * 6).reshape(2, 2, 6, 6)  # ints become float64
    assert kernels.avgpool2d(x, 2).dtype == np.float64
    xt = np.asfortranarray(np.random.default_rng(8).standard_normal((2, 3, 6, 4)))
    np.testing.assert_array_equal(kernels.maxpool2d(xt, 2), kernels.maxpool2d(
        np.ascontiguousarray(xt), 2))
    assert kernels.maxpool2d(np.zeros((0, 3, 4, 4)), 2).shape == (0, 3, 2, 2)


@pytest.mark.parametrize("name", sorted(TORCH))
@pytest.mark.parametrize("args, kwargs, match, exc", [
    ((np.zeros((3, 4, 4)), 2), {}, "'x'.*4-D", ValueError),
    ((np.zeros((1, 1, 4, 4)), 0), {}, "'f'", ValueError),
    ((np.zeros((1, 1, 4, 4)), 2.0), {}, "'f'", TypeError),
    ((np.zeros((1, 1, 4, 4)), 2), {"stride": 0}, "'stride'", ValueError),
    ((np.zeros((1, 1, 4, 3)), 4), {}, "'f'.*larger than the input", ValueError),
    ((np.array([["a"]]), 1), {}, "'x'", TypeError),
])
def test_bad_input_is_named(kernels, name, args, kwargs, match, exc):
    with pytest.raises(exc, match=match):
        getattr(kernels, name)(*args, **kwargs)
    x, f = args
    dy = np.zeros((1, 1, 2, 2))
    with pytest.raises(exc, match=match):
        getattr(kernels, name + "_backward")(x, dy, f, **kwargs)


@pytest.mark.parametrize("name", sorted(TORCH))
def test_out_argument(kernels, name):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 8, 8))
    dy = rng.standard_normal((2, 3, 4, 4))
    fwd, bwd = getattr(kernels, name), getattr(kernels, name + "_backward")
    y, dx = fwd(x, 2), bwd(x, dy, 2)
    out = np.empty_like(y)
    assert fwd(x, 2, out=out) is out
    np.testing.assert_array_equal(out, y)
    strided = np.empty((2, 3, 8, 16))[..., ::2]  # a strided out= is filled by a copy
    assert bwd(x, dy, 2, out=strided) is strided
    np.testing.assert_array_equal(strided, dx)
    # The backward reads x throughout: out=x must not clobber it on the way.
    xc = x.copy()
    assert bwd(xc, dy, 2, out=xc) is xc
    np.testing.assert_array_equal(xc, dx)
    with pytest.raises(ValueError, match="'out'.*shape"):
        fwd(x, 2, out=np.empty_like(x))
    with pytest.raises(TypeError, match="'out'.*dtype"):
        bwd(x, dy, 2, out=np.empty(x.shape, np.float32))


@pytest.mark.parametrize("name", sorted(TORCH))
def test_backward_checks_dy_shape(kernels, name):
    with pytest.raises(ValueError, match="'dy'.*expected"):
        getattr(kernels, name + "_backward")(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), 2)


def test_gradients_are_derived_by_sympy():
    import sympy as sp

    from symdl.derive import window_local
    from symdl.library import pooling

    v, rho = sp.Symbol("v", real=True), sp.Symbol("rho", real=True)
    assert window_local(pooling.avgpool2d) == 1 / pooling.size**2
    assert window_local(pooling.maxpool2d) == sp.Heaviside(v - rho)
    # The output size is the CNN formula with p = 0, not a copy of it.
    from symdl.library.cnn import conv_output_size, p

    (general,) = conv_output_size.outputs.values()
    assert pooling.maxpool2d.out_size == general.subs(p, 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(TORCH))
@pytest.mark.parametrize("shape, f", [((2, 3, 11, 10), 3), ((40, 16, 33, 35), 2)])
def test_backward_overwrites_every_element_of_out(kernels, name, shape, f, dtype):
    """With stride = f the backward writes dx directly (no zeroing pass): rows and columns
    no window reaches must still be set to 0 in an out= full of garbage, on the serial
    and the parallel core (the second shape is above the parallel threshold)."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(_out_shape(shape, f, None)).astype(dtype)
    _, ref_dx = _torch(name, x, dy, f, None)
    out = np.full(shape, np.nan, dtype=dtype)
    dx = getattr(kernels, name + "_backward")(x, dy, f, out=out)
    assert dx is out and not np.isnan(out).any()
    eps = np.finfo(dtype).eps  # one rounding of dy / f**2 (avg), none for max
    np.testing.assert_allclose(out, ref_dx, rtol=0, atol=2 * eps * np.abs(dy).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(TORCH))
def test_backward_with_stride_f_keeps_zero_signs(kernels, name, dtype):
    """dx written directly (stride = f) is 0 + the gradient, as zeroing then adding
    gives: dy = -0.0 yields +0.0, as in PyTorch."""
    x = np.random.default_rng(11).standard_normal((2, 2, 6, 6)).astype(dtype)
    dy = np.full((2, 2, 3, 3), -0.0, dtype=dtype)
    dx = getattr(kernels, name + "_backward")(x, dy, 2)
    _, ref = _torch(name, x, dy, 2, None)
    assert not np.signbit(dx).any() and not np.signbit(ref).any()


def test_direct_backward_only_for_windows_that_tile():
    """The direct backward needs x[n, c, s*i + a, s*j + b] with a, b in [0, f - 1]:
    SymPy checks the subscripts, so a dilated window keeps the zero-and-add path."""
    import sympy as sp

    from symdl.backends.numba.lowering import plan_window_gradient
    from symdl.derive import window_backward_formula
    from symdl.formula import Window
    from symdl.library import pooling as P

    assert plan_window_gradient(window_backward_formula(P.avgpool2d)).extra["tiles"]
    dilated = Window(
        "dilated", "Mine", "Dilated average", "D", output=P.y[P.n, P.c, P.i, P.j],
        expr=sp.Sum(P.x[P.n, P.c, P.stride * P.i + 2 * P.a, P.stride * P.j + 2 * P.b],
                    *P.window) / P.size**2,
        size=P.size, stride=P.stride, extent=P.extent, out_size=P.out_size, backward=True)
    assert not plan_window_gradient(window_backward_formula(dilated)).extra["tiles"]
