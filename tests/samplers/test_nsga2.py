"""Several objectives: Pareto fronts, hypervolume, and the NSGA-II sampler."""

from __future__ import annotations

import numpy as np
import pytest

from optml.pareto import crowding_distance, dominates, hypervolume, non_dominated_sort, pareto_front
from optml.samplers import Metric, SearchContext, make_sampler
from optml.space import Categorical, Float, Space
from optml.trial import Trial, TrialState


def _trial(
    number: int, a: float, b: float, state: TrialState = TrialState.COMPLETE, **extra: float
) -> Trial:
    return Trial(number, state, {"i": number}, value=a, metrics={"a": a, "b": b, **extra})


def test_dominance_and_sorting() -> None:
    assert dominates(np.array([1, 1]), np.array([1, 2]))
    assert not dominates(np.array([1, 2]), np.array([1, 2]))
    assert not dominates(np.array([0, 3]), np.array([1, 2]))
    losses = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [5, 5], [2, 2]])
    fronts = non_dominated_sort(losses)
    assert [sorted(f.tolist()) for f in fronts] == [[0, 1, 2, 5], [3], [4]]


def test_constrained_sorting_puts_feasible_rows_first() -> None:
    losses = np.array([[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]])
    fronts = non_dominated_sort(losses, violations=np.array([0.5, 0.0, 0.1]))
    assert [f.tolist() for f in fronts] == [[1], [2], [0]]


def test_crowding_distance_favours_the_boundary_and_sparse_points() -> None:
    front = np.array([[0.0, 1.0], [0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    d = crowding_distance(front)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[2] > d[1]


def test_pareto_front_of_trials() -> None:
    trials = [
        _trial(0, 1.0, 4.0),
        _trial(1, 2.0, 2.0),
        _trial(2, 3.0, 3.0),  # dominated by 1
        _trial(3, 0.5, 9.0, state=TrialState.FAILED),  # not complete
        _trial(4, 4.0, 1.0),
        _trial(5, 2.0, 2.0),  # a tie stays
    ]
    front = pareto_front(trials, [Metric("a"), Metric("b")])
    assert [t.number for t in front] == [0, 1, 4, 5]
    # Maximising b: trial 0 (a=1, b=4) now beats every other.
    assert [t.number for t in pareto_front(trials, [Metric("a"), Metric("b", "maximize")])] == [0]
    # Names are minimised metrics.
    assert [t.number for t in pareto_front(trials, ["a", "b"])] == [0, 1, 4, 5]


def test_pareto_front_leaves_out_infeasible_and_incomplete_trials() -> None:
    trials = [
        _trial(0, 1.0, 1.0, memory=900.0),
        _trial(1, 2.0, 2.0, memory=100.0),
        Trial(2, TrialState.COMPLETE, {}, value=0.0, metrics={"a": 0.0}),
    ]
    front = pareto_front(
        trials, [Metric("a"), Metric("b")], constraints=[{"metric": "memory", "max": 500}]
    )
    assert [t.number for t in front] == [1]
    assert pareto_front([], [Metric("a")]) == []


def test_hypervolume_exact_values() -> None:
    assert hypervolume(np.array([[0.0, 0.0]]), [1.0, 1.0]) == pytest.approx(1.0)
    points = np.array([[0.0, 0.5], [0.5, 0.0], [0.6, 0.6], [2.0, 0.0]])
    assert hypervolume(points, [1.0, 1.0]) == pytest.approx(0.75)
    cube = np.array([[0.5, 0.5, 0.5], [0.0, 0.75, 0.75]])
    # 0.125 + 0.25 * 0.25 - overlap 0.5 * 0.25 * 0.25 = 0.15625
    assert hypervolume(cube, [1.0, 1.0, 1.0]) == pytest.approx(0.15625)
    assert hypervolume(np.array([[2.0, 2.0]]), [1.0, 1.0]) == 0.0


def _zdt1(u: np.ndarray) -> tuple[float, float]:
    f1 = float(u[0])
    g = 1.0 + 9.0 * float(np.mean(u[1:]))
    return f1, g * (1.0 - np.sqrt(f1 / g))


def _front_hypervolume(
    name: str, seed: int, dims: int = 3, budget: int = 100, constraints: tuple = ()
) -> float:
    space = Space([Float(f"x{i}", 0.0, 1.0) for i in range(dims)])
    metrics = (Metric("f1"), Metric("f2"))
    sampler = make_sampler(name)
    rng = np.random.default_rng(seed)
    trials: list[Trial] = []
    while len(trials) < budget:
        ctx = SearchContext(
            space=space,
            trials=trials,
            metrics=metrics,
            seed=seed,
            budget=budget,
            constraints=constraints,
        )
        for config in sampler.propose(ctx, 4, rng):
            f1, f2 = _zdt1(np.array([config[f"x{i}"] for i in range(dims)]))
            trials.append(
                Trial(
                    len(trials), TrialState.COMPLETE, config, value=f1, metrics={"f1": f1, "f2": f2}
                )
            )
    front = pareto_front(trials, metrics, constraints)
    return hypervolume(np.array([[t.metrics["f1"], t.metrics["f2"]] for t in front]), [1.1, 1.1])


def test_nsga2_front_beats_random_search_on_zdt1() -> None:
    seeds = range(6)
    nsga = [_front_hypervolume("nsga2", s) for s in seeds]
    rand = [_front_hypervolume("random", s) for s in seeds]
    wins = sum(a > b for a, b in zip(nsga, rand, strict=True))
    assert wins >= 5, (nsga, rand)
    assert np.mean(nsga) > np.mean(rand)


def test_nsga2_with_a_metric_constraint_beats_random_search() -> None:
    # Only the part of the front with f1 >= 0.4 counts.
    limit = ({"metric": "f1", "min": 0.4},)
    seeds = range(4)
    nsga = [_front_hypervolume("nsga2", s, constraints=limit) for s in seeds]
    rand = [_front_hypervolume("random", s, constraints=limit) for s in seeds]
    assert sum(a > b for a, b in zip(nsga, rand, strict=True)) >= 3, (nsga, rand)


def test_nsga2_counts_pending_trials_and_is_pure() -> None:
    space = Space([Float("x", 0.0, 1.0), Categorical("c", ("a", "b", "c"))])
    metrics = (Metric("f1"), Metric("f2", "maximize"))
    rng = np.random.default_rng(0)
    done = [
        Trial(i, TrialState.COMPLETE, c, value=c["x"], metrics={"f1": c["x"], "f2": c["x"] ** 2})
        for i, c in enumerate(space.sample(rng, 9))
    ]
    pending = [Trial(9 + i, TrialState.RUNNING, c) for i, c in enumerate(space.sample(rng, 3))]
    ctx = SearchContext(space=space, trials=done + pending, metrics=metrics, budget=40)
    sampler = make_sampler({"name": "nsga2", "population_size": 12})
    batch = sampler.propose(ctx, 5, np.random.default_rng(1))
    assert len(batch) == 5
    assert not {space.key(c) for c in batch} & ctx.seen_keys()
    for config in batch:
        space.validate(config)
    again = make_sampler(sampler.to_spec()).propose(ctx, 5, np.random.default_rng(1))
    assert again == batch


def test_nsga2_options_are_checked() -> None:
    from optml.errors import SpecError

    with pytest.raises(SpecError, match="population_size"):
        make_sampler({"name": "nsga2", "population_size": 1})
    with pytest.raises(SpecError, match="crossover_prob"):
        make_sampler({"name": "nsga2", "crossover_prob": 2.0})
