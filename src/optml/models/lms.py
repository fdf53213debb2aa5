"""An adaptive FIR filter trained by least mean squares: the seed's LMS experiment.

The task is system identification. Without a data file, a white Gaussian input signal drives an
unknown FIR system of :data:`TAPS` taps, and the system's output plus noise is the desired
signal. The filter learns the system by the LMS rule ``w += learning_rate * e * u`` (``u`` the
last ``filter_size`` input samples, ``e`` the error of the filter's output), one sample at a time
over the training part for a few epochs. ``test_error`` is the mean squared error on the
held-out samples that follow.

The learning rate trades speed against stability: too small and the filter is still far from the
system when the training data runs out, too large and the updates diverge. With the default data
the test error is U-shaped over 1e-5 .. 1e-1 (lowest, near the noise floor 0.09, for about
1e-3 .. 1e-2) and the filter diverges above about 0.15.

A diverging run never raises: training stops once an error exceeds :data:`DIVERGENCE_LIMIT`, and
the errors it reports are capped at :data:`ERROR_CAP` (also when they would be inf or nan), so a
study sees a finite, very bad value.

Hyperparameters (for :func:`initialization`):

- ``learning_rate`` (required): the LMS step size, > 0.
- ``filter_size``: number of filter taps; default: that of the data (the unknown system's
  :data:`TAPS` for generated data, the number of feature columns for a multi-column file).
- ``epochs``: passes over the training samples, default :data:`EPOCHS`.

Data file (``data:`` in the spec): comma-separated, the last column the desired signal. With one
feature column, the column is the input signal and the filter sees its last ``filter_size``
samples (a tapped delay line); with several feature columns, each row is the filter's input
vector and ``filter_size`` must be left out or equal the number of columns. The first
:data:`TRAIN_FRACTION` of the rows train, the rest test (in file order: a signal is a time series).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from optml.errors import ObjectiveError
from optml.models import positive_float, positive_int, read_csv, read_only

#: Taps of the unknown system in generated data.
TAPS = 16
#: Training and test samples in generated data.
N_TRAIN = 1000
N_TEST = 1000
#: Standard deviation of the measurement noise added to the system's output.
NOISE_STD = 0.3
#: Seed of the generated data (signal, system and noise).
SEED = 0
#: Default passes over the training samples.
EPOCHS = 2
#: Share of a data file's rows used for training.
TRAIN_FRACTION = 0.75
#: An error this large stops training: the filter has diverged.
DIVERGENCE_LIMIT = 1e8
#: Errors are reported as at most this: a diverged filter gives a finite, very bad value.
ERROR_CAP = 1e6

#: Default search space: the learning rate on a log scale.
SPACE: dict[str, Any] = {"learning_rate": {"loguniform": [1e-5, 1.0]}}

_HYPERPARAMETERS = ("learning_rate", "filter_size", "epochs")


@dataclass(frozen=True)
class SignalData:
    """Input and desired signal, split into a training head and a test tail.

    ``inputs`` is a 1-D signal (the filter taps a delay line on it) or a 2-D array whose rows are
    the filter's input vectors. ``system`` is the true FIR response when the data was generated.
    The arrays are read-only: the data is shared by every trial of a worker.
    """

    inputs: np.ndarray
    desired: np.ndarray
    n_train: int
    system: np.ndarray | None = None

    @property
    def natural_filter_size(self) -> int:
        """The filter size that matches the data: the system's taps or the input's columns."""
        if self.inputs.ndim == 2:
            return self.inputs.shape[1]
        return len(self.system) if self.system is not None else TAPS

    def input_vectors(self, filter_size: int) -> np.ndarray:
        """The filter's input vector at every sample, one per row (zeros before the start)."""
        if self.inputs.ndim == 2:
            return self.inputs
        padded = np.concatenate([np.zeros(filter_size - 1), self.inputs])
        # Row t holds x[t], x[t-1], ..., x[t-filter_size+1].
        return np.ascontiguousarray(sliding_window_view(padded, filter_size)[:, ::-1])


@dataclass
class LMSFilter:
    """An adaptive FIR filter: its hyperparameters and, once trained, its weights."""

    learning_rate: float
    filter_size: int | None = None
    epochs: int = EPOCHS
    weights: np.ndarray | None = None
    diverged: bool = False
    train_curve: list[float] = field(default_factory=list)

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        if self.weights is None:
            raise ObjectiveError("the LMS filter is not trained: call train(model, data) first")
        with np.errstate(all="ignore"):
            return vectors @ self.weights


