"""Fixtures for the web server's tests: the app over a real SQLite file, and a real server
process (uvicorn) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOKEN = "test-token-123"
pytest.importorskip("fastapi")


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    from optml.server import create_app

    app = create_app(f"sqlite:///{tmp_path}/web.db", tmp_path / "files", token=TOKEN)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``optml serve`` in a subprocess (its own session, so the test can kill it outright)."""

    def __init__(self, workdir: Path, db: Path) -> None:
        self.workdir, self.db = workdir, db
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {**os.environ, "OPTML_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "optml.cli", "serve", "--port", str(self.port),
             "--storage", f"sqlite:///{self.db}", "--files", str(self.workdir / "files")],
            cwd=self.workdir, env=env, stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "server.log", "ab"), start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "server.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the server did not start within 60 s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    servers: list[Server] = []

    def make() -> Server:
        s = Server(tmp_path, tmp_path / "web.db")
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        s.kill()
