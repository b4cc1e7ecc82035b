"""Backprop: the network's chain derived by SymPy, and the kernels against the
formula in mpmath, finite differences and PyTorch autograd."""

import importlib.util
import sys

import numpy as np
import pytest
import sympy as sp

from symdl.cli import main
from symdl.derive import network_backward_formula
from symdl.formula import FormulaError, Layer, Network
from symdl.library.activations import sigmoid, tanh
from symdl.library.backprop import mlp
from symdl.verify import network_reference, verify_network

torch = pytest.importorskip("torch")


def _problem(rng, m, n0, n1, n2, dtype):
    X, W1 = rng.standard_normal((m, n0)), rng.standard_normal((n1, n0)) / np.sqrt(n0)
    W2, w3 = rng.standard_normal((n2, n1)) / np.sqrt(n1), rng.standard_normal(n2)
    df = rng.standard_normal(m)
    return [a.astype(dtype) for a in (X, W1, W2, w3, df)]


def _torch(acts, X, Ws, w, df):
    """PyTorch autograd on the same network: f and the gradients of sum(df * f)."""
    t = [torch.tensor(a, requires_grad=True) for a in (X, *Ws, w)]
    a = t[0]
    for act, W in zip(acts, t[1:-1], strict=True):
        a = act(a @ W.T)
    f = a @ t[-1]
    f.backward(torch.tensor(df))
    return f.detach().numpy(), [x.grad.numpy() for x in t]


def _normwise(got, ref, bound):
    """max |got - ref| within `bound` times the largest |ref| entry (normwise)."""
    scale = np.abs(ref).max() if ref.size else 1.0
    assert np.abs(got - ref).max(initial=0) <= bound * scale, (
        np.abs(got - ref).max() / scale)


def test_derived_chain_is_the_textbook_one():
    """delta_2 = w3 o A2 o (1 - A2) etc., with the activation derivative rewritten in
    its output by in_terms_of_output."""
    g = network_backward_formula(mlp)
    s = mlp.symbols()
    n1, n2 = mlp.widths()[1:]
    G = {k: sp.MatrixSymbol(f"G{k}", n, 1) for k, n in ((1, n1), (2, n2))}
    delta = {k: sp.MatrixSymbol(f"delta{k}", n, 1) for k, n in ((1, n1), (2, n2))}
    df = sp.Symbol("df", real=True)
    A1, A2 = s["A1"], s["A2"]
    assert g.local == {"A2": sp.Symbol("A2", real=True) * (1 - sp.Symbol("A2", real=True)),
                       "A1": sp.Symbol("A1", real=True) * (1 - sp.Symbol("A1", real=True))}
    assert g.steps["G2"] == df * s["w3"]
    assert g.steps["dw3"] == df * A2
    assert g.steps["delta2"].doit() == sp.HadamardProduct(
        G[2], A2, sp.OneMatrix(n2, 1) - A2).doit()
    assert g.steps["dW2"] == delta[2] * A1.T
    assert g.steps["G1"] == s["W2"].T * delta[2]
    assert g.steps["delta1"].doit() == sp.HadamardProduct(
        G[1], A1, sp.OneMatrix(n1, 1) - A1).doit()
    assert g.steps["dW1"] == delta[1] * s["x"].T
    assert g.steps["dX"] == s["W1"].T * delta[1]


def test_tanh_layers_get_one_minus_a_squared():
    net = Network("net", "S", "T", "d", layers=(Layer("W1", tanh), Layer("W2", sigmoid)),
                  readout="w")
    g = network_backward_formula(net)
    A1 = net.symbols()["A1"]
    assert g.steps["delta1"].doit() == sp.HadamardProduct(
        sp.MatrixSymbol("G1", net.widths()[1], 1),
        sp.OneMatrix(*A1.shape) - sp.HadamardPower(A1, 2)).doit()


def test_sheet_shows_the_derived_deltas():
    from symdl.codegen import builtin_modules, render

    tex = render(builtin_modules())["sheet/symdl.tex"]
    assert (r"\delta_{2} = \frac{\partial f}{\partial Z_{2}} = w_{3} \circ A_{2} \circ "
            r"\left(1 - A_{2}\right) \derived") in tex
    assert (r"\delta_{1} = \frac{\partial f}{\partial Z_{1}} = \left(W_{2}^{T} \delta_{2}"
            r"\right) \circ A_{1} \circ \left(1 - A_{1}\right) \derived") in tex
    assert r"\frac{\partial f}{\partial W_{1}} = \delta_{1} x^{T} \derived" in tex
    assert r"step (iv) defines $\delta_{1}$ in terms of itself" in tex


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernels_against_the_formula_in_mpmath(kernels, dtype):
    """verify_network: the definition expanded and differentiated by SymPy, in mpmath."""
    for f in (mlp, network_backward_formula(mlp)):
        kernel = getattr(kernels, f.name)
        r = verify_network(f, kernel, dtype, np.random.default_rng(5))
        assert r.ok, (r.name, r.max_ulp)


