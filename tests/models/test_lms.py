"""The LMS adaptive filter: it learns the unknown system, and a bad step size fails gracefully."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from optml.errors import ObjectiveError
from optml.models import lms

SMALL = {"n_train": 400, "n_test": 200}


@pytest.fixture(scope="module")
def data():
    return lms.generate_data(**SMALL)


def run(data, **hyperparameters):
    model = lms.train(lms.initialization(**hyperparameters), data)
    return model, lms.test_error(model, data)


def test_good_step_size_beats_tiny_one_and_approaches_the_noise_floor(data):
    _, good = run(data, learning_rate=0.01)
    _, tiny = run(data, learning_rate=1e-6)
    assert good < tiny / 5
    assert good < 2 * lms.NOISE_STD**2


def test_trained_weights_match_the_unknown_system(data):
    model, _ = run(data, learning_rate=0.01, epochs=3)
    assert model.filter_size == lms.TAPS
    np.testing.assert_allclose(model.weights, data.system, atol=0.1)


def test_error_is_u_shaped_over_the_step_size(data):
    errors = [run(data, learning_rate=lr)[1] for lr in (1e-5, 1e-2, 1.0)]
    assert errors[1] < errors[0] and errors[1] < errors[2]


def test_generated_data_and_training_are_deterministic():
    a, b = lms.generate_data(**SMALL), lms.generate_data(**SMALL)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.desired, b.desired)
    assert run(a, learning_rate=0.003)[1] == run(b, learning_rate=0.003)[1]
    other = lms.generate_data(**SMALL, seed=1)
    assert not np.array_equal(a.desired, other.desired)


@pytest.mark.parametrize("learning_rate", [0.5, 10.0, 1e300])
def test_divergence_gives_the_finite_cap_without_raising_or_warning(data, learning_rate):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, error = run(data, learning_rate=learning_rate)
        extra = lms.metrics(model, data)
    assert model.diverged
    assert error == lms.ERROR_CAP and math.isfinite(error)
    assert extra == {"train_error": lms.ERROR_CAP, "diverged": 1.0}


def test_metrics_report_train_error_and_no_divergence(data):
    model, error = run(data, learning_rate=0.01)
    extra = lms.metrics(model, data)
    assert extra["diverged"] == 0.0
    assert 0 < extra["train_error"] < 2 * error + 0.1


def test_filter_size_other_than_the_system_is_accepted(data):
    short, _ = run(data, learning_rate=0.01, filter_size=4)
    assert short.weights.shape == (4,)
    # Four taps cannot model a 16-tap system as well as sixteen do.
    assert run(data, learning_rate=0.01, filter_size=4)[1] > run(data, learning_rate=0.01)[1]


@pytest.mark.parametrize("bad", [0, 2.5, -3, "big"])
def test_bad_filter_size_raises(bad):
    with pytest.raises(ObjectiveError, match="filter_size"):
        lms.initialization(learning_rate=0.01, filter_size=bad)


def test_signal_from_a_one_feature_csv(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(400)
    d = 0.8 * x + 0.3 * np.concatenate([[0.0], x[:-1]])  # a 2-tap system
    path = tmp_path / "signal.csv"
    path.write_text("input,desired\n" + "".join(f"{a},{b}\n" for a, b in zip(x, d, strict=True)))
    data = lms.generate_data(path)
    assert data.n_train == 300
    model, error = run(data, learning_rate=0.05, filter_size=2, epochs=3)
    np.testing.assert_allclose(model.weights, [0.8, 0.3], atol=0.02)
    assert error < 1e-3


def test_input_vectors_from_a_multi_column_csv(tmp_path):
    rng = np.random.default_rng(4)
    u = rng.standard_normal((200, 3))
    d = u @ np.array([1.0, -2.0, 0.5])
    path = tmp_path / "rows.csv"
    lines = (",".join(map(str, [*row, t])) for row, t in zip(u, d, strict=True))
    path.write_text("\n".join(lines) + "\n")
    data = lms.generate_data(path)
    model, error = run(data, learning_rate=0.05, epochs=5)
    assert model.filter_size == 3
    assert error < 1e-3
    with pytest.raises(ObjectiveError, match="filter_size=5"):
        run(data, learning_rate=0.05, filter_size=5)


def test_malformed_csv_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("input,desired\n0.1,0.2\n0.3,oops\n")
    with pytest.raises(ObjectiveError, match=r"bad\.csv:3"):
        lms.generate_data(path)
