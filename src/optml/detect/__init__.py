"""Find the hyperparameters of a Keras, PyTorch or scikit-learn script, and tune them.

``detect(path)`` reads a training script with a concrete syntax tree (libcst) and returns its
hyperparameters (each literal argument of a class in the metadata table, where it is, and a
proposed range) and its metric; ``rewrite(detection)`` returns the script rewritten to take the
values as parameters (a module defining ``optml_objective``).

The metric: an ``optml.report(value)`` call wins (``direction="maximize"`` for a score);
otherwise, by framework: Keras, the last ``model.evaluate(...)`` (its loss), else the best
``val_loss`` of the last ``fit(..., validation_data=...)``; PyTorch, the last value assigned to
``val_loss``, ``valid_loss``, ``test_loss`` (minimised) or ``val_accuracy``, ``val_acc``,
``test_accuracy``, ``test_acc`` (maximised), where a literal (``val_loss = 0.0``) only starts a
sum and ``val_loss += ...`` or ``val_loss /= n`` updates it; scikit-learn, the last ``estimator.score(...)``,
the mean of ``cross_val_score(...)`` or a ``sklearn.metrics`` function (scores maximised, errors
minimised). When a statement runs more than once, the last value it computed counts.

Nothing here is imported by ``import optml``; libcst is needed only when a script is analysed
(``pip install 'optml[detect]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from optml.detect._errors import (
    DetectError,
    MetadataError,
    NoMetricError,
    NothingToTuneError,
    ScriptSyntaxError,
)
from optml.detect._report import report

if TYPE_CHECKING:
    from optml.detect._detect import Detection

__all__ = [
    "DetectError",
    "MetadataError",
    "NoMetricError",
    "NothingToTuneError",
    "ScriptSyntaxError",
    "default_space",
    "detect",
    "report",
    "rewrite",
]


def _libcst() -> None:
    try:
        import libcst  # noqa: F401
    except ImportError:
        from optml.errors import missing_dependency

        raise missing_dependency("libcst", "detect") from None


def detect(
    path: str | Path, source: str | None = None, metadata: str | Path | None = None
) -> Detection:
    """The hyperparameters and metric of the script at ``path`` (or of ``source``, named
    ``path``); ``metadata`` is a CSV of extra rows with the shipped table's columns."""
    _libcst()
    from optml.detect._detect import detect as _detect
    from optml.detect._detect import detect_file

    if source is None:
        return detect_file(path, metadata=metadata)
    return _detect(source, str(path), metadata=metadata)


def rewrite(detection: Detection, data: str | None = None) -> str:
    """The rewritten script's source; ``data`` replaces the one data-file path it reads."""
    from optml.detect._rewrite import rewrite as _rewrite

    return _rewrite(detection, data=data)


def default_space(
    class_path: str, metadata: str | Path | None = None
) -> dict[str, dict[str, list[object]]]:
    """The metadata table's search space for a class (``"sklearn.svm.SVC"``), in the spec's
    YAML form (``{"C": {"loguniform": [0.001, 1000.0]}, ...}``); empty if the table lacks it."""
    from optml.detect._metadata import load_table

    return load_table(metadata).default_space(class_path)
