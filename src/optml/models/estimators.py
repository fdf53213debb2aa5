"""scikit-learn estimators as objectives, with default search spaces and bundled data sets.

Each estimator is a function objective (``optml.models.estimators:svc``) that takes its
hyperparameters and ``data``, the path of a CSV file whose last column is the target, and
returns ``{"error": ..., ...}`` from 3-fold cross-validation: ``1 - accuracy`` for classifiers,
the mean squared error for regressors. :data:`ESTIMATORS` gives each one's task and default
space; :func:`write_dataset` writes one of scikit-learn's bundled data sets (shipped inside the
package, nothing downloaded) as such a CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optml.errors import ObjectiveError

#: name -> (task, default space in the form optml.space.parse_space reads)
ESTIMATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "svc": (
        "classification",
        {"C": {"loguniform": [0.01, 100.0]}, "gamma": {"loguniform": [1e-4, 1.0]}},
    ),
    "knn": (
        "classification",
        {"n_neighbors": {"int": [1, 30]}, "weights": ["uniform", "distance"]},
    ),
    "random_forest": (
        "classification",
        {"n_estimators": {"int": [10, 100]}, "max_depth": {"int": [2, 12]}},
    ),
    "logistic_regression": ("classification", {"C": {"loguniform": [0.001, 100.0]}}),
    "ridge": ("regression", {"alpha": {"loguniform": [1e-4, 100.0]}}),
    "gradient_boosting": (
        "regression",
        {"learning_rate": {"loguniform": [0.01, 0.5]}, "max_depth": {"int": [1, 6]}},
    ),
}

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


def svc(C: float, gamma: float, data: str | None = None) -> dict[str, float]:
    from sklearn.svm import SVC

    return _score(_scaled(SVC(C=C, gamma=gamma)), data, "classification")


def knn(n_neighbors: int, weights: str = "uniform", data: str | None = None) -> dict[str, float]:
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(n_neighbors=int(n_neighbors), weights=weights)
    return _score(_scaled(model), data, "classification")


def random_forest(n_estimators: int, max_depth: int, data: str | None = None) -> dict[str, float]:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=int(n_estimators), max_depth=int(max_depth), random_state=0, n_jobs=1
    )
    return _score(model, data, "classification")


def logistic_regression(C: float, data: str | None = None) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    return _score(_scaled(LogisticRegression(C=C, max_iter=500)), data, "classification")


def ridge(alpha: float, data: str | None = None) -> dict[str, float]:
    from sklearn.linear_model import Ridge

    return _score(_scaled(Ridge(alpha=alpha)), data, "regression")


def gradient_boosting(
    learning_rate: float, max_depth: int, data: str | None = None
) -> dict[str, float]:
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(
        learning_rate=learning_rate, max_depth=int(max_depth), n_estimators=50, random_state=0
    )
    return _score(model, data, "regression")
