"""What is benchmarked: one table entry per kernel, with the peers a user would reach for.

Adding a kernel (conv2d, pooling, ...) is one ``Case`` in ``CASES`` (see ``spec.Case``):
how to make its inputs, and how NumPy, numexpr, PyTorch and JAX compute the same
thing. The symdl kernel (``symdl.kernels.<name>``) and the ``sympy.lambdify`` peer
come from the formula itself (``symdl.library`` and ``symdl.derive``), so they need
no entry. Peers are written the way a user writes them, in two modes, compared only
with each other: ``alloc`` (returns a fresh result) and ``out`` (writes into a
preallocated array). In-place kernels (optimizer steps) have one mode, ``inplace``;
pipelines (forward + backward, cost + gradient) chain several symdl kernels. The
training kernels' entries are in ``training``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import cache
from math import isqrt
from typing import Any

import numpy as np

from .cnn import CNN_CASES
from .spec import Case, Inputs, Step, Variants, bind
from .training import TRAINING_CASES

__all__ = ["CASES", "Case", "Inputs", "Step", "Variants", "formulas", "lambdify_variants",
           "symdl_variants"]


# ---- inputs ------------------------------------------------------------------------
def _elementwise(**dists: Callable[[np.random.Generator, int], np.ndarray]):
    def make(n: int, rng: np.random.Generator) -> Inputs:
        return {k: d(rng, n) for k, d in dists.items()}

    return make


def _normal(scale: float = 1.0):
    return lambda rng, n: rng.standard_normal(n) * scale


def _uniform(lo: float, hi: float):
    return lambda rng, n: rng.uniform(lo, hi, n)


def _binary(p: float):
    return lambda rng, n: (rng.random(n) < p).astype(np.float64)


def _matvec_inputs(n: int, rng: np.random.Generator) -> Inputs:
    r = max(1, isqrt(n))  # a square matrix of about n elements
    return {"A": rng.standard_normal((r, r)), "x": rng.standard_normal(r)}


# ---- hand-written NumPy, the way a user writes it ----------------------------------
def _np_sigmoid_out(x, out):
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)


def _np_sigmoid_backward_out(y, dy, out):
    np.subtract(1, y, out=out)
    out *= y
    out *= dy


def _np_tanh_backward_out(y, dy, out):
    np.multiply(y, y, out=out)
    np.subtract(1, out, out=out)
    out *= dy


def _precision_recall(tp, selected, relevant) -> tuple[float, float]:
    """Finish precision and recall from the three sums, as a user would."""
    tp, selected, relevant = float(tp), float(selected), float(relevant)
    return (tp / selected if selected > 0 else 0.0, tp / relevant if relevant > 0 else 0.0)


def _np_precision_recall(y_true, y_pred):
    return _precision_recall(np.sum(y_true * y_pred), np.sum(y_pred), np.sum(y_true))


def _torch_compile_precision_recall(torch):
    """The three sums compiled (Inductor fuses them), finished in Python as eager's."""
    sums = torch.compile(lambda y_true, y_pred: (torch.dot(y_true, y_pred), y_pred.sum(),
                                                 y_true.sum()))
    return lambda y_true, y_pred: _precision_recall(*sums(y_true, y_pred))


def _jax_precision_recall(jnp, y_true, y_pred):
    tp, selected, relevant = jnp.dot(y_true, y_pred), y_pred.sum(), y_true.sum()
    return (jnp.where(selected > 0, tp / selected, 0.0),
            jnp.where(relevant > 0, tp / relevant, 0.0))


def _matvec_atol(inputs: Inputs, ref: Any) -> float:
    # A dot product of length n rounds with error at most about n*eps*sum|A_ij x_j|.
    a, x = inputs["A"], inputs["x"]
    return float(a.shape[1] * (np.abs(a) @ np.abs(x)).max())


