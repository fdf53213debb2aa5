"""The CASH meta-tuner: a space of model families, and the epsilon-greedy sampler over them."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from optml.errors import SpaceError, SpecError
from optml.samplers import Metric, SearchContext, make_sampler
from optml.samplers._meta import MetaSampler, MetaSpace, is_meta_dict, meta_space
from optml.space import Space
from optml.trial import Trial, TrialState

FAMILIES = {
    "svm": {"C": {"loguniform": [0.01, 100]}, "gamma": {"loguniform": [1e-5, 1e-1]}},
    "rf": {
        "n_estimators": {"int": [5, 20]},
        "max_depth": {"int": [1, 6]},
        "max_features": {"uniform": [0.1, 1.0]},
    },
    "knn": {"n_neighbors": {"int": [1, 30]}, "weights": ["uniform", "distance"]},
    "tree": {
        "max_depth": {"int": [1, 10]},
        "min_samples_leaf": {"int": [1, 20]},
        "criterion": ["gini", "entropy"],
    },
}


# -- the space ----------------------------------------------------------------------------


def test_flat_names_share_identical_parameters_and_prefix_clashing_ones() -> None:
    space = meta_space(FAMILIES)
    assert space.names[0] == "model"
    assert "C" in space.names and "n_neighbors" in space.names
    # Two different definitions of max_depth: each family's copy is prefixed.
    assert "rf.max_depth" in space.names and "tree.max_depth" in space.names
    assert "max_depth" not in space.names
    shared = meta_space(
        {"a": {"x": {"uniform": [0, 1]}}, "b": {"x": {"uniform": [0, 1]}, "y": [1, 2]}}
    )
    assert shared.names == ["model", "x", "y"]


def test_validate_split_and_join_round_trip() -> None:
    space = meta_space(FAMILIES)
    config = {"model": "rf", "n_estimators": 10, "rf.max_depth": 3, "max_features": 0.5}
    assert space.validate(config) == config
    family, own = space.split(config)
    assert (family, own) == ("rf", {"n_estimators": 10, "max_depth": 3, "max_features": 0.5})
    assert space.join(family, own) == config
    assert space.validate({"model": "svm", "C": 1, "gamma": 0.01}) == {
        "model": "svm",
        "C": 1.0,
        "gamma": 0.01,
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model": "xgb"}, "not one of the model families"),
        ({"C": 1.0}, "not one of the model families"),
        ({"model": "svm", "C": 1.0}, r"missing \['gamma'\]"),
        ({"model": "svm", "C": 1.0, "gamma": 0.01, "n_neighbors": 3}, r"unknown \['n_neighbors'\]"),
        ({"model": "svm", "C": 1000.0, "gamma": 0.01}, "outside the space"),
    ],
)
def test_validate_names_what_is_wrong(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        meta_space(FAMILIES).validate(config)


def test_sampling_grids_encoding_and_storage() -> None:
    space = meta_space(FAMILIES)
    rng = np.random.default_rng(0)
    samples = space.sample(rng, 40)
    assert {c["model"] for c in samples} == set(FAMILIES)
    for config in samples:
        assert space.validate(config) == config
        assert space.decode(space.encode(config))["model"] == config["model"]
    assert space.encode_many(samples).shape == (40, len(space))
    stored = space.to_dict()
    assert is_meta_dict(stored) and not is_meta_dict(
        Space.from_dict({"x": {"type": "float", "low": 0, "high": 1}}).to_dict()
    )
    again = Space.from_dict(stored)
    assert isinstance(again, MetaSpace) and again == space and again.names == space.names
    finite = meta_space({"a": {"k": [1, 2, 3]}, "b": {"k": [1, 2], "w": [True, False]}})
    assert finite.is_finite and finite.grid_size == 7
    assert len({finite.key(c) for c in finite.grid()}) == 7


def test_spec_list_form_and_errors() -> None:
    space = meta_space(
        [{"model": "svm", "space": FAMILIES["svm"]}, {"model": "knn", "space": FAMILIES["knn"]}]
    )
    assert list(space.families) == ["svm", "knn"]
    with pytest.raises(SpecError, match="twice"):
        meta_space(
            [{"model": "svm", "space": FAMILIES["svm"]}, {"model": "svm", "space": FAMILIES["svm"]}]
        )
    with pytest.raises(SpecError, match=r"space\[0\]"):
        meta_space([{"name": "svm", "space": FAMILIES["svm"]}])
    with pytest.raises(SpaceError, match="named 'model'"):
        meta_space({"a": {"model": [1, 2]}})
    with pytest.raises(SpaceError, match=r"space\.svm\.C"):
        meta_space({"svm": {"C": {"uniform": [1, 0]}}})


# -- the sampler --------------------------------------------------------------------------


def _synthetic(config: dict[str, Any]) -> float:
    """Family "a" can reach 0; "b" no better than 0.25; "c" no better than 0.5."""
    if config["model"] == "a":
        return (config["x"] - 0.3) ** 2 + (config["y"] - 0.6) ** 2
    if config["model"] == "b":
        return 0.25 + (config["x"] - 0.5) ** 2 + 0.05 * config["k"]
    return 0.5 + config["w"]


SYNTHETIC = {
    "a": {"x": {"uniform": [0, 1]}, "y": {"uniform": [0, 1]}},
    "b": {"x": {"uniform": [0, 1]}, "k": [1, 2, 3]},
    "c": {"w": {"loguniform": [0.01, 1]}},
}


def _run(
    sampler: Any,
    space: MetaSpace,
    objective: Callable[[dict[str, Any]], float],
    budget: int,
    seed: int,
    direction: str = "minimize",
    batch: int = 2,
) -> list[Trial]:
    rng = np.random.default_rng(seed)
    trials: list[Trial] = []
    while len(trials) < budget:
        ctx = SearchContext(
            space=space,
            trials=trials,
            metrics=(Metric("score", direction),),
            seed=seed,
            budget=budget,
        )
        proposals = sampler.propose(ctx, batch, rng)
        assert proposals
        for config in proposals:
            assert space.validate(config) == config
            value = objective(config)
            trials.append(
                Trial(
                    len(trials), TrialState.COMPLETE, config, value=value, metrics={"score": value}
                )
            )
    return trials


def test_epsilon_schedule() -> None:
    sampler = MetaSampler(SYNTHETIC)
    assert sampler.epsilon_at(0) == 1.0
    assert sampler.epsilon_at(1) == pytest.approx(0.9)
    assert sampler.epsilon_at(10) == pytest.approx(0.9**10)
    assert sampler.epsilon_at(100) == 0.1


@pytest.mark.parametrize("surrogate", ["gp", "forest"])
def test_epsilon_decay_moves_from_spreading_to_the_best_family(surrogate: str) -> None:
    space = meta_space(SYNTHETIC)
    sampler = make_sampler({"name": "meta", "surrogate": surrogate}, space=space)
    early, late = Counter(), Counter()
    for seed in range(2 if surrogate == "gp" else 1):  # the forest is slower to fit
        trials = _run(sampler, space, _synthetic, budget=32, seed=seed)
        early.update(t.params["model"] for t in trials[:10])
        late.update(t.params["model"] for t in trials[16:])
        assert min(t.value for t in trials) < 0.2  # below what families "b" and "c" can reach
    assert set(early) == {"a", "b", "c"} and max(early.values()) <= 0.6 * sum(early.values())
    assert late["a"] >= 0.7 * sum(late.values())  # then mostly the best family


def test_pending_points_and_batches_are_not_repeated() -> None:
    space = meta_space(SYNTHETIC)
    rng = np.random.default_rng(0)
    done = [
        Trial(i, TrialState.COMPLETE, c, value=_synthetic(c))
        for i, c in enumerate(space.sample(rng, 12))
    ]
    pending = [Trial(12 + i, TrialState.RUNNING, c) for i, c in enumerate(space.sample(rng, 3))]
    ctx = SearchContext(space=space, trials=done + pending, budget=40)
    sampler = MetaSampler(SYNTHETIC)
    batch = sampler.propose(ctx, 5, np.random.default_rng(1))
    assert len(batch) == 5 and len({space.key(c) for c in batch}) == 5
    assert not {space.key(c) for c in batch} & ctx.seen_keys()
    # Pure: rebuilt from its spec, the same proposals.
    assert make_sampler(sampler.to_spec()).propose(ctx, 5, np.random.default_rng(1)) == batch


def test_finite_families_are_exhausted_without_repeats() -> None:
    space = meta_space({"a": {"k": [1, 2, 3]}, "b": {"k": [1, 2], "w": [True, False]}})
    trials = _run(
        MetaSampler(), space, lambda c: float(space.split(c)[1]["k"]), budget=7, seed=0, batch=3
    )
    assert len({space.key(t.params) for t in trials}) == 7
    ctx = SearchContext(space=space, trials=trials)
    assert MetaSampler().propose(ctx, 2, np.random.default_rng(0)) == []


def test_constraints_apply_to_the_chosen_family() -> None:
    space = meta_space(SYNTHETIC)
    rng = np.random.default_rng(0)
    trials: list[Trial] = []
    while len(trials) < 20:
        ctx = SearchContext(space=space, trials=trials, constraints=["x <= 0.5", "model != 'c'"])
        for config in MetaSampler().propose(ctx, 2, rng):
            assert config["model"] != "c" and config.get("x", 0.0) <= 0.5
            trials.append(Trial(len(trials), TrialState.COMPLETE, config, value=_synthetic(config)))


def test_options_and_missing_families() -> None:
    with pytest.raises(SpecError, match="surrogate"):
        make_sampler({"name": "meta", "subspaces": SYNTHETIC, "surrogate": "svm"})
    with pytest.raises(SpecError, match="unknown option"):
        make_sampler({"name": "meta", "subspaces": SYNTHETIC, "temperature": 1})
    ctx = SearchContext(
        space=Space.from_dict({"x": {"type": "float", "low": 0, "high": 1}}), trials=[]
    )
    with pytest.raises(SpecError, match="needs model families"):
        make_sampler("meta").propose(ctx, 1, np.random.default_rng(0))
    # The families may come from the options alone; the study space is then not needed.
    sampler = make_sampler({"name": "meta", "subspaces": [{"model": "a", "space": SYNTHETIC["a"]}]})
    batch = sampler.propose(ctx, 2, np.random.default_rng(0))
    assert [c["model"] for c in batch] == ["a", "a"]


# -- on real data -------------------------------------------------------------------------


def _wine_objective(space: MetaSpace) -> Callable[[dict[str, Any]], float]:
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    X, y = load_wine(return_X_y=True)  # unscaled on purpose: the families differ a lot
    folds = StratifiedKFold(3, shuffle=True, random_state=0)

    def accuracy(config: dict[str, Any]) -> float:
        family, p = space.split(config)
        if family == "svm":
            model: Any = SVC(C=p["C"], gamma=p["gamma"])
        elif family == "rf":
            model = RandomForestClassifier(random_state=0, n_jobs=1, **p)
        elif family == "knn":
            model = KNeighborsClassifier(**p)
        else:
            model = DecisionTreeClassifier(random_state=0, **p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(cross_val_score(model, X, y, cv=folds).mean())

    return accuracy


@pytest.mark.slow
def test_cash_on_wine_reaches_random_search_accuracy() -> None:
    space = meta_space(FAMILIES)
    objective = _wine_objective(space)
    meta_best, random_best, meta_late, random_late, late = [], [], [], [], Counter()
    for seed in range(2):
        trials = _run(make_sampler("meta", space=space), space, objective, 20, seed, "maximize")
        meta_best.append(max(t.value for t in trials))
        meta_late += [t.value for t in trials[10:]]
        late.update(t.params["model"] for t in trials[10:])
        trials = _run(make_sampler("random"), space, objective, 20, seed, "maximize")
        random_best.append(max(t.value for t in trials))
        random_late += [t.value for t in trials[10:]]
    assert np.mean(meta_best) >= np.mean(random_best) - 0.01, (meta_best, random_best)
    # Its later trials are much better on average: it spends them on the good family.
    assert np.mean(meta_late) > np.mean(random_late) + 0.05
    assert min(meta_best) > 0.93
    # Random forests are the best family on unscaled wine; the meta-tuner settles on them.
    assert late.most_common(1)[0][0] == "rf" and late["rf"] >= 10
