"""Shared test fixtures."""

from __future__ import annotations

import importlib.util

import pytest


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
