"""The CMA-ES sampler: state rebuilt by replaying trials, restarts, categoricals, quality."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from optml.errors import SpecError
from optml.samplers import SearchContext, make_sampler
from optml.samplers._cmaes import CMAESSampler
from optml.space import Categorical, Float, Int, Space
from optml.trial import Trial, TrialState


def cube(d: int) -> Space:
    return Space([Float(f"x{i}", -5.0, 5.0) for i in range(d)])


def sphere(c: dict[str, Any]) -> float:
    return float(sum((v - 1.3) ** 2 for k, v in c.items() if k.startswith("x")))


MIXED = Space(
    [
        Float("x0", -5.0, 5.0),
        Float("x1", 1e-4, 1.0, log=True),
        Int("units", 1, 64, log=True),
        Int("layers", 1, 4),
        Categorical("act", ("relu", "tanh", "elu")),
    ]
)


def mixed_loss(c: dict[str, Any]) -> float:
    return (c["x0"] - 1.0) ** 2 + abs(c["layers"] - 2) + (0.0 if c["act"] == "elu" else 1.0)


def run_study(
    spec: Any,
    space: Space,
    f: Callable[[dict[str, Any]], float],
    budget: int,
    batch: int,
    seed: int,
    sampler: Any = None,
) -> list[Trial]:
    sampler = sampler or make_sampler(spec)
    rng = np.random.default_rng(seed)
    trials: list[Trial] = []
    while len(trials) < budget:
        ctx = SearchContext(space=space, trials=trials, seed=seed)
        for config in sampler.propose(ctx, min(batch, budget - len(trials)), rng):
            trials.append(Trial(len(trials), TrialState.COMPLETE, config, value=f(config)))
    return trials


@pytest.mark.parametrize("n_done", [0, 7, 40])
def test_proposals_are_valid_typed_and_new(n_done: int) -> None:
    trials = run_study("random", MIXED, mixed_loss, n_done, 7, seed=0)
    rng = np.random.default_rng(1)
    trials += [Trial(n_done + i, TrialState.RUNNING, c) for i, c in enumerate(MIXED.sample(rng, 3))]
    ctx = SearchContext(space=MIXED, trials=trials, seed=2)
    batch = CMAESSampler().propose(ctx, 6, np.random.default_rng(3))
    assert len(batch) == 6
    keys = {MIXED.key(c) for c in batch}
    assert len(keys) == 6 and not keys & ctx.seen_keys()
    for config in batch:
        checked = MIXED.validate(config)
        assert all(type(config[k]) is type(checked[k]) for k in checked)


def test_a_rebuilt_sampler_proposes_what_the_running_one_does() -> None:
    # One sampler ran the whole study (and cached its replay); a fresh one built from the spec
    # replays everything from the trials alone. Same context and rng: same proposals.
    space = cube(6)
    running = CMAESSampler(popsize=8)
    trials = run_study(None, space, sphere, 150, 5, seed=4, sampler=running)
    ctx = SearchContext(space=space, trials=trials, seed=4)
    first = running.propose(ctx, 4, np.random.default_rng(11))
    rebuilt = make_sampler(running.to_spec())
    assert rebuilt.propose(ctx, 4, np.random.default_rng(11)) == first
    unpickled = pickle.loads(pickle.dumps(running))
    assert unpickled.propose(ctx, 4, np.random.default_rng(11)) == first


def test_the_distribution_moves_toward_good_trials() -> None:
    space = cube(4)
    trials = run_study("cmaes", space, sphere, 120, 7, seed=0)
    state = CMAESSampler().replay(
        space, space.encode_many([t.params for t in trials]), np.array([t.value for t in trials]), 0
    )
    target = (1.3 + 5.0) / 10.0  # the optimum 1.3 in the unit cube of [-5, 5]
    assert np.all(np.abs(state.mean - target) < 0.05)
    assert state.sigma < 0.25


def test_only_full_generations_are_replayed_and_pending_are_avoided() -> None:
    space = cube(3)
    sampler = CMAESSampler(popsize=6)
    trials = run_study("random", space, sphere, 17, 17, seed=0)
    units = space.encode_many([t.params for t in trials])
    losses = np.array([t.value for t in trials])
    # 17 finished trials are two generations of 6 and five members of the third.
    assert sampler.replay(space, units, losses, 0).generation == 2
    assert CMAESSampler(popsize=6).replay(space, units[:12], losses[:12], 0).generation == 2


def test_converged_runs_restart_with_a_larger_population() -> None:
    space = cube(2)
    trials = run_study({"name": "cmaes", "tol_x": 0.05}, space, sphere, 200, 6, seed=0)
    units = space.encode_many([t.params for t in trials])
    losses = np.array([t.value for t in trials])
    state = CMAESSampler(tol_x=0.05).replay(space, units, losses, 0)
    assert state.restarts >= 1
    assert state.w.popsize >= 12
    no_restart = CMAESSampler(tol_x=0.05, restart="none").replay(space, units, losses, 0)
    assert no_restart.restarts == 0


def test_categoricals_follow_the_best_trials() -> None:
    trials = run_study("cmaes", MIXED, mixed_loss, 120, 8, seed=1)
    late = [t.params["act"] for t in trials[-40:]]
    assert late.count("elu") > 20
    assert min(t.value for t in trials) < 0.2


def test_finite_and_all_categorical_spaces_are_covered_without_repeats() -> None:
    space = Space([Categorical("a", ("x", "y", "z")), Int("b", 0, 1)])
    trials = run_study("cmaes", space, lambda c: float(c["b"]), budget=6, batch=4, seed=0)
    assert len({space.key(t.params) for t in trials}) == 6
    ctx = SearchContext(space=space, trials=trials)
    assert CMAESSampler().propose(ctx, 2, np.random.default_rng(0)) == []


def test_bad_options_are_rejected_with_the_field_named() -> None:
    with pytest.raises(SpecError, match="popsize"):
        CMAESSampler(popsize=1)
    with pytest.raises(SpecError, match="sigma0"):
        make_sampler({"name": "cmaes", "sigma0": 2.0})
    with pytest.raises(SpecError, match="restart"):
        CMAESSampler(restart="bipop")


def test_beats_random_search_on_an_8d_sphere() -> None:
    space = cube(8)
    for seed in range(3):
        ours = min(t.value for t in run_study("cmaes", space, sphere, 300, 10, seed))
        theirs = min(t.value for t in run_study("random", space, sphere, 300, 10, seed))
        assert ours < theirs / 20, (seed, ours, theirs)
