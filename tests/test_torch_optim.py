"""symdl.torch.optim: torch.optim's Adam and RMSprop, computed by the generated kernels."""

import copy
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
optim = pytest.importorskip("symdl.torch.optim")

import symdl.kernels.optimizers as optimizer_kernels  # noqa: E402

CONFIGS = [
    ("Adam", {}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.003, "alpha": 0.9, "eps": 1e-6, "momentum": 0.9}),
]


def _params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, generator=g, dtype=dtype).requires_grad_(),
            torch.randn(7, generator=g, dtype=dtype).requires_grad_()]


def _set_grads(params, k, dtype):
    g = torch.Generator().manual_seed(100 + k)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype)


def _decay_error(dtype, kwargs):
    """The kernels compute in the arrays' type, decay rates too: in float32 a rate b
    is rounded (relative error eps/2) before 1 - b, whose relative error is then
    (eps/2) * b / (1 - b) (1.3e-5 for b = 0.999); torch forms 1 - b in double. In
    float64 both sides take the same double."""
    if dtype == torch.float64:
        return 0.0
    rates = [*kwargs.get("betas", (0.9, 0.999)), kwargs.get("alpha", 0.99)]
    return max(torch.finfo(dtype).eps / 2 * b / (1 - b) for b in rates)


def _assert_one_step_close(ours, ref, before, eps, decay_error=0.0):
    """After one step from the same parameters and state, the two differ by rounding
    only: each side computes the update u with about 12 roundings (relative error eps
    each; plus the decay rates' error) and adds it to theta with one more
    (eps * |theta|)."""
    for p, r, b in zip(ours, ref, before, strict=True):
        u = (b - r).abs()
        bound = (32 * eps + 2 * decay_error) * u + 2 * eps * r.abs()
        assert torch.all((p.detach() - r.detach()).abs() <= bound), (p - r).abs().max()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name, kwargs", CONFIGS)
def test_step_by_step_equal_to_torch_and_state_dicts_interchange(name, kwargs, dtype):
    eps = torch.finfo(dtype).eps
    decay = _decay_error(dtype, kwargs)
    ref_params, our_params = _params(dtype), _params(dtype)
    ref = getattr(torch.optim, name)(ref_params, **kwargs)
    ours = getattr(optim, name)(our_params, **kwargs)
    for k in range(12):
        # Start from torch's parameters and state: torch's state_dict loads into ours.
        with torch.no_grad():
            for p, r in zip(our_params, ref_params, strict=True):
                p.copy_(r)
        old = copy.deepcopy(ref.state_dict())["state"]
        ours.load_state_dict(copy.deepcopy(ref.state_dict()))
        before = [r.detach().clone() for r in ref_params]
        _set_grads(ref_params, k, dtype)
        _set_grads(our_params, k, dtype)
        ref.step()
        ours.step()
        _assert_one_step_close(our_params, ref_params, before, eps, decay)
        ref_state, our_state = ref.state_dict(), ours.state_dict()
        assert our_state["param_groups"] == ref_state["param_groups"]
        for i, rs in ref_state["state"].items():
            assert our_state["state"][i].keys() == rs.keys()
            for key, value in rs.items():
                # new = a * old + term, with 3 or 4 roundings on each side, each
                # relative to a term, and |term| <= |new| + |old|.
                scale = value.abs() + old.get(i, {}).get(key, torch.zeros(())).abs()
                diff = (our_state["state"][i][key] - value).abs()
                assert torch.all(diff <= (8 * eps + decay) * scale)
    # Ours loads into torch's optimizer, which then continues as ours does.
    ref2 = getattr(torch.optim, name)(ref_params, **kwargs)
    ref2.load_state_dict(copy.deepcopy(ours.state_dict()))
    with torch.no_grad():
        for p, r in zip(ref_params, our_params, strict=True):
            p.copy_(r)
    before = [p.detach().clone() for p in our_params]
    _set_grads(ref_params, 99, dtype)
    _set_grads(our_params, 99, dtype)
    ref2.step()
    ours.step()
    _assert_one_step_close(our_params, ref_params, before, eps, decay)


