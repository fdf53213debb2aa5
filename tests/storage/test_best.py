"""Every storage's best trial is the one optml.ranking picks: ties, maximising, non-finite values
recorded by older versions, and constraints stored with the study."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from optml.ranking import best_trial
from optml.storage import InMemoryStorage, Storage
from optml.storage._base import stored_constraints
from optml.trial import Metric, TrialState

S = TrialState
SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.infra)])
def storage(request) -> Iterator[Storage]:
    if request.param == "memory":
        yield InMemoryStorage()
        return
    from optml.storage._sql import SQLStorage

    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    opened = SQLStorage(url)
    yield opened
    opened.close()


# Values drawn from a small set, so that ties are common; the non-finite ones are what older
# versions recorded COMPLETE.
VALUES = [0.5, -2.0, 3.0, -2.0, 7.0, 7.0, math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0]
STATES = [S.COMPLETE] * 6 + [S.FAILED, S.RUNNING, S.PRUNED]


def _fill(storage: Storage, name: str, direction: str, seed: int, constraints: list) -> int:
    record = storage.create_study(
        name,
        metrics=[Metric("loss", direction)],  # type: ignore[arg-type]
        space=SPACE,
        sampler={"name": "random"},
        seed=0,
        spec={"constraints": constraints} if constraints else {},
    )
    rng = np.random.default_rng(seed)
    for _ in range(40):
        value = float(VALUES[rng.integers(len(VALUES))])
        state = STATES[rng.integers(len(STATES))]
        memory = float(rng.integers(0, 4)) * 100
        metrics = {"loss": value, "memory": memory}
        storage.create_trial(record.id, {"x": 0.5}, state=state, value=value, metrics=metrics)
    return record.id


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("constraints", [[], [{"metric": "memory", "max": 150}]])
def test_get_best_trial_agrees_with_the_ranking_module(storage, direction, constraints) -> None:
    for seed in range(6):
        name = f"s{seed}"
        study_id = _fill(storage, name, direction, seed, constraints)
        trials = storage.get_trials(study_id)
        expected = best_trial(
            trials, Metric("loss", direction), stored_constraints({"constraints": constraints})
        )  # type: ignore[arg-type]
        got = storage.get_best_trial(study_id)
        assert (got and got.number) == (expected and expected.number), (seed, trials)
        if expected is not None:
            assert math.isfinite(expected.value)  # type: ignore[arg-type]
        summary = next(s for s in storage.list_studies() if s.name == name)
        assert summary.best_value == (expected and expected.value)


def test_an_infinite_or_nan_value_is_never_best(storage) -> None:
    for direction, worst_first in (("minimize", -math.inf), ("maximize", math.inf)):
        record = storage.create_study(
            direction,
            metrics=[Metric("loss", direction)],  # type: ignore[arg-type]
            space=SPACE,
            sampler={"name": "random"},
            seed=0,
        )
        for value in (worst_first, math.nan, 2.0, 1.0, 2.0, 1.0):
            storage.create_trial(record.id, {"x": 0.5}, state=S.COMPLETE, value=value)
        best = storage.get_best_trial(record.id)
        assert best is not None and best.number == (3 if direction == "minimize" else 2)