def test_mpmath_check_catches_a_wrong_gradient(kernels):
    def wrong(*args):
        dX, dW1, dW2, dw3 = kernels.mlp_backward(*args)
        return dX, dW1 * (1 + 1e-9), dW2, dw3  # off by 1e-9: far above the bound

    r = verify_network(network_backward_formula(mlp), wrong, np.float64,
                       np.random.default_rng(5))
    assert not r.ok


SHAPES = [(1, 1, 1, 1), (7, 5, 4, 3), (64, 33, 17, 9), (300, 64, 50, 20)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_against_torch_autograd(kernels, shape, dtype):
    rng = np.random.default_rng(sum(shape))
    X, W1, W2, w3, df = _problem(rng, *shape, dtype)
    f = kernels.mlp_forward(X, W1, W2, w3)
    grads = kernels.mlp_backward(X, W1, W2, w3, df)
    assert f.dtype == dtype and all(g.dtype == dtype for g in grads)
    rf, rgrads = _torch([torch.sigmoid] * 2, X, [W1, W2], w3, df)
    # Both sides round dot products of length <= n in another order (BLAS blocking):
    # each within n u of the terms, which are of the order of the largest entry.
    bound = (sum(shape[1:]) + 12) * np.finfo(dtype).eps
    _normwise(f, rf, bound)
    for g, r in zip(grads, rgrads, strict=True):
        assert g.shape == r.shape
        _normwise(g, r, bound)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_groups_run_in_parts_on_threads(kernels, monkeypatch, dtype):
    """Large batches run as groups of rows, in parts on several threads: the results
    match PyTorch, and do not depend on the number of parts (the groups depend on m
    alone), with or without the memo."""
    mod = sys.modules[kernels.mlp_backward.__module__]
    X, W1, W2, w3, df = _problem(np.random.default_rng(8), 1100, 24, 20, 9, dtype)
    results = []
    for parts in (1, 2, 3, 8):
        monkeypatch.setattr(mod, "_blas_parts", lambda items, size, parts=parts: min(parts, items))
        f = kernels.mlp_forward(X, W1, W2, w3)
        results.append((f, *kernels.mlp_backward(X, W1, W2, w3, df),
                        *kernels.mlp_backward(X, W1, W2, w3, df)))  # the memo, then without
    for other in results[1:]:
        for got, ref in zip(other, results[0], strict=True):
            np.testing.assert_array_equal(got, ref)
    rf, rgrads = _torch([torch.sigmoid] * 2, X, [W1, W2], w3, df)
    bound = (24 + 20 + 9 + 12) * np.finfo(dtype).eps  # as in test_against_torch_autograd
    for got, ref in zip(results[-1], [rf, *rgrads, *rgrads], strict=True):
        _normwise(got, ref, bound)
    if mod._BLAS.api is not None:
        assert mod._BLAS.users == 0


def test_against_finite_differences(kernels):
    rng = np.random.default_rng(3)
    X, W1, W2, w3, df = _problem(rng, 4, 3, 3, 2, np.float64)
    params = [X, W1, W2, w3]

    def loss(ps):
        return float(np.sum(df * kernels.mlp_forward(*ps)))

    grads = kernels.mlp_backward(X, W1, W2, w3, df)
    h = 1e-6
    for p, (k, g) in enumerate(zip(params, grads, strict=True)):
        for idx in np.ndindex(g.shape):
            up = [a.copy() for a in params]
            dn = [a.copy() for a in params]
            up[p][idx] += h
            dn[p][idx] -= h
            fd = (loss(up) - loss(dn)) / (2 * h)
            # Central differences: O(h^2) truncation plus O(u / h) rounding, ~1e-10 here.
            assert abs(fd - g[idx]) < 1e-8, (k, idx, fd, g[idx])


def test_dtypes_views_and_empty_batch(kernels):
    rng = np.random.default_rng(4)
    X, W1, W2, w3, df = _problem(rng, 10, 6, 5, 4, np.float64)
    ref = kernels.mlp_backward(X, W1, W2, w3, df)
    # Non-contiguous views and a transposed weight give the same result.
    Xv = np.asfortranarray(np.repeat(X, 2, axis=0)[::2])
    W1v = np.ascontiguousarray(W1.T).T
    for a, b in zip(kernels.mlp_backward(Xv, W1v, W2, w3, df), ref, strict=True):
        np.testing.assert_array_equal(a, b)
    # Integers become float64; a float32 mixed with float64 computes in float64.
    fi = kernels.mlp_forward(np.round(X * 3).astype(int), W1, W2, w3)
    assert fi.dtype == np.float64
    assert kernels.mlp_forward(X.astype(np.float32), W1, W2, w3).dtype == np.float64
    # An empty batch: no outputs, zero weight gradients (as PyTorch gives).
    assert kernels.mlp_forward(X[:0], W1, W2, w3).shape == (0,)
    dX, dW1, dW2, dw3 = kernels.mlp_backward(X[:0], W1, W2, w3, df[:0])
    assert dX.shape == (0, 6) and not dW1.any() and not dW2.any() and not dw3.any()


def test_bad_shapes_name_the_argument(kernels):
    X, W1, W2, w3, df = _problem(np.random.default_rng(0), 5, 4, 3, 2, np.float64)
    with pytest.raises(ValueError, match="'W1'"):
        kernels.mlp_forward(X, W1[:, :3], W2, w3)
    with pytest.raises(ValueError, match="'W2'"):
        kernels.mlp_forward(X, W1, W2.T, w3)
    with pytest.raises(ValueError, match="'w3'"):
        kernels.mlp_forward(X, W1, W2, w3[:1])
    with pytest.raises(ValueError, match="'X'"):
        kernels.mlp_forward(X[0], W1, W2, w3)
    with pytest.raises(ValueError, match="'w3'"):
        kernels.mlp_forward(X, W1, W2, w3[:, None])
    with pytest.raises(ValueError, match="'df'"):
        kernels.mlp_backward(X, W1, W2, w3, df[:4])
    with pytest.raises(TypeError, match="'df'"):
        kernels.mlp_backward(X, W1, W2, w3, df.astype(complex))


DEEP = '''
from symdl.formula import Layer, Network
from symdl.library.activations import sigmoid, tanh

deep = Network("deep_forward", "Mine", "Three layers", "tanh, sigmoid, tanh.",
               layers=(Layer("Wa", tanh), Layer("Wb", sigmoid), Layer("Wc", tanh)),
               readout="v")
FORMULAS = [deep]
'''


def test_a_user_network_of_other_depth_and_activations(tmp_path):
    """Depth, widths and activations are parameters: a 3-layer tanh/sigmoid/tanh
    network from a formula file gets kernels that agree with PyTorch and mpmath."""
    (tmp_path / "deep.py").write_text(DEEP)
    out = tmp_path / "out"
    assert main(["generate", "--formulas", str(tmp_path / "deep.py"), "--out", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("user_deep", out / "kernels" / "deep.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["user_deep"] = mod
    spec.loader.exec_module(mod)
    assert "1 - A_{1}^{\\circ {2}}" in (out / "sheet" / "deep.tex").read_text()
    rng = np.random.default_rng(9)
    for dtype in (np.float64, np.float32):
        X = rng.standard_normal((40, 7)).astype(dtype)
        Ws = [(rng.standard_normal(s) / np.sqrt(s[1])).astype(dtype)
              for s in [(6, 7), (5, 6), (3, 5)]]
        v, df = rng.standard_normal(3).astype(dtype), rng.standard_normal(40).astype(dtype)
        f = mod.deep_forward(X, *Ws, v)
        grads = mod.deep_backward(X, *Ws, v, df)
        rf, rgrads = _torch([torch.tanh, torch.sigmoid, torch.tanh], X, Ws, v, df)
        bound = (7 + 6 + 5 + 3 + 16) * np.finfo(dtype).eps
        _normwise(f, rf, bound)
        for g, r in zip(grads, rgrads, strict=True):
            _normwise(g, r, bound)
    assert main(["verify", "--formulas", str(tmp_path / "deep.py"), "--out", str(out)]) == 0


def test_reference_is_the_definition_not_the_chain():
    """network_reference differentiates the expanded forward pass: on a 1-unit network
    it matches the scalar f = c s(b s(a x)), differentiated directly by SymPy."""
    x, a, b, c = sp.symbols("x a b c", real=True)
    sig = sp.Lambda(x, 1 / (1 + sp.exp(-x)))
    f = c * sig(b * sig(a * x))
    vals = {x: sp.Rational(3, 8), a: sp.Rational(-1, 2), b: sp.Rational(5, 4), c: 2}
    arrays = {"X": np.array([[0.375]]), "W1": np.array([[-0.5]]), "W2": np.array([[1.25]]),
              "w3": np.array([2.0])}
    ref = network_reference(mlp, arrays, np.array([1.0]))
    for name, sym in (("dX", x), ("dW1", a), ("dW2", b), ("dw3", c)):
        exact = sp.diff(f, sym).subs(vals).evalf(40)
        assert abs(float(ref[name].ravel()[0] - exact)) < 1e-30


def test_network_definitions_are_checked():
    with pytest.raises(FormulaError, match="at least one layer"):
        Network("net", "S", "T", "d", layers=())
    with pytest.raises(FormulaError, match="distinct"):
        Network("net", "S", "T", "d", layers=(Layer("W", sigmoid), Layer("W", sigmoid)))
    with pytest.raises(FormulaError, match="reserved"):
        Network("net", "S", "T", "d", layers=(Layer("A1", sigmoid),))
    with pytest.raises(FormulaError, match="activation"):
        Layer("W", mlp)


def test_pure_python_run_agrees_with_jit():
    """The generated network code runs with NUMBA_DISABLE_JIT=1 too (np.dot with out,
    prange as range): it works by construction, not by an accident of Numba's typing."""
    import json
    import os
    import subprocess

    code = ("import json, numpy as np; import symdl.kernels as k;"
            "r = np.random.default_rng(1); X, W1, W2 = r.standard_normal((9, 4)), "
            "r.standard_normal((3, 4)), r.standard_normal((2, 3)); w3, df = "
            "r.standard_normal(2), r.standard_normal(9);"
            "print(json.dumps([k.mlp_forward(X, W1, W2, w3).tolist()] + "
            "[g.tolist() for g in k.mlp_backward(X, W1, W2, w3, df)]))")
    runs = []
    for disable in ("1", "0"):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "NUMBA_DISABLE_JIT": disable}, timeout=300)
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout))
    for a, b in zip(*runs, strict=True):
        # Same BLAS calls; the loops may fuse a*b+c into an FMA under the JIT.
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-14, atol=1e-15)


