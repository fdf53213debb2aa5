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


@pytest.fixture(autouse=True, scope="session")
def _private_config_dir(tmp_path_factory):
    """Keep the signing key optml creates (see optml._trust) out of the user's home."""
    import os

    os.environ["OPTML_CONFIG_DIR"] = str(tmp_path_factory.mktemp("optml-config"))
