"""Benchmark entries for the training kernels: optimizer steps (in place), batch norm
forward + backward and GAN costs + gradients (pipelines), dropout (random results).

Peers are written the way a user writes them; PyTorch's several ways (fused, foreach,
autograd, aten) are all timed and the fastest is reported.
"""

from __future__ import annotations

import dataclasses
from math import log2, sqrt

import numpy as np

from .spec import Case, Inputs, Step, Variants

# ---- inputs ------------------------------------------------------------------------


def _optimizer_inputs(*state: str):
    """Parameters, a gradient and optimizer state of a run already under way."""

    def make(n: int, rng: np.random.Generator) -> Inputs:
        grad = rng.standard_normal(n) * 0.1
        arrays = {"theta": rng.standard_normal(n), "grad": grad}
        for name in state:
            if name in ("v", "square_avg"):  # running means of squares: positive
                arrays[name] = (rng.standard_normal(n) * 0.1) ** 2 + 1e-4
            else:
                arrays[name] = rng.standard_normal(n) * 0.01
        return arrays

    return make


def _batch_inputs(rows: int, cols: int):
    """x (rows, cols) with per-feature offsets and scales, and its adjoint dout. Smaller
    runs (--quick, small inputs) shrink both sides alike to about n elements."""

    def make(n: int, rng: np.random.Generator) -> Inputs:
        f = min(1.0, sqrt(n / (rows * cols)))
        m, c = max(2, round(rows * f)), max(1, round(cols * f))
        x = rng.standard_normal((m, c)) * rng.uniform(0.5, 2.0, c) + rng.uniform(-1, 1, c)
        return {"x": x, "gamma": rng.uniform(0.5, 1.5, c), "beta": rng.uniform(-0.5, 0.5, c),
                "dout": rng.standard_normal((m, c))}

    return make


def _logits(*names: str):
    return lambda n, rng: {k: rng.standard_normal(n) * 3.0 for k in names}


# ---- optimizers --------------------------------------------------------------------
ADAM = {"t": 10, "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
RMSPROP = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}


def _np_adam(theta, grad, m, v, t, lr, beta1, beta2, eps):
    m *= beta1
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad * grad
    theta -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)


def _jax_adam(jax):
    """A functional step, as JAX is written: the new theta, m, v (in ``inplace`` order)."""
    def step(theta, grad, m, v, t, lr, beta1, beta2, eps):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad * grad
        theta = theta - lr * (m / (1 - beta1**t)) / (jax.numpy.sqrt(v / (1 - beta2**t)) + eps)
        return theta, m, v

    return step


def _jax_rmsprop(jax):
    """The new theta, square_avg, momentum_buf (the buffer unchanged at momentum 0)."""
    def step(theta, grad, square_avg, momentum_buf, lr, alpha, eps, momentum):
        square_avg = alpha * square_avg + (1 - alpha) * grad * grad
        update = grad / (jax.numpy.sqrt(square_avg) + eps)
        if momentum > 0:  # a Python number: fixed when jit traces
            momentum_buf = momentum * momentum_buf + update
            update = momentum_buf
        return theta - lr * update, square_avg, momentum_buf

    return step


def _ne_adam(ne):
    def step(theta, grad, m, v, t, lr, beta1, beta2, eps):
        s = theta.dtype.type  # scalars of the arrays' dtype: float32 stays float32
        ne.evaluate("b1 * m + (1 - b1) * g", local_dict={"b1": s(beta1), "m": m, "g": grad},
                    out=m)
        ne.evaluate("b2 * v + (1 - b2) * g * g",
                    local_dict={"b2": s(beta2), "v": v, "g": grad}, out=v)
        ne.evaluate("theta - a * m / (sqrt(v * c) + eps)",
                    local_dict={"theta": theta, "m": m, "v": v, "a": s(lr / (1 - beta1**t)),
                                "c": s(1 / (1 - beta2**t)), "eps": s(eps)}, out=theta)

    return Variants(step)


