"""Shared fixtures: the repository root, and the generated kernels as users import them."""

import os
import tempfile
from pathlib import Path

import pytest

# symdl generate records its last generation in the user cache directory: the tests
# get a cache of their own, so that what they find there is what they wrote.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="symdl-test-cache-")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def kernels():
    import symdl.kernels

    return symdl.kernels


def sizes(module_name: str, serial: int = 7) -> list[int]:
    """A size that runs a kernel module's serial core (`serial`, or less) and one that
    runs its parallel core (the parallel path starts at the module's
    PARALLEL_THRESHOLD)."""
    import importlib

    module = importlib.import_module(f"symdl.kernels.{module_name}")
    return [min(serial, module.PARALLEL_THRESHOLD - 1), module.PARALLEL_THRESHOLD + 3]
