"""symdl.torch: the kernels as differentiable torch functions (custom ops)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("symdl.torch")


def _f64(*shape, low=None, high=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    if low is None:
        t = torch.randn(*shape, generator=g, dtype=torch.float64)
    else:
        t = low + (high - low) * torch.rand(*shape, generator=g, dtype=torch.float64)
    return t.requires_grad_()


# gradcheck compares the analytical gradient (the generated backward kernels) with
# central finite differences in float64, at its default eps=1e-6, atol=1e-5, rtol=1e-3.
CASES = {
    "sigmoid": lambda: (st.sigmoid, (_f64(7, 3),)),
    "tanh": lambda: (st.tanh, (_f64(11),)),
    # (distinct values: max pooling's derivative is a step at ties)
    "maxpool2d": lambda: (lambda x: st.maxpool2d(x, 2),
                          (torch.randperm(2 * 3 * 6 * 6, dtype=torch.float64)
                           .reshape(2, 3, 6, 6).requires_grad_(),)),
    "avgpool2d": lambda: (lambda x: st.avgpool2d(x, 2, stride=1), (_f64(2, 2, 5, 5),)),
    "gan_d_loss": lambda: (st.gan_d_loss, (_f64(5, low=0.1, high=0.9),
                                           _f64(3, low=0.1, high=0.9, seed=1))),
    "gan_g_loss_nonsaturating_logits": lambda: (st.gan_g_loss_nonsaturating_logits,
                                                (_f64(6),)),
    "gan_d_loss_logits": lambda: (st.gan_d_loss_logits, (_f64(4), _f64(5, seed=2))),
    "mlp_forward": lambda: (st.mlp_forward, (_f64(4, 3), _f64(5, 3, seed=1),
                                             _f64(2, 5, seed=2), _f64(2, seed=3))),
    "batchnorm_forward": lambda: (lambda x, g, b: st.batchnorm_forward(x, g, b)[0],
                                  (_f64(6, 3), _f64(3, seed=1), _f64(3, seed=2))),
    "conv2d": lambda: (lambda x, w, b: st.conv2d(x, w, b, stride=2, padding=1),
                       (_f64(2, 2, 5, 5), _f64(3, 2, 3, 3, seed=1), _f64(3, seed=2))),
    "dropout": lambda: (lambda x: st.dropout(x, 0.3, seed=7), (_f64(50),)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_float64(name):
    fn, inputs = CASES[name]()
    assert torch.autograd.gradcheck(fn, inputs)


def test_forward_matches_torch_and_returns_tensors():
    x = torch.randn(1000, dtype=torch.float32)
    y = st.sigmoid(x)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == x.shape
    # sigmoid is within 4 ULP of the exact value (tests/test_torch.py); so is torch's.
    torch.testing.assert_close(y, torch.sigmoid(x), rtol=8 * 2.0**-23, atol=0)
    x4 = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(st.maxpool2d(x4, 2), torch.nn.functional.max_pool2d(x4, 2),
                               rtol=0, atol=0)


def test_conversion_is_zero_copy_for_float_tensors():
    from symdl.torch._convert import from_numpy, to_numpy

    t = torch.randn(4, 6, dtype=torch.float64)
    for view in (t, t[:, ::2], t.T):  # contiguous and strided
        a = to_numpy(view)
        assert a.__array_interface__["data"][0] == view.data_ptr()
        assert a.strides == tuple(s * 8 for s in view.stride())
    a = np.arange(5.0)
    assert from_numpy(a, torch.float64).data_ptr() == a.__array_interface__["data"][0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes_compute_in_float32_and_return_the_input_dtype(dtype):
    x = torch.randn(300).to(dtype).requires_grad_()
    y = st.tanh(x)
    assert y.dtype == dtype
    # The policy: the float32 computation, rounded once to dtype.
    assert torch.equal(y.detach(), st.tanh(x.detach().float()).to(dtype))
    # So within one ULP of dtype of torch's tanh (float32 results 4 float32 ULP apart
    # can round to neighbouring values of dtype).
    ref = torch.tanh(x.detach().float()).to(dtype).float()
    assert torch.allclose(y.detach().float(), ref, rtol=torch.finfo(dtype).eps, atol=0)
    y.sum().backward()
    assert x.grad.dtype == dtype


def test_other_dtypes_and_devices_are_refused_naming_the_argument():
    with pytest.raises(TypeError, match=r"sigmoid\(\): argument 'x' must be a float16"):
        st.sigmoid(torch.arange(3))
    with pytest.raises(TypeError, match=r"argument 'x' must be a torch.Tensor"):
        st.sigmoid(np.zeros(3))
    # (a CPU build of torch has no CUDA device; 'meta' goes through the same check)
    with pytest.raises(ValueError, match=r"argument 'x' is on meta.*CPU only.*x.cpu\(\)"):
        st.sigmoid(torch.zeros(3, device="meta"))


def test_inputs_that_do_not_require_grad_cost_no_backward_work(monkeypatch):
    from symdl.torch import _glue

    calls = []
    real = _glue._conv.conv2d_backward
    monkeypatch.setattr(_glue._conv, "conv2d_backward",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    y = st.conv2d(x, w)
    assert not y.requires_grad  # nothing recorded, nothing to run backward for
    w.requires_grad_()
    loss = st.sigmoid(st.conv2d(x, w)).sum()
    (gw,) = torch.autograd.grad(loss, [w])
    assert calls == [1] and gw.shape == w.shape
    # A function with grad mode on but no input requiring grad records no graph either.
    assert st.sigmoid(x).grad_fn is None


@pytest.mark.parametrize("name", ["sigmoid", "mlp_forward", "gan_d_loss_logits",
                                  "maxpool2d", "conv2d", "batchnorm_forward"])
def test_torch_compile_fullgraph_forward_and_backward(name):
    torch._dynamo.reset()
    fn, inputs = CASES[name]()
    expected = fn(*inputs)
    expected_grads = torch.autograd.grad(expected.sum(), inputs)
    # aot_eager: dynamo's graph capture (fullgraph: a graph break is an error) and
    # AOTAutograd's joint forward/backward trace with the fake implementations.
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got = compiled(*inputs)
    got_grads = torch.autograd.grad(got.sum(), inputs)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for g, e in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_torch_compile_inductor_fullgraph():
    torch._dynamo.reset()

    def f(x):
        return st.gan_g_loss_nonsaturating_logits(st.tanh(x) * 2)

    x = _f64(64)
    compiled = torch.compile(f, fullgraph=True)
    (g,) = torch.autograd.grad(compiled(x), [x])
    (ref,) = torch.autograd.grad(f(x), [x])
    torch.testing.assert_close(g, ref, rtol=4 * 2.0**-52, atol=0)


def test_wrap_a_users_generated_package(tmp_path):
    (tmp_path / "my_formulas.py").write_text(textwrap.dedent("""\
        import sympy as sp
        from symdl.formula import Elementwise

        x = sp.Symbol("x", real=True)
        softplus = Elementwise("softplus", "Mine", "Softplus", "A smooth ReLU.",
                               inputs=[x], outputs={"y": sp.log(1 + sp.exp(x))},
                               backward=True)
        FORMULAS = [softplus]
        """))
    run = subprocess.run([sys.executable, "-m", "symdl.cli", "generate", "--formulas",
                          "my_formulas.py", "--out", "mypkg"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    code = textwrap.dedent("""\
        import importlib.util, torch, symdl.torch
        spec = importlib.util.spec_from_file_location("my_formulas",
                                                      "mypkg/kernels/my_formulas.py")
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        mine = symdl.torch.wrap(mod)
        x = torch.randn(40, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(mine.softplus, (x,))
        y = mine.softplus(x)
        torch.testing.assert_close(y, torch.nn.functional.softplus(x), rtol=1e-14, atol=0)
        f = torch.compile(mine.softplus, fullgraph=True, backend="aot_eager")
        torch.testing.assert_close(f(x), y, rtol=0, atol=0)
        print("ok", sorted(vars(mine)))
        """)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", "['softplus']"]


def test_every_kernel_with_a_derived_gradient_has_a_torch_function():
    import importlib

    import symdl.kernels
    from symdl.interop import differentiable_kernels

    modules = {m for m in symdl.kernels._KERNELS.values()}
    found = set()
    for m in modules:
        found |= set(differentiable_kernels(importlib.import_module(f"symdl.kernels.{m}")))
    assert found == {"sigmoid", "tanh", "maxpool2d", "avgpool2d", "conv2d", "mlp_forward",
                     "batchnorm_forward", *(n for n in symdl.kernels.__all__
                                            if n.startswith("gan_") and not n.endswith("_grad"))}
    assert found <= set(st.__all__)
    for name in found:
        assert callable(getattr(st, name)) and getattr(st, name).__doc__


def _opcheck_cases():
    def t(*shape, grad=True):
        return _f64(*shape) if grad else _f64(*shape).detach()

    x4 = t(2, 3, 6, 6)
    return {
        "sigmoid": (t(5),),
        "sigmoid_backward": (t(5, grad=False), t(5, grad=False)),
        "maxpool2d": (x4, 2, None),
        "maxpool2d_backward": (x4.detach(), t(2, 3, 3, 3, grad=False), 2, None),
        "gan_d_loss_logits": (t(4), t(3)),
        "gan_d_loss_logits_grad": (t(4, grad=False), t(3, grad=False)),
        "mlp_forward": (t(4, 3), t(5, 3), t(2, 5), t(2)),
        "mlp_backward": (t(4, 3, grad=False), t(5, 3, grad=False), t(2, 5, grad=False),
                         t(2, grad=False), t(4, grad=False)),
        "conv2d": (x4, t(4, 3, 3, 3), t(4), 1, 1),
        "conv2d_backward": (x4.detach(), t(4, 3, 3, 3, grad=False),
                            t(2, 4, 6, 6, grad=False), 1, 1),
        "batchnorm_forward": (t(8, 3), t(3), t(3), 1e-5),
        "batchnorm_backward": (t(8, 3, grad=False), t(8, 3, grad=False), t(3, grad=False),
                               t(3, grad=False), t(3, grad=False).abs(), 1e-5),
        "dropout": (t(5), 0.3, torch.tensor(3), True),
        "dropout_inference": (t(5), 0.3, False),
    }


@pytest.mark.parametrize("name", sorted(_opcheck_cases()))
def test_custom_op_registration_passes_torch_opcheck(name):
    """torch.library.opcheck: the schema, the autograd registration, the fake
    implementation against the real one, and AOT dispatch with dynamic shapes."""
    args = _opcheck_cases()[name]
    torch.library.opcheck(getattr(torch.ops.symdl, name).default, args)
