"""Shared fixtures: a clean registry per test, and the toy task / methods / model of helpers.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _p in (str(_TESTS.parent), str(_TESTS)):  # `import deeprobe_bench` uninstalled; `import helpers`
    if _p not in sys.path:
        sys.path.insert(0, _p)

from deeprobe_bench import registry  # noqa: E402


@pytest.fixture(autouse=True)
def clean_registry():
    """Every test starts and ends with an empty registry (no plugins, no cached entry-point scan)."""
    registry.reset()
    yield
    registry.reset()


@pytest.fixture
def toys():
    """The toy task, methods and model of tests/helpers.py, registered in-process."""
    import helpers

    helpers.register_toys()
    return helpers