# ---- the activation memo: mlp_backward reuses mlp_forward's activations --------------
@pytest.fixture
def cores(kernels, monkeypatch):
    """Records which backward core runs: "full" (forward again) or "resume" (the
    activations kept by mlp_forward)."""
    mod = sys.modules[kernels.mlp_backward.__module__]
    ran = []
    for name, tag in (("_mlp_backward_run", "full"), ("_mlp_backward_resume", "resume")):
        core = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _c=core, _t=tag: (ran.append(_t), _c(*a)))
    return ran


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_memo_reuses_activations_bit_for_bit(kernels, cores, dtype):
    X, W1, W2, w3, df = _problem(np.random.default_rng(5), 40, 12, 9, 7, dtype)
    kernels.mlp_forward(X, W1, W2, w3)
    kept = kernels.mlp_backward(X, W1, W2, w3, df)
    # The memo is handed over once: a second call computes the forward pass again.
    again = kernels.mlp_backward(X, W1, W2, w3, df)
    assert cores == ["resume", "full"]
    for a, b in zip(kept, again, strict=True):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    # Equal copies (other objects, same bits) are the same inputs.
    kernels.mlp_forward(X, W1, W2, w3)
    kernels.mlp_backward(X.copy(), W1.copy(), W2.copy(), w3.copy(), df)
    assert cores[-1] == "resume"


