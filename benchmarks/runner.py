"""Run the cases: build every implementation, check it, time the ones that are right.

Each (kernel, dtype) gets one set of inputs; every implementation is first run once
and its result compared with the reference (the hand-written NumPy formula in
float64 on the same inputs). Only then is it timed, round-robin with the others.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cases import Case, Variants, lambdify_variants, symdl_variants
from .peers import optional
from .timing import OtherLoad, interleaved_medians


@dataclass
class Row:
    """One implementation of one kernel at one dtype, in one mode (alloc or out)."""

    kernel: str
    dtype: str
    mode: str
    peer: str
    seconds: float | None
    status: str  # "ok", or why it was not timed
    traffic: int  # minimal bytes read + written, write-allocate included
    other_load: float = float("nan")  # cores other processes kept busy meanwhile
    limit_gbs: float | None = None  # STREAM limit measured in the same rounds

    @property
    def gbs(self) -> float | None:
        return self.traffic / self.seconds / 1e9 if self.seconds and self.traffic else None


def _as_numpy(result: Any) -> np.ndarray:
    if isinstance(result, tuple | list):
        return np.array([float(np.asarray(v)) for v in result])
    if hasattr(result, "detach"):
        return result.detach().numpy()
    return np.asarray(result)


def check(got: Any, ref: Any, dtype: np.dtype, atol_eps: float = 0.0) -> str:
    """'ok', or what is wrong with ``got`` compared with the float64 reference."""
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


def _peer_variants(case: Case, peer: str, names: list[str]) -> tuple[Variants, str]:
    """A peer's variants for this case, taking numpy arrays, or (empty, why not)."""
    if peer == "symdl":
        return symdl_variants(case.name), ""
    if peer == "numpy":
        return case.numpy, ""
    if peer == "lambdify":
        return lambdify_variants(case.name)
    spec = getattr(case, peer)
    if spec is None:
        return Variants(), "no peer entry"
    module = optional(peer)
    if module is None:
        return Variants(), f"{peer} not installed"
    if peer == "numexpr":
        if not isinstance(spec, str):
            return spec(module), ""
        def env(a):
            return dict(zip(names, a, strict=True))

        return Variants(lambda *a: module.evaluate(spec, local_dict=env(a)),
                        lambda *a, out: module.evaluate(spec, local_dict=env(a), out=out)), ""
    if peer == "torch":
        v = spec(module)
        wrap = module.from_numpy
        return Variants(
            v.alloc and (lambda *a: v.alloc(*map(wrap, a))),
            v.out and (lambda *a, out: v.out(*map(wrap, a), out=wrap(out))),
        ), ""
    if peer == "jax":
        fn = module.jit(spec(module))
        return Variants(_JaxCall(module, fn)), ""
    raise ValueError(f"unknown peer {peer!r}")


class _JaxCall:
    """A jitted function: inputs moved to JAX once per input set, result awaited."""

    def __init__(self, jax, fn) -> None:
        self.jax, self.fn, self.args, self.key = jax, fn, None, None

    def __call__(self, *args):
        if self.key is None or any(a is not b for a, b in zip(args, self.key, strict=True)):
            self.key, self.args = args, [self.jax.numpy.asarray(a) for a in args]
        return self.jax.block_until_ready(self.fn(*self.args))


def run_case(case: Case, n: int, dtype: np.dtype, rounds: int, peers: list[str],
             seed: int = 0, sample: float = 2e-3, probe=None) -> list[Row]:
    """Check and time every implementation of one kernel at one dtype.

    With a ``stream.Probe``, STREAM is timed in the same rounds, and each row carries
    the limit measured under the same load as the kernel.
    """
    dtype = np.dtype(dtype)
    inputs64 = case.inputs(n, np.random.default_rng(seed))
    names = list(inputs64)
    args = [np.ascontiguousarray(a, dtype=dtype) for a in inputs64.values()]
    up = [a.astype(np.float64) for a in args]
    with np.errstate(all="ignore"):
        ref = case.numpy.alloc(*up)
    atol_eps = case.atol(dict(zip(names, up, strict=True)), ref) if case.atol else 0.0
    out = np.zeros(np.shape(ref), dtype=dtype) if isinstance(ref, np.ndarray) else None
    read = sum(a.nbytes for a in args)
    written = out.nbytes if out is not None else 0
    traffic = read + 2 * written  # an ordinary store also reads its cache line first

    rows: list[Row] = []
    thunks: dict[tuple[str, str], Callable[[], object]] = {}
    for peer in peers:
        variants, why = _peer_variants(case, peer, names)
        for mode in ("alloc", "out"):
            fn = getattr(variants, mode)
            row = Row(case.name, dtype.name, mode, peer, None, "", traffic)
            rows.append(row)
            if fn is None:
                row.status = why or ("no out= variant" if mode == "out" else "no variant")
                continue
            if mode == "out":
                if out is None:
                    row.status = "scalar result"
                    continue

                def thunk(fn=fn):
                    return fn(*args, out=out)
            else:

                def thunk(fn=fn):
                    return fn(*args)

            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    got = thunk()
                    if mode == "out":
                        got = out
                    row.status = check(got, ref, dtype, atol_eps)
            except Exception as err:  # noqa: BLE001 - a peer that fails is reported, not fatal
                row.status = f"error: {type(err).__name__}: {str(err).splitlines()[0][:60]}"
            if row.status == "ok":
                thunks[(mode, peer)] = thunk
    with warnings.catch_warnings(), np.errstate(all="ignore"), OtherLoad() as other:
        warnings.simplefilter("ignore")
        medians = interleaved_medians({**thunks, **(probe.thunks() if probe else {})},
                                      rounds, sample)
    limit = probe.result(medians).limit_gbs if probe else None
    for row in rows:
        row.other_load = other.cores
        row.limit_gbs = limit
        if (row.mode, row.peer) in medians:
            row.seconds = medians[(row.mode, row.peer)]
    return rows
