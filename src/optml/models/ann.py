"""A one-hidden-layer perceptron trained by backpropagation: the seed's ANN experiment.

Pure numpy. The network maps the inputs through ``network_size`` hidden units (ReLU or sigmoid)
to a softmax over the classes, and learns by mini-batch gradient descent on the cross-entropy,
the gradients computed by backpropagation. ``test_error`` is the misclassification rate on the
held-out samples (0 is perfect).

Without a data file the task is a spiral: :data:`N_CLASSES` interleaved spiral arms in the plane
with some noise, generated from a fixed seed. A small network or a small learning rate cannot
separate the arms within the training budget, so the learning-rate x network-size grid shows a
clear landscape.

A run whose weights overflow (learning rate far too large) never raises: it stops and reports
the worst error, 1.0.

Hyperparameters (for :func:`initialization`):

- ``learning_rate`` (required): gradient-descent step, > 0.
- ``network_size`` (required): hidden units, >= 1.
- ``activation``: ``"relu"`` (default) or ``"sigmoid"``.
- ``epochs``: passes over the training samples, default :data:`EPOCHS`.
- ``batch_size``: samples per update, default :data:`BATCH_SIZE` (capped at the training size).
- ``momentum``: heavy-ball momentum in [0, 1), default 0 (plain gradient descent).
- ``seed``: seed of the initial weights and the batch order, default 0.

Data file (``data:`` in the spec): comma-separated, numeric feature columns, the class label
(any text or number) in the last column. The rows are shuffled with a fixed seed and split:
:data:`TEST_FRACTION` test, the rest training; the features are standardised with the training
part's mean and standard deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optml.errors import ObjectiveError
from optml.models import positive_float, positive_int, read_csv, read_only

#: Samples in generated data (training and test together), spread evenly over the classes.
N_SAMPLES = 1500
#: Classes (spiral arms) in generated data.
N_CLASSES = 3
#: Standard deviation of the angular noise of the generated spirals (radians).
NOISE = 0.2
#: Turns of each spiral arm: more turns, a harder task.
TURNS = 1.25
#: Share of the samples held out for testing.
TEST_FRACTION = 1 / 3
#: Seed of the generated data and of the split of a data file.
SEED = 0
#: Default passes over the training samples.
EPOCHS = 800
#: Default samples per gradient step.
BATCH_SIZE = 100

#: Default search space: the seed's two hyperparameters.
SPACE: dict[str, Any] = {
    "learning_rate": {"loguniform": [1e-3, 1.0]},
    "network_size": {"logint": [2, 512]},
}

_HYPERPARAMETERS = (
    "learning_rate",
    "network_size",
    "activation",
    "epochs",
    "batch_size",
    "momentum",
    "seed",
)
_ACTIVATIONS = ("relu", "sigmoid")


@dataclass(frozen=True)
class ClassificationData:
    """Standardised features and integer class labels, split into training and test parts.

    ``classes`` maps a label index back to the label as the data file spelled it. The arrays are
    read-only: the data is shared by every trial of a worker.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


