"""The built-in scikit-learn estimators: default spaces from the metadata table, and each one
cross-validated on a bundled data set with configurations drawn from its space."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optml.detect import default_space as table_space
from optml.models import estimators as est
from optml.space import parse_space


def test_default_spaces_are_the_metadata_table_s() -> None:
    spaces = est.estimators()
    assert set(spaces) == set(est.MODELS)
    for name, (task, space) in spaces.items():
        assert task in ("classification", "regression")
        assert space and space == table_space(est.MODELS[name][1]), name
    assert {"C", "gamma", "kernel"} <= set(spaces["svc"][1])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(est.MODELS))
def test_each_estimator_runs_on_configurations_of_its_space(name, tmp_path) -> None:
    task = est.MODELS[name][0]
    dataset = "iris" if task == "classification" else "diabetes"
    data = str(est.write_dataset(dataset, tmp_path / f"{dataset}.csv"))
    space = parse_space(est.default_space(name))
    for config in space.sample(np.random.default_rng(0), 2):
        # Keep the forests small: the point is that every parameter reaches the estimator.
        if "n_estimators" in config:
            config["n_estimators"] = min(int(config["n_estimators"]), 30)
        result = getattr(est, name)(data=data, **config)
        assert math.isfinite(result["error"]), (name, config)
