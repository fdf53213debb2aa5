"""The study's time budget: when it runs out, running trials are stopped and the run ends."""

from __future__ import annotations

import dataclasses
import os
import time

import psutil
import pytest

from optml import TrialState, create_study
from optml.executors import LocalExecutor, TrialTask

BUDGET_MESSAGE = "stopped: the study's time budget of 2 s ran out"


def _hang(pid_dir):
    def objective(x):
        (pid_dir / f"{os.getpid()}-{x}").write_text("")
        time.sleep(600)
        return x

    return objective


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class _NoTimeLimits(LocalExecutor):
    """An executor that does not enforce time limits (as a remote backend may not)."""

    def submit(self, task: TrialTask) -> None:
        super().submit(dataclasses.replace(task, timeout=None))


@pytest.mark.slow
@pytest.mark.timeout(120)  # the old controller waited for the trial's 600 s
@pytest.mark.parametrize("executor", ["local", "serial", "no-time-limits"])
def test_the_time_budget_stops_hanging_trials(tmp_path, executor) -> None:
    study = create_study(
        space={"x": [1, 2, 3, 4]}, storage=f"sqlite:///{tmp_path / 'o.db'}", seed=0
    )
    backend = _NoTimeLimits(workers=2) if executor == "no-time-limits" else executor
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    start = time.monotonic()
    study.optimize(_hang(tmp_path), timeout=2, workers=2, executor=backend)
    elapsed = time.monotonic() - start
    assert elapsed < 60, f"the run took {elapsed:.0f} s"
    assert study.last_run.stop_reason == "timeout"
    assert study.state == "COMPLETE"
    trials = study.trials
    assert len(trials) == (1 if executor == "serial" else 2)
    for t in trials:
        assert t.state is TrialState.TIMEOUT, t
        assert t.error == BUDGET_MESSAGE
        assert t.finished_at is not None and t.duration_s is not None
    if executor != "serial":
        # The processes that ran the trials (each wrote its pid), and any other child.
        pids = {int(p.name.split("-")[0]) for p in tmp_path.iterdir() if p.name[0].isdigit()}
        pids |= {p.pid for p in psutil.Process().children(recursive=True)} - before
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in pids), "a worker process was left running"


def test_a_trial_limit_shorter_than_the_budget_keeps_its_own_message(tmp_path) -> None:
    study = create_study(space={"x": [1, 2]}, storage="memory://", seed=0, sampler="grid")
    study.optimize(lambda x: time.sleep(600), timeout=60, trial_timeout=0.5, workers=2)
    assert [t.state for t in study.trials] == [TrialState.TIMEOUT] * 2
    assert all("time limit of 0.5 s" in t.error for t in study.trials)
