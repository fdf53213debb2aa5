"""The local executor: a pool of worker processes on this machine, one trial per worker at a time."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from typing import Any

from optml import _interrupt
from optml._process import (
    become_subreaper,
    descendants,
    kill_group,
    kill_procs,
    kill_tree,
    limit_threads,
)
from optml.errors import OptMLError
from optml.executors._base import Executor, TrialOutcome, TrialTask, read_log_tail, run_trial
from optml.objectives._base import Objective


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_local_workers() -> int:
    """The most local workers started without ``oversubscribe``: 4 per usable CPU, at least 8.

    Trials that mostly wait (on a GPU, a remote service, a sleep) can use a few workers per
    CPU; far beyond that, workers only compete for the CPUs and each costs a process's memory.
    """
    return max(8, 4 * usable_cpus())


def check_worker_count(workers: int, oversubscribe: bool = False) -> None:
    """Refuse a local worker count far above the CPU count unless the user insists."""
    limit = max_local_workers()
    if workers > limit and not oversubscribe:
        raise OptMLError(
            f"execution.workers: {workers} local workers is far more than this machine's "
            f"{usable_cpus()} CPU(s) (at most {limit} without insisting); to start them anyway, "
            "set execution: {oversubscribe: true} in the spec, pass --oversubscribe to optml "
            "run, or oversubscribe=True to LocalExecutor / make_executor"
        )


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    task: TrialTask | None = None
    started: float = 0.0
    started_at: datetime | None = None
    deadline: float | None = None


class LocalExecutor(Executor):
    """Runs trials in ``workers`` long-lived processes (default: one per CPU).

    Each worker leads its own session and (on Linux) is a child subreaper: every process its
    trial starts stays its descendant, even one that double-forks or starts a new session. The
    worker kills all of them when it ends (processes a trial leaves running are kept until
    then, so that a pool the next trial reuses survives); a trial past its time limit is
    stopped by killing the worker's whole tree, and a fresh worker takes its place. A worker whose
    controller dies, or that is sent SIGTERM, kills its trial's processes and exits (within a
    second of the controller's death). Workers are forked where the platform allows it (no
    pickling of the objective, closures work); the controller must then have no other threads
    running, which is why the progress display is refreshed from the controller loop.

    More than :func:`max_local_workers` workers are refused unless ``oversubscribe`` is set.
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        threads_per_worker: int | None = 1,
        oversubscribe: bool = False,
    ) -> None:
        self.workers = max(1, int(workers or usable_cpus()))
        check_worker_count(self.workers, oversubscribe)
        self.threads_per_worker = threads_per_worker
        self._workers: list[_Worker] = []
        self._objective: Objective | None = None
        self._log_dir: str | None = None
        methods = multiprocessing.get_all_start_methods()
        self._mp = multiprocessing.get_context("fork" if "fork" in methods else "spawn")

    # -- life cycle -----------------------------------------------------------------------
    def start(self, objective: Objective) -> None:
        self._objective = objective
        self._log_dir = tempfile.mkdtemp(prefix="optml-logs-")
        # Every started worker must be in the list that shutdown() kills: a Ctrl-C between a
        # fork and its record would leave a worker that the exiting controller waits for.
        with _interrupt.critical():
            for _ in range(self.workers):
                self._workers.append(self._spawn())

    def _spawn(self) -> _Worker:
        parent, child = self._mp.Pipe()
        proc = self._mp.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child, self._objective, self._log_dir, self.threads_per_worker, os.getpid()),
            name="optml-worker",
        )
        proc.start()
        child.close()
        return _Worker(proc=proc, conn=parent)

    def shutdown(self, kill: bool = False) -> None:
        for w in self._workers:
            if kill or w.task is not None:
                kill_tree(w.proc.pid)
            else:
                try:
                    w.conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
        for w in self._workers:
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                kill_tree(w.proc.pid)
                w.proc.join(timeout=2)
            w.conn.close()
        self._workers = []
        if self._log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    # -- work -----------------------------------------------------------------------------
    def free_slots(self) -> int:
        return sum(1 for w in self._workers if w.task is None)

    def running(self) -> int:
        return sum(1 for w in self._workers if w.task is not None)

    def submit(self, task: TrialTask) -> None:
        for w in self._workers:
            if w.task is None:
                w.conn.send(task)
                w.task = task
                w.started = time.monotonic()
                w.started_at = datetime.now(UTC)
                w.deadline = w.started + task.timeout if task.timeout else None
                return
        raise RuntimeError("no free worker: check free_slots() before submit()")

    def wait(self, timeout: float | None = None) -> list[TrialOutcome]:
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        now = time.monotonic()
        limit = timeout
        deadlines = [w.deadline - now for w in busy if w.deadline is not None]
        if deadlines:
            nearest = max(0.0, min(deadlines))
            limit = nearest if limit is None else min(limit, nearest)
        objects: list[Any] = [w.conn for w in busy] + [w.proc.sentinel for w in busy]
        ready = set(wait_any(objects, timeout=limit))
        outcomes: list[TrialOutcome] = []
        now = time.monotonic()
        for i, w in enumerate(self._workers):
            task = w.task
            if task is None:
                continue
            outcome: TrialOutcome | None = None
            if w.conn in ready:
                try:
                    outcome = w.conn.recv()
                except (EOFError, OSError):
                    outcome = None
            if outcome is not None:
                w.task = None
                outcomes.append(outcome)
            elif w.proc.sentinel in ready or w.conn in ready or not w.proc.is_alive():
                # What its trial left in the worker's process group dies with it.
                kill_group(w.proc.pid)
                w.proc.join(timeout=1)
                outcomes.append(self._lost(w, task, "FAILED", _death_message(w.proc.exitcode)))
                self._workers[i] = self._spawn()
            elif w.deadline is not None and now >= w.deadline:
                kill_tree(w.proc.pid)
                w.proc.join(timeout=2)
                message = f"the trial ran past its time limit of {task.timeout:g} s and was killed"
                outcomes.append(self._lost(w, task, "TIMEOUT", message))
                self._workers[i] = self._spawn()
        return outcomes

    def _lost(self, w: _Worker, task: TrialTask, state: str, error: str) -> TrialOutcome:
        w.conn.close()
        logs = read_log_tail(_log_path(self._log_dir or "", w.proc.pid, task.number))
        return TrialOutcome(
            number=task.number,
            state=state,
            error=error,
            logs=logs,
            duration_s=time.monotonic() - w.started,
            started_at=w.started_at,
            finished_at=datetime.now(UTC),
            attempt=task.attempt,
            host=socket.gethostname(),
            runner=str(w.proc.pid),
        )