def generate_data(
    path: str | Path | None = None,
    *,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    taps: int = TAPS,
    noise_std: float = NOISE_STD,
    seed: int = SEED,
) -> SignalData:
    """Read the data file at ``path``, or generate a system-identification task (deterministic).

    Generated: a white Gaussian input of ``n_train + n_test`` samples, an unknown FIR system of
    ``taps`` taps (Gaussian, decaying, unit energy), and its output plus Gaussian noise of
    standard deviation ``noise_std``. The keyword arguments size the generated data (tests use
    small sizes); a file ignores them.
    """
    if path is not None:
        return _read(Path(path))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n_train + n_test)
    h = rng.standard_normal(taps) * np.exp(-np.arange(taps) / (taps / 4))
    h /= np.linalg.norm(h)
    d = np.convolve(x, h)[: len(x)] + noise_std * rng.standard_normal(len(x))
    read_only(x, d, h)
    return SignalData(inputs=x, desired=d, n_train=n_train, system=h)


def _read(path: Path) -> SignalData:
    features, desired = read_csv(path, target="float")
    if len(features) < 2:
        raise ObjectiveError(f"{path}: the LMS model needs at least two data rows")
    inputs = features[:, 0].copy() if features.shape[1] == 1 else features
    n_train = min(max(1, int(round(TRAIN_FRACTION * len(features)))), len(features) - 1)
    read_only(inputs, desired)
    return SignalData(inputs=inputs, desired=desired, n_train=n_train)


def initialization(**hyperparameters: Any) -> LMSFilter:
    """A fresh, untrained filter for one trial's hyperparameters (see the module docstring)."""
    unknown = sorted(set(hyperparameters) - set(_HYPERPARAMETERS))
    if unknown:
        raise ObjectiveError(
            f"the LMS model has no hyperparameter(s) {unknown}; it accepts "
            f"{', '.join(_HYPERPARAMETERS)}"
        )
    if "learning_rate" not in hyperparameters:
        raise ObjectiveError("the LMS model needs the hyperparameter 'learning_rate'")
    learning_rate = positive_float("learning_rate", hyperparameters["learning_rate"])
    filter_size = hyperparameters.get("filter_size")
    if filter_size is not None:
        filter_size = positive_int("filter_size", filter_size)
    epochs = positive_int("epochs", hyperparameters.get("epochs", EPOCHS))
    return LMSFilter(learning_rate=learning_rate, filter_size=filter_size, epochs=epochs)


def train(model: LMSFilter, data: SignalData) -> LMSFilter:
    """Adapt the filter to the training samples by LMS, ``model.epochs`` passes in time order."""
    size = model.filter_size or data.natural_filter_size
    if data.inputs.ndim == 2 and size != data.inputs.shape[1]:
        raise ObjectiveError(
            f"filter_size={size} does not match the data's {data.inputs.shape[1]} input columns; "
            "leave filter_size out for multi-column data"
        )
    vectors = data.input_vectors(size)[: data.n_train]
    desired = data.desired[: data.n_train]
    # Python floats and a plain loop: LMS is sequential, and per-sample numpy calls on
    # 16-element vectors cost less than any batching trick would save.
    mu = model.learning_rate
    w = np.zeros(size)
    rows = list(vectors)
    targets = desired.tolist()
    diverged = False
    curve: list[float] = []
    with np.errstate(all="ignore"):
        for _ in range(model.epochs):
            squared = 0.0
            for u, d in zip(rows, targets, strict=True):
                e = d - float(u @ w)
                # `not <` also catches nan.
                if not abs(e) < DIVERGENCE_LIMIT:
                    diverged = True
                    break
                w += (mu * e) * u
                squared += e * e
            if diverged:
                break
            curve.append(squared / len(targets))
    model.weights = w
    model.filter_size = size
    model.diverged = diverged
    model.train_curve = curve
    return model


def test_error(model: LMSFilter, data: SignalData) -> float:
    """Mean squared error on the held-out samples, at most :data:`ERROR_CAP`."""
    return _mse(model, data, slice(data.n_train, None))


def metrics(model: LMSFilter, data: SignalData) -> dict[str, float]:
    """``train_error`` (MSE of the final filter on the training samples) and ``diverged`` (0/1)."""
    return {
        "train_error": _mse(model, data, slice(0, data.n_train)),
        "diverged": float(model.diverged),
    }


def _mse(model: LMSFilter, data: SignalData, part: slice) -> float:
    if model.weights is None:
        raise ObjectiveError("the LMS filter is not trained: call train(model, data) first")
    if model.diverged:
        return ERROR_CAP
    vectors = data.input_vectors(len(model.weights))[part]
    with np.errstate(all="ignore"):
        mse = float(np.mean((data.desired[part] - model.predict(vectors)) ** 2))
    return mse if mse < ERROR_CAP else ERROR_CAP
