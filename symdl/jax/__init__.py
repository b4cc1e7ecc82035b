"""symdl's elementwise kernels and costs as differentiable JAX functions.

Importing this package imports jax (nothing else in symdl does). Each function calls
its generated kernel through ``jax.pure_callback`` (on the host CPU) and its derived
gradient kernel through ``jax.custom_vjp``, so it works under ``jax.jit``,
``jax.grad`` and ``jax.vmap``. No formula is written here: forward and gradient are
the generated kernels.

dtypes: float32 and float64 are computed as they are; float16 and bfloat16 are
computed in float32 and returned in the input's dtype; other dtypes are refused.

``wrap(module)`` does the same for a package of your own formulas.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from symdl.interop import differentiable_kernels, output_based

_NATIVE = (jnp.float32, jnp.float64)
_HALF = (jnp.float16, jnp.bfloat16)


def _check(fn: str, name: str, x: object) -> jax.Array:
    """An argument as a JAX array of a float dtype, or a TypeError naming it."""
    if not isinstance(x, jax.Array | np.ndarray):
        raise TypeError(f"symdl.jax.{fn}(): argument '{name}' must be a JAX or NumPy array, "
                        f"got {type(x).__name__}")
    if x.dtype not in _NATIVE and x.dtype not in _HALF:
        raise TypeError(f"symdl.jax.{fn}(): argument '{name}' must be a float16, bfloat16, "
                        f"float32 or float64 array, got {x.dtype}")
    return jnp.asarray(x)


def _compute(xs: list[jax.Array]) -> tuple[list[jax.Array], jnp.dtype, jnp.dtype]:
    """The arrays in the dtype the kernel computes them in (half types in float32,
    as the kernel would otherwise), that dtype, and the dtype results come back in."""
    dtypes = {x.dtype for x in xs}
    half = len(dtypes) == 1 and next(iter(dtypes)) in _HALF
    xs = [x.astype(jnp.float32) if x.dtype in _HALF else x for x in xs]
    computed = jnp.float64 if any(x.dtype == jnp.float64 for x in xs) else jnp.float32
    return xs, computed, (next(iter(dtypes)) if half else computed)


def _callback(kernel: Callable, shapes: list[tuple], dtype, *xs: jax.Array,
              elementwise: bool):
    """The kernel on the host through pure_callback; results of the given shapes."""
    specs = [jax.ShapeDtypeStruct(s, dtype) for s in shapes]

    def host(*arrays):
        result = kernel(*[np.asarray(a) for a in arrays])
        results = result if isinstance(result, tuple) else (result,)
        return tuple(np.asarray(r, dtype=dtype) for r in results)

    # An elementwise kernel takes any shape, so a batch of calls is one call (on
    # arguments broadcast to one shape: backward kernels take y and dy alike); a cost
    # sums over its whole input, so vmap calls it once per batch element.
    out = jax.pure_callback(host, tuple(specs), *xs,
                            vmap_method="broadcast_all" if elementwise else "sequential")
    return out if len(out) > 1 else out[0]


def _elementwise(name: str, kernel: Callable, backward: Callable) -> Callable:
    """y = kernel(x) with dx = backward(y, dy) (the derivative in terms of y)."""

    def run(k, *xs):
        xs, computed, result = _compute(list(xs))
        return _callback(k, [xs[0].shape], computed, *xs, elementwise=True).astype(result)

    @jax.custom_vjp
    def f(x):
        return run(kernel, x)

    def f_fwd(x):
        y = run(kernel, x)
        return y, y

    def f_bwd(y, dy):
        return (run(backward, y, dy.astype(y.dtype)),)

    f.defvjp(f_fwd, f_bwd)

    def function(x):
        return f(_check(name, "x", x))

    return function


def _cost(name: str, kernel: Callable, gradient: Callable, arguments: list[str]) -> Callable:
    """J = kernel(*batches) (a scalar) with dJ/d(batch) = gradient(*batches)."""

    def run(k, shapes, *xs):
        xs, computed, result = _compute(list(xs))
        out = _callback(k, shapes(xs), computed, *xs, elementwise=False)
        return tuple(o.astype(result) for o in out) if isinstance(out, tuple) else (
            out.astype(result))

    @jax.custom_vjp
    def f(*xs):
        return run(kernel, lambda xs: [()], *xs)

    def f_fwd(*xs):
        return f(*xs), xs

    def f_bwd(xs, g):
        grads = run(gradient, lambda xs: [x.shape for x in xs], *xs)
        grads = grads if isinstance(grads, tuple) else (grads,)
        # The chain rule: the cost's gradients scaled by its upstream gradient.
        return tuple(gi * g for gi in grads)

    f.defvjp(f_fwd, f_bwd)

    def function(*xs):
        if len(xs) != len(arguments):
            raise TypeError(f"symdl.jax.{name}() takes {len(arguments)} arrays "
                            f"({', '.join(arguments)}), got {len(xs)}")
        return f(*[_check(name, n, x) for n, x in zip(arguments, xs, strict=True)])

    return function


_WRAPPED: dict[int, types.SimpleNamespace] = {}


def wrap(module: types.ModuleType) -> types.SimpleNamespace:
    """Differentiable JAX functions for a generated kernel module: every elementwise
    kernel with a derived ``<name>_backward(y, dy)`` and every cost with a derived
    ``<name>_grad`` (kernels whose arguments are all arrays).

    Returns:
        A namespace with one function per such kernel, taking and returning arrays.
    """
    if id(module) in _WRAPPED:
        return _WRAPPED[id(module)]
    functions = {}
    for name, (forward, gradient, is_cost) in differentiable_kernels(module).items():
        params = [p for p in inspect.signature(forward).parameters.values() if p.name != "out"]
        if any(p.default is not inspect.Parameter.empty for p in params):
            continue  # (scalar arguments: pooling, convolution; not taken here)
        if is_cost:
            fn = _cost(name, forward, gradient, [p.name for p in params])
        elif len(params) == 1 and output_based(forward, gradient):
            fn = _elementwise(name, forward, gradient)
        else:
            continue
        fn.__name__ = fn.__qualname__ = name
        fn.__doc__ = (f"{forward.__doc__ or ''}\n\n    JAX arrays in and out; "
                      f"differentiable through {gradient.__name__}.")
        functions[re.sub(r"\W", "_", name)] = fn
    _WRAPPED[id(module)] = wrapped = types.SimpleNamespace(**functions)
    return wrapped


def _builtin() -> dict:
    functions = {}
    for name in ("activations", "gan"):
        functions |= vars(wrap(importlib.import_module(f"symdl.kernels.{name}")))
    return functions


_FUNCTIONS = _builtin()
globals().update(_FUNCTIONS)
__all__ = sorted([*_FUNCTIONS, "wrap"])
