# expect: histgradientboostingregressor__learning_rate, histgradientboostingregressor__max_iter, histgradientboostingregressor__max_leaf_nodes
"""Histogram gradient boosting on a synthetic regression task, scored by mean squared error."""

from sklearn.datasets import make_regression
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split

X, y = make_regression(n_samples=500, n_features=8, noise=10.0, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

hgb = HistGradientBoostingRegressor(learning_rate=0.1, max_iter=50, max_leaf_nodes=31)
hgb.fit(X_train, y_train)
mse = mean_squared_error(y_test, hgb.predict(X_test))
print("MSE", mse)
