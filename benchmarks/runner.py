"""Run the cases: build every implementation, check it, time the ones that are right.

Each (kernel, dtype) gets one set of inputs; every implementation is first run once
and its result compared with the reference (the hand-written NumPy formula in
float64 on the same inputs). Only then is it timed, round-robin with the others.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cases import Case, Variants, lambdify_variants, symdl_variants
from .peers import PEER_MODULE, optional
from .spec import bind
from .timing import SAMPLE_S, OtherLoad, interleaved_medians


@dataclass
class Row:
    """One implementation of one kernel at one dtype, in one mode (alloc, out, inplace)."""

    kernel: str
    dtype: str
    mode: str
    peer: str
    seconds: float | None
    status: str  # "ok", or why it was not timed
    traffic: int  # minimal bytes read + written, write-allocate included
    other_load: float = float("nan")  # cores other processes kept busy meanwhile
    limit_gbs: float | None = None  # STREAM limit measured in the same rounds
    reference_gbs: float | None = None  # the case's same-traffic pass, same rounds
    variant: str = ""  # which of a peer's ways (torch: "fused", "foreach", ...)

    @property
    def gbs(self) -> float | None:
        return self.traffic / self.seconds / 1e9 if self.seconds and self.traffic else None


def _as_numpy(result: Any) -> np.ndarray:
    if isinstance(result, tuple | list):
        return np.array([float(np.asarray(v)) for v in result])
    if hasattr(result, "detach"):
        return result.detach().numpy()
    return np.asarray(result)


def _parts(result: Any) -> list[Any]:
    """A result as a list of parts: arrays, or one array of scalars (a tuple of them)."""
    if isinstance(result, tuple | list) and any(np.ndim(_as_numpy(v)) for v in result):
        return [p for v in result for p in _parts(v)]
    return [result]


def check(got: Any, ref: Any, dtype: np.dtype, atol_eps: float | tuple = 0.0) -> str:
    """'ok', or what is wrong with ``got`` compared with the float64 reference.

    A result made of several arrays (a pipeline's, an in-place update's) is compared
    part by part, each against its own scale, with ``atol_eps`` one number or one per
    part."""
    gots, refs = _parts(got), _parts(ref)
    if len(gots) != len(refs):
        return f"WRONG: {len(gots)} results, expected {len(refs)}"
    atols = atol_eps if isinstance(atol_eps, tuple | list) else (atol_eps,) * len(refs)
    for k, (g, r, a) in enumerate(zip(gots, refs, atols, strict=True)):
        status = _check_part(g, r, dtype, a)
        if status != "ok":
            return status if len(refs) == 1 else f"{status} in result {k}"
    return "ok"


def _check_part(got: Any, ref: Any, dtype: np.dtype, atol_eps: float) -> str:
    got, ref = _as_numpy(got), _as_numpy(ref)
    if got.shape != ref.shape:
        return f"WRONG shape {got.shape}, expected {ref.shape}"
    eps = float(np.finfo(dtype).eps)
    # A few rounding errors of the benchmarked dtype on each side; saturated values
    # (sigmoid -> 0) are judged against the output's scale, not their own.
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    tol = 16 * eps * (np.abs(ref) + scale) + atol_eps * eps
    err = np.abs(got.astype(np.float64) - ref)
    bad = ~(err <= tol) & ~(np.isnan(got) & np.isnan(ref))
    if bad.any():
        return f"WRONG (max error {float(np.nanmax(err)):.3g}, tolerance {float(tol.max()):.3g})"
    return "ok"


def _bind(fn, params):
    return fn and bind(fn, params)


def _peer_variants(case: Case, peer: str, names: list[str]
                   ) -> tuple[dict[str, Variants], str]:
    """A peer's variants for this case by name ("" when it has one way), taking numpy
    arrays with the case's parameters bound, or (empty, why not)."""
    if peer == "symdl":
        return {"": symdl_variants(case, names)}, ""
    if peer == "numpy":
        v = case.numpy
        return {"": Variants(_bind(v.alloc, case.params), _bind(v.out, case.params))}, ""
    if peer == "lambdify":
        v, why = lambdify_variants(case, names)
        return {"": v}, why
    spec = getattr(case, peer.replace(".", "_"))
    if spec is None:
        return {}, "no peer entry"
    module = optional(PEER_MODULE[peer])
    if module is None:
        return {}, f"{PEER_MODULE[peer]} not installed"
    if peer == "numexpr":
        if not isinstance(spec, str):
            v = spec(module)
            return {"": Variants(_bind(v.alloc, case.params), _bind(v.out, case.params))}, ""

        def env(a):
            # Parameters as scalars of the arrays' dtype, so float32 stays float32.
            kw = {k: np.asarray(v, dtype=a[0].dtype) for k, v in case.params.items()}
            return {**dict(zip(names, a, strict=True)), **kw}

        return {"": Variants(lambda *a: module.evaluate(spec, local_dict=env(a)),
                             lambda *a, out: module.evaluate(spec, local_dict=env(a),
                                                             out=out))}, ""
    if peer == "torch":
        ways = spec(module)
        ways = ways if isinstance(ways, Mapping) else {"": ways}
        return {k: Variants(_bind(v.alloc, case.params) and _TorchCall(
                                module, _bind(v.alloc, case.params)),
                            _bind(v.out, case.params) and _TorchCall(
                                module, _bind(v.out, case.params)))
                for k, v in ways.items()}, ""
    if peer == "torch.compile":
        # Compiled on the first call (the check), so the timed rounds exclude it.
        fn = bind(spec(module), case.params)
        return {"": Variants(_TorchCall(module, fn))}, ""
    if peer == "jax":
        # Parameters are compile-time constants, as a user's closure would make them.
        fn = module.jit(bind(spec(module), case.params))
        if case.inplace:
            return {"": Variants(_JaxStep(module, fn, [names.index(k)
                                                       for k in case.inplace]))}, ""
        return {"": Variants(_JaxCall(module, fn))}, ""
    raise ValueError(f"unknown peer {peer!r}")


