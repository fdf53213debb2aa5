# expect: mlpclassifier__hidden_layer_sizes_0, mlpclassifier__hidden_layer_sizes_1, mlpclassifier__alpha, mlpclassifier__learning_rate_init
"""scikit-learn's multi-layer perceptron: two hidden layers given as a tuple."""

import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

warnings.filterwarnings("ignore", category=ConvergenceWarning)
X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

mlp = MLPClassifier(
    hidden_layer_sizes=(32, 16),
    alpha=1e-4,
    learning_rate_init=0.001,
    max_iter=60,
    random_state=0,
)
mlp.fit(X_train, y_train)
print(mlp.score(X_test, y_test))
