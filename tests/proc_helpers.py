"""Helpers for tests that start real processes: wait for them to end, kill what is left, wait
for a file a process writes, read an executor's events until some hold."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# A trial script that double-forks a daemon ignoring SIGTERM (its output closed, its pid written
# to daemon.pid), then hangs, or with the argument "finish" prints a result and exits.
DAEMONIZING_SCRIPT = """
import os, signal, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        with open("daemon.pid", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
    os._exit(0)
os.wait()
while not os.path.exists("daemon.pid"):
    time.sleep(0.01)
if sys.argv[1:] != ["finish"]:
    time.sleep(120)
print(0.5)
"""


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``within`` seconds."""
    import psutil

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def kill(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids`` that still runs (clean-up after a test)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def wait_for_text(path: Path, within: float = 20.0, proc: Any = None) -> str:
    """The text of ``path`` once a process has written it; fails if ``proc`` (a Popen) ends
    first or nothing is written within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {within} s")


def ray_processes(marker: str, without: str | None = None) -> list[Any]:
    """Processes of a Ray instance whose files lie in a directory named with ``marker`` (and
    not ``without``): Ray's processes name it on their command lines or have their logs open
    there (its agents retitle themselves "ray::...")."""
    import psutil

    def ours(text: str) -> bool:
        return marker in text and (without is None or without not in text)

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if ours(cmdline) or ("ray" in cmdline and any(ours(f.path) for f in proc.open_files())):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def events_until(ex: Any, until: Any, within: float = 90.0) -> list:
    """An executor's events until ``until(events)`` holds (bounded by ``within`` seconds)."""
    got: list = []
    deadline = time.monotonic() + within
    while not until(got):
        assert time.monotonic() < deadline, f"gave up waiting; events so far: {got}"
        got += ex.events(0.2)
    return got


def outcomes_in(events: Iterable[Any]) -> list:
    """The trial outcomes among ``events``."""
    from optml.executors import TrialOutcome

    return [e for e in events if isinstance(e, TrialOutcome)]
