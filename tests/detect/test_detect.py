"""Detection, construct by construct, on small inline scripts (the corpus has the realistic ones)."""

from __future__ import annotations

import textwrap

import pytest

from optml.detect import (
    DetectError,
    NothingToTuneError,
    ScriptSyntaxError,
    default_space,
    detect,
    rewrite,
)


def names(source: str) -> list[str]:
    return [hp.name for hp in detect("m.py", source=textwrap.dedent(source)).hyperparameters]


KERAS_END = "\nmodel.compile(loss='sparse_categorical_crossentropy')\nmodel.evaluate(x, y)\n"


@pytest.mark.parametrize(
    "imports, dense",
    [
        ("import keras", "keras.layers.Dense"),
        ("from keras import layers", "layers.Dense"),
        ("from keras.layers import Dense", "Dense"),
        ("from keras.layers import Dense as D", "D"),
        ("import keras.layers as L", "L.Dense"),
        ("from keras.layers import *", "Dense"),
        ("import tensorflow as tf", "tf.keras.layers.Dense"),
        ("from tensorflow.keras.layers import Dense", "Dense"),
    ],
)
def test_keras_class_paths_full_partial_aliased(imports, dense):
    source = (
        f"{imports}\nimport keras\nmodel = keras.Sequential([{dense}(64, activation='relu'), {dense}(3)])"
        + KERAS_END
    )
    assert names(source) == ["dense_units", "dense_activation"]


def test_keras_positional_and_keyword_and_the_output_layer():
    source = """
    from keras import Sequential, layers
    model = Sequential()
    model.add(layers.Dense(units=32, activation="tanh"))
    model.add(layers.Dense(16, "relu"))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(loss="sparse_categorical_crossentropy")
    model.evaluate(x, y)
    """
    assert names(source) == [
        "dense_units",
        "dense_activation",
        "dense_units_2",
        "dense_activation_2",
    ]


def test_figure_1_objects_in_variables_and_inline():
    source = """
    import keras
    from keras.layers import Dense, ReLU
    model = keras.Sequential()
    actv = keras.layers.ReLU(negative_slope=0.1)
    model.add(Dense(128, activation=actv))
    model.add(Dense(64, activation=ReLU(negative_slope=0.2)))
    model.add(Dense(1))
    model.compile(loss="mse")
    model.evaluate(x, y)
    """
    assert names(source) == [
        "relu_negative_slope",
        "dense_units",
        "dense_units_2",
        "relu_negative_slope_2",
        "compile_loss",
    ]


def test_literals_that_are_not_hyperparameters_are_left_alone():
    source = """
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split
    SEED = 42
    df = pd.read_csv("data/train.csv")
    X_train, X_test, y_train, y_test = train_test_split(df, df.y, test_size=0.2, random_state=SEED)
    rf = RandomForestClassifier(n_estimators=100, random_state=SEED, n_jobs=-1, verbose=0)
    print(rf.fit(X_train, y_train).score(X_test, y_test))
    """
    assert names(source) == ["randomforestclassifier__n_estimators"]


def test_a_constant_assigned_twice_or_read_from_elsewhere_is_not_a_hyperparameter():
    source = """
    from sklearn.svm import SVC
    C = 1.0
    if fast:
        C = 0.1
    GAMMA = compute()
    print(SVC(C=C, gamma=GAMMA).fit(X, y).score(X, y))
    """
    with pytest.raises(NothingToTuneError, match="nothing to tune"):
        detect("m.py", source=textwrap.dedent(source)).require()


def test_sklearn_step_names_follow_set_params():
    source = """
    from sklearn.pipeline import make_pipeline, Pipeline
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import StandardScaler
    from sklearn.ensemble import VotingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC
    from sklearn.model_selection import cross_val_score
    vote = make_pipeline(StandardScaler(), VotingClassifier([("lr", LogisticRegression(C=1.0)), ("svc", SVC(C=2.0))]))
    pipe = Pipeline([("prep", ColumnTransformer([("num", StandardScaler(), [0])])),
                     ("model", make_pipeline(RandomForestClassifier(n_estimators=10)))])
    print(cross_val_score(make_pipeline(SVC(C=3.0)), X, y).mean())
    """
    assert names(source) == [
        "votingclassifier__lr__C",
        "votingclassifier__svc__C",
        "model__randomforestclassifier__n_estimators",
        "svc__C",
    ]


def test_pytorch_widths_are_tied_or_left_alone():
    source = """
    import torch
    from torch import nn
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.fc1 = nn.Linear(8 * 6 * 6, 50)   # input width: computed, left alone
            self.bn = nn.BatchNorm1d(50)
            self.fc2 = nn.Linear(50, 25)
            self.fc3 = nn.Linear(40, 10)           # 25 != 40: fc2's width is left alone
    net = Net()
    opt = torch.optim.SGD(net.parameters(), 0.1, 0.9)
    val_loss = evaluate(net)
    """
    found = detect("m.py", source=textwrap.dedent(source))
    assert [hp.name for hp in found.hyperparameters] == [
        "linear_out_features",
        "sgd_lr",
        "sgd_momentum",
    ]
    width = found.hyperparameters[0]
    assert len(width.sites) == 3  # fc1's output, the batch norm, fc2's input
    code = rewrite(found)
    assert code.count('optml_params["linear_out_features"]') == 3
    assert "nn.Linear(40, 10)" in code and "nn.Conv2d(3, 8, 3)" in code


