"""``algorithm: auto`` picks a sampler from the space, the budget and the metrics, and says why."""

from __future__ import annotations

import numpy as np
import pytest

from optml.errors import SpecError
from optml.samplers import SearchContext, _auto, make_sampler
from optml.samplers._auto import AutoSampler, choose_algorithm
from optml.samplers._meta import meta_space
from optml.space import Categorical, Float, Int, Space

SMALL_GRID = Space([Categorical("lr", (0.01, 0.1)), Int("units", 1, 4)])  # 8 points
LOW_DIM = Space([Float("x", 0, 1), Float("lr", 1e-4, 1e-1, log=True), Int("units", 1, 256)])
HIGH_DIM = Space([Float(f"x{i}", -1, 1) for i in range(16)])
CATEGORICAL = Space(
    [
        Categorical("act", ("relu", "tanh")),
        Categorical("opt", ("sgd", "adam")),
        Float("lr", 0.001, 0.1),
    ]
)


@pytest.mark.parametrize(
    ("space", "budget", "n_metrics", "expected"),
    [
        (SMALL_GRID, 8, 1, "grid"),
        (SMALL_GRID, 20, 1, "grid"),
        (SMALL_GRID, None, 1, "grid"),
        (SMALL_GRID, 5, 1, "forest"),  # all categorical/int: too big for the budget
        (LOW_DIM, 50, 2, "nsga2"),
        (SMALL_GRID, 50, 3, "nsga2"),
        (HIGH_DIM, 500, 1, "cmaes"),
        (HIGH_DIM, 100, 1, "gp"),
        (CATEGORICAL, 60, 1, "forest"),
        (CATEGORICAL, 1000, 1, "tpe"),
        (LOW_DIM, 1000, 1, "tpe"),
        (LOW_DIM, 60, 1, "gp"),
        (LOW_DIM, None, 1, "gp"),
    ],
)
def test_rules(space: Space, budget: int | None, n_metrics: int, expected: str) -> None:
    choice, reason = choose_algorithm(space, budget, n_metrics)
    assert choice == expected
    assert reason and isinstance(reason, str)


def test_meta_space_picks_the_meta_tuner() -> None:
    space = meta_space({"svm": {"C": {"loguniform": [0.1, 10]}}, "knn": {"k": [1, 3, 5]}})
    assert choose_algorithm(space, 30)[0] == "meta"


def _available(name: str) -> bool:
    return _auto._importable(name)


def test_make_sampler_with_context_chooses_at_once_and_explains() -> None:
    sampler = make_sampler("auto", space=SMALL_GRID, budget=10, n_metrics=1)
    assert isinstance(sampler, AutoSampler)
    assert sampler.choice == "grid"
    assert "8 points" in (sampler.reason or "")
    assert "grid" in sampler.describe()
    assert sampler.to_spec() == {"name": "grid"}


def test_context_may_give_the_space_as_a_dict_and_metrics_as_a_list() -> None:
    sampler = make_sampler(
        "auto", space={"x": {"uniform": [0, 1]}, "y": [1, 2]}, budget=40, metrics=["a", "b"]
    )
    assert sampler.choice == "nsga2"


def test_choice_without_context_happens_at_first_proposal_and_restarts_the_same() -> None:
    sampler = make_sampler("auto")
    assert sampler.choice is None and sampler.to_spec() == {"name": "auto"}
    ctx = SearchContext(space=SMALL_GRID, trials=[], budget=8)
    batch = sampler.propose(ctx, 3, np.random.default_rng(0))
    assert sampler.choice == "grid" and len(batch) == 3
    rebuilt = make_sampler(sampler.to_spec())
    assert type(rebuilt) is type(sampler.sampler)
    assert rebuilt.propose(ctx, 3, np.random.default_rng(0)) == batch


def test_falls_back_when_a_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_auto, "_importable", lambda name: name in ("tpe", "random", "grid"))
    sampler = make_sampler("auto", space=LOW_DIM, budget=50)
    assert sampler.choice == "tpe"
    assert "'gp' is not available" in (sampler.reason or "")
    monkeypatch.setattr(_auto, "_importable", lambda name: name == "random")
    assert make_sampler("auto", space=HIGH_DIM, budget=500).choice == "random"


def test_auto_takes_only_a_stored_choice() -> None:
    with pytest.raises(SpecError, match=r"unknown option\(s\) \['kappa'\]; it takes \['chosen'\]"):
        make_sampler({"name": "auto", "kappa": 2})
    with pytest.raises(SpecError, match="chosen 'bogus' is unknown"):
        make_sampler({"name": "auto", "chosen": "bogus"})


@pytest.mark.skipif(not _available("gp"), reason="gp sampler not implemented yet")
def test_the_chosen_sampler_does_the_work() -> None:
    sampler = make_sampler("auto", space=LOW_DIM, budget=30)
    assert sampler.choice == "gp"
    batch = sampler.propose(
        SearchContext(space=LOW_DIM, trials=[], budget=30), 2, np.random.default_rng(0)
    )
    assert len(batch) == 2
    # Stored as auto with its choice, so that a study loaded back can still hand over.
    assert sampler.to_spec() == {"name": "auto", "chosen": "gp"}
    rebuilt = make_sampler(sampler.to_spec(), space=LOW_DIM)
    assert rebuilt.choice == "gp" and "created" in (rebuilt.reason or "")


