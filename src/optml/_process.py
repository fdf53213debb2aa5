"""Process helpers: own and kill process trees, limit threads in workers, name this controller."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The most of a trial's output kept in memory or in the database (its tail: a command's result
# is read from the last lines of its stdout, and an error is explained by its last lines).
LOG_TAIL = 8000

_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


@functools.cache
def _libc() -> Any:
    """The C library, where prctl(2) is (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _prctl(option: int, arg: Any) -> int | None:
    """Call Linux's prctl(2); None where it is not available."""
    libc = _libc()
    if libc is None:
        return None
    try:
        return int(libc.prctl(option, arg, 0, 0, 0))
    except AttributeError:
        return None


def become_subreaper(on: bool = True) -> bool:
    """Make this process (Linux: a child subreaper) the parent of every orphan below it.

    A process started by a trial that double-forks or starts a new session is then re-parented
    to this process instead of init, so :func:`descendants` still finds it and it can be
    killed. Returns whether the setting took (always False off Linux).
    """
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0) == 0


def is_subreaper() -> bool:
    """Whether this process is a child subreaper (False off Linux)."""
    value = ctypes.c_int(0)
    return _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value)) == 0 and bool(value.value)


_adopting_lock = threading.Lock()
_adopting = 0  # blocks in adopting_orphans() now running (in any thread)
_adopting_set = False  # whether the outermost one made this process a subreaper


@contextmanager
def adopting_orphans() -> Iterator[bool]:
    """Be a child subreaper for the block (unless already one); yields whether orphans below
    this process are now re-parented to it. Blocks may overlap across threads."""
    global _adopting, _adopting_set
    with _adopting_lock:
        if _adopting == 0:
            _adopting_set = not is_subreaper() and become_subreaper()
        _adopting += 1
        active = is_subreaper()
    try:
        yield active
    finally:
        with _adopting_lock:
            _adopting -= 1
            if _adopting == 0 and _adopting_set:
                become_subreaper(False)
                _adopting_set = False


def descendants(pid: int | None = None) -> list[Any]:
    """Every process below ``pid`` (this process by default), as psutil processes."""
    import psutil

    if pid is None and not _has_children():
        return []
    try:
        return list(psutil.Process(pid or os.getpid()).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _has_children() -> bool:
    """Whether this process has a child (cheap on Linux: no scan of every process)."""
    try:
        tasks = os.listdir("/proc/self/task")
        return any(Path(f"/proc/self/task/{t}/children").read_text().strip() for t in tasks)
    except OSError:
        return True  # unknown: let the caller look


def kill_procs(procs: list[Any], sig: int = signal.SIGKILL, wait: float = 5.0) -> None:
    """Send ``sig`` to every process in ``procs`` (collected first, so that none can fork a
    replacement between two kills going unseen), then wait for them (reaping our children)."""
    import psutil

    for proc in procs:
        try:
            proc.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    if wait:
        psutil.wait_procs(procs, timeout=wait)


def kill_descendants(pid: int | None = None, keep: set[int] | None = None) -> None:
    """SIGKILL every process below ``pid`` (this process by default) but those in ``keep``."""
    procs = [p for p in descendants(pid) if not keep or p.pid not in keep]
    kill_procs(procs)


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill ``pid`` and every process below it (all collected first, then signalled)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        procs = []
    kill_procs(procs, sig, wait=0)
    # A group the process leads may still hold members re-parented away from it (to init,
    # where no subreaper caught them), even after the process itself is gone.
    kill_group(pid, sig)
    psutil.wait_procs(procs, timeout=5)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal the process group ``pgid`` if it still has members."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass


@functools.cache
def hostname() -> str:
    """This machine's name (asked once: every trial and write would ask otherwise)."""
    return socket.gethostname()


def controller_id() -> str:
    """``host:pid`` of this process, recorded on the trials it runs."""
    return f"{hostname()}:{os.getpid()}"


def dead_local_owners(owners: set[str]) -> set[str]:
    """The owners (see :func:`controller_id`) that were processes of this machine and are gone.

    Only a negative answer is certain here: an owner on another host, or a live process here,
    is judged by its heartbeat instead (see :meth:`optml.study.Study.reap_stale`).
    """
    here, me = socket.gethostname(), os.getpid()
    local: dict[str, int] = {}
    for owner in owners:
        host, _, pid = owner.rpartition(":")
        if host == here and pid.isdigit() and int(pid) != me:
            local[owner] = int(pid)
    if not local:  # nothing to ask the system about (a study run by this process alone)
        return set()
    import psutil

    dead = set()
    for owner, number in local.items():
        try:
            gone = psutil.Process(number).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            gone = True
        except psutil.Error:
            gone = False
        if gone:
            dead.add(owner)
    return dead


THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(n: int = 1) -> None:
    """Keep numerical libraries in this process to ``n`` threads, so parallel trials don't fight."""
    for var in THREAD_ENV:
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass
