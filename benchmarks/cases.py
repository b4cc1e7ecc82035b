"""What is benchmarked: one table entry per kernel, with the peers a user would reach for.

Adding a kernel (adam_step, batchnorm, conv2d, ...) is one ``Case`` in ``CASES``:
how to make its inputs, and how NumPy, numexpr, PyTorch and JAX compute the same
thing. The symdl kernel (``symdl.kernels.<name>``) and the ``sympy.lambdify`` peer
come from the formula itself (``symdl.library`` and ``symdl.derive``), so they need
no entry. Peers are written the way a user writes them, in two modes, compared only
with each other: ``alloc`` (returns a fresh result) and ``out`` (writes into a
preallocated array).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from math import isqrt
from types import ModuleType
from typing import Any

import numpy as np

Inputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Variants:
    """A peer's two ways of computing a kernel: ``alloc(*args)`` returns a new result;
    ``out(*args, out)`` writes the result into ``out``. Either may be missing."""

    alloc: Callable[..., Any] | None = None
    out: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Case:
    """One kernel and its peers.

    ``inputs(n, rng)`` gives float64 inputs of about n elements, by argument name
    (the runner casts them to each dtype). ``numpy`` is the hand-written NumPy peer;
    its float64 ``alloc`` result, computed from the inputs upcast to float64, is the
    reference every result is checked against. ``numexpr`` is an expression string
    (or a function of the module giving Variants); ``torch`` and ``jax`` are functions
    of the module giving Variants (JAX: a function to ``jax.jit``). ``bound`` says
    which target applies: "memory" (memory-bound) or "compute" (transcendentals).
    """

    name: str
    inputs: Callable[[int, np.random.Generator], Inputs]
    numpy: Variants
    numexpr: str | Callable[[ModuleType], Variants] | None = None
    torch: Callable[[ModuleType], Variants] | None = None
    jax: Callable[[ModuleType], Callable[..., Any]] | None = None
    bound: str = "memory"
    atol: Callable[[Inputs, Any], float] | None = None
    notes: tuple[str, ...] = field(default=())


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
        jax=lambda jax: lambda y, dy: dy * y * (1 - y),
    ),
    Case(
        "tanh",
        _elementwise(x=_normal(3.0)),
        numpy=Variants(np.tanh, lambda x, out: np.tanh(x, out=out)),
        numexpr="tanh(x)",
        torch=lambda t: Variants(t.tanh, lambda x, out: t.tanh(x, out=out)),
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
        jax=lambda jax: lambda y_true, y_pred: _jax_precision_recall(jax.numpy, y_true, y_pred),
        notes=("Labels are passed as 0/1 floats of the benchmarked dtype; symdl also checks "
               "that they are binary (two extra passes over the inputs).",),
    ),
]
"""Every benchmarked kernel, in report order."""


# ---- what comes from the formula: the symdl kernel and the lambdify peer ------------
@cache
def formulas() -> Mapping[str, Any]:
    """Every built-in formula by name, derived ones (``*_backward``) included."""
    from symdl.codegen import builtin_modules

    return {f.name: f for m in builtin_modules() for f in m.formulas}


def symdl_variants(name: str) -> Variants:
    """The generated kernel, called with and (where it takes one) without ``out=``."""
    import symdl.kernels

    kernel = getattr(symdl.kernels, name)
    if "out" in inspect.signature(kernel).parameters:
        return Variants(kernel, lambda *args, out: kernel(*args, out=out))
    return Variants(kernel)


def lambdify_variants(name: str) -> tuple[Variants, str]:
    """``sympy.lambdify(..., "numpy")`` of the formula's own SymPy expressions.

    Returns the variants and a note (why there are none, when there are none).
    """
    import sympy as sp

    f = formulas().get(name)
    if f is None:
        return Variants(), "no SymPy formula of this name"
    if f.kind == "elementwise":
        exprs = list(f.results().values())
        fn = sp.lambdify(list(f.inputs), exprs[0] if len(exprs) == 1 else exprs, "numpy")
        return Variants(fn), ""
    if f.kind == "reduction":
        summands = [sp.lambdify(list(f.inputs), e, "numpy") for e in f.sums.values()]
        finish = sp.lambdify(f.sum_symbols() + [f.count], list(f.outputs.values()), "numpy")

        def reduction(*args):
            sums = [np.sum(s(*args)) for s in summands]
            return tuple(float(v) for v in finish(*sums, np.size(args[0])))

        return Variants(reduction), ""
    return Variants(), (f"lambdify prints a {f.kind} (sp.Sum over sp.Indexed) as a Python "
                        "loop, not NumPy: no comparable peer")
