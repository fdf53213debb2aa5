"""One notion of "best": the ranking module, and the study, the controller and the command line
that all rank trials with it."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import optml
from optml.constraints import parse_constraints
from optml.pareto import pareto_front
from optml.ranking import best_trial, is_feasible, loss_matrix, target_reached, violations
from optml.samplers import SearchContext
from optml.space import Float, Space
from optml.trial import Metric, Trial, TrialState

C = TrialState.COMPLETE
LOW_MEMORY = parse_constraints([{"metric": "memory", "max": 100}])


def _trial(number: int, value: float | None, state: TrialState = C, **metrics: float) -> Trial:
    return Trial(number, state, {"x": 0.0}, value=value, metrics={"value": value, **metrics})


def test_lowest_loss_wins_and_the_lowest_number_breaks_ties() -> None:
    trials = [_trial(0, 3.0), _trial(1, 1.0), _trial(2, 1.0), _trial(3, 0.5, TrialState.FAILED)]
    assert best_trial(trials, Metric("value")).number == 1  # type: ignore[union-attr]
    assert best_trial(trials, Metric("value", "maximize")).number == 0  # type: ignore[union-attr]
    assert best_trial(trials[::-1], Metric("value")).number == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_nan_and_infinite_values_are_never_best(direction: str) -> None:
    trials = [_trial(0, math.nan), _trial(1, -math.inf), _trial(2, math.inf), _trial(3, 2.0)]
    metric = Metric("value", direction)  # type: ignore[arg-type]
    assert best_trial(trials, metric).number == 3  # type: ignore[union-attr]
    assert best_trial(trials[:3], metric) is None
    assert not target_reached(trials[:3], metric, 0.0)


def test_an_infeasible_trial_is_never_best_nor_reaches_the_target() -> None:
    trials = [_trial(0, 0.1, memory=500.0), _trial(1, 0.9, memory=50.0), _trial(2, 0.05)]
    metric = Metric("value")
    assert best_trial(trials, metric).number == 2  # type: ignore[union-attr]
    assert best_trial(trials, metric, LOW_MEMORY).number == 1  # type: ignore[union-attr]
    assert list(violations(trials, LOW_MEMORY)) == [4.0, 0.0, math.inf]
    assert [is_feasible(t, LOW_MEMORY) for t in trials] == [False, True, False]
    assert target_reached(trials, metric, 0.2)
    assert not target_reached(trials, metric, 0.2, LOW_MEMORY)
    assert target_reached(trials, metric, 0.9, LOW_MEMORY)


def test_one_loss_matrix_for_pareto_fronts_and_samplers() -> None:
    metrics = (Metric("value"), Metric("acc", "maximize"))
    trials = [
        Trial(0, C, {"x": 0.1}, value=1.0, metrics={"value": 1.0, "acc": 0.5}),
        Trial(1, C, {"x": 0.2}, value=2.0, metrics={"value": 2.0}),
    ]
    expected = np.array([[1.0, -0.5], [2.0, math.nan]])
    np.testing.assert_array_equal(loss_matrix(trials, metrics), expected)
    ctx = SearchContext(space=Space([Float("x", 0, 1)]), trials=trials, metrics=metrics)
    np.testing.assert_array_equal(ctx.loss_matrix(trials), expected)  # used to raise on None
    assert pareto_front(trials, metrics) == trials[:1]  # a missing metric is no front member


# -- the study, the controller and the command line ------------------------------------------


def _constrained_study(storage: str) -> optml.Study:
    study = optml.create_study(
        "constrained",
        space={"x": {"uniform": [0, 1]}},
        storage=storage,
        sampler="random",
        seed=0,
        constraints=[{"metric": "memory", "max": 100}],
    )
    study.add_trial({"x": 0.1}, {"value": 0.01, "memory": 900.0})  # best value, infeasible
    study.add_trial({"x": 0.2}, {"value": 0.50, "memory": 50.0})
    study.add_trial({"x": 0.3}, {"value": 0.40, "memory": 80.0})  # the best feasible trial
    return study


def test_storage_and_study_agree_on_the_best_trial_under_stored_constraints() -> None:
    study = _constrained_study("memory://")
    assert study.best_trial.number == 2
    assert study.storage.get_best_trial(study.id).number == 2  # type: ignore[union-attr]
    assert study.storage.list_studies()[0].best_value == 0.40


def test_the_cli_marks_the_same_best_trial_as_the_study(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'optml.db'}"
    study = _constrained_study(url)
    shown = subprocess.run(
        [sys.executable, "-m", "optml.cli", "show", "constrained", "--storage", url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert shown.returncode == 0, shown.stderr
    # The first number on a marked row is its trial number, whatever the table's borders.
    marked = [
        re.findall(r"\d+", line)[0] for line in shown.stdout.splitlines() if "★ best" in line
    ]
    assert marked == [str(study.best_trial.number)] == ["2"]
    assert "Best: trial 2" in shown.stdout


def test_a_target_is_not_reached_by_an_infeasible_trial() -> None:
    study = optml.create_study(
        space={"x": {"uniform": [0, 1]}},
        storage="memory://",
        sampler="random",
        seed=1,
        constraints=[{"metric": "memory", "max": 100}],
    )

    def objective(x: float) -> dict[str, float]:
        # Every trial beats the target, but only the fifth is feasible.
        feasible = len(study.get_trials([C])) == 4
        return {"value": 0.001, "memory": 10.0 if feasible else 900.0}

    study.optimize(objective, n_trials=20, executor="serial", target=0.01)
    assert len(study.trials) == 5 and study.last_run.stop_reason == "target"
    assert study.best_trial.number == 4