class _TorchOptimizer:
    """A torch.optim optimizer over one tensor, its state set to the given arrays (as
    after t - 1 steps); made once per set of tensors, then stepped."""

    def __init__(self, torch, cls, compiled: bool = False, **kw) -> None:
        self.torch, self.cls, self.kw, self.compiled = torch, cls, kw, compiled
        self.key, self.opt, self.run = None, None, None

    def step(self, theta, grad, buffers: dict, options: dict, step: int) -> None:
        if self.key is None or self.key[0] is not theta or self.key[1] is not grad:
            theta.grad = grad
            self.opt = self.cls([theta], **options, **self.kw)
            self.opt.state[theta] = {
                "step": self.torch.tensor(float(step), dtype=self.torch.float32),
                **buffers}
            self.key = (theta, grad)
            # torch.compile(opt.step): PyTorch's way to fuse an optimizer's update.
            self.run = self.torch.compile(self.opt.step) if self.compiled else self.opt.step
        self.run()


def _torch_compile_adam(torch):
    return _torch_adam(torch, compiled=True)["foreach"].alloc


def _torch_adam(torch, compiled: bool = False):
    def way(**kw):
        opt = _TorchOptimizer(torch, torch.optim.Adam, compiled, **kw)
        return Variants(lambda theta, grad, m, v, t, lr, beta1, beta2, eps: opt.step(
            theta, grad, {"exp_avg": m, "exp_avg_sq": v},
            {"lr": lr, "betas": (beta1, beta2), "eps": eps}, t - 1))

    return {"fused": way(fused=True), "foreach": way(foreach=True)}


def _np_rmsprop(theta, grad, square_avg, momentum_buf, lr, alpha, eps, momentum):
    square_avg *= alpha
    square_avg += (1 - alpha) * grad * grad
    step = grad / (np.sqrt(square_avg) + eps)
    if momentum > 0:
        momentum_buf *= momentum
        momentum_buf += step
        step = momentum_buf
    theta -= lr * step


def _ne_rmsprop(ne):
    def step(theta, grad, square_avg, momentum_buf, lr, alpha, eps, momentum):
        s = theta.dtype.type
        ne.evaluate("a * sq + (1 - a) * g * g",
                    local_dict={"a": s(alpha), "sq": square_avg, "g": grad}, out=square_avg)
        d = {"theta": theta, "g": grad, "sq": square_avg, "eps": s(eps), "lr": s(lr)}
        if momentum > 0:
            ne.evaluate("mu * b + g / (sqrt(sq) + eps)",
                        local_dict={**d, "mu": s(momentum), "b": momentum_buf},
                        out=momentum_buf)
            ne.evaluate("theta - lr * b", local_dict={**d, "b": momentum_buf}, out=theta)
        else:
            ne.evaluate("theta - lr * g / (sqrt(sq) + eps)", local_dict=d, out=theta)

    return Variants(step)


def _torch_compile_rmsprop(torch):
    return _torch_rmsprop(torch, compiled=True)["foreach"].alloc


def _torch_rmsprop(torch, compiled: bool = False):
    def way(**kw):
        opt = _TorchOptimizer(torch, torch.optim.RMSprop, compiled, **kw)

        def step(theta, grad, square_avg, momentum_buf, lr, alpha, eps, momentum):
            buffers = {"square_avg": square_avg}
            if momentum > 0:  # PyTorch keeps no buffer without momentum
                buffers["momentum_buffer"] = momentum_buf
            opt.step(theta, grad, buffers,
                     {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum}, 9)

        return Variants(step)

    return {"foreach": way(foreach=True), "for-loop": way(foreach=False)}


def _rmsprop_no_momentum_traffic(a: Inputs) -> int:
    # Without momentum the step needs neither to read nor to write momentum_buf.
    n = a["theta"].nbytes
    return 3 * n + 2 * n


# ---- batch norm: forward + backward --------------------------------------------------
BN_EPS = {"eps": 1e-5}


def _np_batchnorm(x, gamma, beta, dout, eps):
    m = x.shape[0]
    mean = x.mean(axis=0)
    xc = x - mean
    var = (xc * xc).mean(axis=0)
    inv = 1 / np.sqrt(var + eps)
    xhat = xc * inv
    out = gamma * xhat + beta
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = (gamma * inv / m) * (m * dout - dbeta - xhat * dgamma)
    return out, dx, dgamma, dbeta


