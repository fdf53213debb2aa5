"""scikit-learn estimators as objectives, with default search spaces and bundled data sets.

Each estimator is a function objective (``optml.models.estimators:svc``) that takes its
hyperparameters and ``data``, the path of a CSV file whose last column is the target, and
returns ``{"error": ..., ...}`` from 3-fold cross-validation: ``1 - accuracy`` for classifiers,
the mean squared error for regressors. :func:`estimators` gives each one's task and default
space, taken from the metadata table that ``optml detect`` proposes ranges from;
:func:`write_dataset` writes one of scikit-learn's bundled data sets (shipped inside the package,
nothing downloaded) as such a CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optml.errors import ObjectiveError

#: name -> (task, scikit-learn class, whether the features are standardised first, fixed options).
#: The search space of each comes from the metadata table of ``optml detect`` (one table of
#: hyperparameter ranges for the whole package): see :func:`default_space`.
MODELS: dict[str, tuple[str, str, bool, dict[str, Any]]] = {
    "svc": ("classification", "sklearn.svm.SVC", True, {}),
    "knn": ("classification", "sklearn.neighbors.KNeighborsClassifier", True, {}),
    "random_forest": (
        "classification",
        "sklearn.ensemble.RandomForestClassifier",
        False,
        {"random_state": 0, "n_jobs": 1},
    ),
    "logistic_regression": (
        "classification",
        "sklearn.linear_model.LogisticRegression",
        True,
        {"max_iter": 500},
    ),
    "ridge": ("regression", "sklearn.linear_model.Ridge", True, {}),
    "gradient_boosting": (
        "regression",
        "sklearn.ensemble.GradientBoostingRegressor",
        False,
        {"random_state": 0},
    ),
}


def default_space(name: str) -> dict[str, Any]:
    """The default search space of estimator ``name``: its class's rows of the metadata table."""
    from optml.detect import default_space as table_space

    return table_space(MODELS[name][1])


def estimators() -> dict[str, tuple[str, dict[str, Any]]]:
    """Each estimator's task and default search space (the form optml.space.parse_space reads)."""
    return {name: (task, default_space(name)) for name, (task, *_) in MODELS.items()}


#: Bundled data sets: name -> task.
DATASETS: dict[str, str] = {
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}


def write_dataset(name: str, path: str | Path) -> Path:
    """Write scikit-learn's bundled data set ``name`` as CSV (features, then the target)."""
    import numpy as np
    from sklearn import datasets

    if name not in DATASETS:
        raise ObjectiveError(f"no bundled data set {name!r}; choose one of {', '.join(DATASETS)}")
    bunch = getattr(datasets, f"load_{name}")()
    path = Path(path)
    header = ",".join([f"x{i}" for i in range(bunch.data.shape[1])] + ["target"])
    table = np.column_stack([bunch.data, bunch.target])
    np.savetxt(path, table, delimiter=",", header=header, comments="", fmt="%.10g")
    return path


def _data(data: str | None, task: str) -> Any:
    from optml.models import read_csv

    if not data:
        raise ObjectiveError(
            "this estimator needs data: a CSV file whose last column is the target"
        )
    x, y = read_csv(data, target="label" if task == "classification" else "float")
    return x, y


def _score(estimator: Any, data: str | None, task: str) -> dict[str, float]:
    from sklearn.model_selection import cross_val_score

    x, y = _data(data, task)
    if task == "classification":
        accuracy = float(cross_val_score(estimator, x, y, cv=3).mean())
        return {"error": 1.0 - accuracy, "accuracy": accuracy}
    mse = -float(cross_val_score(estimator, x, y, cv=3, scoring="neg_mean_squared_error").mean())
    return {"error": mse}


def _scaled(model: Any) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), model)


def evaluate(name: str, params: dict[str, Any], data: str | None) -> dict[str, float]:
    """Cross-validate estimator ``name`` with ``params`` on ``data`` (see the module docstring)."""
    import importlib

    task, class_path, scaled, fixed = MODELS[name]
    module, _, cls_name = class_path.rpartition(".")
    model = getattr(importlib.import_module(module), cls_name)(**fixed, **params)
    return _score(_scaled(model) if scaled else model, data, task)


def svc(data: str | None = None, **params: Any) -> dict[str, float]:
    return evaluate("svc", params, data)


def knn(data: str | None = None, **params: Any) -> dict[str, float]:
    return evaluate("knn", params, data)


def random_forest(data: str | None = None, **params: Any) -> dict[str, float]:
    return evaluate("random_forest", params, data)


def logistic_regression(data: str | None = None, **params: Any) -> dict[str, float]:
    return evaluate("logistic_regression", params, data)


def ridge(data: str | None = None, **params: Any) -> dict[str, float]:
    return evaluate("ridge", params, data)


def gradient_boosting(data: str | None = None, **params: Any) -> dict[str, float]:
    return evaluate("gradient_boosting", params, data)
