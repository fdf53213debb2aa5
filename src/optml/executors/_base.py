"""The executor contract: where trials run. Executors only run things and report back."""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar

from optml.objectives._base import Objective

# A trial far shorter than a round trip to a worker or a proposal: while the median of the last
# few is under this, work is handed out a few trials at a time (trials reserved ahead by the
# controller, tasks queued at a local worker).
SHORT_TRIAL_S = 0.001


_Record = TypeVar("_Record")
_FACTORY = object()  # stands for "not given" where a field's default comes from a factory


def quick_init(cls: type[_Record]) -> type[_Record]:
    """Give a frozen dataclass a constructor that fills the instance in one step.

    The one a frozen dataclass gets sets each field through ``object.__setattr__``, several
    times the cost of this for the records that every trial makes a few of (tasks, events,
    outcomes). Same parameters, defaults and default factories; no ``__post_init__`` to run.
    """
    assert not hasattr(cls, "__post_init__"), cls
    names: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, values = [], []
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default is not MISSING:
            names[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
            values.append(f"{f.name}={f.name}")
        elif f.default_factory is not MISSING:
            names[f"_factory_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            values.append(f"{f.name}=_factory_{f.name}() if {f.name} is _FACTORY else {f.name}")
        else:
            params.append(f.name)
            values.append(f"{f.name}={f.name}")
    source = (
        f"def __init__(self, {', '.join(params)}):\n    self.__dict__.update({', '.join(values)})\n"
    )
    exec(source, names)  # noqa: S102 - built from the class's own field names only
    init = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


class RecentDurations:
    """The durations of the last ``n`` finished trials, and whether trials are short (the median
    of at least half of them under :data:`SHORT_TRIAL_S`)."""

    def __init__(self, n: int = 16) -> None:
        self._seconds: deque[float] = deque(maxlen=n)

    def add(self, seconds: float) -> None:
        self._seconds.append(seconds)

    def typical(self) -> float | None:
        """The median of the last durations; None until at least half of ``n`` are known."""
        seconds = self._seconds
        assert seconds.maxlen is not None
        if len(seconds) < seconds.maxlen // 2:
            return None
        ordered = sorted(seconds)
        middle = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[middle]
        return (ordered[middle - 1] + ordered[middle]) / 2

    def spread(self) -> float | None:
        """The longest of the last durations less the shortest; None as :meth:`typical`."""
        if self.typical() is None:
            return None
        return max(self._seconds) - min(self._seconds)

    def short(self) -> bool:
        typical = self.typical()
        return typical is not None and typical < SHORT_TRIAL_S


@quick_init
@dataclass(frozen=True)
class TrialTask:
    """A trial to run: plain data, serialisable for any executor."""

    number: int
    params: dict[str, Any]
    metric: str
    attempt: int = 0
    timeout: float | None = None
    data: str | None = None


@quick_init
@dataclass(frozen=True)
class TrialOutcome:
    """What became of a task. ``state`` is COMPLETE, FAILED, PRUNED or TIMEOUT."""

    number: int
    state: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    logs: str | None = None
    duration_s: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    attempt: int = 0
    # Where it ran, when known: the machine, and the process (or executor worker) there.
    host: str | None = None
    runner: str | None = None


@quick_init
@dataclass(frozen=True)
class TrialStarted:
    """A task began to run: on which host, in which ``runner`` (the executor's worker), as
    which process.

    ``run`` tells two runs of one attempt apart: a cluster that reruns a task whose worker
    died (Dask does) starts it again with a new ``run``."""

    number: int
    attempt: int
    host: str
    runner: str
    pid: int | None = None
    run: str = ""


@quick_init
@dataclass(frozen=True)
class TrialReported:
    """A running trial reported an intermediate value (``TrialContext.report``)."""

    number: int
    attempt: int
    step: int
    value: float


TrialEvent = TrialStarted | TrialReported | TrialOutcome


def ending_with(outcome: TrialOutcome, started: bool, reported: Iterable[int]) -> list[TrialEvent]:
    """The events that end a trial whose outcome came on another path than its events (a
    remote backend's result): the started event and the reports not seen yet, told from the
    outcome, then the outcome, so that every report comes before it and none twice."""
    events: list[TrialEvent] = []
    if not started and outcome.host:
        events.append(
            TrialStarted(
                outcome.number, outcome.attempt, outcome.host, outcome.runner or "", None, ""
            )
        )
    seen = set(reported)
    events += [
        TrialReported(outcome.number, outcome.attempt, step, value)
        for step, value in outcome.intermediate.items()
        if step not in seen
    ]
    events.append(outcome)
    return events


class Executor(abc.ABC):
    """Runs trial tasks somewhere and streams back what happens to them.

    Contract:

    - ``start(objective)`` once, then ``submit`` tasks (or ``submit_many``) while
      ``free_slots() > 0``; ``events``
      returns what happened since the last call (blocking up to ``timeout`` seconds for at
      least one event): :class:`TrialStarted` (where), :class:`TrialReported` (a value the
      trial reported, as it happens) and, last for each task, its :class:`TrialOutcome`.
      ``wait`` is ``events`` keeping only the outcomes.
    - Every submitted task yields exactly one outcome, unless ``cancel`` or ``shutdown``
      comes first. A task's reports arrive in order, and all of them before its outcome.
    - Commands: ``cancel(number)`` stops a task and every process it started, and no
      outcome follows (the caller decides what becomes of the trial, e.g. requeues it);
      ``prune(number)`` makes the trial end PRUNED at its next report.
    - A task that runs past its ``timeout`` is stopped and reported as TIMEOUT. A crash of the
      process running it is reported as FAILED (the controller retries it per ``retries``).
    - Every backend runs a trial with the one worker runtime (:mod:`optml.executors._runtime`):
      a worker process that leads its own session and (on Linux) is a child subreaper, captures
      its fds 1 and 2 as the trial's logs, and is watched by a supervisor that enforces the time
      limit by killing the worker's whole process tree. The local executor keeps such worker
      processes alive between trials; Dask starts one per trial under the Dask worker (whose
      threads must not have their file descriptors redirected); the serial executor runs the
      trial in the controller's process (it captures no logs and, for a Python objective, can
      only raise TrialTimeoutError in the main thread; the trial's new processes are killed).
    - The processes a trial starts are the executor's to end: none may keep running after the
      trial times out or is lost, after ``shutdown``, or after the controller dies. (Between
      two trials that end normally, a Python objective's processes may live on: a pool such as
      joblib's loky workers is reused by the next trial and breaks if killed.) A worker process
      kills its whole tree (all descendants collected first, then SIGKILLed) at those moments;
      a worker killed outright (SIGKILL, the OOM killer) takes its process group with it (a
      command trial runs in it; only a process that left the group escapes), and a worker whose
      parent (the controller, or the Dask worker) dies kills its tree and exits within a
      second. The controller itself is not made a subreaper for a whole run: it would adopt,
      and have to reap, every orphan below it, including those of the application or notebook
      it runs in. A command objective is one only while its command runs (the serial
      executor's case). A worker sent SIGTERM kills its trial's processes and exits, which
      reports the trial FAILED.
    - An objective reaches a worker on another machine pickled (cloudpickle: a callable from a
      script or notebook travels by value, one from an installed package by reference); the
      paths it names must exist there (see the backend for files it ships).
    - ``workers`` is the most trials run at once; ``limit_workers(n)`` (called by the
      controller before ``start``) lowers it to the trials that can still run.
    - Executors know nothing of samplers or storage: the controller owns retries and records.
    - ``shutdown(kill=True)`` stops running tasks now; ``kill=False`` lets no new work start and
      releases resources.
    """

    name = "executor"
    workers: int = 1
    # Whether ``events`` runs the trials in this process (then Ctrl-C must reach them at once;
    # otherwise the controller defers it while it collects and records outcomes).
    in_process: bool = False
    # Whether trials may run on other machines: the controller then records where each one
    # runs as it starts (otherwise with its outcome, sparing a storage write per trial).
    remote: bool = False

    def limit_workers(self, n: int | None) -> None:
        """Start no more than ``n`` workers (at least one): only ``n`` trials can still run.
        ``None``: as many as the executor was built with."""
        requested = self.__dict__.setdefault("_requested_workers", self.workers)
        self.workers = requested if n is None else max(1, min(requested, n))

    @abc.abstractmethod
    def start(self, objective: Objective) -> None: ...

    @abc.abstractmethod
    def submit(self, task: TrialTask) -> None: ...

    def submit_many(self, tasks: Sequence[TrialTask]) -> None:
        """``submit`` each of ``tasks`` (a backend may hand them over together, cheaper)."""
        for task in tasks:
            self.submit(task)

    @abc.abstractmethod
    def free_slots(self) -> int: ...

    @abc.abstractmethod
    def running(self) -> int: ...

    @abc.abstractmethod
    def events(self, timeout: float | None = None) -> list[TrialEvent]: ...

    def wait(self, timeout: float | None = None) -> list[TrialOutcome]:
        """The outcomes ready now (``events`` without the started and reported events)."""
        return [e for e in self.events(timeout) if isinstance(e, TrialOutcome)]

    @abc.abstractmethod
    def cancel(self, number: int) -> None: ...

    @abc.abstractmethod
    def prune(self, number: int) -> None: ...

    @abc.abstractmethod
    def shutdown(self, kill: bool = False) -> None: ...

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(kill=True)
