"""One trial run in this process, the core of the worker runtime (see
:mod:`optml.executors._runtime`): what a worker process, a Dask or Ray worker and the serial
executor run each trial with. Kept apart from the worker processes' machinery, which a study
run in the controller does not load."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from optml._process import LOG_TAIL, adopting_orphans, descendants, hostname, kill_procs
from optml.executors._base import TrialOutcome, TrialTask
from optml.objectives._base import (
    Objective,
    TrialContext,
    TrialPrunedError,
    TrialTimeoutError,
    normalize_result,
)

# -- one trial, in this process ------------------------------------------------------------


def run_trial(
    objective: Objective,
    task: TrialTask,
    log_path: str | None = None,
    interruptible: bool = True,
    on_report: Callable[[int, float], None] | None = None,
    should_prune: Callable[[], bool] | None = None,
    capture: _LogCapture | None = None,
) -> TrialOutcome:
    """Run one task in this process and describe what happened; never raises for trial errors.

    With ``log_path`` the process's stdout and stderr (file descriptors 1 and 2, so child
    processes are caught too) go to that file for the trial; its tail is returned and the file
    removed (``capture``: a worker's own log file, kept for its next trial). Only a process that runs nothing else may do that (a worker process, never a
    multi-threaded Dask worker). A ``KeyboardInterrupt`` is raised on (Ctrl-C must stop a trial
    run in the controller's process) unless ``interruptible`` is False, as in a worker that
    ignores SIGINT, where it can only come from the objective itself: the trial FAILED.
    ``on_report`` receives each reported value as it is reported; ``should_prune`` is asked
    after each report whether the trial is to end PRUNED there.
    """
    # Records built positionally (in field order): matching a dozen keywords costs more than
    # building the record.
    context = TrialContext(
        task.number,
        dict(task.params),
        task.attempt,
        task.timeout,
        task.data,
        {},  # intermediate
        on_report,
        should_prune,
    )
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    if capture is None and log_path:
        capture = _LogCapture(log_path)
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
        task.number,
        state,
        metrics,
        error,
        logs,
        time.perf_counter() - start,  # duration_s
        started_at,
        datetime.now(UTC),  # finished_at
        dict(context.intermediate),
        task.attempt,
        hostname(),
        str(os.getpid()),  # runner
    )


def run_here(
    objective: Objective,
    task: TrialTask,
    on_report: Callable[[int, float], None] | None = None,
    should_prune: Callable[[], bool] | None = None,
) -> TrialOutcome:
    """Run one task in the calling process (the serial executor): its time limit raises
    TrialTimeoutError through SIGALRM where this is the main thread, and on a timeout every
    process the trial started (found as this process's new descendants, orphans included while
    it is a subreaper) is killed."""
    if task.timeout is None:  # nothing to kill at a time limit: no processes to look for
        return run_trial(objective, task, on_report=on_report, should_prune=should_prune)
    with adopting_orphans():
        before = {p.pid for p in descendants()}
        with _alarm(task.timeout):
            outcome = run_trial(objective, task, on_report=on_report, should_prune=should_prune)
        if outcome.state == "TIMEOUT":
            kill_procs([p for p in descendants() if p.pid not in before])
    return outcome


def _format_error(exc: BaseException) -> str:
    from optml.errors import OptMLError

    if isinstance(exc, OptMLError):
        return f"{type(exc).__name__}: {exc}"
    import traceback

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
    """Redirect fds 1 and 2 to a file for the length of one trial. With ``keep`` (a worker
    that runs many trials) they stay on the file between trials, which is emptied as each trial
    starts, and :meth:`close` puts them back and removes the file: no file is made, and no fd
    moved, per trial."""

    def __init__(self, path: str, keep: bool = False) -> None:
        self.path = path
        self.keep = keep
        self._fd: int | None = None
        self._saved: tuple[int, int] | None = None

    def start(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            return
        # O_APPEND: a process a trial left running writes at the end, never into a hole.
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        self._fd = os.open(self.path, flags, 0o600)
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._fd, 1)
        os.dup2(self._fd, 2)

    def stop(self) -> str | None:
        if self._fd is None:
            return None
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        size = os.fstat(self._fd).st_size
        start = max(0, size - LOG_TAIL)
        text = os.pread(self._fd, size - start, start).decode("utf-8", errors="replace")
        if not self.keep:
            self.close()
        return text or None

    def close(self) -> None:
        if self._saved is not None:
            os.dup2(self._saved[0], 1)
            os.dup2(self._saved[1], 2)
            os.close(self._saved[0])
            os.close(self._saved[1])
            self._saved = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            try:
                os.unlink(self.path)
            except OSError:
                pass


class _alarm:
    """Raise TrialTimeoutError in the main thread after ``seconds`` (nothing elsewhere)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.active = bool(seconds) and threading.current_thread() is threading.main_thread()
        self._old: Any = None

    def __enter__(self) -> None:
        if self.active:
            seconds = self.seconds

            def _raise(signum: int, frame: Any) -> None:
                raise TrialTimeoutError(f"the trial ran past {seconds:g} s")

            self._old = signal.signal(signal.SIGALRM, _raise)
            signal.setitimer(signal.ITIMER_REAL, float(seconds))  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)
