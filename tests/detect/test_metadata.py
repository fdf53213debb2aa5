"""The shipped metadata table and the user's extension of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from optml.detect import MetadataError
from optml.detect._metadata import COLUMNS, load_table

HEADER = ",".join(COLUMNS)


def test_shipped_table_has_the_papers_columns_and_required_classes():
    text = (Path(__import__("optml").__file__).parent / "detect" / "metadata.csv").read_text()
    assert text.splitlines()[0] == HEADER
    table = load_table()
    needed = {
        "keras.layers.Dense": {"units", "activation"},
        "keras.layers.Conv1D": {"filters"},
        "keras.layers.Conv2D": {"filters"},
        "keras.layers.LSTM": {"units"},
        "keras.layers.GRU": {"units"},
        "keras.layers.Dropout": {"rate"},
        "keras.layers.BatchNormalization": {"momentum"},
        "keras.layers.Activation": {"activation"},
        "keras.optimizers.SGD": {"learning_rate", "momentum"},
        "keras.Model.fit": {"epochs", "batch_size"},
        "keras.Model.compile": {"loss", "optimizer"},
        "torch.nn.Linear": {"in_features", "out_features"},
        "torch.nn.Conv2d": {"out_channels"},
        "torch.nn.Dropout": {"p"},
        "torch.optim.SGD": {"lr", "momentum", "weight_decay"},
        "torch.optim.Adam": {"lr", "weight_decay"},
        "torch.utils.data.DataLoader": {"batch_size"},
        "torch.epoch_loop": {"epochs"},
        "sklearn.svm.SVC": {"C", "gamma", "kernel"},
        "sklearn.svm.SVR": {"C", "epsilon"},
        "sklearn.ensemble.RandomForestClassifier": {"n_estimators", "max_depth"},
        "sklearn.ensemble.GradientBoostingClassifier": {"learning_rate", "n_estimators"},
        "sklearn.ensemble.HistGradientBoostingClassifier": {"learning_rate", "max_iter"},
        "sklearn.neighbors.KNeighborsClassifier": {"n_neighbors"},
        "sklearn.linear_model.LogisticRegression": {"C"},
        "sklearn.neural_network.MLPClassifier": {"hidden_layer_sizes", "alpha"},
        "xgboost.XGBClassifier": {"max_depth", "learning_rate"},
        "lightgbm.LGBMClassifier": {"num_leaves", "learning_rate"},
    }
    for layer, params in needed.items():
        assert params <= {r.param for r in table.for_layer(layer)}, layer


def test_ranges_keep_the_current_value_reachable():
    table = load_table()
    units = table.row("keras.layers.Dense", "units")
    assert units.distribution(128) == {"logint": [16, 512]}
    assert units.distribution(1024) == {"logint": [16, 1024]}
    c = table.row("sklearn.svm.SVC", "C", 1.0)
    assert c.distribution(1e5) == {"loguniform": [1e-3, 1e5]}
    # A string the table does not list is not proposed: it cannot know what to swap it with.
    loss = table.row("keras.Model.compile", "loss", "x")
    assert loss.distribution("sparse_categorical_crossentropy") is None
    # SVC's gamma takes a number or a string: the row follows the value.
    assert table.row("sklearn.svm.SVC", "gamma", "auto").hptype == "choice"
    assert table.row("sklearn.svm.SVC", "gamma", 0.1).hptype == "loguniform"


def test_user_csv_adds_and_replaces_rows(tmp_path):
    extra = tmp_path / "mine.csv"
    extra.write_text(
        HEADER
        + "\nsklearn.svm.SVC,C,loguniform,-1,BaseEstimator,n,0.1,10,False,"
        + "\nmylib.Net,width,qloguniform,0,Module,n,4,64,True,\n"
    )
    table = load_table(extra)
    assert table.row("sklearn.svm.SVC", "C", 1.0).distribution(1.0) == {"loguniform": [0.1, 10.0]}
    assert table.row("mylib.Net", "width").source == f"{extra}:3"
    assert table.row("keras.layers.Dense", "units") is not None  # the shipped rows stay
    assert (
        load_table().row("sklearn.svm.SVC", "C", 1.0).min == 1e-3
    )  # the shipped table is unchanged


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("Layer,ParamName\nx,y\n", "the header lacks Hptype"),
        (HEADER + "\na.B,x,normal,0,,n,0,1,False,\n", r"mine.csv:2: Hptype 'normal' is not one of"),
        (
            HEADER + "\na.B,x,uniform,first,,n,0,1,False,\n",
            "mine.csv:2: ParamOrder must be an integer",
        ),
        (HEADER + "\na.B,x,uniform,0,,n,1,0,False,\n", "mine.csv:2: uniform needs Min <= Max"),
        (HEADER + "\na.B,x,loguniform,0,,n,0,1,False,\n", "mine.csv:2: loguniform needs Min > 0"),
        (HEADER + "\na.B,x,choice,0,,s,,,False,\n", "mine.csv:2: a choice needs its values in Set"),
        (HEADER + "\na.B,x,uniform,0,,n,zero,1,False,\n", "mine.csv:2: Min must be a number"),
    ],
)
def test_malformed_user_csv_is_one_clear_error(tmp_path, body, message):
    extra = tmp_path / "mine.csv"
    extra.write_text(body)
    with pytest.raises(MetadataError, match=message):
        load_table(extra)


def test_missing_user_csv(tmp_path):
    with pytest.raises(MetadataError, match="cannot read the metadata table"):
        load_table(tmp_path / "absent.csv")