@dataclass
class Perceptron:
    """A one-hidden-layer network: hyperparameters, and once trained, weights and loss curve."""

    learning_rate: float
    network_size: int
    activation: str = "relu"
    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    momentum: float = 0.0
    seed: int = 0
    weights: dict[str, np.ndarray] | None = None
    diverged: bool = False
    loss_curve: list[float] = field(default_factory=list)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most probable class index of every row of ``x``."""
        return np.argmax(self._forward(x)[1], axis=1)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.weights is None:
            raise ObjectiveError("the network is not trained: call train(model, data) first")
        w = self.weights
        hidden = _activate(x @ w["w1"] + w["b1"], self.activation)
        return hidden, hidden @ w["w2"] + w["b2"]


def generate_data(
    path: str | Path | None = None,
    *,
    n_samples: int = N_SAMPLES,
    n_classes: int = N_CLASSES,
    noise: float = NOISE,
    test_fraction: float = TEST_FRACTION,
    seed: int = SEED,
) -> ClassificationData:
    """Read the data file at ``path``, or generate interleaved spirals (deterministic).

    The keyword arguments size the generated data (tests use small sizes); ``test_fraction`` and
    ``seed`` also govern the split of a file.
    """
    if path is not None:
        features, labels = read_csv(Path(path), target="label")
        classes, y = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ObjectiveError(
                f"{path}: the last column holds one class ({classes[0]!r}); a classifier needs "
                "at least two"
            )
        return _split(features, y, tuple(str(c) for c in classes), test_fraction, seed, path)
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    radius = rng.uniform(0.05, 1.0, n_samples)
    # Each arm turns TURNS times around; arms are offset evenly.
    angle = 2 * np.pi * (TURNS * radius + y / n_classes)
    angle += noise * rng.standard_normal(n_samples)
    x = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    return _split(x, y, tuple(str(c) for c in range(n_classes)), test_fraction, seed, None)


def _split(
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    test_fraction: float,
    seed: int,
    path: str | Path | None,
) -> ClassificationData:
    if not 0 < test_fraction < 1:
        raise ObjectiveError(
            f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}"
        )
    n_test = int(round(test_fraction * len(x)))
    if n_test < 1 or n_test >= len(x):
        where = f"{path}: " if path is not None else ""
        raise ObjectiveError(
            f"{where}{len(x)} samples are too few to hold out a test share of {test_fraction:g}"
        )
    # Files are often sorted by class; shuffle before splitting.
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    x_train, x_test = x[n_test:], x[:n_test]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0  # a constant feature stays 0 instead of dividing by zero
    x_train = np.ascontiguousarray((x_train - mean) / std)
    x_test = np.ascontiguousarray((x_test - mean) / std)
    y_train, y_test = y[n_test:].astype(np.intp), y[:n_test].astype(np.intp)
    read_only(x_train, x_test, y_train, y_test)
    return ClassificationData(x_train, y_train, x_test, y_test, classes)


def initialization(**hyperparameters: Any) -> Perceptron:
    """A fresh, untrained network for one trial's hyperparameters (see the module docstring)."""
    unknown = sorted(set(hyperparameters) - set(_HYPERPARAMETERS))
    if unknown:
        raise ObjectiveError(
            f"the ANN model has no hyperparameter(s) {unknown}; it accepts "
            f"{', '.join(_HYPERPARAMETERS)}"
        )
    missing = [n for n in ("learning_rate", "network_size") if n not in hyperparameters]
    if missing:
        raise ObjectiveError(f"the ANN model needs the hyperparameter(s) {missing}")
    activation = hyperparameters.get("activation", "relu")
    if activation not in _ACTIVATIONS:
        raise ObjectiveError(f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
    momentum = hyperparameters.get("momentum", 0.0)
    try:
        momentum_ok = not isinstance(momentum, bool) and 0 <= float(momentum) < 1
    except (TypeError, ValueError):
        momentum_ok = False
    if not momentum_ok:
        raise ObjectiveError(f"momentum must be a number in [0, 1), got {momentum!r}")
    seed = positive_int("seed", hyperparameters.get("seed", 0), minimum=0)
    return Perceptron(
        learning_rate=positive_float("learning_rate", hyperparameters["learning_rate"]),
        network_size=positive_int("network_size", hyperparameters["network_size"]),
        activation=activation,
        epochs=positive_int("epochs", hyperparameters.get("epochs", EPOCHS)),
        batch_size=positive_int("batch_size", hyperparameters.get("batch_size", BATCH_SIZE)),
        momentum=float(momentum),
        seed=seed,
    )


def train(model: Perceptron, data: ClassificationData) -> Perceptron:
    """Fit the network to the training part by mini-batch backpropagation."""
    rng = np.random.default_rng(model.seed)
    n, d = data.x_train.shape
    h, k = model.network_size, data.n_classes
    # He initialisation for ReLU, Glorot for sigmoid: keeps the first steps well scaled.
    scale = math.sqrt(2.0 / d) if model.activation == "relu" else math.sqrt(1.0 / d)
    w = {
        "w1": rng.standard_normal((d, h)) * scale,
        "b1": np.zeros(h),
        "w2": rng.standard_normal((h, k)) * math.sqrt(1.0 / h),
        "b2": np.zeros(k),
    }
    velocity = {name: np.zeros_like(v) for name, v in w.items()}
    model.weights = w
    model.diverged = False
    model.loss_curve = []
    batch = min(model.batch_size, n)
    lr, beta = model.learning_rate, model.momentum
    with np.errstate(all="ignore"):
        for _ in range(model.epochs):
            order = rng.permutation(n)
            total = 0.0
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                loss, grads = _loss_and_gradients(model, data.x_train[idx], data.y_train[idx])
                total += loss * len(idx)
                for name, g in grads.items():
                    if beta:
                        velocity[name] *= beta
                        velocity[name] -= lr * g
                        w[name] += velocity[name]
                    else:
                        w[name] -= lr * g
            loss = total / n
            model.loss_curve.append(loss)
            if not math.isfinite(loss) or not all(np.isfinite(v).all() for v in w.values()):
                model.diverged = True
                break
    return model


def _loss_and_gradients(
    model: Perceptron, x: np.ndarray, y: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    """Mean cross-entropy of the batch and its gradient for every weight, by backpropagation."""
    assert model.weights is not None
    w = model.weights
    hidden, logits = model._forward(x)
    probs = _softmax(logits)
    rows = np.arange(len(y))
    loss = float(-np.log(probs[rows, y] + 1e-12).mean())
    # d(loss)/d(logits) of softmax + cross-entropy, then back through w2, the activation, w1.
    delta_out = probs
    delta_out[rows, y] -= 1.0
    delta_out /= len(y)
    delta_hidden = (delta_out @ w["w2"].T) * _derivative(hidden, model.activation)
    grads = {
        "w2": hidden.T @ delta_out,
        "b2": delta_out.sum(axis=0),
        "w1": x.T @ delta_hidden,
        "b1": delta_hidden.sum(axis=0),
    }
    return loss, grads


def test_error(model: Perceptron, data: ClassificationData) -> float:
    """Misclassification rate on the held-out samples (1.0 for a diverged network)."""
    return _error_rate(model, data.x_test, data.y_test)


def metrics(model: Perceptron, data: ClassificationData) -> dict[str, float]:
    """``train_error`` (misclassification on the training part) and ``train_loss`` (last epoch's
    mean cross-entropy; inf for a diverged network)."""
    loss = model.loss_curve[-1] if model.loss_curve and not model.diverged else math.inf
    return {"train_error": _error_rate(model, data.x_train, data.y_train), "train_loss": loss}


def _error_rate(model: Perceptron, x: np.ndarray, y: np.ndarray) -> float:
    if model.weights is None:
        raise ObjectiveError("the network is not trained: call train(model, data) first")
    if model.diverged:
        return 1.0
    with np.errstate(all="ignore"):
        return float(np.mean(model.predict(x) != y))


def _activate(z: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(z, 0.0, out=z)
    # exp of a large negative z overflows to inf, and 1 / (1 + inf) is the right limit 0.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def _derivative(activated: np.ndarray, activation: str) -> np.ndarray:
    """The activation's derivative, written in terms of its output."""
    if activation == "relu":
        # Multiplying by a 0/1 float array is faster than masked assignment.
        return (activated > 0).astype(activated.dtype)
    return activated * (1.0 - activated)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)
