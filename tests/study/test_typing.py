"""The Python API as a type checker sees it (mypy on a user's snippet)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from optml import Trial, create_study

SNIPPET = """
from typing import assert_type

import optml

study = optml.create_study(space={"x": {"uniform": [0, 1]}}, storage="memory://", seed=0)
assert_type(study.ask(), optml.Trial)
assert_type(study.ask(2), list[optml.Trial])
x = study.ask().params["x"]
study.tell(study.ask(), 1.0)
for trial in study.ask(3):
    study.tell(trial.number, {"value": x})


def either(n: int | None) -> optml.Trial | list[optml.Trial]:
    return study.ask(n)
"""


def test_ask_returns_a_trial_without_a_count_and_a_list_with_one() -> None:
    study = create_study(space={"x": {"uniform": [0, 1]}}, storage="memory://", seed=0)
    assert isinstance(study.ask(), Trial)
    assert isinstance(study.ask(2), list) and len(study.ask(0)) == 0
    exec(compile(textwrap.dedent(SNIPPET), "snippet", "exec"), {})  # the snippet runs


@pytest.mark.slow
def test_mypy_accepts_a_users_ask_and_tell(tmp_path) -> None:
    (tmp_path / "snippet.py").write_text(textwrap.dedent(SNIPPET))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(tmp_path / "snippet.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
