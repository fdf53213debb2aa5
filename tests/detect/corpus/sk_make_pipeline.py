# expect: svc__C, svc__gamma
"""Scaled features into an RBF SVM, built with make_pipeline."""

from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

X, y = load_wine(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=1)

clf = make_pipeline(StandardScaler(), SVC(C=10.0, gamma=0.01))
clf.fit(X_train, y_train)
accuracy = clf.score(X_test, y_test)
print(f"test accuracy: {accuracy:.3f}")