def _fresh_backward(kernels, *args):
    return kernels.mlp_backward(*[a.copy() for a in args])


def test_memo_recomputes_after_in_place_changes(kernels, cores):
    X, W1, W2, w3, df = _problem(np.random.default_rng(6), 30, 8, 6, 5, np.float64)
    for change in (lambda: W1.__setitem__((2, 3), W1[2, 3] + 0.5),
                   lambda: X.__setitem__((0, 0), -X[0, 0]),
                   lambda: w3.__imul__(2.0),
                   lambda: W2.__setitem__((1, 1), np.nextafter(W2[1, 1], 1.0))):
        kernels.mlp_forward(X, W1, W2, w3)
        change()  # the same arrays, modified in place (W2: by one ulp)
        got = kernels.mlp_backward(X, W1, W2, w3, df)
        assert cores[-1] == "full"
        rf, rgrads = _torch([torch.sigmoid] * 2, X, [W1, W2], w3, df)
        for g, r in zip(got, rgrads, strict=True):
            _normwise(g, r, 40 * np.finfo(np.float64).eps)


def test_memo_compares_bits_dtypes_and_threads(kernels, cores):
    import threading

    X, W1, W2, w3, df = _problem(np.random.default_rng(7), 20, 6, 5, 4, np.float64)
    X[0, 0] = 0.0
    # -0.0 == 0.0 as numbers, but not as bits: recompute (the result is the same here).
    kernels.mlp_forward(X, W1, W2, w3)
    Xn = X.copy()
    Xn[0, 0] = -0.0
    got = kernels.mlp_backward(Xn, W1, W2, w3, df)
    assert cores[-1] == "full"
    for a, b in zip(got, _fresh_backward(kernels, Xn, W1, W2, w3, df), strict=True):
        np.testing.assert_array_equal(a, b)
    # Another dtype: float32 forward, float32 inputs with a float64 df -> float64 backward.
    args32 = [a.astype(np.float32) for a in (X, W1, W2, w3)]
    kernels.mlp_forward(*args32)
    got = kernels.mlp_backward(*args32, df)
    assert cores[-1] == "full" and all(g.dtype == np.float64 for g in got)
    for a, b in zip(got, _fresh_backward(kernels, *args32, df), strict=True):
        np.testing.assert_array_equal(a, b)
    # float64 forward, float32 backward.
    kernels.mlp_forward(X, W1, W2, w3)
    got = kernels.mlp_backward(*args32, df.astype(np.float32))
    assert cores[-1] == "full" and all(g.dtype == np.float32 for g in got)
    # Another shape (a smaller batch): recompute.
    kernels.mlp_forward(X, W1, W2, w3)
    kernels.mlp_backward(X[:10], W1, W2, w3, df[:10])
    assert cores[-1] == "full"
    # One memo per thread: another thread's forward pass is not this thread's.
    t = threading.Thread(target=kernels.mlp_forward, args=(X, W1, W2, w3))
    t.start()
    t.join()
    kernels.mlp_backward(X, W1, W2, w3, df)
    assert cores[-1] == "full"


