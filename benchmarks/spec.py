"""How a benchmark case is described: a kernel (or a chain of kernels) and its peers.

``cases`` and ``training`` hold the table entries; this module holds only the types,
so that both can import them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

Inputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Variants:
    """A peer's two ways of computing a kernel: ``alloc(*args)`` returns a new result;
    ``out(*args, out)`` writes the result into ``out``. Either may be missing. For a
    case that updates its inputs in place, ``alloc`` is the in-place call."""

    alloc: Callable[..., Any] | None = None
    out: Callable[..., Any] | None = None


TorchSpec = Callable[[ModuleType], "Variants | Mapping[str, Variants]"]
"""PyTorch's way (or named ways, such as fused and foreach: the fastest is reported)."""


@dataclass(frozen=True)
class Step:
    """One symdl kernel of a pipeline: it reads the named inputs (or earlier steps'
    results) and names its own results, so later steps can use them."""

    kernel: str
    args: tuple[str, ...]
    results: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    """One kernel (or pipeline) and its peers.

    ``inputs(n, rng)`` gives float64 inputs of about n elements, by argument name
    (the runner casts them to each dtype). ``numpy`` is the hand-written NumPy peer;
    its float64 ``alloc`` result, computed from the inputs upcast to float64, is the
    reference every result is checked against. ``numexpr`` is an expression string
    (or a function of the module giving Variants); ``torch`` and ``jax`` are functions
    of the module giving Variants (JAX: a function to ``jax.jit``); ``torch_compile``
    is a function of torch giving a function of tensors compiled with ``torch.compile``
    (default mode; on the CPU, Inductor's generated C++ kernels): the whole function,
    or the part a user compiles (an optimizer's step). ``bound`` says
    which target applies: "memory" (memory-bound), "compute" (transcendentals: 1.2x
    PyTorch and JAX), "peer" (no slower than PyTorch and JAX) or "own" (only the
    case's own ``torch_speedup``: conv2d's is 0.8, within 1.25x of PyTorch's time).

    The optional fields describe the other kinds of case:

    - ``params``: scalar keyword arguments passed to every implementation;
    - ``inplace``: inputs that every implementation updates in place (an optimizer
      step); the result of a call is then these arrays (those named in ``compare``,
      default all) after it, and each check runs on fresh copies;
    - ``pipeline``: the symdl kernels chained (forward + backward, cost + gradient);
      ``returns`` names the results that make up the pipeline's result, in order;
      without a pipeline, the symdl kernel is ``symdl.kernels.<kernel>``, by default
      ``<name>`` (``kernel`` lets two cases time one kernel with other ``params``);
    - ``validate(inputs64, result, dtype)``: for results that are random (dropout),
      "ok" or what is wrong, checked on the result's own properties instead of
      against the reference;
    - ``traffic(inputs)``: minimal bytes moved, where the default (inputs read,
      results written, write-allocate on fresh outputs) is not the minimum;
    - ``atol(inputs64, ref)``: extra absolute tolerance in units of the dtype's eps,
      one number or one per part of the result;
    - ``reference``: a pass of the STREAM probe with the kernel's own traffic ("read4":
      read 4 elements per element written, as pooling forward), timed in the same
      rounds; the report shows the kernel's bandwidth as a share of it beside the limit.
    """

    name: str
    inputs: Callable[[int, np.random.Generator], Inputs]
    numpy: Variants
    numexpr: str | Callable[[ModuleType], Variants] | None = None
    torch: TorchSpec | None = None
    jax: Callable[[ModuleType], Callable[..., Any]] | None = None
    torch_compile: Callable[[ModuleType], Callable[..., Any]] | None = None
    bound: str = "memory"
    atol: Callable[[Inputs, Any], float | tuple[float, ...]] | None = None
    notes: tuple[str, ...] = field(default=())
    params: Mapping[str, Any] = field(default_factory=dict)
    inplace: tuple[str, ...] = ()
    compare: tuple[str, ...] | None = None
    pipeline: tuple[Step, ...] = ()
    returns: tuple[str, ...] = ()
    validate: Callable[[Inputs, Any, np.dtype], str] | None = None
    traffic: Callable[[Inputs], int] | None = None
    kernel: str | None = None
    torch_speedup: float | None = None  # a target of its own: torch's time / ours >= this
    reference: str | None = None

    @property
    def kernels(self) -> tuple[str, ...]:
        """The symdl kernels this case calls."""
        return tuple(s.kernel for s in self.pipeline) or (self.kernel or self.name,)

    @property
    def modes(self) -> tuple[str, ...]:
        """How implementations are called: in place, or allocating and with ``out=``
        (a pipeline returns several results: it allocates)."""
        if self.inplace:
            return ("inplace",)
        return ("alloc",) if self.pipeline else ("alloc", "out")

    @property
    def compared(self) -> tuple[str, ...]:
        """The in-place arrays whose new values are the result of a call."""
        return self.compare if self.compare is not None else self.inplace


def bind(fn: Callable[..., Any], params: Mapping[str, Any]) -> Callable[..., Any]:
    """fn with those of the case's scalar parameters that it accepts bound as keywords."""
    if not params:
        return fn  # (builtins such as torch.sigmoid have no signature to inspect)
    accepted = inspect.signature(fn).parameters
    kw = {k: v for k, v in params.items() if k in accepted}
    return functools.partial(fn, **kw) if kw else fn