def test_a_new_auto_study_on_a_finite_space_runs_every_point_without_a_budget() -> None:
    # The controller asks the sampler what remains instead of testing for a grid: a new study
    # (an AutoSampler that chose grid) and the same study loaded back (a GridSampler) agree.
    import optml

    study = optml.create_study("three", space={"a": [1, 2, 3]}, storage="memory://", seed=1)
    study.optimize(lambda a: float(a), executor="serial")
    assert sorted(t.params["a"] for t in study.trials) == [1, 2, 3]
    loaded = optml.load_study("three", storage=study.storage)
    loaded.optimize(lambda a: float(a), executor="serial")
    assert len(loaded.trials) == 3


def test_a_grid_the_sampler_refuses_leaves_no_study_behind() -> None:
    import optml
    from optml.errors import SpaceError

    storage = optml.storage.open_storage("memory://")
    for space in ({"x": {"uniform": [0, 1]}}, {"n": {"int": [0, 10**15]}}):
        with pytest.raises(SpaceError):
            optml.create_study("g", space=space, sampler="grid", storage=storage)
        assert storage.list_studies() == []


# -- hand-over from a GP whose cost would dominate (issue 14) --------------------------------------
@pytest.mark.parametrize(
    ("space", "per_config", "duration", "in_flight", "expected"),
    [
        (LOW_DIM, 0.03, 60.0, 8, None),  # 0.24 s of proposing per minute-long round: keep
        (LOW_DIM, 0.03, None, 256, None),  # no durations known: keep
        (LOW_DIM, 0.03, 0.05, 1, "cmaes"),  # a cheap objective, one worker
        (LOW_DIM, 0.03, 1.0, 256, "cmaes"),  # many one-second trials in flight
        (LOW_DIM, 0.03, 1.0, 8, None),  # 0.24 of the trial time: just under the line
        (LOW_DIM, 0.03, 1.0, 9, "cmaes"),  # 0.27: over
        (CATEGORICAL, 0.03, 0.05, 1, "tpe"),  # mostly choices: TPE, not CMA-ES
        (Space([Float("x", 0, 1)]), 0.03, 0.05, 1, "tpe"),  # one dimension: no CMA-ES
    ],
)
def test_hand_over_rule(
    space: Space, per_config: float, duration: float | None, in_flight: int, expected: str | None
) -> None:
    verdict = _auto.hand_over(space, per_config, duration, in_flight)
    if expected is None:
        assert verdict is None
    else:
        assert verdict is not None and verdict[0] == expected
        assert "handed over from gp" in verdict[1] and f"{in_flight} trial(s)" in verdict[1]


def _timed(space: Space, n: int, duration: float | None, pending: int = 0) -> list:
    from optml.trial import Trial, TrialState

    rng = np.random.default_rng(0)
    configs = space.sample(rng, n + pending)
    done = [
        Trial(i, TrialState.COMPLETE, c, value=float(i % 7), duration_s=duration)
        for i, c in enumerate(configs[:n])
    ]
    return done + [Trial(n + i, TrialState.RUNNING, c) for i, c in enumerate(configs[n:])]


@pytest.mark.skipif(not _available("gp") or not _available("cmaes"), reason="gp/cmaes missing")
def test_a_gp_with_cheap_trials_hands_over_after_three_measured_calls() -> None:
    sampler = make_sampler("auto", space=LOW_DIM, budget=60)
    assert sampler.choice == "gp"
    # Trials of a microsecond: any GP proposal costs far more than a quarter of that.
    trials = _timed(LOW_DIM, 20, 1e-6)
    for call in range(3):
        assert sampler.choice == "gp", call  # measured first, judged after three calls
        ctx = SearchContext(space=LOW_DIM, trials=trials, budget=60)
        assert len(sampler.propose(ctx, 1, np.random.default_rng(call))) == 1
    assert sampler.choice == "cmaes" and sampler.handed_over
    assert "handed over from gp" in sampler.describe()
    ctx = SearchContext(space=LOW_DIM, trials=trials, budget=60)
    assert len(sampler.propose(ctx, 2, np.random.default_rng(9))) == 2  # CMA-ES at work
    assert sampler.to_spec() == {"name": "auto", "chosen": "gp"}  # a reload starts with the GP


@pytest.mark.skipif(not _available("gp"), reason="gp sampler not implemented yet")
@pytest.mark.parametrize("duration", [None, 3600.0])
def test_a_gp_with_slow_or_untimed_trials_keeps_going(duration: float | None) -> None:
    sampler = make_sampler("auto", space=LOW_DIM, budget=60)
    trials = _timed(LOW_DIM, 20, duration, pending=4)
    for call in range(4):
        ctx = SearchContext(space=LOW_DIM, trials=trials, budget=60)
        sampler.propose(ctx, 1, np.random.default_rng(call))
    assert sampler.choice == "gp" and not sampler.handed_over