def test_memo_buffers_are_reused_without_mixing_calls(kernels, cores):
    """The arrays of a used (or replaced) memo entry are the next forward call's
    buffers: alternating batches, repeated forward calls and shape changes still give
    each call's own results, bit for bit those of a fresh process-wide computation."""
    rng = np.random.default_rng(8)
    a = _problem(rng, 30, 8, 6, 5, np.float64)
    b = _problem(rng, 30, 8, 6, 5, np.float64)
    c = _problem(rng, 17, 8, 6, 5, np.float64)  # another batch size: new buffers
    expected = {id(p): _fresh_backward(kernels, *p) for p in (a, b, c)}
    f_expected = {id(p): kernels.mlp_forward(*p[:4]) for p in (a, b, c)}
    for first, second in ((a, b), (b, a), (c, a), (a, c), (b, b)):
        f1 = kernels.mlp_forward(*first[:4])
        f2 = kernels.mlp_forward(*second[:4])  # replaces the first call's entry
        got = kernels.mlp_backward(*second)
        assert cores[-1] == "resume"
        np.testing.assert_array_equal(f1, f_expected[id(first)])
        np.testing.assert_array_equal(f2, f_expected[id(second)])
        for g, e in zip(got, expected[id(second)], strict=True):
            np.testing.assert_array_equal(g, e)
        kernels.mlp_forward(*first[:4])
        got = kernels.mlp_backward(*first)
        assert cores[-1] == "resume"
        for g, e in zip(got, expected[id(first)], strict=True):
            np.testing.assert_array_equal(g, e)
    # Reuse happens: after a backward call, the next forward call of the same shapes
    # keeps its activations in the arrays the backward call used.
    memo = sys.modules[kernels.mlp_forward.__module__]._runtime._MEMO  # (the package's)
    kernels.mlp_forward(*a[:4])
    used = memo.saved["mlp_forward"][1]
    kernels.mlp_backward(*a)
    kernels.mlp_forward(*b[:4])
    assert all(x is y for x, y in zip(memo.saved["mlp_forward"][1], used, strict=True))