# ---- the table ---------------------------------------------------------------------
CASES: list[Case] = [
    Case(
        "sigmoid",
        _elementwise(x=_normal(6.0)),
        numpy=Variants(lambda x: 1 / (1 + np.exp(-x)), _np_sigmoid_out),
        numexpr="1 / (1 + exp(-x))",
        torch=lambda t: Variants(t.sigmoid, lambda x, out: t.sigmoid(x, out=out)),
        torch_compile=lambda t: t.compile(t.sigmoid),
        jax=lambda jax: jax.nn.sigmoid,
        bound="compute",
    ),
    Case(
        "sigmoid_backward",
        _elementwise(y=_uniform(0.0, 1.0), dy=_normal()),
        numpy=Variants(lambda y, dy: dy * y * (1 - y), _np_sigmoid_backward_out),
        numexpr="dy * y * (1 - y)",
        torch=lambda t: Variants(
            lambda y, dy: t.ops.aten.sigmoid_backward(dy, y),
            lambda y, dy, out: t.ops.aten.sigmoid_backward.grad_input(dy, y, grad_input=out)),
        torch_compile=lambda t: t.compile(lambda y, dy: dy * y * (1 - y)),
        jax=lambda jax: lambda y, dy: dy * y * (1 - y),
    ),
    Case(
        "tanh",
        _elementwise(x=_normal(3.0)),
        numpy=Variants(np.tanh, lambda x, out: np.tanh(x, out=out)),
        numexpr="tanh(x)",
        torch=lambda t: Variants(t.tanh, lambda x, out: t.tanh(x, out=out)),
        torch_compile=lambda t: t.compile(t.tanh),
        jax=lambda jax: jax.numpy.tanh,
        bound="compute",
    ),
    Case(
        "tanh_backward",
        _elementwise(y=_uniform(-1.0, 1.0), dy=_normal()),
        numpy=Variants(lambda y, dy: dy * (1 - y * y), _np_tanh_backward_out),
        numexpr="dy * (1 - y * y)",
        torch=lambda t: Variants(
            lambda y, dy: t.ops.aten.tanh_backward(dy, y),
            lambda y, dy, out: t.ops.aten.tanh_backward.grad_input(dy, y, grad_input=out)),
        torch_compile=lambda t: t.compile(lambda y, dy: dy * (1 - y * y)),
        jax=lambda jax: lambda y, dy: dy * (1 - y * y),
    ),
    Case(
        "matvec",
        _matvec_inputs,
        numpy=Variants(lambda A, x: A @ x),
        torch=lambda t: Variants(t.mv),
        jax=lambda jax: jax.numpy.dot,
        atol=_matvec_atol,
        notes=("NumPy and PyTorch call BLAS (matvec is memory-bound: A is read once).",),
    ),
    Case(
        "precision_recall",
        _elementwise(y_true=_binary(0.3), y_pred=_binary(0.4)),
        numpy=Variants(_np_precision_recall),
        numexpr=lambda ne: Variants(lambda y_true, y_pred: _precision_recall(
            ne.evaluate("sum(y_true * y_pred)"), ne.evaluate("sum(y_pred)"),
            ne.evaluate("sum(y_true)"))),
        torch=lambda t: Variants(lambda y_true, y_pred: _precision_recall(
            t.dot(y_true, y_pred), y_pred.sum(), y_true.sum())),
        torch_compile=_torch_compile_precision_recall,
        jax=lambda jax: lambda y_true, y_pred: _jax_precision_recall(jax.numpy, y_true, y_pred),
        notes=("Labels are passed as 0/1 floats of the benchmarked dtype; symdl also checks "
               "that they are binary, in the same pass as its sums.",),
    ),
]
CASES += TRAINING_CASES
CASES += CNN_CASES
"""Every benchmarked kernel, in report order."""


# ---- what comes from the formula: the symdl kernel and the lambdify peer ------------
@cache
def formulas() -> Mapping[str, Any]:
    """Every built-in formula by name, derived ones (``*_backward``) included."""
    from symdl.codegen import builtin_modules

    return {f.name: f for m in builtin_modules() for f in m.formulas}


