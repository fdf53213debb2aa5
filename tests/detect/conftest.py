"""A helper to run the real `optml` command on model scripts (Keras on its torch backend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The corpus scripts are model scripts, not tests: --doctest-modules must not import (run) them.
collect_ignore_glob = ["corpus/*"]


def env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "KERAS_BACKEND": "torch", "PYTHONUNBUFFERED": "1"}


def optml(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optml.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


@pytest.fixture
def run_optml():
    """Run the real `optml` command in a subprocess: run_optml(*args, cwd=...)."""
    return optml


@pytest.fixture(autouse=True)
def _keras_on_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "torch")
