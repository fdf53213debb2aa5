"""Trials reserved ahead of free workers while trials are short and the sampler's proposals
ignore results (random search): what it must not change."""

from __future__ import annotations

import time

import optml
from optml.trial import TrialState


def _study(sampler: str = "random", **kwargs):
    return optml.create_study(
        "s",
        space={"x": {"uniform": [0, 1]}},
        sampler=sampler,
        storage="memory://",
        seed=5,
        **kwargs,
    )


def _running_seen(study):
    """An objective that records how many trials of ``study`` are RUNNING while it runs."""
    seen: list[int] = []

    def objective(x: float) -> float:
        seen.append(len(study.storage.get_trials(study.id, [TrialState.RUNNING])))
        return x

    return objective, seen


def test_short_trials_of_a_random_search_are_reserved_ahead_and_all_run_once() -> None:
    study = _study()
    objective, seen = _running_seen(study)
    study.optimize(objective, n_trials=60, executor="serial")
    assert max(seen) > 1  # reserved ahead once the first trials showed they were short
    trials = study.trials
    assert [t.number for t in trials] == list(range(60))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.params["x"] for t in trials}) == 60


def test_a_sampler_that_learns_never_gets_trials_reserved_ahead() -> None:
    study = _study("tpe")
    objective, seen = _running_seen(study)
    study.optimize(objective, n_trials=40, executor="serial")
    assert seen == [1] * 40


def test_reserving_ahead_proposes_the_points_one_by_one_would() -> None:
    fast = _study()
    fast.optimize(lambda x: x, n_trials=40, executor="serial")

    def slow(x: float) -> float:
        time.sleep(0.002)  # past the short-trial bound: one trial at a time
        return x

    one_by_one = _study()
    one_by_one.optimize(slow, n_trials=40, executor="serial")
    assert [t.params for t in fast.trials] == [t.params for t in one_by_one.trials]


def test_trials_reserved_ahead_and_not_started_go_back_to_the_queue() -> None:
    calls: list[float] = []

    def objective(x: float) -> float:
        calls.append(x)
        return 0.0 if len(calls) == 30 else 1.0  # the target is reached by the 30th trial

    study = _study()
    study.set_budget(100)
    study.optimize(objective, executor="serial", target=0.5)
    assert len(calls) == 30
    trials = study.trials
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    waiting = [t for t in trials if t.state is TrialState.WAITING]
    assert waiting  # the run stopped with trials reserved ahead: queued, not lost
    study.optimize(lambda x: x, n_trials=len(waiting), executor="serial")
    assert all(t.state is TrialState.COMPLETE for t in study.trials[: len(trials)])
