"""The worker side shared by the cluster backends (Dask, Ray): on a cluster worker, a trial runs
in a worker process of the runtime (never in the multi-threaded cluster worker itself), pooled
per study and worker thread, and is supervised from the cluster worker's thread: its events
forwarded, its time limit enforced, the controller's commands obeyed, GPUs leased."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import replace
from typing import Any

from optml.executors._base import TrialOutcome, TrialTask
from optml.executors._gpus import GpuLease
from optml.executors._ship import ship_dir

# Files up to this size that the objective names (a model module, a data file) are shipped to
# the workers with the objective; larger files and directories need a shared filesystem.
SHIP_LIMIT = 16 * 2**20
ADVICE = "put this path on a filesystem the workers share, at the same path"
COMMAND_POLL_S = 0.5

STATE_LOCK = threading.Lock()
POOLS: dict[tuple[str, int], Any] = {}  # (study topic, thread): its worker process


class PolledCommands:
    """The controller's command for one trial (cancel, prune), fetched (``_fetch``, by each
    backend from where its executor publishes them) at most every ``COMMAND_POLL_S``."""

    def __init__(self) -> None:
        self._last = time.monotonic()  # nothing to ask before the trial has run a while
        self._value: str | None = None

    def _fetch(self, current: str | None) -> str | None:
        raise NotImplementedError

    def get(self) -> str | None:
        now = time.monotonic()
        if now - self._last >= COMMAND_POLL_S:
            self._last = now
            self._value = self._fetch(self._value)
        return self._value


def supervise(
    key: str,
    blob: bytes,
    relocate: dict[str, str],
    task: TrialTask,
    topic: str,
    where: tuple[str, str],
    emit: Any,
    commands: PolledCommands,
    gpus: int = 0,
) -> TrialOutcome:
    """Run the trial in this cluster thread's worker process (with ``gpus``: a fresh one that
    sees only the devices leased to the trial) and watch it: forward its events, enforce its
    time limit, obey the controller's commands."""
    from multiprocessing.connection import wait as wait_any

    from optml.executors._runtime import WorkerProcess

    host, runner = where
    pool_key = (topic, threading.get_ident())
    with STATE_LOCK:
        proc = POOLS.get(pool_key)
    log_dir = os.path.join(ship_dir(), "logs")
    lease: GpuLease | None = None
    if gpus:
        got = lease_gpus(gpus, commands)
        if not isinstance(got, GpuLease):
            return TrialOutcome(
                task.number, "FAILED", error=got, attempt=task.attempt, host=host, runner=runner
            )
        lease = got
        os.makedirs(log_dir, exist_ok=True)
        proc = WorkerProcess(log_dir, 1, payload=blob, relocate=relocate, env=trial_env(lease))
    elif proc is None or proc.dead or not proc.alive():
        os.makedirs(log_dir, exist_ok=True)
        proc = WorkerProcess(log_dir, 1, payload=blob, relocate=relocate, env=trial_env())
        with STATE_LOCK:
            POOLS[pool_key] = proc
    proc.submit(task)
    pruned = False
    try:
        while True:
            limit = COMMAND_POLL_S
            if proc.deadline is not None:
                limit = max(0.0, min(limit, proc.deadline - time.monotonic()))
            wait_any(proc.waitables, timeout=limit)
            for message in proc.receive():
                if isinstance(message, TrialOutcome):
                    return replace(message, host=host, runner=runner)
                kind, _, _, *rest = message
                if kind == "started":  # the process counts the time limit from here
                    emit("started", pid=rest[1], host=host, runner=runner)
                else:
                    emit("reported", step=rest[0], value=rest[1])
            if proc.task is None:
                continue
            if proc.dead:
                return proc.died(host, runner)
            if proc.past_deadline():
                return proc.timed_out(host, runner)
            command = commands.get()
            if command == "cancel":
                proc.kill()
                return proc.lost("FAILED", "cancelled by the controller", host, runner)
            if command == "prune" and not pruned:
                proc.prune(task.number)
                pruned = True
    finally:
        if lease is not None:
            # The devices go back only once the process that used them is gone.
            proc.close(kill=proc.task is not None)
            lease.release()
        elif proc.dead or proc.task is not None:
            with STATE_LOCK:
                if POOLS.get(pool_key) is proc:
                    del POOLS[pool_key]
            if proc.task is not None:  # this thread is leaving a trial behind: stop it
                proc.kill()


def trial_env(lease: GpuLease | None = None) -> dict[str, str]:
    """The environment of a trial's process: the cluster worker's, less the malloc setting its
    nanny gives it (MALLOC_TRIM_THRESHOLD_=65536 returns freed memory at once: right for a
    worker holding data, but it made a numpy trial that allocates large arrays spend most of
    its time in the kernel, several times slower), with only its leased devices visible."""
    env = dict(os.environ) if lease is None else lease.env()
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def lease_gpus(gpus: int, commands: PolledCommands) -> GpuLease | str:
    """``gpus`` of this host's devices for one trial, once free (the GPU resource lets no more
    trials run on this worker than it offers, but other workers on the host may hold some);
    what is wrong instead when the host has too few or the controller cancelled the trial."""
    from optml.executors._gpus import GpuAllocator, visible_gpus

    devices = visible_gpus()
    if len(devices) < gpus:
        return (
            f"the trial asks for {gpus} GPU(s), but worker host {socket.gethostname()} "
            f"has {len(devices)} visible ({','.join(devices) or 'none'}) although a worker "
            "there offers the GPU resource (see OPTML_GPUS and CUDA_VISIBLE_DEVICES)"
        )
    lease = GpuAllocator(devices).wait(gpus, give_up=lambda: commands.get() == "cancel")
    return "cancelled by the controller" if lease is None else lease


def release(topic: str) -> None:
    """Stop the worker processes a study left on this cluster worker."""
    with STATE_LOCK:
        mine = [k for k in POOLS if k[0] == topic]
        procs = [POOLS.pop(k) for k in mine]
    for proc in procs:
        proc.close(kill=proc.task is not None)