class _TorchCall:
    """A PyTorch call on numpy arrays: the tensors sharing their memory are made once
    per input set (so a stateful peer, an optimizer, sees the same tensors)."""

    def __init__(self, torch, fn) -> None:
        self.torch, self.fn, self.key, self.args = torch, fn, None, None

    def __call__(self, *args, out=None):
        if self.key is None or any(a is not b for a, b in zip(args, self.key, strict=True)):
            self.key, self.args = args, [self.torch.from_numpy(a) for a in args]
        if out is None:
            return self.fn(*self.args)
        return self.fn(*self.args, out=self.torch.from_numpy(out))


class _JaxCall:
    """A jitted function: inputs moved to JAX once per input set, result awaited."""

    def __init__(self, jax, fn) -> None:
        self.jax, self.fn, self.args, self.key = jax, fn, None, None

    def __call__(self, *args):
        if self.key is None or any(a is not b for a, b in zip(args, self.key, strict=True)):
            self.key, self.args = args, [self.jax.numpy.asarray(a) for a in args]
        return self.jax.block_until_ready(self.fn(*self.args))


class _JaxStep:
    """A jitted functional update of a case's in-place arrays (it returns their new
    values). Their state stays in JAX between calls, as in a JAX training loop: loaded
    once per input set, and written back into the NumPy arrays only by the first call
    on them (the check's), so the timed calls do not pay a copy a JAX user never makes."""

    def __init__(self, jax, fn, at: list[int]) -> None:
        self.jax, self.fn, self.at, self.key, self.args = jax, fn, at, None, None

    def __call__(self, *args):
        first = self.key is None or any(a is not b
                                        for a, b in zip(args, self.key, strict=True))
        if first:
            self.key, self.args = args, [self.jax.numpy.asarray(a) for a in args]
        new = self.jax.block_until_ready(self.fn(*self.args))
        for i, value in zip(self.at, new, strict=True):
            self.args[i] = value
            if first:
                np.copyto(args[i], np.asarray(value))


