"""The sampler contract, checked on every registered sampler."""

from __future__ import annotations

import numpy as np
import pytest

from optml.samplers import SearchContext, TrialMemo, available_samplers, make_sampler
from optml.samplers._base import Metric
from optml.space import Categorical, Float, Int, Space
from optml.trial import Trial, TrialState

MODEL_FREE = ["grid", "random", "sobol", "lhs"]
# Every registered sampler but grid (its own tests) and meta (needs a meta space).
SAMPLERS = [n for n in available_samplers() if n not in ("grid", "meta")]

MIXED = Space(
    [
        Float("x", -5.0, 5.0),
        Float("lr", 1e-5, 1e-1, log=True),
        Int("units", 1, 64, log=True),
        Int("layers", 1, 4),
        Categorical("act", ("relu", "tanh", "sigmoid")),
    ]
)


def _history(space: Space, n: int, seed: int = 0, running: int = 0) -> list[Trial]:
    rng = np.random.default_rng(seed)
    trials = []
    for i, config in enumerate(space.sample(rng, n + running)):
        u = space.encode(config)
        value = float(np.sum((u - 0.3) ** 2))
        if i < n:
            trials.append(
                Trial(i, TrialState.COMPLETE, config, value=value, metrics={"value": value})
            )
        else:
            trials.append(Trial(i, TrialState.RUNNING, config))
    return trials


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("n_done", [0, 3, 25])
def test_proposals_are_valid_unique_and_away_from_pending(name: str, n_done: int) -> None:
    sampler = make_sampler(name)
    trials = _history(MIXED, n_done, running=2)
    ctx = SearchContext(space=MIXED, trials=trials, metrics=(Metric("value"),), seed=3, budget=50)
    batch = sampler.propose(ctx, 4, np.random.default_rng(1))
    assert len(batch) == 4
    keys = [MIXED.key(c) for c in batch]
    assert len(set(keys)) == 4, "a batch repeats a point"
    assert not set(keys) & ctx.seen_keys(), "a proposal repeats a known or pending point"
    for config in batch:
        checked = MIXED.validate(config)
        for p in MIXED:
            assert type(config[p.name]) is type(checked[p.name]), (p.name, config[p.name])


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_proposals(name: str) -> None:
    trials = _history(MIXED, 12)
    ctx = SearchContext(space=MIXED, trials=trials, seed=7, budget=50)
    first = make_sampler(name).propose(ctx, 3, np.random.default_rng(5))
    again = make_sampler(make_sampler(name).to_spec()).propose(ctx, 3, np.random.default_rng(5))
    assert first == again


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_warm_memo_changes_no_proposal(name: str) -> None:
    # A study keeps one TrialMemo across requests; what it remembers must be exactly what the
    # context would compute, including after the history grows past the memo's first size,
    # and for an older (shorter) snapshot of the history than the memo has seen.
    memo = TrialMemo(MIXED)
    trials = _history(MIXED, 80, running=2)
    for size in (12, 82, 40):
        plain = SearchContext(space=MIXED, trials=trials[:size], seed=7, budget=90)
        cached = SearchContext(space=MIXED, trials=trials[:size], seed=7, budget=90, memo=memo)
        assert cached.seen_keys() == plain.seen_keys()
        np.testing.assert_array_equal(
            cached.encode(cached.completed), plain.encode(plain.completed)
        )
        first = make_sampler(name).propose(plain, 3, np.random.default_rng(5))
        again = make_sampler(name).propose(cached, 3, np.random.default_rng(5))
        assert first == again


def test_a_memo_serves_only_its_own_space() -> None:
    other = Space([Float("x", 0.0, 1.0)])
    memo = TrialMemo(other)
    trials = _history(MIXED, 5)
    ctx = SearchContext(space=MIXED, trials=trials, memo=memo)
    np.testing.assert_array_equal(ctx.encode(trials), MIXED.encode_many([t.params for t in trials]))
    assert ctx.seen_keys() == {MIXED.key(t.params) for t in trials}
    assert not memo._keys and not memo._known.any()  # nothing computed with the wrong space


def test_grid_walks_every_point_once_then_stops() -> None:
    space = Space([Categorical("lr", (0.1, 0.5)), Int("n", 1, 3)])
    sampler = make_sampler("grid")
    trials: list[Trial] = []
    rng = np.random.default_rng(0)
    while True:
        batch = sampler.propose(SearchContext(space=space, trials=trials), 4, rng)
        if not batch:
            break
        trials += [
            Trial(len(trials) + i, TrialState.COMPLETE, c, value=0.0) for i, c in enumerate(batch)
        ]
    assert [(t.params["lr"], t.params["n"]) for t in trials] == [
        (0.1, 1),
        (0.1, 2),
        (0.1, 3),
        (0.5, 1),
        (0.5, 2),
        (0.5, 3),
    ]


def test_grid_with_explicit_points_skips_pending() -> None:
    space = Space([Categorical("lr", (0.1, 0.5))])
    sampler = make_sampler({"name": "grid", "points": [{"lr": 0.5}, {"lr": 0.1}]})
    pending = [Trial(0, TrialState.RUNNING, {"lr": 0.5})]
    assert sampler.propose(
        SearchContext(space=space, trials=pending), 5, np.random.default_rng()
    ) == [{"lr": 0.1}]


@pytest.mark.parametrize("name", [n for n in MODEL_FREE if n != "grid"])
def test_finite_space_is_exhausted_without_repeats(name: str) -> None:
    space = Space([Categorical("a", (1, 2, 3)), Int("b", 0, 1)])
    trials: list[Trial] = []
    rng = np.random.default_rng(0)
    sampler = make_sampler(name)
    for _ in range(4):
        batch = sampler.propose(SearchContext(space=space, trials=trials), 4, rng)
        trials += [
            Trial(len(trials) + i, TrialState.COMPLETE, c, value=1.0) for i, c in enumerate(batch)
        ]
    assert len(trials) == 6
    assert len({space.key(t.params) for t in trials}) == 6


def test_grid_runs_the_longest_remaining_points_first_once_durations_are_known() -> None:
    space = Space([Categorical("size", (2, 512)), Categorical("lr", (0.1, 0.2, 0.3))])
    # The first row (size 2) has run: cheap. Size 512 took long in the trial that ran.
    trials = [
        Trial(0, TrialState.COMPLETE, {"size": 2, "lr": 0.1}, value=1.0, duration_s=0.1),
        Trial(1, TrialState.COMPLETE, {"size": 512, "lr": 0.1}, value=1.0, duration_s=5.0),
    ]
    batch = make_sampler("grid").propose(
        SearchContext(space=space, trials=trials), 2, np.random.default_rng(0)
    )
    assert batch == [{"size": 512, "lr": 0.2}, {"size": 512, "lr": 0.3}]
    # Without durations (or values from elsewhere) the grid keeps its order.
    untimed = [t.with_changes(duration_s=None) for t in trials]
    batch = make_sampler("grid").propose(
        SearchContext(space=space, trials=untimed), 2, np.random.default_rng(0)
    )
    assert batch == [{"size": 2, "lr": 0.2}, {"size": 2, "lr": 0.3}]
