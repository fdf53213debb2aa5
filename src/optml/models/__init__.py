"""Built-in models in the "function file" protocol, and the CSV reader they share.

A model module (built in, or a user's ``.py`` file named in a study spec) defines::

    generate_data(path=None) -> data           # once per worker process, then cached
    initialization(**hyperparameters) -> model # every hyperparameter of the trial, by name
    train(model, data) -> model                # the trained model
    test_error(model, data) -> float           # the metric ``test_error``; lower is better
    metrics(model, data) -> dict[str, float]   # optional: more metrics (train_error, ...)

``data`` is shared by every trial of the worker, so ``train`` must not modify it; the built-in
models hand out read-only arrays so that a slip shows as an error instead of a wrong result.

Built in:

- :mod:`optml.models.lms` — an adaptive FIR filter trained by least mean squares (the seed's LMS
  experiment); hyperparameter ``learning_rate`` (and ``filter_size``).
- :mod:`optml.models.ann` — a one-hidden-layer perceptron trained by backpropagation (the seed's
  ANN experiment); hyperparameters ``learning_rate`` and ``network_size``.

Each module's ``SPACE`` is its default search space, in the form :func:`optml.space.parse_space`
reads.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np

from optml.errors import ObjectiveError

#: Short names of the built-in models and the modules that implement them.
BUILTIN_MODELS: dict[str, str] = {
    "lms": "optml.models.lms",
    "ann": "optml.models.ann",
}

__all__ = ["BUILTIN_MODELS", "read_csv"]


def read_csv(
    path: str | Path, target: Literal["float", "label"] = "float"
) -> tuple[np.ndarray, np.ndarray]:
    """Read a data file: comma-separated rows, every column a feature except the last, the target.

    Blank lines and lines starting with ``#`` are skipped. The first remaining line is a header
    (and skipped) when one of its features is not a number (or, for a numeric target, the
    target is not). Every row must have as many columns as
    the first, at least two; the features must be finite numbers. With ``target="float"`` the
    target must be a finite number too; with ``target="label"`` it is any text (a class name or
    number), returned as a string array.

    Returns ``(features, target)``: a float array of shape ``(rows, columns - 1)`` and an array
    of length ``rows``. Raises :class:`~optml.errors.ObjectiveError` naming the file and line of
    the first problem.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ObjectiveError(f"{path}: cannot read the data file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ObjectiveError(f"{path}: the data file is not UTF-8 text") from None

    features: list[list[float]] = []
    targets: list[str] = []
    width: int | None = None
    header_allowed = True
    for lineno, fields in _rows(text):
        if header_allowed and _looks_like_header(fields, target):
            header_allowed = False
            width = len(fields)
            continue
        header_allowed = False
        if width is None:
            width = len(fields)
        if width < 2:
            raise ObjectiveError(
                f"{path}:{lineno}: a data row needs at least two comma-separated columns "
                "(features, then the target in the last column)"
            )
        if len(fields) != width:
            raise ObjectiveError(
                f"{path}:{lineno}: expected {width} comma-separated columns, found {len(fields)}"
            )
        row: list[float] = []
        for col, field in enumerate(fields[:-1], start=1):
            value = _finite(field)
            if value is None:
                raise ObjectiveError(
                    f"{path}:{lineno}: column {col} is {field!r}; features must be finite numbers"
                )
            row.append(value)
        if target == "float" and _finite(fields[-1]) is None:
            raise ObjectiveError(
                f"{path}:{lineno}: the target (last column) is {fields[-1]!r}; "
                "it must be a finite number"
            )
        if target == "label" and not fields[-1]:
            raise ObjectiveError(f"{path}:{lineno}: the label (last column) is empty")
        features.append(row)
        targets.append(fields[-1])
    if not features:
        raise ObjectiveError(f"{path}: the data file has no data rows")
    x = np.asarray(features, dtype=float).reshape(len(features), -1)
    if target == "float":
        return x, np.asarray(targets, dtype=float)
    return x, np.asarray(targets, dtype=str)


def _rows(text: str):
    """Yield ``(line number, stripped fields)`` of the non-blank, non-comment lines."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        # csv handles quoted fields; a header with quoted names is common.
        fields = next(csv.reader([stripped]))
        yield lineno, [f.strip() for f in fields]


def _looks_like_header(fields: list[str], target: str) -> bool:
    # A text label in the last column is data, not a header, so only a numeric target counts.
    checked = fields if target == "float" else fields[:-1]
    return not all(_is_number(f) for f in checked)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def read_only(*arrays: np.ndarray) -> None:
    """Mark arrays read-only: data is cached and shared by every trial of a worker."""
    for a in arrays:
        a.flags.writeable = False


def positive_float(name: str, value: Any) -> float:
    """``value`` as a finite float > 0, or an :class:`ObjectiveError` naming the hyperparameter."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (number > 0 and math.isfinite(number)):
        raise ObjectiveError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (``8.0`` is fine, ``8.5`` is not), or an
    :class:`ObjectiveError` naming the hyperparameter."""
    try:
        number = int(value)
        ok = number == value and number >= minimum and not isinstance(value, bool | str)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ObjectiveError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return number
