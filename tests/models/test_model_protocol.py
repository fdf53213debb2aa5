"""Every built-in model meets the function-file protocol the module objective calls."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from optml.errors import ObjectiveError
from optml.models import BUILTIN_MODELS
from optml.space import parse_space

# Small data and short training keep each case well under a second.
SMALL = {
    "optml.models.lms": ({"n_train": 200, "n_test": 100}, {"learning_rate": 0.01, "epochs": 1}),
    "optml.models.ann": (
        {"n_samples": 150},
        {"learning_rate": 0.5, "network_size": 8, "epochs": 5},
    ),
}


@pytest.fixture(params=sorted(BUILTIN_MODELS.values()))
def model_module(request):
    return importlib.import_module(request.param)


def test_builtin_names_resolve_to_protocol_modules(model_module):
    for name in ("generate_data", "initialization", "train", "test_error", "metrics"):
        assert callable(getattr(model_module, name)), name


def test_protocol_functions_compose(model_module):
    data_kwargs, hyperparameters = SMALL[model_module.__name__]
    data = model_module.generate_data(None, **data_kwargs)
    model = model_module.initialization(**hyperparameters)
    trained = model_module.train(model, data)
    error = model_module.test_error(trained, data)
    assert isinstance(error, float) and math.isfinite(error) and error >= 0
    extra = model_module.metrics(trained, data)
    assert extra and all(isinstance(k, str) and isinstance(v, float) for k, v in extra.items())


def test_generate_data_without_arguments_works(model_module):
    # The objective calls generate_data() or generate_data(path) only.
    data = model_module.generate_data()
    assert data is not None


def test_cached_data_is_read_only_and_survives_training(model_module):
    data_kwargs, hyperparameters = SMALL[model_module.__name__]
    data = model_module.generate_data(**data_kwargs)
    arrays = {k: v for k, v in vars(data).items() if isinstance(v, np.ndarray)}
    before = {k: v.copy() for k, v in arrays.items()}
    model_module.train(model_module.initialization(**hyperparameters), data)
    for k, v in arrays.items():
        assert not v.flags.writeable, k
        np.testing.assert_array_equal(v, before[k])


def test_unknown_hyperparameter_is_named(model_module):
    _, hyperparameters = SMALL[model_module.__name__]
    with pytest.raises(ObjectiveError, match="learning_rte"):
        model_module.initialization(**hyperparameters, learning_rte=0.1)


def test_missing_learning_rate_is_named(model_module):
    _, hyperparameters = SMALL[model_module.__name__]
    without = {k: v for k, v in hyperparameters.items() if k != "learning_rate"}
    with pytest.raises(ObjectiveError, match="learning_rate"):
        model_module.initialization(**without)


@pytest.mark.parametrize("bad", [0, -0.1, math.nan, math.inf, "fast", None, True])
def test_bad_learning_rate_raises_objective_error(model_module, bad):
    _, hyperparameters = SMALL[model_module.__name__]
    with pytest.raises(ObjectiveError, match="learning_rate"):
        model_module.initialization(**{**hyperparameters, "learning_rate": bad})


def test_untrained_model_cannot_be_scored(model_module):
    data_kwargs, hyperparameters = SMALL[model_module.__name__]
    data = model_module.generate_data(**data_kwargs)
    with pytest.raises(ObjectiveError, match="train"):
        model_module.test_error(model_module.initialization(**hyperparameters), data)


def test_default_space_parses_and_its_points_run(model_module, rng):
    space = parse_space(model_module.SPACE)
    data_kwargs, hyperparameters = SMALL[model_module.__name__]
    data = model_module.generate_data(**data_kwargs)
    for point in space.sample(rng, 3):
        model = model_module.initialization(**{**hyperparameters, **point})
        assert math.isfinite(model_module.test_error(model_module.train(model, data), data))
