"""The forest sampler (tree-ensemble surrogate, LCB, constant liar) and its reusable surrogate."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from optml.errors import SpecError
from optml.samplers import SearchContext, make_sampler
from optml.samplers._forest import ForestSampler, ForestSurrogate
from optml.space import Categorical, Float, Int, Space
from optml.trial import Trial, TrialState

MIXED = Space(
    [
        Float("x", -5.0, 5.0),
        Float("lr", 1e-5, 1e-1, log=True),
        Int("units", 1, 64, log=True),
        Int("layers", 1, 4),
        Categorical("act", ("relu", "tanh", "sigmoid", "elu")),
        Categorical("bn", (True, False)),
    ]
)
BRANIN = Space([Float("x1", -5.0, 10.0), Float("x2", 0.0, 15.0)])
FAST = {"n_trees": 24, "n_candidates": 400}


def branin(c: dict[str, Any]) -> float:
    x1, x2 = c["x1"], c["x2"]
    b, cc = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + cc * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def mixed_loss(c: dict[str, Any]) -> float:
    # Categorical effects out of index order: "tanh" best, "elu" second, the others poor.
    act = {"relu": 2.0, "tanh": 0.0, "sigmoid": 3.0, "elu": 0.5}[c["act"]]
    return (
        act
        + (c["x"] - 1.5) ** 2 / 5
        + (math.log10(c["lr"]) + 3) ** 2 / 4
        + abs(c["layers"] - 3) * 0.3
        + (0.0 if c["bn"] else 0.4)
    )


def history(
    space: Space, f: Callable[[dict[str, Any]], float], n: int, running: int = 0, seed: int = 0
) -> list[Trial]:
    configs = space.sample(np.random.default_rng(seed), n + running)
    return [
        Trial(i, TrialState.COMPLETE, c, value=f(c)) if i < n else Trial(i, TrialState.RUNNING, c)
        for i, c in enumerate(configs)
    ]


def run_study(
    spec: Any,
    space: Space,
    f: Callable[[dict[str, Any]], float],
    budget: int,
    batch: int,
    seed: int,
) -> list[Trial]:
    sampler = make_sampler(spec)
    rng = np.random.default_rng(seed)
    trials: list[Trial] = []
    while len(trials) < budget:
        ctx = SearchContext(space=space, trials=trials, seed=seed, budget=budget)
        for config in sampler.propose(ctx, min(batch, budget - len(trials)), rng):
            trials.append(Trial(len(trials), TrialState.COMPLETE, config, value=f(config)))
    return trials


# -- the sampler ---------------------------------------------------------------------------
@pytest.mark.parametrize("n_done", [0, 4, 15])
def test_proposals_are_valid_typed_and_new(n_done: int) -> None:
    trials = history(MIXED, mixed_loss, n_done, running=3)
    ctx = SearchContext(space=MIXED, trials=trials, seed=1)
    batch = ForestSampler(**FAST).propose(ctx, 5, np.random.default_rng(0))
    assert len(batch) == 5
    keys = {MIXED.key(c) for c in batch}
    assert len(keys) == 5
    assert not keys & ctx.seen_keys()
    for config in batch:
        checked = MIXED.validate(config)
        assert all(type(config[k]) is type(checked[k]) for k in checked)


def test_same_context_and_rng_give_the_same_proposals_after_a_rebuild() -> None:
    ctx = SearchContext(space=MIXED, trials=history(MIXED, mixed_loss, 14, running=2), seed=4)
    sampler = ForestSampler(liar="max", **FAST)
    first = sampler.propose(ctx, 3, np.random.default_rng(9))
    rebuilt = make_sampler(sampler.to_spec())
    assert rebuilt.to_spec() == sampler.to_spec()
    assert rebuilt.propose(ctx, 3, np.random.default_rng(9)) == first
    assert sampler.propose(ctx, 3, np.random.default_rng(9)) == first


def test_start_is_a_latin_hypercube_continued_by_trial_count() -> None:
    space = Space([Float("a", 0.0, 1.0), Float("b", 0.0, 1.0), Float("c", 0.0, 1.0)])
    sampler = ForestSampler(n_initial=10, **FAST)
    rng = np.random.default_rng(0)
    whole = sampler.propose(SearchContext(space=space, trials=[], seed=5), 10, rng)
    # Asked 3 + 3 + 4 at a time with nothing finished yet: the same ten points.
    trials: list[Trial] = []
    for size in (3, 3, 4):
        ctx = SearchContext(space=space, trials=trials, seed=5)
        for config in sampler.propose(ctx, size, rng):
            trials.append(Trial(len(trials), TrialState.RUNNING, config))
    assert [t.params for t in trials] == whole
    units = space.encode_many(whole)
    for j in range(3):  # one point in each tenth of every axis
        assert sorted((units[:, j] * 10).astype(int)) == list(range(10))
    other_seed = sampler.propose(SearchContext(space=space, trials=[], seed=6), 10, rng)
    assert other_seed != whole


def test_pending_points_change_the_proposal() -> None:
    done = history(BRANIN, branin, 12)
    best = min(done, key=lambda t: t.value or 0.0)
    sampler = ForestSampler(**FAST)
    alone = sampler.propose(SearchContext(space=BRANIN, trials=done), 1, np.random.default_rng(3))
    near = {"x1": min(best.params["x1"] + 0.3, 10.0), "x2": best.params["x2"]}
    busy = done + [Trial(12, TrialState.RUNNING, near), Trial(13, TrialState.RUNNING, alone[0])]
    again = sampler.propose(SearchContext(space=BRANIN, trials=busy), 1, np.random.default_rng(3))
    assert again != alone


def test_finite_space_is_covered_without_repeats() -> None:
    space = Space([Categorical("a", ("x", "y", "z")), Int("b", 0, 1)])
    trials = run_study(
        {"name": "forest", **FAST, "n_initial": 2},
        space,
        lambda c: float(c["b"]),
        budget=6,
        batch=2,
        seed=0,
    )
    assert len({space.key(t.params) for t in trials}) == 6
    ctx = SearchContext(space=space, trials=trials)
    assert ForestSampler(**FAST).propose(ctx, 3, np.random.default_rng(0)) == []


def test_bad_options_are_rejected_with_the_field_named() -> None:
    with pytest.raises(SpecError, match="liar"):
        ForestSampler(liar="median")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="kappa"):
        ForestSampler(kappa=-1)
    with pytest.raises(SpecError, match="surrogate"):
        make_sampler({"name": "forest", "surrogate": "boosting"})


def test_beats_random_search_on_branin() -> None:
    wins, ours, theirs = 0, [], []
    for seed in range(5):
        forest = min(
            t.value
            for t in run_study(
                {"name": "forest", **FAST}, BRANIN, branin, budget=30, batch=3, seed=seed
            )
        )
        random = min(t.value for t in run_study("random", BRANIN, branin, 30, 3, seed))
        wins += forest < random
        ours.append(forest)
        theirs.append(random)
    assert wins >= 3, (ours, theirs)
    assert np.median(ours) < np.median(theirs)


def test_beats_random_search_on_a_categorical_heavy_space() -> None:
    wins = 0
    for seed in range(4):
        forest = min(
            t.value
            for t in run_study(
                {"name": "forest", **FAST}, MIXED, mixed_loss, budget=30, batch=3, seed=seed
            )
        )
        random = min(t.value for t in run_study("random", MIXED, mixed_loss, 30, 3, seed))
        wins += forest < random
    assert wins >= 3


# -- the surrogate -------------------------------------------------------------------------
def test_surrogate_predicts_low_near_the_minimum_and_unsure_away_from_data() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((60, 2)) * 0.5  # data only in the lower corner
    y = np.sum((X - 0.25) ** 2, axis=1)
    model = ForestSurrogate(n_trees=32).fit(X, y, rng)
    mean, std = model.predict(np.array([[0.25, 0.25], [0.05, 0.45], [0.95, 0.95]]))
    assert mean.shape == std.shape == (3,)
    assert mean[0] < mean[1]
    assert np.all(std >= 0)
    at_data = model.predict(X)[1]
    assert std[2] > np.median(at_data)


def test_surrogate_one_hot_learns_choices_out_of_index_order() -> None:
    space = Space([Categorical("c", ("a", "b", "c", "d", "e")), Float("x", 0.0, 1.0)])
    rng = np.random.default_rng(1)
    configs = space.sample(rng, 80)
    good = {"a", "c", "e"}  # alternating in index order: no single threshold separates them
    y = np.array([0.0 if c["c"] in good else 1.0 for c in configs])
    X = space.encode_many(configs)
    model = ForestSurrogate(space, n_trees=32, kind="random_forest").fit(X, y, rng)
    test = space.encode_many([{"c": v, "x": 0.5} for v in "abcde"])
    mean, _ = model.predict(test)
    assert np.all(mean[[0, 2, 4]] < 0.2) and np.all(mean[[1, 3]] > 0.8)


def test_space_snap_matches_decode_then_encode() -> None:
    U = np.random.default_rng(2).random((200, len(MIXED)))
    expected = MIXED.encode_many([MIXED.decode(u) for u in U])
    np.testing.assert_allclose(MIXED.snap(U), expected, atol=1e-12)


def test_a_study_with_huge_losses_keeps_running() -> None:
    # Losses of ±1e308 used to make every proposal raise, so the study (and each resume) died.
    import optml

    study = optml.create_study(
        space={"x": {"uniform": [0, 1]}, "c": ["a", "b"]},
        sampler={"name": "forest", "n_initial": 2, "n_trees": 8, "n_candidates": 50},
        storage="memory://",
        seed=0,
    )
    for i, value in enumerate([1e308, -1e308, 1e308, 3.0]):
        study.add_trial({"x": i / 4, "c": "ab"[i % 2]}, value)
    study.optimize(lambda x, c: 1e308 * x, n_trials=3, executor="serial")
    assert len(study.get_trials([optml.TrialState.COMPLETE])) == 7
