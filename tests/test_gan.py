"""GAN costs: kernels against mpmath, finite differences and PyTorch; bad input; stability."""

import math

import mpmath
import numpy as np
import pytest
import sympy as sp

from symdl.derive import DerivationError, gradient_formula
from symdl.formula import BatchReduction, FormulaError, SampleBatch
from symdl.library import gan
from symdl.stable import stabilize

torch = pytest.importorskip("torch")
F = torch.nn.functional

PROB_COSTS = ["gan_d_loss", "gan_g_loss_saturating", "gan_g_loss_nonsaturating"]
ALL_COSTS = PROB_COSTS + [c + "_logits" for c in PROB_COSTS]
ONE_BATCH = {"gan_g_loss_saturating", "gan_g_loss_nonsaturating"}


def _args(name, rng, dtype, m_real=1000, m_fake=777):
    """Inputs of a cost: probabilities strictly inside (0, 1), or logits."""
    if name.endswith("_logits"):
        make = lambda m: (rng.standard_normal(m) * 6).astype(dtype)  # noqa: E731
    else:
        make = lambda m: rng.uniform(0.01, 0.99, m).astype(dtype)  # noqa: E731
    base = name.removesuffix("_logits")
    return [make(m_fake)] if base in ONE_BATCH else [make(m_real), make(m_fake)]


def _torch_cost(name, *ts):
    """The costs as PyTorch writes them: BCE on probabilities, log-sigmoid on logits."""
    if name == "gan_d_loss":
        r, f = ts
        return F.binary_cross_entropy(r, torch.ones_like(r)) + F.binary_cross_entropy(
            f, torch.zeros_like(f))
    if name == "gan_g_loss_saturating":
        return -F.binary_cross_entropy(ts[0], torch.zeros_like(ts[0]))
    if name == "gan_g_loss_nonsaturating":
        return F.binary_cross_entropy(ts[0], torch.ones_like(ts[0]))
    if name == "gan_d_loss_logits":
        r, f = ts
        return -F.logsigmoid(r).mean() - F.logsigmoid(-f).mean()
    if name == "gan_g_loss_saturating_logits":
        return F.logsigmoid(-ts[0]).mean()
    return -F.logsigmoid(ts[0]).mean()


def _torch_bce_logits(name, *ts):
    """A second PyTorch form on logits: binary_cross_entropy_with_logits."""
    bce = F.binary_cross_entropy_with_logits
    if name == "gan_d_loss_logits":
        r, f = ts
        return bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
    if name == "gan_g_loss_saturating_logits":
        return -bce(ts[0], torch.zeros_like(ts[0]))
    return bce(ts[0], torch.ones_like(ts[0]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ALL_COSTS)
def test_cost_and_gradient_match_torch_autograd(kernels, name, dtype):
    rng = np.random.default_rng(10)
    args = _args(name, rng, dtype)
    # The reference runs in float64 from the same (rounded) inputs, so it is accurate to
    # ~1e-15; the kernels promise a few ULP of their dtype: 8 eps bounds both.
    ts = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in args]
    J = _torch_cost(name, *ts)
    J.backward()
    eps = np.finfo(dtype).eps
    cost = getattr(kernels, name)(*args)
    assert abs(cost - J.item()) <= 8 * eps * abs(J.item())
    grads = getattr(kernels, name + "_grad")(*args)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for g, a, t in zip(grads, args, ts, strict=True):
        assert g.dtype == dtype and g.shape == a.shape
        ref = t.grad.numpy()
        assert np.all(np.abs(g - ref) <= 8 * eps * np.abs(ref))
    if name.endswith("_logits"):
        ts2 = [torch.tensor(a.astype(np.float64)) for a in args]
        J2 = _torch_bce_logits(name, *ts2).item()
        assert abs(cost - J2) <= 8 * eps * abs(J2)


