"""The numpy perceptron: correct gradients, learning, determinism, data files, divergence."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from optml.errors import ObjectiveError
from optml.models import ann

SMALL = {"n_samples": 300}


@pytest.fixture(scope="module")
def data():
    return ann.generate_data(**SMALL)


def run(data, **hyperparameters):
    model = ann.train(ann.initialization(**hyperparameters), data)
    return model, ann.test_error(model, data)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_backpropagation_matches_finite_differences(data, activation):
    model = ann.initialization(learning_rate=0.1, network_size=5, activation=activation, epochs=1)
    ann.train(model, data)  # initialises the weights
    x, y = data.x_train[:20], data.y_train[:20]
    _, grads = ann._loss_and_gradients(model, x, y)
    eps = 1e-6
    for name, w in model.weights.items():
        numeric = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            saved = w[i]
            w[i] = saved + eps
            up, _ = ann._loss_and_gradients(model, x, y)
            w[i] = saved - eps
            down, _ = ann._loss_and_gradients(model, x, y)
            w[i] = saved
            numeric[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, atol=1e-6, err_msg=name)


def test_good_learning_rate_beats_tiny_one(data):
    _, good = run(data, learning_rate=0.5, network_size=64, epochs=100, batch_size=20)
    _, tiny = run(data, learning_rate=0.001, network_size=64, epochs=100, batch_size=20)
    assert good < 0.35
    assert tiny > good + 0.2


def test_training_lowers_the_loss(data):
    model, _ = run(data, learning_rate=0.5, network_size=32, epochs=50)
    assert model.loss_curve[-1] < 0.8 * model.loss_curve[0]


def test_momentum_and_sigmoid_train(data):
    _, error = run(
        data,
        learning_rate=0.5,
        network_size=32,
        epochs=100,
        batch_size=20,
        momentum=0.9,
        activation="sigmoid",
    )
    assert error < 0.5


def test_generation_and_training_are_deterministic(data):
    again = ann.generate_data(**SMALL)
    np.testing.assert_array_equal(data.x_train, again.x_train)
    np.testing.assert_array_equal(data.y_test, again.y_test)
    a, err_a = run(data, learning_rate=0.1, network_size=8, epochs=10, seed=3)
    b, err_b = run(again, learning_rate=0.1, network_size=8, epochs=10, seed=3)
    assert err_a == err_b
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])
    c, _ = run(data, learning_rate=0.1, network_size=8, epochs=10, seed=4)
    assert not np.array_equal(a.weights["w1"], c.weights["w1"])


def test_generated_classes_are_balanced_and_split(data):
    assert data.n_classes == ann.N_CLASSES and data.n_features == 2
    assert len(data.y_test) == round(ann.TEST_FRACTION * SMALL["n_samples"])
    counts = np.bincount(np.concatenate([data.y_train, data.y_test]))
    assert counts.max() - counts.min() <= 1


def test_overflow_gives_the_worst_error_without_raising_or_warning(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, error = run(data, learning_rate=1e200, network_size=16, epochs=5)
        extra = ann.metrics(model, data)
    assert model.diverged
    assert error == 1.0
    assert extra["train_error"] == 1.0 and extra["train_loss"] == math.inf


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_absurd_learning_rate_gives_a_bad_but_valid_error(data, activation):
    # Dead ReLUs or saturated sigmoids rather than overflow: still a number in [0, 1].
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, error = run(data, learning_rate=1e6, network_size=16, epochs=5, activation=activation)
    assert 0.3 < error <= 1.0


def test_metrics(data):
    model, _ = run(data, learning_rate=0.5, network_size=16, epochs=20)
    extra = ann.metrics(model, data)
    assert set(extra) == {"train_error", "train_loss"}
    assert 0 <= extra["train_error"] <= 1 and extra["train_loss"] == model.loss_curve[-1]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("network_size", 0),
        ("network_size", 8.5),
        ("activation", "tanh"),
        ("momentum", 1.0),
        ("momentum", "high"),
        ("batch_size", 0),
        ("epochs", -1),
        ("seed", -1),
    ],
)
def test_bad_hyperparameters_are_named(name, value):
    hyperparameters = {"learning_rate": 0.1, "network_size": 8, name: value}
    with pytest.raises(ObjectiveError, match=name):
        ann.initialization(**hyperparameters)


def test_network_size_as_float_from_a_sampler_is_accepted():
    assert ann.initialization(learning_rate=0.1, network_size=8.0).network_size == 8


def _blobs_csv(path, rows=120):
    rng = np.random.default_rng(5)
    lines = ["width,height,kind"]
    for i in range(rows):
        label = ("cat", "dog")[i % 2]
        centre = 10.0 if label == "dog" else -10.0
        a, b = centre + rng.standard_normal(2)
        lines.append(f"{a:.4f},{b * 100:.4f},{label}")
    path.write_text("\n".join(lines) + "\n")


def test_labelled_csv_is_read_split_and_learned(tmp_path):
    path = tmp_path / "pets.csv"
    _blobs_csv(path)
    data = ann.generate_data(path)
    assert data.classes == ("cat", "dog")
    assert len(data.y_test) == 40 and len(data.y_train) == 80
    # Standardised with the training part's statistics.
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-9)
    _, error = run(data, learning_rate=0.5, network_size=8, epochs=30)
    assert error == 0.0


def test_csv_with_one_class_is_rejected(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("1,2,a\n3,4,a\n5,6,a\n")
    with pytest.raises(ObjectiveError, match=r"one\.csv.*two"):
        ann.generate_data(path)


def test_malformed_csv_names_file_and_line(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("x,y,label\n1,2,a\n3,4\n")
    with pytest.raises(ObjectiveError, match=r"broken\.csv:3"):
        ann.generate_data(path)
