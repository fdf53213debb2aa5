# expect: svr__C, svr__epsilon, svr__kernel
"""A support-vector regressor in a main() function; the metric is marked with report()."""

from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from optml.detect import report

DATA_SEED = 11


def load():
    X, y = load_diabetes(return_X_y=True)
    return train_test_split(X, y, random_state=DATA_SEED)


def main():
    X_train, X_test, y_train, y_test = load()
    scaler = StandardScaler().fit(X_train)
    svr = SVR(kernel="rbf", C=50.0, epsilon=0.5)
    svr.fit(scaler.transform(X_train), y_train)
    error = abs(svr.predict(scaler.transform(X_test)) - y_test).mean()
    report(error)  # mean absolute error: minimised
    print("MAE", error)


if __name__ == "__main__":
    main()