@pytest.mark.parametrize("name", ALL_COSTS)
def test_gradient_matches_finite_differences(kernels, name):
    rng = np.random.default_rng(11)
    args = _args(name, rng, np.float64, m_real=5, m_fake=4)
    cost = getattr(kernels, name)
    grads = getattr(kernels, name + "_grad")(*args)
    grads = grads if isinstance(grads, tuple) else (grads,)
    h = 1e-6
    for k, a in enumerate(args):
        for i in range(a.size):
            up = [x.copy() for x in args]
            dn = [x.copy() for x in args]
            up[k][i] += h
            dn[k][i] -= h
            fd = (cost(*up) - cost(*dn)) / (2 * h)
            # Central differences: truncation O(h^2 J''') ~ 1e-10 for D in [0.01, 0.99]
            # (J''' ~ 1/D^3 / m), rounding ~ eps*|J|/h ~ 1e-9.
            assert abs(grads[k][i] - fd) <= 1e-8, (k, i)


def _softplus_exact(x):
    with mpmath.workdps(60):
        return mpmath.log1p(mpmath.exp(mpmath.mpf(x)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logits_up_to_1e4_are_finite_and_accurate(kernels, dtype):
    """Each cost of a single extreme logit against softplus in mpmath: -log D(l) =
    softplus(-l) and -log(1 - D(l)) = softplus(l) (identities, not the kernels' code)."""
    eps = float(np.finfo(dtype).eps)
    for v in [-1e4, -745.0, -100.0, -40.0, -1.0, 0.0, 1.0, 40.0, 100.0, 745.0, 1e4]:
        x = np.array([v], dtype=dtype)
        with np.errstate(all="raise"):
            nonsat = kernels.gan_g_loss_nonsaturating_logits(x)
            sat = kernels.gan_g_loss_saturating_logits(x)
            d = kernels.gan_d_loss_logits(x, x)
            grads = [kernels.gan_g_loss_nonsaturating_logits_grad(x),
                     kernels.gan_g_loss_saturating_logits_grad(x),
                     *kernels.gan_d_loss_logits_grad(x, x)]
        xv = float(x[0])
        for got, exact in [(nonsat, _softplus_exact(-xv)), (sat, -_softplus_exact(xv)),
                           (d, _softplus_exact(-xv) + _softplus_exact(xv))]:
            assert np.isfinite(got)
            # 4 ULP of the dtype (the terms are computed in it), plus the smallest normal.
            assert abs(got - float(exact)) <= 4 * eps * abs(float(exact)) + np.finfo(dtype).tiny
        with mpmath.workdps(60):
            sig = 1 / (1 + mpmath.exp(-mpmath.mpf(xv)))
        for got, exact in zip(grads, [sig - 1, -sig, sig - 1, sig], strict=True):
            assert np.all(np.isfinite(got))
            # 4 ULP, where a subnormal result's ULP is the smallest subnormal.
            tiny = float(np.finfo(dtype).smallest_subnormal)
            assert abs(float(got[0]) - float(exact)) <= 4 * eps * abs(float(exact)) + 4 * tiny


def test_probability_endpoints(kernels):
    with np.errstate(all="raise"):
        assert kernels.gan_g_loss_nonsaturating(np.array([0.0, 0.5])) == np.inf
        assert kernels.gan_g_loss_saturating(np.array([1.0, 0.5])) == -np.inf
        assert kernels.gan_d_loss([1.0], [0.0]) == 0.0
    with np.errstate(divide="ignore"):
        g = kernels.gan_g_loss_nonsaturating_grad(np.array([0.0, 1.0]))
    assert g[0] == -np.inf and g[1] == -0.5


@pytest.mark.parametrize("name", ["gan_d_loss", "gan_d_loss_grad"])
def test_bad_probabilities_name_the_argument(kernels, name):
    fn = getattr(kernels, name)
    with pytest.raises(ValueError, match="'d_real'.*probabilities"):
        fn([0.5, 1.5], [0.5])
    with pytest.raises(ValueError, match="'d_fake'.*probabilities"):
        fn([0.5], [-0.1])
    with pytest.raises(ValueError, match="'d_fake'"):
        fn([0.5], [np.nan])
    with pytest.raises(ValueError, match="'d_real'.*empty"):
        fn([], [0.5])
    with pytest.raises(ValueError, match="'d_fake'.*empty"):
        fn([0.5], np.empty(0))
    with pytest.raises(ValueError, match="'d_real'.*1-D"):
        fn(np.full((2, 2), 0.5), [0.5])
    with pytest.raises(TypeError, match="'d_fake'"):
        fn([0.5], ["a"])


@pytest.mark.parametrize("name", ["gan_g_loss_saturating_logits",
                                  "gan_g_loss_nonsaturating_logits_grad"])
def test_empty_logit_batch_is_refused(kernels, name):
    with pytest.raises(ValueError, match="'l_fake'.*empty"):
        getattr(kernels, name)(np.empty(0))


def test_batches_of_different_lengths_and_dtypes(kernels):
    r = np.linspace(-3, 3, 11, dtype=np.float32)
    f = np.linspace(-2, 2, 4)
    g_real, g_fake = kernels.gan_d_loss_logits_grad(r, f)
    assert g_real.shape == (11,) and g_fake.shape == (4,)
    assert g_real.dtype == g_fake.dtype == np.float64  # mixed dtypes: float64
    assert kernels.gan_d_loss_logits_grad(r, r)[0].dtype == np.float32
    # Integer logits become float64; a strided view gives what its copy gives.
    nonsat = kernels.gan_g_loss_nonsaturating_logits
    assert nonsat([0, 1]) == nonsat(np.array([0.0, 1.0]))
    v = np.linspace(-5, 5, 40)[::3]
    assert kernels.gan_d_loss_logits(v, v) == kernels.gan_d_loss_logits(v.copy(), v.copy())


def test_sums_are_identical_for_any_thread_count_and_core(kernels):
    import numba

    from symdl.kernels import gan as mod

    rng = np.random.default_rng(12)
    r = rng.standard_normal(300_001) * 5
    f = rng.standard_normal(100_003) * 5
    results = []
    saved = mod.PARALLEL_THRESHOLD
    threads = numba.get_num_threads()
    try:
        for threshold, nthreads in [(10**12, 1), (0, 1), (0, threads)]:
            mod.PARALLEL_THRESHOLD = threshold
            numba.set_num_threads(nthreads)
            results.append((kernels.gan_d_loss_logits(r, f), kernels.gan_d_loss(
                1 / (1 + np.exp(-r)), 1 / (1 + np.exp(-f)))))
    finally:
        mod.PARALLEL_THRESHOLD = saved
        numba.set_num_threads(threads)
    assert results[0] == results[1] == results[2]


def test_large_sum_is_accurate(kernels):
    """10^6 terms (many blocks): compensated sums keep a few ULP, where a plain float64
    loop would drift by ~sqrt(n) ULP."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal(1_000_000) * 3
    got = kernels.gan_g_loss_nonsaturating_logits(x)
    # Reference: numpy's logaddexp(0, -x) = softplus(-x) (an independent implementation,
    # ~1 ULP per term), added exactly by math.fsum; the terms are positive, so the mean
    # keeps their ~1 ULP, and the kernel's own 4 ULP bound the difference with margin.
    terms = np.logaddexp(0.0, -x)
    exact = math.fsum(terms.tolist()) / x.size
    assert abs(got - exact) <= 5 * 2.0**-52 * exact


# -- derivation and rewriting -----------------------------------------------------------


def test_gradient_formula_is_the_chain_rule_of_an_explicit_mean():
    """d/dx_1 of the cost written out for m = 3 elements equals the derived gradient."""
    d = sp.symbols("d0:3", positive=True)
    (g,) = gradient_formula(gan.gan_g_loss_nonsaturating).outputs.values()
    J = -sum(sp.log(v) for v in d) / 3
    expected = sp.diff(J, d[1])
    got = g.subs({gan.d_fake: d[1], gan.m_fake: 3})
    assert sp.simplify(got - expected) == 0
    gd = gradient_formula(gan.gan_d_loss)
    assert sp.simplify(gd.outputs["grad_d_fake"] - 1 / (gan.m_fake * (1 - gan.d_fake))) == 0


def test_log_sigmoid_is_rewritten_to_softplus():
    l = sp.Symbol("l", real=True)  # noqa: E741
    sig = 1 / (1 + sp.exp(-l))
    for expr, expected in [(sp.log(sig), -sp.log(1 + sp.exp(-l))),
                           (sp.log(1 - sig), -sp.log(1 + sp.exp(l)))]:
        s = stabilize(expr)
        # Overflow-free: every exp has a non-positive argument.
        assert all(e.args[0] == -sp.Abs(l) for e in s.atoms(sp.exp))
        f = sp.lambdify([l], s, "mpmath")
        ref = sp.lambdify([l], expected, "mpmath")
        with mpmath.workdps(60):
            for t in [-50, -1, 0, 0.5, 30]:
                assert abs(f(mpmath.mpf(t)) - ref(mpmath.mpf(t))) < mpmath.mpf(10) ** -50


def test_batch_formula_errors():
    x, y = sp.symbols("x y", real=True)
    m, n = sp.symbols("m_a m_b", integer=True, positive=True)
    s = sp.Symbol("s", real=True)
    with pytest.raises(FormulaError, match="one batch"):
        BatchReduction("bad", "S", "T", "D", batches=[SampleBatch(m, [x]), SampleBatch(n, [y])],
                       sums={"s": x * y}, outputs={"J": s / m})
    with pytest.raises(FormulaError, match="positive integer"):
        SampleBatch(sp.Symbol("m"), [x])
    with pytest.raises(FormulaError, match="exactly one output"):
        BatchReduction("bad", "S", "T", "D", batches=[SampleBatch(m, [x])], sums={"s": x},
                       outputs={"u": s, "v": s}, gradient=True)
    nonlinear = BatchReduction("ok", "S", "T", "D", batches=[SampleBatch(m, [x])],
                               sums={"s": x}, outputs={"J": s**2 / m})
    with pytest.raises(DerivationError, match="depends on the sums"):
        gradient_formula(nonlinear)


def test_sheet_gan_section_is_derived():
    from symdl.codegen import builtin_modules, render

    tex = render(builtin_modules())["sheet/symdl.tex"]
    gan_tex = tex.split(r"\section{GAN costs}")[1]
    assert r"\frac{\partial J_{G}}{\partial {l_{\mathrm{fake}}}_{i}}" in gan_tex
    assert r"\max\left(0, - l_{\mathrm{fake}}\right)" in gan_tex  # -softplus(-l), by rewriting
    assert "non-saturating" in gan_tex and gan_tex.count(r"\addplot") == 2
    # The plot's points: saturating gradient -sigmoid(l), non-saturating sigmoid(l) - 1.
    lines = [ln for ln in gan_tex.splitlines() if ln.startswith(r"\addplot")]
    for line, ref in zip(lines, [lambda t: -1 / (1 + np.exp(-t)),
                                 lambda t: 1 / (1 + np.exp(-t)) - 1], strict=True):
        pts = [p.strip("()").split(",") for p in line.split("{", 1)[1].rstrip("};").split()]
        for xs, ys in pts:
            # x is printed to 4 decimals (|slope| <= 1/4), y to 6: 2e-5 bounds both.
            assert abs(float(ys) - ref(float(xs))) < 2e-5
    first = lines[0].split("{", 1)[1].split()[0]
    assert abs(float(first.strip("()").split(",")[1])) < 1e-3  # vanishes at D(G(z)) ~ 0


def test_gradients_at_the_domain_edge_have_the_sign_of_their_limit(kernels):
    # d/dd -log(1 - d) tends to +inf as d -> 1 from inside [0, 1]; log(1 - d)'s to -inf.
    # SymPy writes 1/(d - 1), and 1.0 - 1.0 is +0 in IEEE arithmetic: the printed form
    # keeps (1 - d) so that the kernel's infinity has the limit's sign.
    one, near = np.array([1.0]), np.array([1 - 2**-52])
    _, g_fake = kernels.gan_d_loss_grad(np.array([0.5]), one)
    assert g_fake[0] == np.inf and kernels.gan_d_loss_grad(np.array([0.5]), near)[1][0] > 0
    assert kernels.gan_g_loss_saturating_grad(one)[0] == -np.inf
    assert kernels.gan_g_loss_saturating_grad(near)[0] < 0
    assert kernels.gan_g_loss_nonsaturating_grad(np.array([0.0]))[0] == -np.inf
