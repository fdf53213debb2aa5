# expect: clf__C
"""Logistic regression in a named Pipeline, scored by 5-fold cross-validation."""

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

X, y = load_breast_cancer(return_X_y=True)

pipe = Pipeline(
    [
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(C=0.5, max_iter=500)),  # max_iter is not tuned
    ]
)
scores = cross_val_score(pipe, X, y, cv=5)
print("mean accuracy", np.mean(scores))
