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
