"""Helpers to drive the real `optml` command in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


class CLI:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db = workdir / "optml.db"
        self.storage = f"sqlite:///{self.db}"

    def write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "optml.cli", *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        """Start the CLI in the background, with Ctrl-C (SIGINT) handled as at a terminal.

        A shell without job control starts background jobs with SIGINT ignored, and a child
        inherits that: a test run started that way (``make test &``, some CI runners) would
        otherwise send SIGINT to a process that cannot hear it.
        """
        return subprocess.Popen(
            self.command(*args),
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            preexec_fn=_default_sigint,
        )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)
