"""Pages of trials for the dashboard: sorted, filtered and counted by every storage alike."""

from __future__ import annotations

import math

import pytest

import optml
from optml.errors import StorageError
from optml.trial import TrialState


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def filled(request):
    url = "memory://" if request.param == "memory" else request.getfixturevalue(f"{request.param}_url")
    study = optml.create_study("p", space={"x": range(1000)}, storage=url, sampler="random")
    values = [0.5, 0.1, math.nan, 0.9, 0.1, 0.3]
    for i, v in enumerate(values):
        study.add_trial({"x": i}, v)
    study.enqueue({"x": 50})
    return study


def test_page_sorted_by_value_missing_last_ties_by_number(filled):
    trials, total = filled.storage.trials_page(filled.id, limit=10, sort="value")
    assert total == 7
    # NaN was recorded FAILED (no value); the queued trial has none: both last.
    assert [t.number for t in trials] == [1, 4, 5, 0, 3, 2, 6]
    trials, _ = filled.storage.trials_page(filled.id, limit=10, sort="value", descending=True)
    assert [t.number for t in trials][:5] == [3, 0, 5, 4, 1]
    assert {t.number for t in trials[5:]} == {2, 6}


def test_page_offset_limit_and_state_filter(filled):
    trials, total = filled.storage.trials_page(filled.id, offset=2, limit=2)
    assert total == 7 and [t.number for t in trials] == [2, 3]
    trials, total = filled.storage.trials_page(
        filled.id, states=[TrialState.WAITING, TrialState.FAILED]
    )
    assert total == 2 and [t.state for t in trials] == [TrialState.FAILED, TrialState.WAITING]
    trials, total = filled.storage.trials_page(filled.id, descending=True, limit=1)
    assert [t.number for t in trials] == [6]


@pytest.mark.parametrize(
    "kwargs", [{"offset": -1}, {"limit": 0}, {"limit": 100_000}, {"sort": "params"}]
)
def test_bad_page_refused(filled, kwargs):
    with pytest.raises(StorageError):
        filled.storage.trials_page(filled.id, **kwargs)


def test_trial_rows_carry_params_only_when_asked(filled):
    rows = filled.storage.trial_rows(filled.id)
    assert [r.number for r in rows] == list(range(7)) and rows[0].params is None
    rows = filled.storage.trial_rows(filled.id, params=True)
    assert rows[3].params == {"x": 3} and rows[3].value == 0.9


def test_trials_version_grows_with_each_trial_write(filled):
    before = filled.storage.trials_version(filled.id)
    assert filled.storage.trials_version(filled.id) == before
    filled.add_trial({"x": 77}, 0.2)
    after = filled.storage.trials_version(filled.id)
    assert after > before
    with pytest.raises(StorageError):
        filled.storage.trials_version(filled.id + 1000)
