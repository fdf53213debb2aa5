"""The executor contract: where trials run. Executors only run things and report back."""

from __future__ import annotations

import abc
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from optml._process import LOG_TAIL
from optml.objectives._base import (
    Objective,
    TrialContext,
    TrialPrunedError,
    TrialTimeoutError,
    normalize_result,
)


@dataclass(frozen=True)
class TrialTask:
    """A trial to run: plain data, serialisable for any executor."""

    number: int
    params: dict[str, Any]
    metric: str
    attempt: int = 0
    timeout: float | None = None
    data: str | None = None


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
    # Where it ran: the machine, and the process (or executor worker) there.
    host: str | None = None
    runner: str | None = None


def run_trial(
    objective: Objective,
    task: TrialTask,
    log_path: str | None = None,
    interruptible: bool = True,
) -> TrialOutcome:
    """Run one task in this process and describe what happened; never raises for trial errors.

    With ``log_path`` the process's stdout and stderr (file descriptors 1 and 2, so child
    processes are caught too) go to that file for the trial; its tail is returned and the file
    removed. (A controller that has to kill the process reads the tail itself: see
    :func:`read_log_tail`.) A ``KeyboardInterrupt`` is raised on (Ctrl-C must stop a trial
    run in the controller's process) unless ``interruptible`` is False, as in a worker that
    ignores SIGINT, where it can only come from the objective itself: the trial FAILED.
    """
    context = TrialContext(
        number=task.number,
        params=dict(task.params),
        attempt=task.attempt,
        timeout=task.timeout,
        data=task.data,
    )
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    capture = _LogCapture(log_path) if log_path else None
    state, metrics, error = "COMPLETE", {}, None
    try:
        if capture:
            capture.start()
        objective.setup()
        metrics = normalize_result(objective.run(dict(task.params), context), task.metric)
    except TrialPrunedError as exc:
        state, error = "PRUNED", str(exc) or None
    except TrialTimeoutError as exc:
        state, error = "TIMEOUT", str(exc)
    except KeyboardInterrupt as exc:
        if interruptible:
            raise
        state, error = (
            "FAILED",
            f"the objective raised KeyboardInterrupt{f': {exc}' if str(exc) else ''}",
        )
    except BaseException as exc:  # noqa: BLE001 - a trial's error is data, not our crash
        state, error = "FAILED", _format_error(exc)
    finally:
        logs = capture.stop() if capture else None
    return TrialOutcome(
        number=task.number,
        state=state,
        metrics=metrics,
        error=error,
        logs=logs,
        duration_s=time.perf_counter() - start,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        intermediate=dict(context.intermediate),
        attempt=task.attempt,
        host=socket.gethostname(),
        runner=str(os.getpid()),
    )


def _format_error(exc: BaseException) -> str:
    from optml.errors import OptMLError

    if isinstance(exc, OptMLError):
        return f"{type(exc).__name__}: {exc}"
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines)
    return text[-LOG_TAIL:]


def read_log_tail(path: str, remove: bool = True) -> str | None:
    """The last LOG_TAIL characters of a trial's log file (None if empty or missing)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - LOG_TAIL))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    if remove:
        try:
            os.unlink(path)
        except OSError:
            pass
    return text or None


class _LogCapture:
    """Redirect fds 1 and 2 to a file for the length of one trial."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._saved: tuple[int, int] | None = None

    def start(self) -> None:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def stop(self) -> str | None:
        import sys

        if self._saved is None:
            return None
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        os.close(self._saved[0])
        os.close(self._saved[1])
        self._saved = None
        return read_log_tail(self.path)


class Executor(abc.ABC):
    """Runs trial tasks somewhere and reports their outcomes.

    Contract:

    - ``start(objective)`` once, then ``submit`` tasks while ``free_slots() > 0``; ``wait``
      returns the outcomes that are ready (blocking up to ``timeout`` seconds for at least one).
    - Every submitted task yields exactly one outcome, unless ``shutdown`` comes first.
    - A task that runs past its ``timeout`` is stopped and reported as TIMEOUT. A crash of the
      process running it is reported as FAILED (the controller retries it per ``retries``).
    - The processes a trial starts are the executor's to end: none may keep running after the
      trial times out or is lost, after ``shutdown``, or after the controller dies. (Between
      two trials that end normally, a Python objective's processes may live on: a pool such as
      joblib's loky workers is reused by the next trial and breaks if killed.) The
      local executor makes each worker (on Linux) a child subreaper, so that a process that
      double-forks or starts a new session stays the worker's descendant, and kills the
      worker's whole tree (all descendants collected first, then SIGKILLed) at those moments;
      a worker killed outright (SIGKILL, the OOM killer) takes its process group with it (a
      command trial runs in it; only a process that left the group escapes). The controller
      itself is not made a subreaper for a whole run: it would adopt, and have to reap, every
      orphan below it, including those of the application or notebook it runs in. A command
      objective is one only while its command runs (the serial executor's case). A worker
      sent SIGTERM kills its trial's processes and exits, which reports the trial FAILED.
    - ``workers`` is the most trials run at once; ``limit_workers(n)`` (called by the
      controller before ``start``) lowers it to the trials that can still run.
    - Executors know nothing of samplers or storage: the controller owns retries and records.
    - ``shutdown(kill=True)`` stops running tasks now; ``kill=False`` lets no new work start and
      releases resources.
    """

    name = "executor"
    workers: int = 1
    # Whether ``wait`` runs the trials in this process (then Ctrl-C must reach them at once;
    # otherwise the controller defers it while it collects and records outcomes).
    in_process: bool = False

    def limit_workers(self, n: int | None) -> None:
        """Start no more than ``n`` workers (at least one): only ``n`` trials can still run.
        ``None``: as many as the executor was built with."""
        requested = self.__dict__.setdefault("_requested_workers", self.workers)
        self.workers = requested if n is None else max(1, min(requested, n))

    @abc.abstractmethod
    def start(self, objective: Objective) -> None: ...

    @abc.abstractmethod
    def submit(self, task: TrialTask) -> None: ...

    @abc.abstractmethod
    def free_slots(self) -> int: ...

    @abc.abstractmethod
    def running(self) -> int: ...

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[TrialOutcome]: ...

    @abc.abstractmethod
    def shutdown(self, kill: bool = False) -> None: ...

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(kill=True)