def _torch_batchnorm(torch):
    F = torch.nn.functional

    def autograd(x, gamma, beta, dout, eps):
        x, gamma, beta = (a.detach().requires_grad_() for a in (x, gamma, beta))
        out = F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
        return (out.detach(), *torch.autograd.grad(out, (x, gamma, beta), dout))

    def aten(x, gamma, beta, dout, eps):
        out, mean, invstd = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, eps)
        return (out, *torch.ops.aten.native_batch_norm_backward(
            dout, x, gamma, None, None, mean, invstd, True, eps, [True, True, True]))

    return {"autograd": Variants(autograd), "aten": Variants(aten)}


def _jax_batchnorm(jax):
    jnp = jax.numpy

    def forward(x, gamma, beta, eps):
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)
        return gamma * (x - mean) / jnp.sqrt(var + eps) + beta

    def train(x, gamma, beta, dout, eps):
        out, vjp = jax.vjp(lambda *a: forward(*a, eps), x, gamma, beta)
        return (out, *vjp(dout))

    return train


def _batchnorm_atol(a: Inputs, ref) -> tuple[float, ...]:
    # Every part goes through per-feature sums over the m rows, which a peer may add in
    # any order: up to m rounding errors of the part's scale (the bound of a recursive
    # sum), where the check alone allows 32.
    m = a["x"].shape[0]
    return tuple(4.0 * m * float(np.max(np.abs(r))) for r in ref)


# ---- GAN costs on logits: cost + gradient ------------------------------------------
def _np_gan_d(l_real, l_fake):
    n_r, n_f = l_real.size, l_fake.size
    cost = np.logaddexp(0, -l_real).mean() + np.logaddexp(0, l_fake).mean()
    return cost, -1 / (1 + np.exp(l_real)) / n_r, 1 / (1 + np.exp(-l_fake)) / n_f


def _np_gan_g(l_fake):
    return np.logaddexp(0, -l_fake).mean(), -1 / (1 + np.exp(l_fake)) / l_fake.size


def _torch_gan_d(torch):
    F = torch.nn.functional

    def bce(l_real, l_fake):
        r, f = l_real.detach().requires_grad_(), l_fake.detach().requires_grad_()
        cost = (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))
        return (cost.item(), *torch.autograd.grad(cost, (r, f)))

    def logsigmoid(l_real, l_fake):
        r, f = l_real.detach().requires_grad_(), l_fake.detach().requires_grad_()
        cost = -F.logsigmoid(r).mean() - F.logsigmoid(-f).mean()
        return (cost.item(), *torch.autograd.grad(cost, (r, f)))

    return {"bce": Variants(bce), "logsigmoid": Variants(logsigmoid)}


def _torch_gan_g(torch):
    F = torch.nn.functional

    def bce(l_fake):
        f = l_fake.detach().requires_grad_()
        cost = F.binary_cross_entropy_with_logits(f, torch.ones_like(f))
        return (cost.item(), *torch.autograd.grad(cost, (f,)))

    def logsigmoid(l_fake):
        f = l_fake.detach().requires_grad_()
        cost = -F.logsigmoid(f).mean()
        return (cost.item(), *torch.autograd.grad(cost, (f,)))

    return {"bce": Variants(bce), "logsigmoid": Variants(logsigmoid)}


def _torch_compile_gan_d(torch):
    F = torch.nn.functional
    grad = torch.func.grad_and_value(
        lambda r, f: -F.logsigmoid(r).mean() - F.logsigmoid(-f).mean(), argnums=(0, 1))

    @torch.compile
    def cost_grad(l_real, l_fake):
        (g_real, g_fake), cost = grad(l_real, l_fake)
        return cost, g_real, g_fake

    return cost_grad


def _torch_compile_gan_g(torch):
    grad = torch.func.grad_and_value(lambda f: -torch.nn.functional.logsigmoid(f).mean())

    @torch.compile
    def cost_grad(l_fake):
        g_fake, cost = grad(l_fake)
        return cost, g_fake

    return cost_grad


def _jax_gan_d(jax):
    sp = jax.nn.softplus

    def cost_grad(l_real, l_fake):
        cost, grads = jax.value_and_grad(
            lambda r, f: sp(-r).mean() + sp(f).mean(), argnums=(0, 1))(l_real, l_fake)
        return (cost, *grads)

    return cost_grad


def _jax_gan_g(jax):
    def cost_grad(l_fake):
        return jax.value_and_grad(lambda f: jax.nn.softplus(-f).mean())(l_fake)

    return cost_grad


