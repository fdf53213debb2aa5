"""The Dask executor: one Dask task per trial, run on a cluster's workers by the worker runtime."""

from __future__ import annotations

import hashlib
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from optml.errors import OptMLError, missing_dependency
from optml.executors._base import (
    Executor,
    TrialEvent,
    TrialOutcome,
    TrialReported,
    TrialStarted,
    TrialTask,
    ending_with,
)
from optml.executors._hosted import (
    ADVICE,
    SHIP_LIMIT,
    STATE_LOCK,
    PolledCommands,
    release,
    supervise,
)
from optml.executors._local import usable_cpus
from optml.executors._ship import arrive, named_paths, shipped_files
from optml.objectives._base import Objective


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise missing_dependency("dask", "dask") from None
    return distributed


class DaskExecutor(Executor):
    """Runs each trial as one Dask task on a Dask cluster (``address``: its scheduler, e.g.
    ``tcp://host:8786``), or, without an address, on a local cluster of ``workers`` worker
    processes started with the executor and closed with it.

    On the Dask worker the task runs the trial in a worker process of the runtime (one per
    Dask worker thread and study, reused by its next trials, replaced after a timeout): its
    output is captured there, not in the multi-threaded Dask worker, its time limit is enforced
    there by killing its whole process tree, and it dies with the Dask worker. Started and
    reported events travel back as they happen (Dask's structured events); commands (cancel,
    prune) reach the task through a Dask ``Variable`` it polls. A Dask worker that dies while
    running a trial: Dask runs the task again on another worker (the controller counts it as a
    retry from the second started event, and only its one result is recorded; a worker that
    dies within milliseconds of starting a trial may take that first event with it, and the
    rerun is then not counted); after
    ``distributed.scheduler.allowed-failures`` such deaths the trial FAILED.

    The objective travels pickled (:func:`~optml.executors._runtime.dump_objective`). The
    ``.py`` file of a function or model module and a data file up to ``SHIP_LIMIT`` bytes are
    shipped with it and written on each worker where the path is not there already; any other
    path (a directory, a command's ``cwd``) must be on a filesystem the workers share, and a
    worker that cannot see it fails the trial saying so.

    ``cpus``, ``memory`` and ``gpus`` are what one trial needs, as Dask worker resources named
    ``CPU``, ``MEMORY`` (bytes; "4GB" accepted) and ``GPU``: a trial then runs only on workers
    started with those resources (``dask worker ADDRESS --resources "CPU=8 GPU=2"``); a local
    cluster's workers get exactly one trial's worth each.

    ``gpus`` (whole GPUs): Dask's ``GPU`` resource only limits how many trials run on a worker
    at once; which devices each gets is decided on the worker's host by lock files keyed by
    device id (:class:`~optml.executors._gpus.GpuAllocator`), so that trials of every Dask
    worker there get distinct devices, seen through ``CUDA_VISIBLE_DEVICES`` in a fresh worker
    process per trial (a process that used a device stays bound to it), and give them back
    whenever that process ends. A study is refused before any trial starts when no worker
    offers enough of the resource, or, for a local cluster, when this machine has too few
    GPUs (then it starts no more workers than there are devices for).

    A local cluster has ``workers`` slots in worker processes of ``threads_per_worker``
    threads each. ``in_thread`` runs trials in the Dask worker's threads instead (for objectives that only
    wait, such as benchmarks of the controller: a process per trial is too heavy for hundreds
    of slots on a few cores); its trials' output is not captured and their time limits are not
    enforced.
    """

    name = "dask"
    remote = True

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        *,
        cpus: float | None = None,
        memory: str | float | None = None,
        gpus: float | None = None,
        threads_per_worker: int = 1,
        in_thread: bool = False,
    ) -> None:
        distributed = _distributed()
        from optml.executors._gpus import GpuError, local_gpus, whole_gpus

        self.address = address
        self._asked_workers = workers
        self.workers = max(1, int(workers or (1 if address else usable_cpus())))
        self.threads_per_worker = threads_per_worker
        self.in_thread = in_thread
        self.gpus = whole_gpus(gpus, "dask")
        if self.gpus and in_thread:
            raise GpuError(
                "execution.resources.gpus: trials run in the Dask worker's threads (in_thread) share its "
                "environment and cannot each be given their own GPUs; leave in_thread off"
            )
        if self.gpus and not address:
            self.workers = min(self.workers, len(local_gpus(self.gpus)) // self.gpus)
        resources: dict[str, float] = {}
        if cpus:
            resources["CPU"] = float(cpus)
        if memory:
            resources["MEMORY"] = float(
                distributed.utils.parse_bytes(memory) if isinstance(memory, str) else memory
            )
        if gpus:
            resources["GPU"] = float(gpus)
        self.resources = resources
        self._client: Any = None
        self._cluster: Any = None
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._futures: dict[int, Any] = {}
        self._tasks: dict[int, TrialTask] = {}
        self._seen: dict[int, tuple[bool, list[int]]] = {}
        self._late: dict[int, tuple[Any, float]] = {}
        self._commands: dict[int, str] = {}
        self._lock = threading.Lock()
        self._id = uuid.uuid4().hex[:12]
        self._topic = f"optml-{self._id}"
        self._payload: Any = None

    # -- life cycle -----------------------------------------------------------------------
    def start(self, objective: Objective) -> None:
        import logging

        from optml.executors._runtime import dump_objective

        distributed = _distributed()
        payload = dump_objective(objective)
        if self.address:
            self._client = distributed.Client(self.address, timeout="30s")
            if self._asked_workers is None:
                self.workers = max(1, sum(self._client.nthreads().values()))
            if self.gpus:
                self._check_gpus()
        else:
            self._cluster = distributed.LocalCluster(
                n_workers=-(-self.workers // self.threads_per_worker),
                threads_per_worker=self.threads_per_worker,
                processes=True,
                dashboard_address=":0",
                resources=self.resources or None,
                silence_logs=logging.ERROR,
            )
            self._client = distributed.Client(self._cluster)
        self._client.subscribe_topic(self._topic, self._on_topic)
        self._variable = distributed.Variable(f"{self._topic}-commands", client=self._client)
        self._variable.set({})
        files = shipped_files(objective, SHIP_LIMIT)
        key = hashlib.sha256(payload + repr(sorted(files)).encode()).hexdigest()[:16]
        # The payload waits in a scheduler-held Variable that each worker reads once, not in
        # worker memory as a task's input: Dask sends a task to a worker holding its inputs, so
        # every trial would queue on the one worker holding the payload (until work stealing
        # moved some), and a worker that dies holding the data takes it with it.
        name = f"{self._topic}-payload"
        distributed.Variable(name, client=self._client).set(
            [key, payload, files, [list(p) for p in named_paths(objective)]]
        )
        self._payload = (key, name)

    def _check_gpus(self) -> None:
        """Refuse a cluster none of whose workers offers a trial's worth of the GPU resource;
        start no more trials at once than its workers' GPUs allow."""
        from optml.executors._gpus import require_gpus

        if not self._client.scheduler_info()["workers"]:
            try:  # a cluster started along with the study: give its workers a moment
                self._client.wait_for_workers(1, timeout=10)
            except Exception:  # noqa: BLE001 - no worker at all is refused below
                pass
        workers = self._client.scheduler_info()["workers"].values()
        per_worker = sorted(
            (float(w.get("resources", {}).get("GPU", 0)) for w in workers), reverse=True
        )
        require_gpus(
            self.gpus,
            per_worker[0] if per_worker else 0,
            f"the best-provided worker of the Dask cluster at {self.address}",
            f"{len(per_worker)} worker(s), offering the GPU resource "
            f"{', '.join(f'{g:g}' for g in per_worker) or '(none)'}; start workers with "
            '--resources "GPU=N"',
        )
        self.workers = max(1, min(self.workers, sum(int(g // self.gpus) for g in per_worker)))

    def shutdown(self, kill: bool = False) -> None:
        client = self._client
        if client is None:
            return
        self._client = None
        try:
            futures = list(self._futures.values())
            if futures:
                # Their tasks see "cancel" and kill their trials' processes; their trials are
                # the controller's to requeue.
                self._commands.update(dict.fromkeys(self._futures, "cancel"))
                self._publish(client)
                client.cancel(futures)
            if self._payload is not None:
                _distributed().Variable(self._payload[1], client=client).delete()
            if self._cluster is None:
                client.run(release, self._topic)
                client.unsubscribe_topic(self._topic)
        except Exception:  # noqa: BLE001 - a cluster already gone has nothing left to stop
            pass
        finally:
            self._futures.clear()
            self._tasks.clear()
            try:
                client.close(timeout=10)
            except Exception:  # noqa: BLE001
                pass
            if self._cluster is not None:
                try:
                    self._cluster.close(timeout=20)
                except Exception:  # noqa: BLE001
                    pass
                self._cluster = None

    # -- work -----------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, self.workers - len(self._futures))

    def running(self) -> int:
        return len(self._futures)

    def submit(self, task: TrialTask) -> None:
        self.submit_many([task])

    def submit_many(self, tasks: Sequence[TrialTask]) -> None:
        """The tasks reach the scheduler in one graph update (it pays per update)."""
        assert self._client is not None, "start() first"
        if not tasks:
            return
        futures = self._client.map(
            run_dask_task,
            [self._payload] * len(tasks),
            tasks,
            [self._topic] * len(tasks),
            [self.in_thread] * len(tasks),
            [self.gpus] * len(tasks),
            key=[f"optml-trial-{t.number}-{t.attempt}-{self._id}" for t in tasks],
            resources=self.resources or None,
            pure=False,
        )
        for task, future in zip(tasks, futures, strict=True):
            number = task.number
            self._futures[number] = future
            self._tasks[number] = task
            self._seen[number] = (False, [])
            future.add_done_callback(lambda f, n=number: self._events.put(("done", n, f)))

    def cancel(self, number: int) -> None:
        future = self._futures.pop(number, None)
        self._tasks.pop(number, None)
        if future is not None:
            self._commands[number] = "cancel"
            self._publish(self._client)
            future.cancel()

    def prune(self, number: int) -> None:
        if number in self._tasks:
            self._commands[number] = "prune"
            self._publish(self._client)

    def _publish(self, client: Any) -> None:
        live = {n: c for n, c in self._commands.items() if n in self._tasks or c == "cancel"}
        self._commands = live
        self._variable.set({str(n): c for n, c in live.items()})

    def _on_topic(self, event: Any) -> None:
        self._events.put(("event", event[1]))

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        if not self._futures:
            return []
        try:
            wait = timeout if not self._late else min(timeout or 0.2, 0.2)
            items = [self._events.get(timeout=wait)]
        except queue.Empty:
            return self._overdue()
        while True:
            try:
                items.append(self._events.get_nowait())
            except queue.Empty:
                break
        out: list[TrialEvent] = []
        for item in items:
            if item[0] == "event":
                out += self._from_worker(item[1])
            else:
                out += self._done(item[1], item[2])
        return out + self._overdue()

    def _current(self, number: int, attempt: int) -> TrialTask | None:
        task = self._tasks.get(number)
        return task if task is not None and task.attempt == attempt else None

    def _from_worker(self, msg: dict[str, Any]) -> list[TrialEvent]:
        number, attempt = msg["number"], msg["attempt"]
        if self._current(number, attempt) is None:
            return []  # late news of a trial already finished or cancelled
        started, steps = self._seen[number]
        if msg["kind"] == "finished":
            return self._finished(number, self._futures[number], msg["outcome"])
        if msg["kind"] == "started":
            self._seen[number] = (True, steps)
            return [
                TrialStarted(
                    number, attempt, msg["host"], msg["runner"], msg.get("pid"), msg["run"]
                )
            ]
        steps.append(msg["step"])
        return [TrialReported(number, attempt, msg["step"], msg["value"])]

    def _done(self, number: int, future: Any) -> list[TrialEvent]:
        """A task's future is done: its outcome normally came as an event already; a task
        that failed as a Dask task (its workers died, say) is told from the future; one that
        finished but whose outcome event has not come yet is given a moment for it."""
        if self._futures.get(number) is not future:
            return []
        assert future is not None
        if future.status == "finished":
            self._late[number] = (future, time.monotonic())
            return []
        return self._finished(number, future)

    def _overdue(self) -> list[TrialEvent]:
        events: list[TrialEvent] = []
        now = time.monotonic()
        for number, (future, since) in list(self._late.items()):
            if self._futures.get(number) is not future:
                del self._late[number]
            elif now - since > 1.0:
                del self._late[number]
                events += self._finished(number, future)
        return events

    def _finished(self, number: int, future: Any, msg: Any = None) -> list[TrialEvent]:
        task = self._tasks.get(number)
        if task is None or self._futures.get(number) is not future:
            return []
        del self._futures[number], self._tasks[number]
        self._commands.pop(number, None)
        self._late.pop(number, None)
        started, steps = self._seen.pop(number)
        if msg is not None:
            from optml.trial_run import outcome_from_json

            outcome = replace(outcome_from_json(msg), number=number, attempt=task.attempt)
        elif future is None or future.status == "cancelled":
            return []
        else:
            outcome = _outcome_of(future, task)
        return ending_with(outcome, started, steps)


def _outcome_of(future: Any, task: TrialTask) -> TrialOutcome:
    distributed = _distributed()
    try:
        result = future.result(timeout=60)
    except distributed.KilledWorker as exc:
        return TrialOutcome(
            task.number,
            "FAILED",
            error=f"the Dask workers running the trial died ({exc})",
            attempt=task.attempt,
        )
    except Exception as exc:  # noqa: BLE001 - the task's own failure is the trial's
        return TrialOutcome(
            task.number,
            "FAILED",
            error=f"the Dask task failed: {type(exc).__name__}: {exc}",
            attempt=task.attempt,
        )
    return result  # type: ignore[no-any-return]


_OBJECTIVES: dict[str, Objective] = {}  # in-thread mode: loaded objectives by payload key
_PAYLOADS: dict[str, tuple[bytes, dict[str, bytes], list[Any]]] = {}  # by payload key


def _payload(distributed: Any, key: str, name: str) -> tuple[bytes, dict[str, bytes], list[Any]]:
    """The objective's payload, read from the scheduler once per worker process and study (the
    last few studies' are kept)."""
    with STATE_LOCK:
        found = _PAYLOADS.get(key)
    if found is None:
        got = distributed.Variable(name).get(timeout=60)
        found = (got[1], got[2], [tuple(p) for p in got[3]])
        with STATE_LOCK:
            while len(_PAYLOADS) >= 4:
                _PAYLOADS.pop(next(iter(_PAYLOADS)))
            _PAYLOADS[key] = found
    return found


def run_dask_task(
    payload: Any, task: TrialTask, topic: str, in_thread: bool, gpus: int = 0
) -> TrialOutcome:
    """The Dask task of one trial: runs on a Dask worker, streams its events to ``topic``;
    ``gpus``: how many of the host's devices the trial gets to itself."""
    distributed = _distributed()
    from optml.executors._runtime import load_objective, run_trial

    worker = distributed.get_worker()
    key, name = payload
    blob, files, named = _payload(distributed, key, name)
    run = uuid.uuid4().hex[:12]
    number, attempt = task.number, task.attempt
    host, runner = socket.gethostname(), str(worker.address)

    def emit(kind: str, **fields: Any) -> None:
        worker.log_event(
            topic, {"kind": kind, "number": number, "attempt": attempt, "run": run, **fields}
        )

    where = f"Dask worker host {host}"
    relocate, task, problem = arrive(key, files, named, task, where, SHIP_LIMIT, ADVICE)
    if problem:
        emit("started", pid=os.getpid(), host=host, runner=runner)
        failed = TrialOutcome(
            number, "FAILED", error=problem, attempt=attempt, host=host, runner=runner
        )
        return _finish(emit, failed)
    commands = _Commands(distributed, topic, number)
    if in_thread:
        with STATE_LOCK:
            objective = _OBJECTIVES.get(key)
            if objective is None:
                objective = _OBJECTIVES[key] = load_objective(blob, relocate)
        emit("started", pid=os.getpid(), host=host, runner=runner)
        outcome = run_trial(
            objective,
            task,
            on_report=lambda step, value: emit("reported", step=step, value=value),
            should_prune=lambda: commands.get() == "prune",
        )
        return _finish(emit, replace(outcome, host=host, runner=runner))
    supervised = supervise(key, blob, relocate, task, topic, (host, runner), emit, commands, gpus)
    return _finish(emit, supervised)


def _finish(emit: Any, outcome: TrialOutcome) -> TrialOutcome:
    """Send the outcome with the trial's other events (the controller need not fetch the
    task's result, a round trip per trial), and return it as the task's result as well."""
    from optml.trial_run import outcome_to_json

    emit("finished", outcome=outcome_to_json(outcome))
    return outcome


class _Commands(PolledCommands):
    """The controller's command for one trial, from the Dask ``Variable`` the executor
    publishes them in."""

    def __init__(self, distributed: Any, topic: str, number: int) -> None:
        super().__init__()
        self._variable = distributed.Variable(f"{topic}-commands")
        self._number = str(number)

    def _fetch(self, current: str | None) -> str | None:
        try:
            return self._variable.get(timeout=5).get(self._number)  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - no word from the scheduler: carry on
            return current


def check_address(address: str) -> None:
    """Refuse a scheduler address Dask cannot dial, naming what is accepted."""
    if "://" not in address:
        raise OptMLError(
            f"execution.address {address!r} is not a Dask scheduler address; give one such as "
            "tcp://host:8786"
        )