def run_case(case: Case, n: int, dtype: np.dtype, rounds: int, peers: list[str],
             seed: int = 0, sample: float = SAMPLE_S, probe=None) -> list[Row]:
    """Check and time every implementation of one kernel at one dtype.

    With a ``stream.Probe``, STREAM is timed in the same rounds, and each row carries
    the limit measured under the same load as the kernel.
    """
    dtype = np.dtype(dtype)
    inputs64 = case.inputs(n, np.random.default_rng(seed))
    names = list(inputs64)
    args = [np.ascontiguousarray(a, dtype=dtype) for a in inputs64.values()]
    up = {k: a.astype(np.float64) for k, a in zip(names, args, strict=True)}
    ref = _reference(case, names, up)
    atol_eps = case.atol(up, ref) if case.atol else 0.0
    out = out_buffers(ref, dtype)
    traffic = case.traffic(dict(zip(names, args, strict=True))) if case.traffic else \
        _traffic(case, args, ref, dtype)
    # In-place calls: each check on fresh copies; timing on one working set, which
    # every implementation updates in turn (the values stay in range over the rounds).
    work = [a.copy() for a in args] if case.inplace else args

    rows: list[Row] = []
    thunks: dict[tuple[str, str, str], Callable[[], object]] = {}
    for peer in peers:
        ways, why = _peer_variants(case, peer, names)
        for variant, variants in (ways or {"": Variants()}).items():
            for mode in case.modes:
                fn = getattr(variants, "alloc" if mode == "inplace" else mode)
                row = Row(case.name, dtype.name, mode, peer, None, "", traffic,
                          variant=variant)
                rows.append(row)
                if fn is None:
                    row.status = why or ("no out= variant" if mode == "out" else "no variant")
                    continue
                if mode == "out" and out is None:
                    row.status = "scalar result"
                    continue
                row.status = _checked(case, names, fn, mode, args, out, ref, dtype, atol_eps,
                                      up)
                if row.status == "ok":
                    thunks[(mode, peer, variant)] = _thunk(fn, mode, work, out)
    with warnings.catch_warnings(), np.errstate(all="ignore"), OtherLoad() as other:
        warnings.simplefilter("ignore")
        medians = interleaved_medians({**thunks, **(probe.thunks() if probe else {})},
                                      rounds, sample)
    stream = probe.result(medians) if probe else None
    limit = stream.limit_gbs if stream else None
    reference = getattr(stream, f"{case.reference}_gbs") if stream and case.reference else None
    for row in rows:
        row.other_load = other.cores
        row.limit_gbs = limit
        row.reference_gbs = reference
        row.seconds = medians.get((row.mode, row.peer, row.variant))
    return rows


def out_buffers(ref: Any, dtype: np.dtype) -> Any:
    """Preallocated results for out= calls: one array, or one per part of a result of
    several arrays (dropout's output and bool mask); None for scalar results."""
    def like(r: np.ndarray) -> np.ndarray:
        return np.zeros(r.shape, dtype=np.bool_ if r.dtype == np.bool_ else dtype)

    if isinstance(ref, np.ndarray):
        return like(ref)
    if isinstance(ref, tuple) and all(isinstance(r, np.ndarray) and r.ndim for r in ref):
        return tuple(like(r) for r in ref)
    return None


def _reference(case: Case, names: list[str], up: dict[str, np.ndarray]) -> Any:
    """The hand-written NumPy formula in float64: its result, or the updated arrays."""
    fn = _bind(case.numpy.alloc, case.params)
    with np.errstate(all="ignore"):
        if not case.inplace:
            return fn(*up.values())
        copies = {k: a.copy() for k, a in up.items()}
        fn(*copies.values())
        return tuple(copies[k] for k in case.compared)


def _traffic(case: Case, args: list[np.ndarray], ref: Any, dtype: np.dtype) -> int:
    """Minimal bytes: inputs read; results written, plus the read of each fresh
    output's lines before they are stored (write-allocate), none for in-place ones."""
    read = sum(a.nbytes for a in args)
    if case.inplace:
        return read + sum(r.size * dtype.itemsize for r in _parts(ref))
    written = sum(np.size(r) * (1 if np.asarray(r).dtype == np.bool_ else dtype.itemsize)
                  for r in _parts(ref) if np.ndim(r))
    return read + 2 * written


def _checked(case, names, fn, mode, args, out, ref, dtype, atol_eps, up) -> str:
    """Run one implementation once, on copies where it updates in place; check it."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if mode == "inplace":
                copies = [a.copy() for a in args]
                fn(*copies)
                got = tuple(copies[names.index(k)] for k in case.compared)
            elif mode == "out":
                fn(*args, out=out)
                got = out
            else:
                got = fn(*args)
            if case.validate is not None:
                return case.validate(up, got, dtype)
            return check(got, ref, dtype, atol_eps)
    except Exception as err:  # noqa: BLE001 - a peer that fails is reported, not fatal
        return f"error: {type(err).__name__}: {str(err).splitlines()[0][:60]}"


def _thunk(fn, mode: str, args: list[np.ndarray], out) -> Callable[[], object]:
    if mode == "out":
        return lambda: fn(*args, out=out)
    return lambda: fn(*args)