def _ne_gan_d(ne):
    def cost_grad(l_real, l_fake):
        s = l_real.dtype.type
        r, f = {"l": l_real, "n": s(l_real.size)}, {"l": l_fake, "n": s(l_fake.size)}
        cost = (float(ne.evaluate("sum(log1p(exp(-abs(l))) + where(l < 0, -l, 0))", r))
                / l_real.size
                + float(ne.evaluate("sum(log1p(exp(-abs(l))) + where(l > 0, l, 0))", f))
                / l_fake.size)
        return (cost, ne.evaluate("-1 / (1 + exp(l)) / n", r),
                ne.evaluate("1 / (1 + exp(-l)) / n", f))

    return Variants(cost_grad)


def _ne_gan_g(ne):
    def cost_grad(l_fake):
        d = {"l": l_fake, "n": l_fake.dtype.type(l_fake.size)}
        cost = float(ne.evaluate("sum(log1p(exp(-abs(l))) + where(l < 0, -l, 0))", d))
        return cost / l_fake.size, ne.evaluate("-1 / (1 + exp(l)) / n", d)

    return Variants(cost_grad)


def _gan_atol(a: Inputs, ref) -> tuple[float, ...]:
    # The cost is a mean of n terms: a peer that adds in blocks, or pairwise, errs by
    # about log2(n) rounding errors of the sum's scale, and by up to the block's length
    # inside a block added in order (numexpr and XLA use 4096 or fewer).
    n = max(v.size for v in a.values())
    cost = abs(float(ref[0]))
    return (cost * (log2(n) + 4096),) + (0.0,) * (len(ref) - 1)


# ---- dropout -----------------------------------------------------------------------
DROPOUT = {"p": 0.2, "seed": 1234}


def _np_dropout(x, p, seed):
    q = 1 - p
    keep = np.random.default_rng(seed).random(x.shape, dtype=x.dtype) < q
    return np.where(keep, x / q, 0), keep


def _torch_dropout(torch):
    return Variants(lambda x, p: torch.ops.aten.native_dropout(x, p, True))


def _jax_dropout(jax):
    def dropout(x, p, seed):
        q = 1 - p
        keep = jax.random.bernoulli(jax.random.key(seed), q, x.shape)
        return jax.numpy.where(keep, x / q, 0), keep

    return dropout


def _dropout_valid(a: Inputs, result, dtype: np.dtype) -> str:
    """Masks are random, and differ between peers: check each against its own mask
    (a bool array keeping about q of the elements), and the output against it."""
    from .runner import check

    out, mask = (np.asarray(r.detach() if hasattr(r, "detach") else r) for r in result)
    x, q = a["x"], 1 - DROPOUT["p"]
    if mask.dtype != np.bool_ or mask.shape != x.shape:
        return f"WRONG mask: {mask.dtype} {mask.shape}, expected bool {x.shape}"
    kept = mask.mean()
    # 6 standard deviations of a Binomial(n, q) fraction.
    if abs(kept - q) > 6 * sqrt(q * (1 - q) / x.size) + 1 / x.size:
        return f"WRONG: kept {kept:.4f} of the elements, expected {q}"
    return check(out, np.where(mask, x / q, 0.0), dtype)


def _dropout_inference_np_out(x, out, p):
    np.multiply(x, 1 - p, out=out)


# ---- the table ---------------------------------------------------------------------
_RMSPROP_CASE = Case(
    "rmsprop_step",
    _optimizer_inputs("square_avg", "momentum_buf"),
    numpy=Variants(_np_rmsprop),
    numexpr=_ne_rmsprop,
    torch=_torch_rmsprop,
    torch_compile=_torch_compile_rmsprop,
    jax=_jax_rmsprop,
    params={**RMSPROP, "momentum": 0.0},
    inplace=("theta", "square_avg", "momentum_buf"),
    compare=("theta", "square_avg"),
    traffic=_rmsprop_no_momentum_traffic,
    torch_speedup=1.1,  # issue 4
    notes=("momentum 0: the minimal traffic skips momentum_buf, which PyTorch and symdl "
           "(a special-case core, printed from the formula at momentum = 0) leave alone.",),
)