def _chain(case: Case, names: list[str], make: Callable[[str], Callable[..., Any] | None]
           ) -> Callable[..., Any] | None:
    """The case's pipeline run with ``make(kernel)`` for each step (None if one is None)."""
    steps = [(s, make(s.kernel)) for s in case.pipeline]
    if any(fn is None for _, fn in steps):
        return None

    def run(*args):
        env = dict(zip(names, args, strict=True))
        for step, fn in steps:
            got = fn(*[env[a] for a in step.args])
            env.update(zip(step.results, got if len(step.results) > 1 else (got,),
                           strict=True))
        return tuple(env[r] for r in case.returns)

    return run


def symdl_variants(case: Case, names: list[str] | None = None) -> Variants:
    """The generated kernel (or pipeline of kernels), with the case's parameters bound,
    called with and (where it takes one) without ``out=``."""
    import symdl.kernels

    if case.pipeline:
        return Variants(_chain(case, names or [], lambda k: bind(
            getattr(symdl.kernels, k), case.params)))
    kernel = getattr(symdl.kernels, case.kernels[0])
    call = bind(kernel, case.params)
    accepted = inspect.signature(kernel).parameters
    if "mask" in accepted:  # dropout: out= and mask= for the two results
        return Variants(call, lambda *args, out: call(*args, out=out[0], mask=out[1]))
    if "out" in accepted:
        return Variants(call, lambda *args, out: call(*args, out=out))
    return Variants(call)


def lambdify_variants(case: Case, names: list[str] | None = None) -> tuple[Variants, str]:
    """``sympy.lambdify(..., "numpy")`` of the formula's own SymPy expressions.

    Returns the variants and a note (why there are none, when there are none).
    """
    if case.pipeline:
        whys: list[str] = []

        def make(kernel: str):
            v, why = _lambdify_one(kernel, case.params)
            whys.append(f"{kernel}: {why}" if why else "")
            return v.alloc

        run = _chain(case, names or [], make)
        return Variants(run), next((w for w in whys if w), "")
    return _lambdify_one(case.kernels[0], case.params)


def _lambdify_one(name: str, params: Mapping[str, Any]) -> tuple[Variants, str]:
    import sympy as sp

    f = formulas().get(name)
    if f is None:
        return Variants(), "no SymPy formula of this name"
    if f.kind == "elementwise":
        results = f.results()
        exprs = list(results.values())
        # The formula's scalar parameters (lr, beta1, ...) are arguments too.
        symbols = {s.name: s for e in exprs for s in e.free_symbols}
        pnames = [p.name for p in getattr(f, "params", ())]
        args = list(f.inputs) + [symbols.get(p, sp.Symbol(p)) for p in pnames]
        fn = sp.lambdify(args, exprs[0] if len(exprs) == 1 else exprs, "numpy")
        defaults = {p.name: p.default for p in getattr(f, "params", ())}
        kw = {p: params.get(p, defaults[p]) for p in pnames}
        if getattr(f, "updates", None):
            order = [str(s) for s in f.inputs]

            def update(*arrays):
                new = fn(*arrays, **kw)  # every update from the old values, then stored
                for name_, value in zip(results, new, strict=True):
                    arrays[order.index(name_)][...] = value

            return Variants(update), ""
        return Variants((lambda *a: fn(*a, **kw)) if kw else fn), ""
    if f.kind == "reduction":
        summands = [sp.lambdify(list(f.inputs), e, "numpy") for e in f.sums.values()]
        finish = sp.lambdify(f.sum_symbols() + [f.count], list(f.outputs.values()), "numpy")

        def reduction(*args):
            sums = [np.sum(s(*args)) for s in summands]
            return tuple(float(v) for v in finish(*sums, np.size(args[0])))

        return Variants(reduction), ""
    return Variants(), (f"lambdify prints a {f.kind} (sp.Sum over sp.Indexed) as a Python "
                        "loop, not NumPy: no comparable peer" if f.kind in (
                            "contraction", "batch", "batch_gradient", "batch_reduction",
                            "batch_map") else f"no lambdify of a {f.kind} formula")
