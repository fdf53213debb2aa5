"""The sampler contract, checked on every registered sampler."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

from optml.errors import SpaceError, SpecError
from optml.samplers import SearchContext, TrialMemo, available_samplers, make_sampler
from optml.space import Categorical, Float, Int, Space, meta_space
from optml.trial import Metric, Trial, TrialState

MODEL_FREE = ["grid", "random", "sobol", "lhs"]
# Every registered sampler; each searches the space of SPACES below.
SAMPLERS = available_samplers()

MIXED = Space(
    [
        Float("x", -5.0, 5.0),
        Float("lr", 1e-5, 1e-1, log=True),
        Int("units", 1, 64, log=True),
        Int("layers", 1, 4),
        Categorical("act", ("relu", "tanh", "sigmoid")),
    ]
)
# A grid needs a finite space; the meta sampler a space of model families.
FINITE = Space(
    [
        Int("units", 1, 64, log=True),
        Int("layers", 1, 4),
        Categorical("act", ("relu", "tanh", "sigmoid")),
    ]
)
META = meta_space(
    {
        "svm": {"C": {"loguniform": [0.01, 100]}, "kernel": ["rbf", "linear"]},
        "knn": {"k": {"int": [1, 30]}, "weights": ["uniform", "distance"]},
    }
)
SPACES = {"grid": FINITE, "meta": META}


def _space(name: str) -> Space:
    return SPACES.get(name, MIXED)


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
    space = _space(name)
    sampler = make_sampler(name, space=space)
    trials = _history(space, n_done, running=2)
    ctx = SearchContext(space=space, trials=trials, metrics=(Metric("value"),), seed=3, budget=50)
    _check_batch(ctx, sampler.propose(ctx, 4, np.random.default_rng(1)), 4)


def _check_batch(ctx: SearchContext, batch: list[dict[str, Any]], n: int) -> None:
    space = ctx.space
    assert len(batch) == n
    keys = [space.key(c) for c in batch]
    assert len(set(keys)) == n, "a batch repeats a point"
    assert not set(keys) & ctx.seen_keys(), "a proposal repeats a known or pending point"
    for config in batch:
        checked = space.validate(config)
        for p in config:
            assert type(config[p]) is type(checked[p]), (p, config[p])


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_proposals(name: str) -> None:
    space = _space(name)
    trials = _history(space, 12)
    ctx = SearchContext(space=space, trials=trials, seed=7, budget=50)
    sampler = make_sampler(name, space=space)
    first = sampler.propose(ctx, 3, np.random.default_rng(5))
    rebuilt = make_sampler(sampler.to_spec(), space=space)
    assert rebuilt.to_spec() == sampler.to_spec()
    assert rebuilt.propose(ctx, 3, np.random.default_rng(5)) == first


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_warm_memo_changes_no_proposal(name: str) -> None:
    # A study keeps one TrialMemo across requests; what it remembers must be exactly what the
    # context would compute, including after the history grows past the memo's first size,
    # and for an older (shorter) snapshot of the history than the memo has seen.
    space = _space(name)
    memo = TrialMemo(space)
    trials = _history(space, 80, running=2)
    for size in (12, 82, 40):
        plain = SearchContext(space=space, trials=trials[:size], seed=7, budget=90)
        cached = SearchContext(space=space, trials=trials[:size], seed=7, budget=90, memo=memo)
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


# -- losses at the edges of floating point ------------------------------------------------

# Each set is the primary value of the completed trials, in order; ±inf stand for what older
# versions recorded COMPLETE (the context leaves them out, but they are in the history).
EXTREME_LOSSES = {
    "huge": [1e308, 3.0, 1e308, 1.0, 2.0, 1e307, 0.5, 4.0, 1e308, 2.5, 1.5, 3.5],
    "minus huge": [-1e308, 3.0, 1.0, -1e308, 2.0, 0.5, 4.0, -1e307, 2.5, 1.5, 3.5, 0.0],
    "both huge": [1e308, -1e308] * 6,
    "all huge": [1e308] * 12,
    "tiny": [i * 1e-308 for i in range(12)],
    "tiny and huge": [1e-308, 2e-308, 3e-308, 1e308] * 3,
    "all tied": [1.0] * 12,
    "infinities and huge": [math.inf, -math.inf, 1e308, -1e308, 1.0, 2.0] * 2,
}


def _extreme_history(space: Space, values: list[float], metrics: int = 1) -> list[Trial]:
    configs = space.sample(np.random.default_rng(4), len(values) + 2)
    trials = []
    for i, value in enumerate(values):
        extra = {f"m{j}": values[-1 - i] for j in range(1, metrics)}
        trials.append(
            Trial(
                i,
                TrialState.COMPLETE,
                configs[i],
                value=value,
                metrics={"value": value, **extra},
                duration_s=1.0,
            )
        )
    for i in range(len(values), len(values) + 2):  # pending points, for liars and fantasies
        trials.append(Trial(i, TrialState.RUNNING, configs[i]))
    return trials


@pytest.mark.parametrize("losses", list(EXTREME_LOSSES), ids=list(EXTREME_LOSSES))
@pytest.mark.parametrize("name", SAMPLERS)
def test_huge_tiny_and_tied_losses_keep_every_sampler_well_defined(name: str, losses: str) -> None:
    # Every sampler proposes valid new points, with no overflow, NaN or crash on the way (the
    # forest sampler used to raise on 1e308, and resume then raised the same way forever).
    space = _space(name)
    ctx = SearchContext(
        space=space, trials=_extreme_history(space, EXTREME_LOSSES[losses]), seed=3, budget=50
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = make_sampler(name, space=space).propose(ctx, 3, np.random.default_rng(2))
    _check_batch(ctx, batch, 3)


@pytest.mark.parametrize("losses", ["huge", "both huge", "infinities and huge"])
@pytest.mark.parametrize("name", ["gp", "nsga2", "random", "auto"])
def test_huge_losses_of_several_metrics_keep_samplers_well_defined(name: str, losses: str) -> None:
    metrics = (Metric("value"), Metric("m1", "maximize"))
    space = _space(name)
    ctx = SearchContext(
        space=space,
        trials=_extreme_history(space, EXTREME_LOSSES[losses], metrics=2),
        metrics=metrics,
        seed=3,
        budget=50,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = make_sampler(name, space=space, n_metrics=2).propose(
            ctx, 3, np.random.default_rng(2)
        )
    _check_batch(ctx, batch, 3)


def test_losses_of_any_sane_size_reach_samplers_unchanged() -> None:
    trials = _history(MIXED, 10)
    ctx = SearchContext(space=MIXED, trials=trials)
    np.testing.assert_array_equal(ctx.losses(), [t.value for t in trials])
    big = [t.with_changes(value=t.value * 1e300) for t in trials]  # type: ignore[operator]
    scaled = SearchContext(space=MIXED, trials=big).losses()
    assert np.all(np.isfinite(scaled)) and np.max(np.abs(scaled)) <= 2.0**256
    assert list(np.argsort(scaled, kind="stable")) == list(
        np.argsort([t.value for t in big], kind="stable")
    )


# -- how many configurations remain --------------------------------------------------------

SMALL = Space([Categorical("a", (1, 2, 3)), Int("b", 0, 1)])
SMALL_META = meta_space({"p": {"k": [1, 2, 3]}, "q": {"w": [True, False], "k2": {"int": [0, 1]}}})


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_says_what_remains_of_a_finite_space_and_then_stops(name: str) -> None:
    space = SMALL_META if name == "meta" else SMALL
    sampler = make_sampler(name, space=space)
    trials = [Trial(0, TrialState.FAILED, space.sample(np.random.default_rng(0), 1)[0])]
    rng = np.random.default_rng(0)
    while True:
        ctx = SearchContext(space=space, trials=trials, budget=20)
        left = sampler.remaining(ctx)
        assert left == space.grid_size - len(trials)
        batch = sampler.propose(ctx, 2, rng)
        if not batch:
            break
        assert len(batch) == min(2, left)
        trials += [
            Trial(len(trials) + i, TrialState.COMPLETE, c, value=float(len(trials) + i))
            for i, c in enumerate(batch)
        ]
    assert left == 0 and len({space.key(t.params) for t in trials}) == space.grid_size


@pytest.mark.parametrize("name", [n for n in SAMPLERS if n not in ("grid", "meta")])
def test_a_continuous_space_never_runs_out(name: str) -> None:
    ctx = SearchContext(space=MIXED, trials=_history(MIXED, 3))
    assert make_sampler(name, space=MIXED).remaining(ctx) is None


def test_remaining_counts_only_points_the_parameter_constraints_allow() -> None:
    ctx = SearchContext(space=SMALL, trials=[], constraints=["a + b <= 2"])
    assert make_sampler("grid").remaining(ctx) == 3 == make_sampler("random").remaining(ctx)
    points = [{"a": 1, "b": 0}, {"a": 3, "b": 1}, {"a": 1, "b": 0}]
    assert make_sampler({"name": "grid", "points": points}).remaining(ctx) == 1


# -- building samplers from their specs ------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLERS)
def test_unknown_options_are_refused_naming_the_accepted_ones(name: str) -> None:
    with pytest.raises(SpecError, match=r"unknown option\(s\) \['bogus'\]"):
        make_sampler({"name": name, "bogus": 1}, space=_space(name))


def test_a_grid_over_a_continuous_parameter_is_refused_when_built() -> None:
    with pytest.raises(SpaceError, match=r"\['x', 'lr'\] are continuous.*lists of values"):
        make_sampler("grid", space=MIXED)
    with pytest.raises(SpaceError, match="continuous"):
        make_sampler(make_sampler("grid"), space=MIXED)  # a sampler object is checked too


def test_a_grid_too_large_to_walk_is_refused_naming_its_size() -> None:
    huge = Space([Int("n", 0, 10**15), Categorical("c", ("a", "b"))])
    with pytest.raises(
        SpaceError, match=r"2,000,000,000,000,002 points \(n 1,000,000,000,000,001, c 2\)"
    ):
        make_sampler("grid", space=huge)
    # auto never picks a grid it would refuse
    auto = make_sampler("auto", space=huge, budget=10**16)
    assert auto.to_spec()["name"] != "grid"
    ctx = SearchContext(space=huge, trials=[])
    assert auto.remaining(ctx) == huge.grid_size  # counted, not listed


def test_a_huge_integer_range_is_walked_lazily() -> None:
    huge = Space([Int("n", 0, 10**15)])
    ctx = SearchContext(space=huge, trials=[])
    assert len(make_sampler("random").propose(ctx, 2, np.random.default_rng(0))) == 2
    assert next(iter(huge.grid())) == {"n": 0}