TRAINING_CASES: list[Case] = [
    Case(
        "adam_step",
        _optimizer_inputs("m", "v"),
        numpy=Variants(_np_adam),
        numexpr=_ne_adam,
        torch=_torch_adam,
        torch_compile=_torch_compile_adam,
        jax=_jax_adam,
        params=ADAM,
        inplace=("theta", "m", "v"),
        torch_speedup=1.1,  # issue 4
        notes=("in place on theta, m, v at step t = 10; PyTorch: torch.optim.Adam, fused and "
               "foreach, state set to the same arrays; torch.compile: of opt.step (foreach); "
               "JAX: jit of a functional step, its state kept in JAX between calls.",),
    ),
    _RMSPROP_CASE,
    # The same kernel and peers with momentum: every array is read and written.
    dataclasses.replace(_RMSPROP_CASE, name="rmsprop_step_momentum", kernel="rmsprop_step",
                        params={**RMSPROP, "momentum": 0.9}, compare=None, traffic=None,
                        notes=("rmsprop_step with momentum 0.9.",)),
]

for _rows, _cols in ((4096, 1024), (256, 4096)):
    TRAINING_CASES.append(Case(
        f"batchnorm_{_rows}x{_cols}",
        _batch_inputs(_rows, _cols),
        numpy=Variants(_np_batchnorm),
        torch=_torch_batchnorm,
        jax=_jax_batchnorm,
        bound="peer",
        atol=_batchnorm_atol,
        params=BN_EPS,
        pipeline=(Step("batchnorm_forward", ("x", "gamma", "beta"), ("out", "mean", "var")),
                  Step("batchnorm_backward", ("dout", "x", "gamma", "mean", "var"),
                       ("dx", "dgamma", "dbeta"))),
        returns=("out", "dx", "dgamma", "dbeta"),
        notes=(f"batchnorm_forward + batchnorm_backward on x of shape ({_rows}, {_cols}) "
               "(--quick and small runs shrink it); PyTorch: F.batch_norm + autograd, and "
               "native_batch_norm + its backward (aten).",),
    ))

TRAINING_CASES += [
    Case(
        "gan_d_loss_logits+grad",
        _logits("l_real", "l_fake"),
        numpy=Variants(_np_gan_d),
        numexpr=_ne_gan_d,
        torch=_torch_gan_d,
        torch_compile=_torch_compile_gan_d,
        jax=_jax_gan_d,
        bound="compute",
        atol=_gan_atol,
        pipeline=(Step("gan_d_loss_logits", ("l_real", "l_fake"), ("cost",)),
                  Step("gan_d_loss_logits_grad", ("l_real", "l_fake"),
                       ("g_real", "g_fake"))),
        returns=("cost", "g_real", "g_fake"),
        notes=("gan_d_loss_logits + gan_d_loss_logits_grad, n logits in each batch; "
               "PyTorch: BCE-with-logits or logsigmoid + autograd; JAX: jit(value_and_grad).",
               "numexpr adds a float32 sum in float32, in order: from about 10^6 logits its "
               "cost misses the tolerance of a blocked or pairwise sum (WRONG, not timed).",),
    ),
    Case(
        "gan_g_nonsat_logits+grad",
        _logits("l_fake"),
        numpy=Variants(_np_gan_g),
        numexpr=_ne_gan_g,
        torch=_torch_gan_g,
        torch_compile=_torch_compile_gan_g,
        jax=_jax_gan_g,
        bound="compute",
        atol=_gan_atol,
        pipeline=(Step("gan_g_loss_nonsaturating_logits", ("l_fake",), ("cost",)),
                  Step("gan_g_loss_nonsaturating_logits_grad", ("l_fake",), ("g_fake",))),
        returns=("cost", "g_fake"),
        notes=("gan_g_loss_nonsaturating_logits + its _grad.",),
    ),
    Case(
        "dropout",
        _logits("x"),
        numpy=Variants(_np_dropout),
        torch=_torch_dropout,
        torch_compile=lambda t: t.compile(lambda x, p: t.ops.aten.native_dropout(x, p, True)),
        jax=_jax_dropout,
        params=DROPOUT,
        validate=_dropout_valid,
        notes=("p = 0.2, inverted; masks are random and differ between peers, so each "
               "result is checked against its own mask (kept fraction within 6 sigma of q); "
               "bytes: read x, write out and a bool mask. PyTorch: aten.native_dropout (eager "
               "and compiled).",),
    ),
    Case(
        "dropout_inference",
        _logits("x"),
        numpy=Variants(lambda x, p: x * (1 - p), _dropout_inference_np_out),
        numexpr="x * (1 - p)",
        torch=lambda t: Variants(lambda x, p: t.mul(x, 1 - p),
                                 lambda x, out, p: t.mul(x, 1 - p, out=out)),
        torch_compile=lambda t: t.compile(lambda x, p: x * (1 - p)),
        jax=lambda jax: lambda x, p: x * (1 - p),
        params={"p": 0.2, "inverted": False},
        notes=("standard dropout at test time (y = q x); inverted dropout's inference is the "
               "identity (PyTorch returns its input).",),
    ),
]


