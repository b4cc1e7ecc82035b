"""Shared fixtures: the repository root, and the generated kernels as users import them."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def kernels():
    import symdl.kernels

    return symdl.kernels
