"""The serial executor: trials run one at a time in the controller's own process."""

from __future__ import annotations

import signal
import threading
from collections import deque
from typing import Any

from optml.executors._base import Executor, TrialOutcome, TrialTask, run_trial
from optml.objectives._base import Objective, TrialTimeoutError


class SerialExecutor(Executor):
    """Runs each trial in this process, in submission order.

    Time limits are enforced with SIGALRM when running in the main thread (a command
    objective also kills every process its command started); logs are not captured.
    """

    name = "serial"
    in_process = True

    def __init__(self, workers: int | None = None) -> None:
        self.workers = 1
        self._queue: deque[TrialTask] = deque()
        self._objective: Objective | None = None

    def start(self, objective: Objective) -> None:
        self._objective = objective

    def submit(self, task: TrialTask) -> None:
        self._queue.append(task)

    def free_slots(self) -> int:
        return 0 if self._queue else 1

    def running(self) -> int:
        return len(self._queue)

    def wait(self, timeout: float | None = None) -> list[TrialOutcome]:
        if not self._queue:
            return []
        task = self._queue.popleft()
        assert self._objective is not None, "start() first"
        with _alarm(task.timeout):
            return [run_trial(self._objective, task)]

    def shutdown(self, kill: bool = False) -> None:
        self._queue.clear()


class _alarm:
    """Raise TrialTimeoutError in the main thread after ``seconds``."""

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
