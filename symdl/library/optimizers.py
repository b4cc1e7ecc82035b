"""Optimizers: Adam (Kingma and Ba, 2015) and RMSProp with momentum (PyTorch's form)."""

import sympy as sp

from symdl.formula import Algorithm, Elementwise, Param, SpecialCase

SECTION = "Optimizers"

theta, grad, m, v = sp.symbols("theta grad m v", real=True)
m_t, v_t, mhat, vhat = sp.symbols("m_t v_t mhat vhat", real=True)
lr, beta1, beta2, eps, t = sp.symbols("lr beta1 beta2 eps t", real=True)

adam_step = Elementwise(
    "adam_step",
    SECTION,
    "Adam",
    "One step of Adam, in place on `theta`, `m` and `v`; `t` is the 1-based step number. "
    "As in the paper's Algorithm 1, with its defaults.",
    inputs=[theta, grad, m, v],
    params=[
        Param("t", None, "count", "1-based step number"),
        Param("lr", 1e-3, "nonnegative", "step size (the paper's `alpha`)"),
        Param("beta1", 0.9, "unit_interval_open", "decay of the first moment"),
        Param("beta2", 0.999, "unit_interval_open", "decay of the second moment"),
        Param("eps", 1e-8, "nonnegative", "added to the denominator"),
    ],
    steps={
        "m_t": beta1 * m + (1 - beta1) * grad,  # biased first moment
        "v_t": beta2 * v + (1 - beta2) * grad**2,  # biased second raw moment
        "mhat": m_t / (1 - beta1**t),  # bias-corrected
        "vhat": v_t / (1 - beta2**t),
    },
    updates={"theta": theta - lr * mhat / (sp.sqrt(vhat) + eps), "m": m_t, "v": v_t},
    domains={"v": "nonnegative"},
    assumed=("v",),  # (a check would cost a pass over v in every step)
    algorithm=Algorithm(
        require="the step size `lr` (the paper's `alpha`); decay rates `beta1`, `beta2` in "
                "[0, 1); `eps`; a stochastic objective f(`theta`); initial parameters `theta`",
        init={m: 0, v: 0, t: 0},
        until="`theta` has not converged",
        each={t: t + 1, grad: sp.Derivative(sp.Function("f")(theta), theta)},
        returns=theta,
    ),
    notes=(
        "Follows the paper (Kingma and Ba, 2015, Algorithm 1). Erratum to the source cheat "
        "sheet (symdl's seed, dl-cheatsheet.txt, Adam): it gives `eps` = 1e-9 where the "
        "paper says 1e-8, and it writes `g_t` ← -grad f(`theta`) with a minus sign, where "
        "the paper's `g_t` is the gradient itself (the update subtracts the step).",
        "Adam against RMSProp with momentum (from the paper): RMSProp with momentum "
        "generates its parameter updates using a momentum on the rescaled gradient, "
        "whereas Adam updates are directly estimated using a running average of first and "
        "second moment of the gradient. RMSProp also lacks a bias-correction term; this "
        "matters most in case of a value of `beta2` close to 1 (required in case of sparse "
        "gradients), since in that case not correcting the bias leads to very large "
        "stepsizes and often divergence.",
    ),
)

square_avg, momentum_buf = sp.symbols("square_avg momentum_buf", real=True)
alpha, momentum = sp.symbols("alpha momentum", real=True)
sq_t, buf_t = sp.symbols("s_t b_t", real=True)

rmsprop_step = Elementwise(
    "rmsprop_step",
    SECTION,
    "RMSProp with momentum",
    "One step of RMSProp with momentum, in place on `theta`, `square_avg` and `momentum_buf`, "
    "in PyTorch's convention (torch.optim.RMSprop, centered=False).",
    inputs=[theta, grad, square_avg, momentum_buf],
    params=[
        Param("lr", 1e-2, "nonnegative", "learning rate"),
        Param("alpha", 0.99, "unit_interval", "smoothing constant"),
        Param("eps", 1e-8, "nonnegative", "added to the denominator"),
        Param("momentum", 0.0, "nonnegative", "momentum factor"),
    ],
    steps={
        "s_t": alpha * square_avg + (1 - alpha) * grad**2,
        "b_t": momentum * momentum_buf + grad / (sp.sqrt(sq_t) + eps),
    },
    updates={"theta": theta - lr * buf_t, "square_avg": sq_t, "momentum_buf": buf_t},
    domains={"square_avg": "nonnegative"},
    assumed=("square_avg",),  # (a check would cost a pass over it in every step)
    special_cases=[SpecialCase(
        {"momentum": 0}, untouched=("momentum_buf",),
        why="PyTorch keeps no momentum buffer without momentum, and skipping it saves "
            "two of the seven array passes of a step")],
)

FORMULAS = [adam_step, rmsprop_step]
