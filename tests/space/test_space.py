"""Search space parsing (dicts, scipy, YAML forms, hyperparameter files) and unit-cube encoding."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from optml.errors import SpaceError
from optml.space import Categorical, Float, Int, Space, parse_space, read_grid_file


def test_scipy_distributions_are_read_as_scipy_defines_them() -> None:
    space = parse_space(
        {
            "dropout": stats.uniform(0.1, 0.4),
            "lr": stats.loguniform(1e-4, 1e-1),
            "units": stats.randint(8, 65),
            "act": ["relu", "tanh"],
            "layers": range(1, 5),
            "even": range(2, 11, 2),
        }
    )
    assert space["dropout"] == Float("dropout", 0.1, 0.5)
    assert space["lr"] == Float("lr", 1e-4, 1e-1, log=True)
    assert space["units"] == Int("units", 8, 64)
    assert space["act"] == Categorical("act", ("relu", "tanh"))
    assert space["layers"] == Int("layers", 1, 4)
    assert space["even"].values() == [2, 4, 6, 8, 10]


@pytest.mark.parametrize("dist", [stats.uniform(1, 0), stats.uniform(5, -2)])
def test_empty_or_inverted_scipy_uniform_explains_the_convention(dist) -> None:
    with pytest.raises(SpaceError) as info:
        parse_space({"dropout": dist})
    message = str(info.value)
    assert message.startswith("space.dropout:")
    assert "uniform(loc, scale) covers [loc, loc + scale]" in message


def test_unsupported_scipy_distribution_names_what_is_accepted() -> None:
    with pytest.raises(SpaceError, match="space.x: the scipy distribution 'norm' is not supported"):
        parse_space({"x": stats.norm(0, 1)})


def test_yaml_forms() -> None:
    space = parse_space(
        {
            "a": {"uniform": [0, 1]},
            "b": {"loguniform": [1e-3, 1]},
            "c": {"int": [1, 10]},
            "d": {"logint": [1, 1024]},
            "e": {"int": [0, 10], "step": 5},
            "f": {"choice": [True, False]},
            "g": 3,
        }
    )
    assert space["b"].log and space["d"].log
    assert space["e"].values() == [0, 5, 10]
    assert space["g"].choices == (3,)


@pytest.mark.parametrize(
    ("definition", "match"),
    [
        ({"x": {"uniform": [1, 0]}}, "space.x: the range"),
        ({"x": {"loguniform": [0, 1]}}, "space.x: a log-scale range must be positive"),
        ({"x": {"uniform": [0]}}, r"space.x: \{uniform: ...\} needs a \[low, high\] pair"),
        ({"x": {"int": [1.5, 3]}}, "space.x: low must be an integer"),
        ({"x": {"uniform": [0, 1], "lg": True}}, r"space.x: unknown key\(s\) \['lg'\]"),
        ({"x": {"gaussian": [0, 1]}}, "space.x: cannot read"),
        ({"x": []}, "space.x: a list of choices must not be empty"),
        ({"x": [1, 1.0]}, "space.x: the choices"),
        ({"x": [[1, 2]]}, "space.x: choice"),
        ({}, "the search space is empty"),
        ("lr: 0.1", "expected a mapping"),
    ],
)
def test_malformed_space_names_the_field(definition, match) -> None:
    with pytest.raises(SpaceError, match=match):
        parse_space(definition)


# One parameter of every kind and scale; a choice list mixing strings, a number and None.
ALL_KINDS = Space(
    [
        Float("x", -3, 7),
        Float("lr", 1e-5, 1.0, log=True),
        Int("n", 1, 9),
        Int("u", 1, 512, log=True),
        Int("s", 0, 100, step=10),
        Categorical("c", ("a", 2, None)),
    ]
)


def test_unit_cube_round_trip(rng) -> None:
    space = ALL_KINDS
    for config in space.sample(rng, 200):
        u = space.encode(config)
        assert np.all((u >= 0) & (u <= 1))
        back = space.decode(u)
        assert back["n"] == config["n"] and back["u"] == config["u"] and back["c"] == config["c"]
        assert back["s"] == config["s"]
        assert back["x"] == pytest.approx(config["x"]) and back["lr"] == pytest.approx(config["lr"])
        assert space.validate(back) == back


def test_sampling_covers_every_integer_and_choice_evenly(rng) -> None:
    space = Space([Int("n", 1, 4), Categorical("c", ("a", "b"))])
    configs = space.sample(rng, 4000)
    counts = np.bincount([c["n"] for c in configs])[1:]
    assert len(counts) == 4 and counts.min() > 800
    assert {c["c"] for c in configs} == {"a", "b"}


def test_log_sampling_is_uniform_in_log_space(rng) -> None:
    space = Space([Float("lr", 1e-4, 1.0, log=True)])
    values = np.array([c["lr"] for c in space.sample(rng, 4000)])
    assert 0.4 < np.mean(values < 1e-2) < 0.6  # half the decades lie below 1e-2


def test_grid_is_the_full_product_in_order() -> None:
    space = parse_space({"lr": [0.1, 0.5], "n": range(1, 4)})
    assert space.grid_size == 6
    assert list(space.grid())[:3] == [{"lr": 0.1, "n": 1}, {"lr": 0.1, "n": 2}, {"lr": 0.1, "n": 3}]
    with pytest.raises(SpaceError, match=r"grid search needs a finite space, but \['x'\]"):
        list(parse_space({"x": {"uniform": [0, 1]}}).grid())


def test_validate_names_missing_unknown_and_out_of_range() -> None:
    space = parse_space({"a": {"int": [1, 3]}, "b": ["x", "y"]})
    with pytest.raises(SpaceError, match=r"missing \['b'\]"):
        space.validate({"a": 1})
    with pytest.raises(SpaceError, match=r"unknown \['c'\]"):
        space.validate({"a": 1, "b": "x", "c": 0})
    with pytest.raises(SpaceError, match="a=7 is outside the space"):
        space.validate({"a": 7, "b": "x"})
    assert space.validate({"a": 2.0, "b": "y"}) == {"a": 2, "b": "y"}


def test_space_survives_storage_round_trip() -> None:
    space = parse_space(
        {"a": {"logint": [1, 64]}, "b": [True, "x", 2.5], "c": {"loguniform": [1e-3, 1]}}
    )
    assert Space.from_dict(space.to_dict()) == space


def test_hyperparameter_file_with_header(tmp_path) -> None:
    path = tmp_path / "hp.txt"
    path.write_text("# learning_rate network_size\n0.001 2\n\n0.001 8\n# comment\n0.5 2\n")
    space, rows = read_grid_file(path)
    assert rows == [
        {"learning_rate": 0.001, "network_size": 2},
        {"learning_rate": 0.001, "network_size": 8},
        {"learning_rate": 0.5, "network_size": 2},
    ]
    assert space["learning_rate"].choices == (0.001, 0.5)
    assert space["network_size"].choices == (2, 8)


def test_hyperparameter_file_with_given_columns_and_strings(tmp_path) -> None:
    path = tmp_path / "hp.txt"
    path.write_text("relu 1e-3\ntanh 0.01\n")
    _, rows = read_grid_file(path, columns=["act", "lr"])
    assert rows == [{"act": "relu", "lr": 0.001}, {"act": "tanh", "lr": 0.01}]


@pytest.mark.parametrize(
    ("text", "columns", "match"),
    [
        ("0.1 2\n0.2\n", ["a", "b"], r"hp.txt:2: expected 2 values \(a b\), found 1"),
        ("0.1 2\n", None, r"hp.txt:1: no column names"),
        ("# a b\n", None, "has no configurations"),
        ("# a a\n1 2\n", None, "repeat a name"),
    ],
)
def test_malformed_hyperparameter_file_names_file_and_line(tmp_path, text, columns, match) -> None:
    path = tmp_path / "hp.txt"
    path.write_text(text)
    with pytest.raises(SpaceError, match=match):
        read_grid_file(path, columns)


def test_missing_hyperparameter_file(tmp_path) -> None:
    with pytest.raises(SpaceError, match="cannot read the hyperparameter file"):
        read_grid_file(tmp_path / "nope.txt", ["a"])


def test_encode_many_matches_encode(rng) -> None:
    space = ALL_KINDS
    configs = space.sample(rng, 50)
    assert np.allclose(space.encode_many(configs), np.array([space.encode(c) for c in configs]))
    assert space.encode_many([]).shape == (0, 6)
    with pytest.raises(SpaceError, match="'zz' is not one of"):
        space.encode_many([{**configs[0], "c": "zz"}])


def test_a_step_on_a_continuous_range_is_refused_not_ignored() -> None:
    with pytest.raises(SpaceError, match=r"space.x: 'step' is for integer ranges"):
        parse_space({"x": {"uniform": [0, 1], "step": 0.1}})


def test_encode_many_of_linear_floats_matches_encode(rng) -> None:
    # Linear floats are encoded in one pass over every column; integers given for a float
    # are numbers too.
    space = Space([Float("a", -5.0, 10.0), Float("b", 0.0, 1e-3), Float("c", 2.0, 3.0)])
    configs = space.sample(rng, 30) + [{"a": 3, "b": 0, "c": 2}]
    np.testing.assert_array_equal(
        space.encode_many(configs), np.array([space.encode(c) for c in configs])
    )
    assert space.encode_many([]).shape == (0, 3)
    with pytest.raises(KeyError):
        space.encode_many([{"a": 1.0, "b": 0.0}])