def _death_message(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"the worker process running the trial was killed by signal {name}"
    return f"the worker process running the trial exited unexpectedly with status {code}"


def _log_path(log_dir: str, pid: int, number: int) -> str:
    return os.path.join(log_dir, f"trial-{number}-{pid}.log")


def _worker_main(
    conn: Connection, objective: Objective, log_dir: str, threads: int | None, controller: int
) -> None:
    os.setsid()
    become_subreaper()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller handles Ctrl-C
    # Not the controller's handler inherited by the fork, which defers the signal.
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Write Python-level output to the real fds 1 and 2, which each trial redirects to its log
    # (a forked worker may have inherited a replaced sys.stdout, e.g. under a test runner).
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if threads:
        limit_threads(threads)
    threading.Thread(target=_watch_controller, args=(controller,), daemon=True).start()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
        if task is None:
            break
        outcome = run_trial(
            objective,
            task,
            log_path=_log_path(log_dir, os.getpid(), task.number),
            interruptible=False,  # SIGINT is ignored here: a KeyboardInterrupt is the trial's
        )
        # Processes a Python trial leaves running are kept until the worker ends: they may be
        # a pool the objective reuses in its next trial (joblib's loky workers, for one), which
        # breaks if they are killed between trials. A timeout, a SIGTERM, the controller's death
        # and the worker's exit still take every one of them down.
        try:
            conn.send(outcome)
        except (OSError, BrokenPipeError):
            break
    conn.close()
    kill_procs(descendants())


def _on_sigterm(signum: int, frame: Any) -> None:
    """Stop the running trial (all its processes) and end the worker as SIGTERM would."""
    kill_procs(descendants())
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _watch_controller(controller: int) -> None:
    """Take this worker and everything below it down if the controller goes away."""
    while True:
        time.sleep(0.5)
        if os.getppid() != controller:
            try:
                kill_procs(descendants(), wait=0)
                os.killpg(0, signal.SIGKILL)
            finally:
                os._exit(1)
