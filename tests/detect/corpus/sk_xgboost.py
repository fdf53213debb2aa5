# expect: xgbclassifier__n_estimators, xgbclassifier__max_depth, xgbclassifier__learning_rate, xgbclassifier__subsample, lgbmclassifier__num_leaves
# needs: xgboost, lightgbm
"""XGBoost and LightGBM classifiers side by side (scikit-learn API)."""

import lightgbm as lgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import cross_val_score
from xgboost import XGBClassifier

X, y = load_breast_cancer(return_X_y=True)
xgb = XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.05, subsample=0.8)
lgbm = lgb.LGBMClassifier(num_leaves=15, verbose=-1)
print(cross_val_score(lgbm, X, y, cv=3).mean())
print(cross_val_score(xgb, X, y, cv=3).mean())
