"""The local executor's worker queues: while trials are short, each worker holds several tasks
and runs them one after another. What a task keeps in a queue: exactly one outcome, its reports
in order before it, its own time limit, and a crash or a timeout costs only the trial that
ran into it."""

from __future__ import annotations

import os
import time

import pytest

from optml.executors import LocalExecutor, TrialOutcome, TrialReported, TrialTask
from optml.executors._local import QUEUE
from optml.objectives import FunctionObjective
from proc_helpers import events_until, outcomes_in


def behave(x, trial, seconds=30.0):
    """x picks what the trial does: 0 returns, 1 reports three steps, 2 sleeps, 3 dies."""
    if x == 1:
        for step in range(3):
            trial.report(step, float(step))
    elif x == 2:
        time.sleep(seconds)
    elif x == 3:
        os._exit(3)
    return float(x)


@pytest.fixture
def executor():
    """A local executor whose worker(s) have seen short trials, so that they take queues."""
    made = []

    def build(workers: int = 1) -> LocalExecutor:
        ex = LocalExecutor(workers=workers)
        made.append(ex)
        ex.start(FunctionObjective(behave))
        assert ex.free_slots() == workers  # one task each until trials are known to be short
        for i in range(16):
            ex.submit(TrialTask(-1 - i, {"x": 0}, "value"))
            events_until(ex, lambda got: len(outcomes_in(got)) == 1)
        assert ex.free_slots() == workers * QUEUE
        return ex

    yield build
    for ex in made:
        ex.shutdown(kill=True)


def _tasks(*specs: dict, timeout: float | None = None) -> list[TrialTask]:
    return [TrialTask(i, spec, "value", timeout=timeout) for i, spec in enumerate(specs)]


def test_queued_tasks_each_yield_one_outcome_with_their_reports_in_order_before_it(
    executor,
) -> None:
    ex = executor(2)
    tasks = [TrialTask(i, {"x": i % 2}, "value") for i in range(2 * QUEUE)]
    ex.submit_many(tasks)
    events = events_until(ex, lambda got: len(outcomes_in(got)) == len(tasks))
    while ex.running():
        events += ex.events(0.2)
    assert sorted(o.number for o in outcomes_in(events)) == list(range(len(tasks)))
    for task in tasks:
        mine = [e for e in events if e.number == task.number]
        reports = [e.step for e in mine if isinstance(e, TrialReported)]
        assert reports == ([0, 1, 2] if task.params["x"] == 1 else [])
        assert isinstance(mine[-1], TrialOutcome) and mine[-1].state == "COMPLETE"


def test_a_task_in_a_queue_keeps_its_own_time_limit(executor) -> None:
    ex = executor(1)
    # The first runs past its limit; the second waits behind it for longer than its own limit,
    # which counts from its start: it completes.
    ex.submit_many(
        [
            TrialTask(0, {"x": 2, "seconds": 30}, "value", timeout=1.0),
            TrialTask(1, {"x": 0}, "value", timeout=0.5),
            TrialTask(2, {"x": 0}, "value", timeout=0.5),
        ]
    )
    outcomes = outcomes_in(events_until(ex, lambda got: len(outcomes_in(got)) == 3))
    assert {o.number: o.state for o in outcomes} == {0: "TIMEOUT", 1: "COMPLETE", 2: "COMPLETE"}


def test_a_crash_in_a_queue_fails_only_its_trial_and_the_rest_run(executor) -> None:
    ex = executor(1)
    ex.submit_many(_tasks({"x": 0}, {"x": 3}, {"x": 1}, {"x": 0}))
    events = events_until(ex, lambda got: len(outcomes_in(got)) == 4)
    states = {o.number: o.state for o in outcomes_in(events)}
    assert states == {0: "COMPLETE", 1: "FAILED", 2: "COMPLETE", 3: "COMPLETE"}
    assert "exited unexpectedly" in next(o.error for o in outcomes_in(events) if o.number == 1)
    assert [e.step for e in events if isinstance(e, TrialReported)] == [0, 1, 2]
    time.sleep(0.5)
    assert not ex.events(0.2)  # nothing more: no task ran twice


def test_a_queued_task_taken_back_never_runs(executor, tmp_path) -> None:
    ex = executor(1)
    ex.submit_many(_tasks({"x": 2, "seconds": 1.0}, {"x": 1}, {"x": 0}))
    ex.cancel(1)
    events = events_until(ex, lambda got: len(outcomes_in(got)) == 2)
    time.sleep(0.5)
    events += ex.events(0.2)
    assert sorted(o.number for o in outcomes_in(events)) == [0, 2]
    assert not [e for e in events if e.number == 1]
    assert ex.running() == 0


def talk(x):
    print(f"trial says {x}")
    return float(x)


def test_each_trial_s_logs_hold_its_own_output_only() -> None:
    ex = LocalExecutor(workers=1)
    try:
        ex.start(FunctionObjective(talk))
        for x in range(3):  # one worker, one log file, emptied as each trial starts
            ex.submit(TrialTask(x, {"x": x}, "value"))
            (outcome,) = outcomes_in(events_until(ex, lambda got: len(outcomes_in(got)) == 1))
            assert outcome.logs == f"trial says {x}\n"
    finally:
        ex.shutdown(kill=True)
