# expect: svc__C, svc__kernel
"""An SVM on the iris flowers, scored on a held-out quarter."""

from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

model = SVC(C=1.0, kernel="rbf")
model.fit(X_train, y_train)
print("accuracy", model.score(X_test, y_test))
