# expect: ridge__alpha, lasso__alpha
"""Linear regressors built in a loop over a list, evaluated with R^2 on diabetes data."""

from sklearn.datasets import load_diabetes
from sklearn.linear_model import Lasso, Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=3)

for regressor in [Ridge(alpha=1.0), Lasso(alpha=0.01)]:
    regressor.fit(X_train, y_train)
    r2 = r2_score(y_test, regressor.predict(X_test))
    print(type(regressor).__name__, round(r2, 3))
