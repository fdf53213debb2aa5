"""Process helpers: kill a whole process tree, limit threads in workers, name this controller."""

from __future__ import annotations

import os
import signal
import socket


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill ``pid`` and every process below it (children first, then the process itself)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    # Children that escaped into their own process group were caught above; a group the
    # process leads may still hold grandchildren that were re-parented away.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    psutil.wait_procs(procs, timeout=5)


def controller_id() -> str:
    """``host:pid`` of this process, recorded on the trials it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def controller_alive(worker: str | None) -> bool:
    """Whether the controller named by :func:`controller_id` still runs (unknown hosts: True)."""
    import psutil

    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        return psutil.pid_exists(int(pid)) and int(pid) != os.getpid()
    except ValueError:
        return False


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
