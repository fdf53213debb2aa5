"""The benchmark test functions reach their stated optimum at their stated point, not below."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "functions.py"


def _load():
    spec = importlib.util.spec_from_file_location("optml_bench_functions", _PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building the class
    spec.loader.exec_module(module)
    return module


FUNCTIONS = _load().FUNCTIONS


def test_enough_functions_with_mixed_dimensions():
    assert len(FUNCTIONS) >= 10
    dims = [f.dim for f in FUNCTIONS.values()]
    assert min(dims) >= 2 and max(dims) <= 10
    kinds = {p.kind for f in FUNCTIONS.values() for p in f.space}
    assert {"float", "int", "categorical"} <= kinds


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_optimum_is_reached_at_xstar(name):
    f = FUNCTIONS[name]
    f.space.validate(f.xstar)  # raises if x* lies outside the space
    assert f(f.xstar) == pytest.approx(f.fstar, abs=1e-9)
    assert f.regret(f(f.xstar)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_random_points_are_not_below_the_optimum(name):
    f = FUNCTIONS[name]
    rng = np.random.default_rng(0)
    values = np.array([f(c) for c in f.space.sample(rng, 1000)])
    assert np.all(values >= f.fstar - 1e-9)
    assert values.min() > f.fstar  # random points do not hit the optimum by chance


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_local_search_from_xstar_finds_nothing_lower(name):
    from scipy.optimize import minimize

    f = FUNCTIONS[name]
    floats = [p for p in f.space if p.kind == "float"]

    def g(z):
        config = dict(f.xstar)
        config.update(
            {p.name: float(np.clip(v, p.low, p.high)) for p, v in zip(floats, z, strict=True)}
        )
        return f(config)

    start = np.array([f.xstar[p.name] for p in floats]) + 1e-3
    result = minimize(
        g, start, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000}
    )
    assert result.fun >= f.fstar - 1e-8


HIGH_DIM = _load().HIGH_DIM


def test_the_high_dimensional_suite_spans_families_and_kinds():
    assert len(HIGH_DIM) >= 10
    assert all(10 <= f.dim <= 40 for f in HIGH_DIM.values())
    kinds = {p.kind for f in HIGH_DIM.values() for p in f.space}
    assert {"float", "int", "categorical"} <= kinds


@pytest.mark.parametrize("name", sorted(HIGH_DIM))
def test_high_dimensional_optimum_is_reached_at_xstar_and_not_by_chance(name):
    f = HIGH_DIM[name]
    f.space.validate(f.xstar)
    assert f(f.xstar) == pytest.approx(f.fstar, abs=1e-9)
    values = np.array([f(c) for c in f.space.sample(np.random.default_rng(0), 300)])
    assert np.all(values > f.fstar)
    centre = f.space.decode(np.full(f.dim, 0.5))  # where CMA-ES starts: not the optimum
    assert f(centre) > f.fstar + 1e-3
