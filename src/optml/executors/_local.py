"""The local executor: a pool of worker processes on this machine, one trial per worker at a time."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.connection import wait as wait_any
from typing import Any

from optml import _interrupt
from optml.errors import OptMLError
from optml.executors._base import (
    Executor,
    RecentDurations,
    TrialEvent,
    TrialOutcome,
    TrialReported,
    TrialStarted,
    TrialTask,
)
from optml.executors._gpus import GpuAllocator, GpuError, GpuLease, local_gpus, whole_gpus
from optml.executors._runtime import WorkerProcess
from optml.objectives._base import Objective

# While trials are short (RecentDurations.short), each worker is handed up to QUEUE tasks: it
# starts the next one as soon as it sends an outcome, instead of waiting idle for the
# controller's answer.
QUEUE = 4


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


class LocalExecutor(Executor):
    """Runs trials in ``workers`` long-lived worker processes of the runtime (default: one per
    CPU; see :class:`~optml.executors._runtime.WorkerProcess`).

    Each worker leads its own session and (on Linux) is a child subreaper: every process its
    trial starts stays its descendant, even one that double-forks or starts a new session. The
    worker kills all of them when it ends (processes a trial leaves running are kept until
    then, so that a pool the next trial reuses survives); a trial past its time limit is
    stopped by killing the worker's whole tree, and a fresh worker takes its place. A worker whose
    controller dies, or that is sent SIGTERM, kills its trial's processes and exits (within a
    second of the controller's death). Workers are forked where the platform allows it (no
    pickling of the objective, closures work); the controller must then have no other threads
    running, which is why the progress display is refreshed from the controller loop.

    While trials are far shorter than a round trip to a worker (:data:`~optml.executors._base.SHORT_TRIAL_S`), each
    worker takes up to :data:`QUEUE` tasks, run one after another, each with its own time limit
    from its start; a worker lost or timed out takes only its running trial with it, and the
    tasks behind it go to its replacement. (The controller uses these extra slots only for a
    sampler that ignores results.)

    More than :func:`max_local_workers` workers are refused unless ``oversubscribe`` is set.

    ``gpus``: how many GPUs each trial gets to itself. Each worker then holds that many of the
    machine's devices (:func:`~optml.executors._gpus.visible_gpus`) for its life and its
    trials see only them (``CUDA_VISIBLE_DEVICES``): CUDA binds a process to its devices when
    it first uses them, and an idle worker may still hold memory there. No more workers start
    than there are devices for, so further trials wait for one; a worker replaced after a
    timeout, a crash or a cancel takes over its devices. A machine with fewer devices than one
    trial asks for is refused when the executor is built.
    """

    name = "local"

    def __init__(
        self,
        workers: int | None = None,
        threads_per_worker: int | None = 1,
        oversubscribe: bool = False,
        gpus: float | None = None,
    ) -> None:
        self.workers = max(1, int(workers or usable_cpus()))
        check_worker_count(self.workers, oversubscribe)
        self.threads_per_worker = threads_per_worker
        self.gpus = whole_gpus(gpus, "local")
        self._devices: list[str] = []
        if self.gpus:
            self._devices = local_gpus(self.gpus)
            self.workers = min(self.workers, len(self._devices) // self.gpus)
        self._workers: list[WorkerProcess] = []
        self._recent = RecentDurations()
        self._leases: list[GpuLease] = []
        self._objective: Objective | None = None
        self._log_dir: str | None = None
        self._host = socket.gethostname()
        methods = multiprocessing.get_all_start_methods()
        self._mp = multiprocessing.get_context("fork" if "fork" in methods else "spawn")

    # -- life cycle -----------------------------------------------------------------------
    def start(self, objective: Objective) -> None:
        self._objective = objective
        self._log_dir = tempfile.mkdtemp(prefix="optml-logs-")
        # Every started worker must be in the list that shutdown() kills: a Ctrl-C between a
        # fork and its record would leave a worker that the exiting controller waits for.
        with _interrupt.critical():
            if self.gpus:
                self._lease_gpus()
            for i in range(self.workers):
                self._workers.append(self._spawn(i))

    def _lease_gpus(self) -> None:
        """One lease of devices per worker: as many as are free (other optml processes of this
        user may hold some), refused when not even one worker's worth is."""
        allocator = GpuAllocator(self._devices)
        for _ in range(self.workers):
            lease = allocator.acquire(self.gpus)
            if lease is None:
                break
            self._leases.append(lease)
        if not self._leases:
            raise GpuError(
                f"execution.resources.gpus: each trial asks for {self.gpus} GPU(s), but this machine's "
                f"{len(self._devices)} ({','.join(self._devices)}) are all held by other optml "
                f"runs of this user (lock files in {allocator.directory}); wait for them to end"
            )
        self.workers = len(self._leases)

    def _spawn(self, slot: int) -> WorkerProcess:
        assert self._log_dir is not None
        return WorkerProcess(
            self._log_dir,
            self.threads_per_worker,
            objective=self._objective,
            mp_context=self._mp,
            env=self._leases[slot].env() if self._leases else None,
        )

    def shutdown(self, kill: bool = False) -> None:
        for w in self._workers:
            w.stop()  # the idle ones end together
        for w in self._workers:
            w.close(kill=kill)
        self._workers = []
        # Only now that every worker is gone: a device is never handed on while in use.
        for lease in self._leases:
            lease.release()
        self._leases = []
        if self._log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    # -- work -----------------------------------------------------------------------------
    def _depth(self) -> int:
        """How many tasks a worker holds: :data:`QUEUE` while trials are short, else one."""
        return QUEUE if self._recent.short() else 1

    def free_slots(self) -> int:
        depth = self._depth()
        return sum(max(0, depth - _held(w)) for w in self._workers)

    def running(self) -> int:
        return sum(_held(w) for w in self._workers)

    def submit(self, task: TrialTask) -> None:
        self.submit_many([task])

    def submit_many(self, tasks: Sequence[TrialTask]) -> None:
        """Each task to the worker holding the fewest; one message per worker."""
        depth = self._depth()
        held = {id(w): _held(w) for w in self._workers}
        given: dict[int, list[TrialTask]] = {}
        for task in tasks:
            w = min(self._workers, key=lambda w: held[id(w)])
            if held[id(w)] >= depth:
                raise RuntimeError("no free worker: check free_slots() before submit()")
            held[id(w)] += 1
            given.setdefault(id(w), []).append(task)
        for w in self._workers:
            if id(w) in given:
                w.submit_many(given[id(w)])

    def _where(self, w: WorkerProcess) -> str:
        return str(w.pid)

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        busy = [w for w in self._workers if w.task is not None]
        if not busy:
            return []
        now = time.monotonic()
        limit = timeout
        deadlines = [w.deadline - now for w in busy if w.deadline is not None]
        if deadlines:
            nearest = max(0.0, min(deadlines))
            limit = nearest if limit is None else min(limit, nearest)
        wait_any([x for w in busy for x in w.waitables], timeout=limit)
        events: list[TrialEvent] = []
        now = time.monotonic()
        for i, w in enumerate(self._workers):
            if w.task is None:
                continue
            events += self._translate(w, w.receive())
            if w.task is None:
                continue
            if w.interrupted:  # killed for a task taken back: the others never started
                self._replace(i)
            elif w.dead:
                events.append(w.died(self._host, self._where(w)))
                self._replace(i)
            elif w.past_deadline(now):
                events.append(w.timed_out(self._host, self._where(w)))
                self._replace(i)
        return events

    def _replace(self, i: int) -> None:
        """A fresh worker in slot ``i``, given the tasks the old one never started."""
        tasks = self._workers[i].unstarted()
        self._workers[i] = fresh = self._spawn(i)
        for task in tasks:
            fresh.submit(task)

    def _translate(self, w: WorkerProcess, messages: list[Any]) -> list[TrialEvent]:
        events = [translate(m, self._where(w)) for m in messages]
        for e in events:
            if isinstance(e, TrialOutcome):
                self._recent.add(e.duration_s)
        return events

    def cancel(self, number: int) -> None:
        for i, w in enumerate(self._workers):
            if w.task is not None and w.task.number == number:
                w.kill()
                w.close(kill=True)
                self._replace(i)
            elif any(t.number == number for t in w.queued):
                w.cancel_queued(number)

    def prune(self, number: int) -> None:
        for w in self._workers:
            if any(t.number == number for t in _tasks(w)):
                w.prune(number)


def _held(w: WorkerProcess) -> int:
    """How many tasks worker ``w`` holds (running and waiting)."""
    return len(w.queued) + (w.task is not None)


def _tasks(w: WorkerProcess) -> list[TrialTask]:
    return ([w.task] if w.task is not None else []) + list(w.queued)


def translate(message: Any, runner: str, run: str = "") -> TrialEvent:
    """A worker process's message as an event (``runner`` names where it ran)."""
    if isinstance(message, TrialOutcome):
        return message if message.runner else replace(message, runner=runner)
    kind, number, attempt, *rest = message
    if kind == "started":
        host, pid = rest
        return TrialStarted(number, attempt, host=host, runner=runner, pid=pid, run=run)
    step, value = rest
    return TrialReported(number, attempt, step=step, value=value)