def test_torch_options_the_kernel_does_not_compute_are_refused():
    p = _params(torch.float64)
    for kwargs in ({"weight_decay": 0.1}, {"amsgrad": True}, {"maximize": True}):
        with pytest.raises(ValueError, match=f"Adam: {next(iter(kwargs))}="):
            optim.Adam(p, **kwargs)
    with pytest.raises(ValueError, match="RMSprop: centered=True"):
        optim.RMSprop(p, centered=True)
    half = [torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)]
    half[0].grad = torch.ones(3, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="float32 or float64.*bfloat16"):
        optim.Adam(half).step()
    # A bad value reaches the kernel's own check, which names it.
    bad = optim.Adam(p, betas=(1.5, 0.999))
    _set_grads(p, 0, torch.float64)
    with pytest.raises(ValueError, match="beta1"):
        bad.step()


def test_rmsprop_without_momentum_keeps_no_momentum_buffer_like_torch():
    p = _params(torch.float64)
    o = optim.RMSprop(p)
    _set_grads(p, 0, torch.float64)
    o.step()
    assert set(o.state[p[0]]) == {"step", "square_avg"}


ADAMW = textwrap.dedent("""\
    import sympy as sp
    from symdl.formula import Elementwise, Param

    theta, grad, m, v = sp.symbols("theta grad m v", real=True)
    m_t, v_t, mhat, vhat = sp.symbols("m_t v_t mhat vhat", real=True)
    lr, beta1, beta2, eps, wd, t = sp.symbols("lr beta1 beta2 eps weight_decay t", real=True)
    adamw_step = Elementwise(
        "adamw_step", "Mine", "AdamW", "Adam with decoupled weight decay.",
        inputs=[theta, grad, m, v],
        params=[Param("t", None, "count", "step"), Param("lr", 1e-3, "nonnegative", "lr"),
                Param("beta1", 0.9, "unit_interval_open", "b1"),
                Param("beta2", 0.999, "unit_interval_open", "b2"),
                Param("eps", 1e-8, "nonnegative", "eps"),
                Param("weight_decay", 1e-2, "nonnegative", "decay")],
        steps={"m_t": beta1 * m + (1 - beta1) * grad,
               "v_t": beta2 * v + (1 - beta2) * grad**2,
               "mhat": m_t / (1 - beta1**t), "vhat": v_t / (1 - beta2**t)},
        updates={"theta": theta * (1 - lr * wd) - lr * mhat / (sp.sqrt(vhat) + eps),
                 "m": m_t, "v": v_t})
    FORMULAS = [adamw_step]
    """)


def test_a_users_update_formula_becomes_an_optimizer_equal_to_torch(tmp_path):
    (tmp_path / "adamw.py").write_text(ADAMW)
    run = subprocess.run([sys.executable, "-m", "symdl.cli", "generate", "--formulas",
                          "adamw.py", "--out", "pkg"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    import importlib.util

    spec = importlib.util.spec_from_file_location("adamw_kernels",
                                                  tmp_path / "pkg" / "kernels" / "adamw.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    AdamW = optim.optimizer_class(mod.adamw_step)
    assert issubclass(AdamW, torch.optim.Optimizer) and AdamW.__name__ == "Adamw"
    assert list(optim.optimizers(mod)) == ["Adamw"]
    assert sorted(optim.optimizers(optimizer_kernels)) == ["Adam", "Rmsprop"]
    ref_params, our_params = _params(torch.float64), _params(torch.float64)
    ref = torch.optim.AdamW(ref_params, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)
    ours = AdamW(our_params, lr=0.01, beta1=0.8, beta2=0.99, weight_decay=0.1)
    eps = torch.finfo(torch.float64).eps
    for k in range(5):
        with torch.no_grad():
            for p, r in zip(our_params, ref_params, strict=True):
                p.copy_(r)
        for p, r in zip(our_params, ref_params, strict=True):
            # (the same moments: the state keys are the formula's names m, v)
            if r in ref.state:
                ours.state[p] = {"step": ref.state[r]["step"].clone(),
                                 "m": ref.state[r]["exp_avg"].clone(),
                                 "v": ref.state[r]["exp_avg_sq"].clone()}
        before = [r.detach().clone() for r in ref_params]
        _set_grads(ref_params, k, torch.float64)
        _set_grads(our_params, k, torch.float64)
        ref.step()
        ours.step()
        _assert_one_step_close(our_params, ref_params, before, eps)
    with pytest.raises(TypeError, match="unknown argument 'betas'"):
        AdamW(our_params, betas=(0.9, 0.99))


def test_a_step_between_forward_and_backward_is_detected_as_torch_does():
    p = _params(torch.float64)[1]
    x = torch.randn(7, dtype=torch.float64)
    loss = (p * p * x).sum()  # saves p for the backward
    p.grad = torch.ones_like(p)
    optim.Adam([p]).step()  # writes p through the kernel
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
