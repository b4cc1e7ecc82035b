"""symdl.jax: kernels and their derived gradients under jax.jit and jax.grad, against
jax.grad of the same formula written in jax.numpy."""

import os

import numpy as np
import pytest

try:
    import jax
    import jax.numpy as jnp
except ImportError:  # (CI installs jax with the test extra: there it must run)
    if os.environ.get("CI"):
        raise
    pytest.skip("jax is not installed (pip install -e '.[test]')", allow_module_level=True)

import symdl.jax as sj  # noqa: E402

ELEMENTWISE = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}
COSTS = {  # the formulas of the kernels' docstrings, in jax.numpy
    "gan_d_loss": (2, lambda r, f: -jnp.mean(jnp.log(r)) - jnp.mean(jnp.log1p(-f))),
    "gan_g_loss_saturating": (1, lambda f: jnp.mean(jnp.log1p(-f))),
    "gan_g_loss_nonsaturating": (1, lambda f: -jnp.mean(jnp.log(f))),
    "gan_d_loss_logits": (2, lambda r, f: -jnp.mean(jax.nn.log_sigmoid(r))
                          - jnp.mean(jax.nn.log_sigmoid(-f))),
    "gan_g_loss_saturating_logits": (1, lambda f: jnp.mean(jax.nn.log_sigmoid(-f))),
    "gan_g_loss_nonsaturating_logits": (1, lambda f: -jnp.mean(jax.nn.log_sigmoid(f))),
}


def _x64(dtype):
    return jax.enable_x64(dtype == np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_under_jit_and_grad(name, dtype):
    eps = np.finfo(dtype).eps
    with _x64(dtype):
        x = jnp.asarray(np.random.default_rng(0).standard_normal(1000) * 4, dtype=dtype)
        dy = jnp.asarray(np.random.default_rng(1).standard_normal(1000), dtype=dtype)
        fn, ref = getattr(sj, name), ELEMENTWISE[name]
        y = jax.jit(fn)(x)
        assert y.dtype == dtype
        # Both within 4 ULP of the exact value.
        np.testing.assert_allclose(y, ref(x), rtol=8 * eps, atol=0)
        dx = jax.jit(jax.grad(lambda x: jnp.vdot(fn(x), dy)))(x)
        dx_ref = jax.grad(lambda x: jnp.vdot(ref(x), dy))(x)
        # From the output y: y (1 - y) and 1 - y**2 carry y's few ULP of error as an
        # absolute error of a few eps (|y| <= 1), times dy; allow both sides' bounds.
        assert np.all(np.abs(dx - dx_ref) <= 16 * eps * (np.abs(dy) + np.abs(dx_ref)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_under_jit_and_grad(name, dtype):
    eps = np.finfo(dtype).eps
    n_args, ref = COSTS[name]
    rng = np.random.default_rng(2)
    with _x64(dtype):
        if "logits" in name:
            args = [jnp.asarray(rng.standard_normal(m), dtype) for m in (40, 30)[:n_args]]
        else:
            args = [jnp.asarray(rng.uniform(0.05, 0.95, m), dtype) for m in (40, 30)[:n_args]]
        fn = getattr(sj, name)
        J = jax.jit(fn)(*args)
        # Sums of m same-signed terms (logs of probabilities): within m eps relative.
        np.testing.assert_allclose(J, ref(*args), rtol=2 * 40 * eps, atol=0)
        argnums = tuple(range(n_args))
        grads = jax.jit(jax.grad(lambda *a: 3.0 * fn(*a), argnums=argnums))(*args)
        refs = jax.grad(lambda *a: 3.0 * ref(*a), argnums=argnums)(*args)
        for g, r in zip(grads, refs, strict=True):
            assert g.dtype == dtype and g.shape == r.shape
            np.testing.assert_allclose(g, r, rtol=16 * eps, atol=0)


def test_vmap_and_half_dtypes():
    x = jnp.linspace(-3, 3, 12, dtype=jnp.float32).reshape(3, 4)
    np.testing.assert_array_equal(jax.vmap(sj.sigmoid)(x), sj.sigmoid(x))
    # (the backward kernel under vmap: y batched, dy broadcast from the sum)
    per_row_grad = jax.vmap(jax.grad(lambda r: sj.tanh(r).sum()))(x)
    np.testing.assert_array_equal(per_row_grad, jnp.stack(
        [jax.grad(lambda r: sj.tanh(r).sum())(r) for r in x]))
    per_row = jax.vmap(sj.gan_g_loss_nonsaturating_logits)(x)
    np.testing.assert_array_equal(per_row, [sj.gan_g_loss_nonsaturating_logits(r) for r in x])
    for half in (jnp.float16, jnp.bfloat16):
        y = sj.tanh(x.astype(half))
        assert y.dtype == half  # computed in float32, returned in the input's dtype
        np.testing.assert_array_equal(y, sj.tanh(x.astype(half).astype(jnp.float32))
                                      .astype(half))


def test_bad_input_names_the_argument():
    with pytest.raises(TypeError, match=r"sigmoid\(\): argument 'x' must be a float16"):
        sj.sigmoid(jnp.arange(3))
    with pytest.raises(TypeError, match=r"argument 'l_fake' must be a JAX or NumPy array"):
        sj.gan_d_loss_logits(jnp.zeros(3), [1.0])


def test_wrap_a_users_generated_package(tmp_path):
    import importlib.util
    import subprocess
    import sys
    import textwrap

    (tmp_path / "mine.py").write_text(textwrap.dedent("""\
        import sympy as sp
        from symdl.formula import Elementwise

        x = sp.Symbol("x", real=True)
        FORMULAS = [Elementwise("softplus", "Mine", "Softplus", "A smooth ReLU.", inputs=[x],
                                outputs={"y": sp.log(1 + sp.exp(x))}, backward=True)]
        """))
    run = subprocess.run([sys.executable, "-m", "symdl.cli", "generate", "--formulas",
                          "mine.py", "--out", "pkg"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    spec = importlib.util.spec_from_file_location("mine_jax", tmp_path / "pkg/kernels/mine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mine = sj.wrap(mod)
    assert sorted(vars(mine)) == ["softplus"]
    with _x64(np.float64):
        x = jnp.linspace(-5.0, 5.0, 41)
        eps = np.finfo(np.float64).eps
        np.testing.assert_allclose(jax.jit(mine.softplus)(x), jax.nn.softplus(x),
                                   rtol=8 * eps, atol=0)
        g = jax.grad(lambda x: mine.softplus(x).sum())(x)
        # softplus' = 1 - exp(-y) from the output: y's few ULP become an absolute error
        # of a few eps times exp(-y) <= 1; the reference is sigmoid(x), within 4 ULP.
        np.testing.assert_allclose(g, jax.nn.sigmoid(x), rtol=8 * eps, atol=16 * eps)
