"""The serial executor: trials run one at a time in the controller's own process."""

from __future__ import annotations

import os
from collections import deque

from optml._process import hostname
from optml.executors._base import (
    Executor,
    TrialEvent,
    TrialReported,
    TrialStarted,
    TrialTask,
)
from optml.executors._inprocess import run_here
from optml.objectives._base import Objective


class SerialExecutor(Executor):
    """Runs each trial in this process, in submission order (the runtime's in-process mode,
    :func:`~optml.executors._inprocess.run_here`).

    A time limit raises TrialTimeoutError through SIGALRM when running in the main thread, and
    every process the trial started is then killed (a command objective also stops its command
    at its time limit in any thread); logs are not captured. Events come when the trial ends,
    in the order they happened; a prune requested before a trial reports ends it at that report.
    """

    name = "serial"
    in_process = True

    def __init__(self, workers: int | None = None) -> None:
        self.workers = 1
        self._queue: deque[TrialTask] = deque()
        self._objective: Objective | None = None
        self._pruned: set[int] = set()
        self._where: tuple[str, str, int] | None = None  # host, runner, pid: set by start()

    def start(self, objective: Objective) -> None:
        self._objective = objective
        self._where = (hostname(), str(os.getpid()), os.getpid())

    def submit(self, task: TrialTask) -> None:
        self._queue.append(task)

    def free_slots(self) -> int:
        return 0 if self._queue else 1

    def running(self) -> int:
        return len(self._queue)

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        if not self._queue:
            return []
        task = self._queue.popleft()
        assert self._objective is not None and self._where is not None, "start() first"
        number, attempt = task.number, task.attempt
        events: list[TrialEvent] = [TrialStarted(number, attempt, *self._where)]
        outcome = run_here(
            self._objective,
            task,
            on_report=lambda step, value: events.append(
                TrialReported(number, attempt, step, value)
            ),
            should_prune=lambda: number in self._pruned,
        )
        self._pruned.discard(number)
        events.append(outcome)
        return events

    def cancel(self, number: int) -> None:
        self._queue = deque(t for t in self._queue if t.number != number)

    def prune(self, number: int) -> None:
        self._pruned.add(number)

    def shutdown(self, kill: bool = False) -> None:
        self._queue.clear()
