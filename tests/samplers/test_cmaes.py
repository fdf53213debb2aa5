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
    assert state.sigma < 1 / 6


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
        CMAESSampler(restart="bogus")


def test_beats_random_search_on_an_8d_sphere() -> None:
    space = cube(8)
    for seed in range(3):
        ours = min(t.value for t in run_study("cmaes", space, sphere, 300, 10, seed))
        theirs = min(t.value for t in run_study("random", space, sphere, 300, 10, seed))
        assert ours < theirs / 20, (seed, ours, theirs)


def test_bipop_alternates_large_runs_with_small_local_ones() -> None:
    space = cube(2)
    spec = {"name": "cmaes", "tol_x": 0.05, "restart": "bipop"}
    trials = run_study(spec, space, sphere, 400, 6, seed=0)
    units = space.encode_many([t.params for t in trials])
    losses = np.array([t.value for t in trials])
    sampler = CMAESSampler(tol_x=0.05, restart="bipop")
    runs = []
    for end in range(6, len(trials) + 1, 6):
        state = sampler.replay(space, units[:end], losses[:end], 0)
        if not runs or runs[-1].restarts != state.restarts:
            runs.append(state)
    assert len(runs) >= 4
    small = [s for s in runs if not s.large]
    large = [s for s in runs[1:] if s.large]
    assert small and large
    default = 4 + int(3 * np.log(2))
    for s in small:  # a local search: no larger than half the largest, a smaller step
        assert default <= s.w.popsize <= max(default, s.large_popsize // 2)
        assert s.sigma <= 1 / 6
    assert max(s.large_popsize for s in runs) >= 2 * default
    # The budget is shared: the small runs start only once the large ones have used more.
    assert all(s.large_evals > s.small_evals for s in small)


def test_a_run_restarts_when_its_losses_stay_flat() -> None:
    # A constant objective never shrinks the step size below tol_x; the flat losses alone
    # end the run.
    space = cube(3)
    trials = run_study("cmaes", space, lambda c: 1.0, 250, 7, seed=0)
    units = space.encode_many([t.params for t in trials])
    losses = np.array([t.value for t in trials])
    assert CMAESSampler().replay(space, units, losses, 0).restarts >= 1
    assert CMAESSampler(restart="none").replay(space, units, losses, 0).restarts == 0


def _collapsed_history(space: Space, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Trials whose integers all sit at one value while the floats vary: the history after
    which an integer dimension's step size collapses."""
    rng = np.random.default_rng(0)
    configs = space.sample(rng, n)
    for c in configs:
        c.update({p.name: 3 for p in space if isinstance(p, Int)})
    units = space.encode_many(configs)
    losses = np.array([sphere(c) for c in configs])
    return units, losses


INTS = Space(
    [Float("x0", -5.0, 5.0), Float("x1", -5.0, 5.0)] + [Int(f"k{i}", 0, 9) for i in range(4)]
)


def test_the_margin_keeps_integer_dimensions_from_collapsing() -> None:
    units, losses = _collapsed_history(INTS, 400)
    proposals = {}
    for margin in (None, 0.0):
        sampler = CMAESSampler(margin=margin)
        state = sampler.replay(INTS, units, losses, 0)
        state.sigma = 1e-3  # the run has converged onto the floats' optimum
        widen = sampler._widen(INTS, state)
        points = state.sample(np.random.default_rng(1), 2000, widen)
        values = np.array([[c[f"k{i}"] for i in range(4)] for c in map(INTS.decode, points)])
        proposals[margin] = np.mean(values != 3, axis=0)
    # Without the margin the integers never leave 3; with it each moves in at least the
    # margin's share of the draws (1 / (d * popsize) = 1 / 54 here).
    assert np.all(proposals[0.0] == 0.0)
    assert np.all(proposals[None] >= 0.5 / 54)


def test_the_margin_gives_each_neighbour_its_share() -> None:
    space = Space([Float("x", 0.0, 1.0), Int("k", 0, 9), Int("n", 1, 1000, log=True)])
    units, losses = _collapsed_history(space, 300)
    sampler = CMAESSampler(margin=0.2)
    state = sampler.replay(space, units, losses, 0)
    state.sigma = 1e-6  # far below every cell
    points = state.sample(np.random.default_rng(2), 4000, sampler._widen(space, state))
    configs = [space.decode(p) for p in points]
    centre = space.decode(state.mean)  # (x, then the mean's values)
    for name in ("k", "n"):
        values = np.array([c[name] for c in configs])
        below = np.mean(values < centre[name])
        above = np.mean(values > centre[name])
        assert below >= 0.08 and above >= 0.08, (name, below, above)


def test_margin_beats_no_margin_on_an_integer_problem() -> None:
    def f(c: dict[str, Any]) -> float:
        return sum((c[f"k{i}"] - 7) ** 2 for i in range(4)) + (c["x0"] - 1) ** 2 + c["x1"] ** 2

    better = 0
    for seed in range(4):
        ours = min(t.value for t in run_study({"name": "cmaes"}, INTS, f, 200, 9, seed))
        off = min(t.value for t in run_study({"name": "cmaes", "margin": 0}, INTS, f, 200, 9, seed))
        better += ours <= off
    assert better >= 3


def test_active_weights_push_the_worst_half_away() -> None:
    from optml.samplers._cmaes import _Weights

    w = _Weights.make(10, 10)
    assert np.all(w.weights[: w.mu] > 0) and np.all(w.weights[w.mu :] < 0)
    assert w.weights[: w.mu].sum() == pytest.approx(1.0)
    assert -w.weights[w.mu :].sum() <= 1 + w.c_1 / w.c_mu
