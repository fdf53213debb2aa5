# expect: model__n_estimators, model__max_depth
"""Mixed numeric and categorical columns: a ColumnTransformer feeding a random forest."""

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

rng = np.random.default_rng(7)
n = 300
numeric = rng.normal(size=(n, 3))
colour = rng.integers(0, 4, size=(n, 1))
X = np.hstack([numeric, colour])
y = (numeric[:, 0] + (colour[:, 0] == 2) > 0.5).astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

preprocess = ColumnTransformer(
    [
        ("num", StandardScaler(), [0, 1, 2]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), [3]),
    ]
)
model = Pipeline(
    [
        ("prep", preprocess),
        ("model", RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0)),
    ]
)
model.fit(X_train, y_train)
print(model.score(X_test, y_test))
