# expect: n_estimators, learning_rate
"""Gradient boosting with its settings in module-level constants."""

from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

N_ESTIMATORS = 60
LEARNING_RATE = 0.1
SEED = 42
TEST_SIZE = 0.25

X, y = make_classification(n_samples=400, n_features=10, random_state=SEED)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=TEST_SIZE, random_state=SEED)

booster = GradientBoostingClassifier(
    n_estimators=N_ESTIMATORS, learning_rate=LEARNING_RATE, random_state=SEED
)
booster.fit(X_train, y_train)
predictions = booster.predict(X_test)
print("accuracy", accuracy_score(y_test, predictions))
