# expect: forest__n_estimators, knn__n_neighbors, knn__weights
"""Two candidate models kept in a dict and compared by cross-validation in a loop."""

from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

X, y = load_iris(return_X_y=True)

models = {
    "forest": RandomForestClassifier(n_estimators=30, random_state=0),
    "knn": KNeighborsClassifier(n_neighbors=7, weights="distance"),
}
for name, model in models.items():
    scores = cross_val_score(model, X, y, cv=3)
    print(name, scores.mean())
