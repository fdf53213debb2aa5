# expect: kneighborsclassifier__n_neighbors, kneighborsclassifier__p, decisiontreeclassifier__max_depth
"""Estimators reached through module aliases (nb.KNeighborsClassifier, sklearn.tree....)."""

import sklearn.neighbors as nb
import sklearn.tree
from sklearn import datasets, model_selection

X, y = datasets.load_wine(return_X_y=True)
X_train, X_test, y_train, y_test = model_selection.train_test_split(X, y, random_state=5)

knn = nb.KNeighborsClassifier(n_neighbors=3, p=1)
tree = sklearn.tree.DecisionTreeClassifier(max_depth=4, random_state=0)
knn.fit(X_train, y_train)
tree.fit(X_train, y_train)
best = max(knn.score(X_test, y_test), tree.score(X_test, y_test))
print(best)
