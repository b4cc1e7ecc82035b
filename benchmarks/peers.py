"""The optional peer libraries: imported once, lazily, and reported when missing.

Only NumPy and SymPy are required; PyTorch, numexpr and JAX (and matplotlib for the
chart) are used when installed (``pip install -e ".[bench]"``) and skipped with a
note in the output otherwise.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType


@cache
def optional(name: str) -> ModuleType | None:
    """The module, or None when it is not installed (or cannot be imported)."""
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - a broken install is as good as a missing one here
        return None
    if name == "jax":
        # float64 inputs must stay float64 (JAX truncates to float32 by default).
        module.config.update("jax_enable_x64", True)
    return module


def version(name: str) -> str:
    """The installed version of a peer, or 'not installed'."""
    module = optional(name)
    return getattr(module, "__version__", "?") if module is not None else "not installed"


PEERS = ("symdl", "numpy", "lambdify", "numexpr", "torch", "torch.compile", "jax")
"""Column order of every table: symdl first, then the peers."""

PEER_MODULE = {"numexpr": "numexpr", "torch": "torch", "torch.compile": "torch", "jax": "jax"}
"""Peers that need an optional package (the others need only NumPy and SymPy)."""


def missing_peers() -> list[str]:
    """The peers that are skipped in this run because their package is missing."""
    return [p for p, mod in PEER_MODULE.items() if optional(mod) is None
            and p == mod]  # (torch.compile is missing when torch is: said once)