# ---- two-layer sigmoid network (mlp): forward + backward -----------------------------
MLP_SHAPE = (4096, 256, 256, 128)  # m samples, widths n0, n1, n2


def _mlp_inputs(n: int, rng: np.random.Generator) -> Inputs:
    """X (m, n0), weights scaled by 1/sqrt(fan-in) (so the sigmoids are not saturated)
    and the adjoint df (m,). Smaller runs (--quick, small inputs) shrink the batch and
    every width alike, to about n elements of X."""
    m, *widths = MLP_SHAPE
    f = min(1.0, sqrt(n / (m * widths[0])))
    m, n0, n1, n2 = max(2, round(m * f)), *(max(1, round(w * f)) for w in widths)
    return {"X": rng.standard_normal((m, n0)),
            "W1": rng.standard_normal((n1, n0)) / sqrt(n0),
            "W2": rng.standard_normal((n2, n1)) / sqrt(n1),
            "w3": rng.standard_normal(n2) / sqrt(n2),
            "df": rng.standard_normal(m)}


def _np_mlp(X, W1, W2, w3, df):
    A1 = 1 / (1 + np.exp(-(X @ W1.T)))
    A2 = 1 / (1 + np.exp(-(A1 @ W2.T)))
    f = A2 @ w3
    delta2 = np.outer(df, w3) * A2 * (1 - A2)
    delta1 = (delta2 @ W2) * A1 * (1 - A1)
    return f, delta1 @ W1, delta1.T @ X, delta2.T @ A1, df @ A2


def _torch_mlp(torch):
    def autograd(X, W1, W2, w3, df):
        X, W1, W2, w3 = (a.detach().requires_grad_() for a in (X, W1, W2, w3))
        f = torch.sigmoid(torch.sigmoid(X @ W1.T) @ W2.T) @ w3
        f.backward(df)
        return f.detach(), X.grad, W1.grad, W2.grad, w3.grad

    return Variants(autograd)


def _jax_mlp(jax):
    sig = jax.nn.sigmoid

    def train(X, W1, W2, w3, df):
        f, vjp = jax.vjp(lambda *a: sig(sig(a[0] @ a[1].T) @ a[2].T) @ a[3], X, W1, W2, w3)
        return (f, *vjp(df))

    return train


def _mlp_atol(a: Inputs, ref) -> tuple[float, ...]:
    # Each part is a sum of products (over a width, or over the m samples for the weight
    # gradients) fed by earlier ones, which a peer's BLAS adds in any order: up to K
    # rounding errors of the part's scale, K the longest sum on its path (the bound of a
    # recursive sum), where the check alone allows 32.
    k = max(*a["X"].shape, *a["W1"].shape, *a["W2"].shape)
    return tuple(4.0 * k * float(np.max(np.abs(r))) for r in ref)


MLP_CASES: list[Case] = [
    Case(
        "mlp_forward+backward",
        _mlp_inputs,
        numpy=Variants(_np_mlp),
        torch=_torch_mlp,
        jax=_jax_mlp,
        bound="peer",
        atol=_mlp_atol,
        pipeline=(Step("mlp_forward", ("X", "W1", "W2", "w3"), ("f",)),
                  Step("mlp_backward", ("X", "W1", "W2", "w3", "df"),
                       ("dX", "dW1", "dW2", "dw3"))),
        returns=("f", "dX", "dW1", "dW2", "dw3"),
        notes=("mlp_forward + mlp_backward (two sigmoid layers, linear read-out) with "
               f"m, n0, n1, n2 = {', '.join(map(str, MLP_SHAPE))} (--quick and small runs "
               "shrink them); PyTorch: the same formula with autograd (f.backward(df)); "
               "JAX: jit(vjp).",),
    ),
]
TRAINING_CASES += MLP_CASES
