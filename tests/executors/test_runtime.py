"""The worker runtime's time limits: a trial's limit counts from its start, not from the start-up
of the fresh interpreter that runs it (the process every hosted backend supervises)."""

from __future__ import annotations

import time
from multiprocessing.connection import wait

from optml.executors import TrialOutcome, TrialTask, _runtime
from optml.executors._runtime import WorkerProcess, dump_objective
from optml.objectives import FunctionObjective
from proc_helpers import gone


class SlowToLoad:
    """Loading it takes ``seconds``: a worker process whose objective imports heavy modules."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __setstate__(self, state: dict) -> None:
        time.sleep(state["seconds"])
        self.__dict__.update(state)


def _run(proc: WorkerProcess, within: float = 60.0) -> TrialOutcome:
    """Supervise ``proc`` as a hosted backend does until its task has an outcome."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        limit = 0.1 if proc.deadline is None else max(0.0, proc.deadline - time.monotonic())
        wait(proc.waitables, timeout=min(0.1, limit))
        for message in proc.receive():
            if isinstance(message, TrialOutcome):
                return message
        if proc.dead:
            return proc.died(None, None)
        if proc.past_deadline():
            return proc.timed_out(None, None)
    raise AssertionError(f"no outcome within {within} s")


def _worker(tmp_path, load_s: float) -> WorkerProcess:
    slow = SlowToLoad(load_s)

    def double(x):
        return 2 * x + 0 * slow.seconds

    payload = dump_objective(FunctionObjective(double))
    return WorkerProcess(str(tmp_path), 1, payload=payload, relocate={})


def test_a_slow_worker_start_up_does_not_eat_the_trials_time_limit(tmp_path) -> None:
    proc = _worker(tmp_path, load_s=2.5)
    try:
        proc.submit(TrialTask(0, {"x": 3}, "value", timeout=1.0))
        outcome = _run(proc)
        assert outcome.state == "COMPLETE", outcome.error
        assert outcome.metrics["value"] == 6
    finally:
        proc.close(kill=True)


def test_a_worker_that_never_starts_its_trial_is_killed_saying_so(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_runtime, "START_ALLOWANCE_S", 0.5)
    proc = _worker(tmp_path, load_s=120)
    try:
        proc.submit(TrialTask(0, {"x": 3}, "value", timeout=0.5))
        outcome = _run(proc)
        assert outcome.state == "TIMEOUT"
        assert "did not start it within 0.5 s plus its time limit of 0.5 s" in outcome.error
        assert gone(proc.pid), "the worker process outlived its trial's time limit"
    finally:
        proc.close(kill=True)