def test_literals_evaluated_at_import_are_not_proposed():
    source = """
    from torch import nn
    class Net(nn.Module):
        drop = nn.Dropout(0.5)           # a class attribute: built at import
        def __init__(self, p=nn.Dropout(0.3)):
            super().__init__()
            self.drop2 = nn.Dropout(0.1)
    net = Net()
    val_loss = evaluate()
    """
    assert names(source) == ["dropout_p"]


def test_constants_stay_defined_at_import(tmp_path):
    source = textwrap.dedent(
        """
        from sklearn.svm import SVC
        C_VALUE = 1.0
        def build(c=C_VALUE):
            return SVC(C=c)
        model = SVC(C=C_VALUE)
        score = model.fit([[0], [1]], [0, 1]).score([[0], [1]], [0, 1])
        """
    )
    code = rewrite(detect("m.py", source=source))
    namespace: dict = {}
    exec(compile(code, "m.py", "exec"), namespace)
    assert namespace["optml_objective"](c_value=2.0) == 1.0
    assert namespace["model"].C == 2.0


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("import keras\nmodel = (\n", "m.py:2:9: not valid Python: '\\(' was never closed"),
        ("import keras\nx = 'abc\n", "m.py:2:5: not valid Python: unterminated string"),
    ],
)
def test_syntax_error_names_the_line_and_column(source, where):
    with pytest.raises(ScriptSyntaxError, match=where):
        detect("m.py", source=source)


def test_unreadable_script(tmp_path):
    with pytest.raises(DetectError, match="cannot read the script"):
        detect(tmp_path / "absent.py")


def test_metric_rules_per_framework():
    def metric(source):
        m = detect("m.py", source=textwrap.dedent(source)).metric
        return m and (m.name, m.direction, m.how)

    keras_fit = """
    import keras
    model = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(1)])
    h = model.fit(x, y, epochs=2, validation_data=(xv, yv))
    """
    assert metric(keras_fit) == ("val_loss", "minimize", "fit")
    assert metric(keras_fit + "model.evaluate(xv, yv)\n") == ("loss", "minimize", "evaluate")
    torch_acc = "import torch\nval_accuracy = 0.5\nval_accuracy = correct / total\n"
    assert metric(torch_acc) == ("val_accuracy", "maximize", "value")
    sk = "from sklearn.metrics import mean_absolute_error\nerr = mean_absolute_error(a, b)\n"
    assert metric(sk) == ("mean_absolute_error", "minimize", "value")
    report = "import optml\nfrom sklearn.svm import SVC\nx = SVC().score(a, b)\noptml.report(x, direction='maximize')\n"
    assert metric(report) == ("value", "maximize", "report")
    assert metric("from sklearn.svm import SVC\nSVC(C=1.0).fit(a, b)\n") is None


def test_default_space_comes_from_the_same_table():
    space = default_space("sklearn.ensemble.RandomForestClassifier")
    assert space["n_estimators"] == {"logint": [10, 500]}
    assert space["max_features"] == {"uniform": [0.1, 1.0]}
    assert default_space("no.such.Class") == {}


def test_command_line_option_defaults_are_hyperparameters():
    source = """
    from argparse import ArgumentParser
    import torch
    parser = ArgumentParser()
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("-m", "--mom", dest="momentum", type=float, default=0.9)
    parser.add_argument("--wd", type=float, default=1e-4)
    parser.add_argument("--wd", type=float, default=1e-3)   # defined twice: ambiguous, left alone
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    opt = torch.optim.SGD(params, lr=args.learning_rate, momentum=args.momentum, weight_decay=args.wd)
    val_loss = evaluate()
    """
    found = detect("m.py", source=textwrap.dedent(source))
    assert [hp.name for hp in found.hyperparameters] == ["learning_rate", "momentum"]
    assert "parser.parse_args([])" in rewrite(found)


def test_a_users_metadata_rows_are_detected(tmp_path):
    from optml.detect._metadata import COLUMNS

    extra = tmp_path / "mine.csv"
    extra.write_text(
        ",".join(COLUMNS)
        + "\nsklearn.linear_model.SGDClassifier,alpha,loguniform,-1,LinearModel,n,1e-6,1e-1,False,\n"
    )
    source = "from sklearn.linear_model import SGDClassifier\nprint(SGDClassifier(alpha=1e-4).fit(X, y).score(X, y))\n"
    assert detect("m.py", source=source).hyperparameters == []
    found = detect("m.py", source=source, metadata=extra).hyperparameters
    assert [(hp.name, hp.distribution) for hp in found] == [
        ("sgdclassifier__alpha", {"loguniform": [1e-6, 0.1]})
    ]
    assert found[0].why == f"sklearn.linear_model.SGDClassifier.alpha ({extra}:2)"
