"""The TPE sampler: better than random on small problems, deterministic, batch- and type-aware."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from optml.errors import SpecError
from optml.samplers import SearchContext, TrialMemo, make_sampler
from optml.samplers._base import Metric, Sampler
from optml.samplers._simple import SobolSampler
from optml.samplers._tpe import TPESampler, _Dims, _Parzen
from optml.space import Categorical, Float, Int, Space
from optml.trial import Trial, TrialState

MIXED = Space(
    [
        Float("x", -5.0, 5.0),
        Float("lr", 1e-6, 1.0, log=True),
        Int("units", 1, 256, log=True),
        Int("layers", 1, 6),
        Categorical("act", ("relu", "tanh", "sigmoid")),
    ]
)


def _mixed_loss(c: dict[str, Any]) -> float:
    return (
        (c["x"] - 1.0) ** 2 / 25
        + (math.log10(c["lr"]) + 4) ** 2 / 10
        + (math.log2(c["units"]) - 5) ** 2 / 20
        + abs(c["layers"] - 3) / 3
        + {"relu": 0.0, "tanh": 0.5, "sigmoid": 1.0}[c["act"]]
    )


def _branin(c: dict[str, Any]) -> float:
    x, y = c["x"], c["y"]
    b, cc, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (y - b * x**2 + cc * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10


def _quadratic(c: dict[str, Any]) -> float:
    return sum((v - 0.3) ** 2 for v in c.values())


def _run(
    sampler: Sampler,
    space: Space,
    loss: Callable[[dict[str, Any]], float],
    seed: int,
    n: int,
    batch: int = 1,
) -> list[Trial]:
    rng = np.random.default_rng(seed)
    trials: list[Trial] = []
    while len(trials) < n:
        ctx = SearchContext(space=space, trials=trials, seed=seed)
        for config in sampler.propose(ctx, batch, rng):
            value = loss(config)
            trials.append(Trial(len(trials), TrialState.COMPLETE, config, value=value))
    return trials


def _done(
    space: Space, configs: list[dict[str, Any]], loss: Callable[[dict[str, Any]], float]
) -> list[Trial]:
    return [Trial(i, TrialState.COMPLETE, c, value=loss(c)) for i, c in enumerate(configs)]


def _best(trials: list[Trial]) -> float:
    return min(t.value for t in trials if t.value is not None)


QUADRATIC = Space([Float(f"x{i}", -1.0, 1.0) for i in range(3)])
BRANIN = Space([Float("x", -5.0, 10.0), Float("y", 0.0, 15.0)])


@pytest.mark.parametrize("multivariate", [False, True])
@pytest.mark.parametrize(
    ("space", "loss"), [(QUADRATIC, _quadratic), (BRANIN, _branin)], ids=["quadratic", "branin"]
)
def test_beats_random_search_on_most_seeds(
    space: Space, loss: Callable[..., float], multivariate: bool
) -> None:
    wins = 0
    for seed in range(5):
        tpe = _best(_run(TPESampler(multivariate=multivariate), space, loss, seed, 50))
        wins += tpe < _best(_run(make_sampler("random"), space, loss, seed, 50))
    assert wins >= 4


def test_beats_random_on_a_mixed_space_in_batches() -> None:
    wins = 0
    for seed in range(5):
        tpe = _best(_run(TPESampler(), MIXED, _mixed_loss, seed, 60, batch=4))
        wins += tpe < _best(_run(make_sampler("random"), MIXED, _mixed_loss, seed, 60))
    assert wins >= 4


def test_log_parameters_are_searched_in_log_space() -> None:
    # The optimum lr=1e-4 sits at 1/3 of the log range; uniform search would put 0.01% of its
    # points below 1e-4, log-uniform a third.
    trials = _run(TPESampler(), MIXED, _mixed_loss, seed=0, n=60)
    late = np.log10([t.params["lr"] for t in trials[30:]])
    assert abs(np.median(late) + 4) < 1.5
    units = [t.params["units"] for t in trials[30:]]
    assert 8 <= np.median(units) <= 128


def test_proposal_types_follow_the_space() -> None:
    trials = _done(MIXED, MIXED.sample(np.random.default_rng(0), 30), _mixed_loss)
    ctx = SearchContext(space=MIXED, trials=trials)
    for multivariate in (False, True):
        for config in TPESampler(multivariate=multivariate).propose(
            ctx, 16, np.random.default_rng(1)
        ):
            assert type(config["x"]) is float and -5 <= config["x"] <= 5
            assert type(config["lr"]) is float and 1e-6 <= config["lr"] <= 1
            assert type(config["units"]) is int and 1 <= config["units"] <= 256
            assert type(config["layers"]) is int and 1 <= config["layers"] <= 6
            assert config["act"] in ("relu", "tanh", "sigmoid")
            assert MIXED.validate(config) == config


@pytest.mark.parametrize("multivariate", [False, True])
def test_fixed_rng_gives_the_same_batch(multivariate: bool) -> None:
    trials = _done(MIXED, MIXED.sample(np.random.default_rng(0), 25), _mixed_loss)
    ctx = SearchContext(space=MIXED, trials=trials)
    first = TPESampler(multivariate=multivariate).propose(ctx, 5, np.random.default_rng(3))
    again = make_sampler(TPESampler(multivariate=multivariate).to_spec()).propose(
        ctx, 5, np.random.default_rng(3)
    )
    other = TPESampler(multivariate=multivariate).propose(ctx, 5, np.random.default_rng(4))
    assert first == again
    assert first != other


def test_batches_hold_no_duplicates_and_avoid_pending() -> None:
    space = Space([Int("a", 0, 9), Categorical("b", ("x", "y", "z"))])  # 30 points
    configs = space.sample(np.random.default_rng(0), 40)
    unique = list({space.key(c): c for c in configs}.values())[:15]
    trials = _done(space, unique[:12], lambda c: (c["a"] - 2) ** 2 + (c["b"] != "y"))
    trials += [Trial(12 + i, TrialState.RUNNING, c) for i, c in enumerate(unique[12:])]
    ctx = SearchContext(space=space, trials=trials)
    batch = TPESampler(n_startup=5).propose(ctx, 10, np.random.default_rng(0))
    keys = [space.key(c) for c in batch]
    assert len(batch) == 10
    assert len(set(keys)) == 10
    assert not set(keys) & ctx.seen_keys()


def test_finite_space_is_exhausted_then_nothing_more() -> None:
    space = Space([Categorical("a", (1, 2, 3)), Int("b", 0, 1)])
    trials = _run(TPESampler(n_startup=2), space, lambda c: c["a"] + c["b"], seed=0, n=6, batch=2)
    assert len({space.key(t.params) for t in trials}) == 6
    ctx = SearchContext(space=space, trials=trials)
    assert TPESampler(n_startup=2).propose(ctx, 3, np.random.default_rng(0)) == []


def test_pending_points_act_as_bad_observations() -> None:
    # All good points sit near x=0.3; a pending point there should push proposals away from it.
    space = Space([Float("x", 0.0, 1.0)])
    rng = np.random.default_rng(0)
    xs = rng.random(30)
    trials = _done(space, [{"x": float(x)} for x in xs], lambda c: (c["x"] - 0.3) ** 2)
    best = min(trials, key=lambda t: t.value or 0.0).params["x"]
    liars = [
        Trial(30 + i, TrialState.RUNNING, {"x": best + d}) for i, d in enumerate((-0.01, 0.0, 0.01))
    ]
    sampler = TPESampler()
    alone = sampler.propose(SearchContext(space=space, trials=trials), 8, np.random.default_rng(1))
    crowded = sampler.propose(
        SearchContext(space=space, trials=trials + liars), 8, np.random.default_rng(1)
    )
    near = lambda batch: sum(abs(c["x"] - best) < 0.02 for c in batch)  # noqa: E731
    assert near(crowded) < near(alone)


def test_startup_uses_the_quasi_random_sequence() -> None:
    trials = _done(MIXED, MIXED.sample(np.random.default_rng(0), 9), _mixed_loss)
    ctx = SearchContext(space=MIXED, trials=trials, seed=4)
    tpe = TPESampler(n_startup=10).propose(ctx, 3, np.random.default_rng(2))
    assert tpe == SobolSampler().propose(ctx, 3, np.random.default_rng(2))


def test_all_trials_failed_or_unusable() -> None:
    configs = MIXED.sample(np.random.default_rng(0), 20)
    trials = [Trial(i, TrialState.FAILED, c, error="boom") for i, c in enumerate(configs[:14])]
    trials += [
        Trial(14 + i, TrialState.COMPLETE, c, value=v)
        for i, (c, v) in enumerate(
            zip(configs[14:], [math.nan, math.inf, -math.inf, None, math.nan, 1.0], strict=True)
        )
    ]
    ctx = SearchContext(space=MIXED, trials=trials)
    assert len(ctx.completed) == 1
    for n_startup in (1, 10):  # the model with a single good point, and the start-up fallback
        batch = TPESampler(n_startup=n_startup).propose(ctx, 6, np.random.default_rng(0))
        assert len(batch) == 6
        assert len({MIXED.key(c) for c in batch}) == 6
        for config in batch:
            assert MIXED.validate(config) == config
            assert all(math.isfinite(v) for v in config.values() if isinstance(v, float))


def test_maximise_is_minimising_the_negation() -> None:
    configs = MIXED.sample(np.random.default_rng(0), 30)
    low = [Trial(i, TrialState.COMPLETE, c, value=_mixed_loss(c)) for i, c in enumerate(configs)]
    high = [Trial(i, TrialState.COMPLETE, c, value=-_mixed_loss(c)) for i, c in enumerate(configs)]
    a = TPESampler().propose(SearchContext(space=MIXED, trials=low), 4, np.random.default_rng(0))
    b = TPESampler().propose(
        SearchContext(space=MIXED, trials=high, metrics=(Metric("value", "maximize"),)),
        4,
        np.random.default_rng(0),
    )
    assert a == b


def test_categorical_only_space_concentrates_on_the_best_choices() -> None:
    choices = tuple("abcdefgh")
    space = Space([Categorical(f"c{i}", choices) for i in range(3)])  # 512 points
    cost = {ch: i / 7 for i, ch in enumerate("dbhaecgf")}  # "d" is best everywhere
    loss = lambda c: sum(cost[v] for v in c.values())  # noqa: E731
    hits = 0
    for seed in range(3):
        trials = _run(TPESampler(), space, loss, seed, 60, batch=2)
        assert len({space.key(t.params) for t in trials}) == 60
        hits += sum(v == "d" for t in trials[30:] for v in t.params.values())
    # Random search would pick "d" in 1/8 of the values.
    assert hits / (3 * 30 * 3) > 0.3


@pytest.mark.parametrize("multivariate", [False, True])
def test_densities_are_normalised(multivariate: bool) -> None:
    space = Space(
        [Int("k", 1, 40, log=True), Int("j", 0, 9, step=3), Categorical("c", ("p", "q", "r"))]
    )
    configs = space.sample(np.random.default_rng(0), 7)
    grid = np.array([space.encode(c) for c in space.grid()])
    density = _Parzen.fit(space.encode_many(configs), _Dims(space), 1.0, multivariate)
    assert np.exp(density.log_pdf(grid)).sum() == pytest.approx(1.0, abs=1e-9)
    # A float dimension integrates to one over [0, 1] (midpoint rule).
    line = Space([Float("x", 0.0, 1.0)])
    density = _Parzen.fit(np.array([[0.02], [0.5], [0.51]]), _Dims(line), 1.0, multivariate)
    u = (np.arange(20000) + 0.5)[:, None] / 20000
    assert np.exp(density.log_pdf(u)).mean() == pytest.approx(1.0, abs=1e-6)
    draws = density.sample(np.random.default_rng(0), 1000)
    assert draws.min() >= 0 and draws.max() <= 1


def test_multivariate_density_keeps_correlations() -> None:
    # Points on the diagonal x = y: joint components draw both coordinates from one point, so
    # draws stay near the diagonal; independent columns scatter them over the square.
    space = Space([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])
    t = np.linspace(0.05, 0.95, 30)
    points = np.column_stack([t, t])
    off = {}
    for multivariate in (False, True):
        density = _Parzen.fit(points, _Dims(space), 1.0, multivariate)
        draws = density.sample(np.random.default_rng(0), 2000)
        off[multivariate] = float(np.median(np.abs(draws[:, 0] - draws[:, 1])))
    assert off[True] < 0.5 * off[False]
    # The joint density agrees: a point on the diagonal is far likelier than one off it.
    density = _Parzen.fit(points, _Dims(space), 1.0, True)
    on_diag, off_diag = density.log_pdf(np.array([[0.4, 0.4], [0.4, 0.9]]))
    assert on_diag > off_diag + 1.0


@pytest.mark.parametrize("m", [1, 5, 150])
def test_float_density_is_the_truncated_normal_mixture(m: int) -> None:
    # The float-only path sums kernels in linear space; check it against scipy's truncated
    # normals, far into the tails included (points at the edges, narrow kernels).
    from scipy.stats import truncnorm

    space = Space([Float("a", 0.0, 1.0), Float("b", 1e-3, 1.0, log=True)])
    rng = np.random.default_rng(m)
    density = _Parzen.fit(rng.random((m, 2)), _Dims(space), 1.0, False)
    u = np.vstack([rng.random((30, 2)), [[0.0, 1.0], [1.0, 0.0]]])
    weights = density.weights
    expected = np.zeros(len(u))
    for d in range(2):
        mu, sigma = density.mu[:, d], density.sigma[:, d]
        pdf = truncnorm.pdf(u[:, d, None], -mu / sigma, (1 - mu) / sigma, loc=mu, scale=sigma)
        expected += np.log(pdf @ weights)
    np.testing.assert_allclose(density.log_pdf(u), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("m", [1, 5, 150, 300])
def test_mixed_independent_density_is_the_mixture_per_column(m: int) -> None:
    # With integers and choices the independent density sums each column's kernels in linear
    # space (cell masses, a table per categorical column); check it against scipy's truncated
    # normals and the blended choice kernels, with cells far in every kernel's tail included.
    from scipy.stats import truncnorm

    space = Space(
        [
            Float("a", 0.0, 1.0),
            Int("k", 1, 400, log=True),
            Int("j", 0, 30, step=3),
            Categorical("c", ("p", "q", "r", "s")),
        ]
    )
    rng = np.random.default_rng(m)
    points = space.encode_many(space.sample(rng, m))
    points[:, 1] = np.minimum(points[:, 1], 0.3)  # integer kernels far from the top cells
    density = _Parzen.fit(points, _Dims(space), 1.0, False)
    u = space.encode_many(space.sample(rng, 40))
    u[:4, 1] = 1.0  # the top cells of the log integer
    weights = density.weights
    expected = np.zeros(len(u))
    lower, upper = density.dims.int_cells(u[:, density.dims.num])
    for col in range(3):
        mu, sigma = density.mu[:, col], density.sigma[:, col]
        a, b = -mu / sigma, (1 - mu) / sigma
        if col == 0:
            p = truncnorm.pdf(u[:, 0, None], a, b, loc=mu, scale=sigma)
        else:
            cdf = lambda x: truncnorm.cdf(x, a, b, loc=mu, scale=sigma)  # noqa: B023, E731
            high = truncnorm.sf(lower[:, col, None], a, b, loc=mu, scale=sigma)
            low = truncnorm.sf(upper[:, col, None], a, b, loc=mu, scale=sigma)
            p = np.where(
                lower[:, col, None] > mu,
                high - low,
                cdf(upper[:, col, None]) - cdf(lower[:, col, None]),
            )
        expected += np.log(p @ weights)
    index = np.minimum((u[:, 3] * 4).astype(int), 3)
    own = density.choice[:, 0]
    prob = np.where(own[None] < 0, 0.25, 0.5 * (own[None] == index[:, None]) + 0.5 * 0.25)
    expected += np.log(prob @ weights)
    np.testing.assert_allclose(density.log_pdf(u), expected, rtol=1e-9, atol=1e-12)


def test_long_histories_are_handled() -> None:
    space = Space([Float(f"x{i}", 0.0, 1.0) for i in range(5)])
    configs = space.sample(np.random.default_rng(0), 1500)
    trials = _done(space, configs, _quadratic)
    batch = TPESampler(max_bad=64).propose(
        SearchContext(space=space, trials=trials), 4, np.random.default_rng(0)
    )
    assert len(batch) == 4
    # The proposals lean towards the optimum at 0.3 in every dimension.
    assert np.mean([_quadratic(c) for c in batch]) < np.mean([_quadratic(c) for c in configs])


def test_spec_round_trip_and_bad_options() -> None:
    sampler = TPESampler(
        n_startup=5,
        n_candidates=32,
        gamma=0.15,
        max_good=10,
        max_bad=100,
        prior_weight=2.0,
        multivariate=True,
    )
    spec = sampler.to_spec()
    assert spec["name"] == "tpe"
    assert make_sampler(spec).to_spec() == spec
    for bad in (
        {"gamma": 0},
        {"gamma": 1.5},
        {"n_startup": 0},
        {"n_candidates": 2.5},
        {"max_bad": -1},
        {"prior_weight": 0},
        {"multivariate": "yes"},
    ):
        with pytest.raises(SpecError, match="tpe"):
            TPESampler(**bad)  # type: ignore[arg-type]


def test_parameter_constraints_are_met_by_the_model_choice() -> None:
    from optml.constraints import parse_constraints

    # The optimum (0.3, 0.3) lies just inside x + y <= 0.7; the model must search along it.
    space = Space([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])
    constraints = tuple(parse_constraints(["x + y <= 0.7"]))
    rng = np.random.default_rng(0)
    trials: list[Trial] = []
    while len(trials) < 40:
        ctx = SearchContext(space=space, trials=trials, constraints=constraints)
        for config in TPESampler().propose(ctx, 2, rng):
            assert config["x"] + config["y"] <= 0.7
            trials.append(Trial(len(trials), TrialState.COMPLETE, config, value=_quadratic(config)))
    assert _best(trials) < 0.002


def _pinned_run(space: Space, loss: Callable[[dict[str, Any]], float], multivariate: bool) -> list:
    """Proposals of a short run with a memo: a pending trial, batches with liars, a trial
    finishing late (the history becomes whole), one proposal alone."""
    sampler = TPESampler(multivariate=multivariate)
    memo = TrialMemo(space)
    rng = np.random.default_rng(2026)
    configs = space.sample(rng, 15)
    trials = [Trial(i, TrialState.COMPLETE, c, value=loss(c)) for i, c in enumerate(configs[:14])]
    trials.append(Trial(14, TrialState.RUNNING, configs[14]))
    proposals: list[dict[str, Any]] = []
    for step in range(5):
        if step == 2:  # the pending trial finishes: every trial so far is finished
            trials[14] = trials[14].with_changes(state=TrialState.COMPLETE, value=loss(configs[14]))
        ctx = SearchContext(space=space, trials=list(trials), memo=memo)
        batch = sampler.propose(ctx, 1 if step == 3 else 2, np.random.default_rng([7, step]))
        proposals += batch
        trials += [
            Trial(len(trials) + i, TrialState.COMPLETE, c, value=loss(c))
            for i, c in enumerate(batch)
        ]
    return proposals


# Proposals of `_pinned_run` made by the TPE before its cost was cut (issue 14): the random
# stream and the model's arithmetic give the same points.
PINNED: dict[tuple[str, bool], list[dict[str, Any]]] = {
    ("branin", False): [
        {"x": -4.496795273432606, "y": 13.040128783346564},
        {"x": -4.397027124900465, "y": 8.656242904302138},
        {"x": -1.5497621809345232, "y": 9.973998707245896},
        {"x": 7.659237709145662, "y": 7.109848952292065},
        {"x": -3.216460525756019, "y": 2.6278616155262133},
        {"x": 7.066291139710534, "y": 0.6508209100944679},
        {"x": -0.8151272350296104, "y": 2.631716460974856},
        {"x": -2.0525617890573553, "y": 7.985211038759376},
        {"x": -2.7852340654771095, "y": 10.192846404311611},
    ],
    ("branin", True): [
        {"x": -4.528054904259997, "y": 8.402104388106507},
        {"x": 9.227224758774002, "y": 6.700232010378858},
        {"x": -1.285084638375658, "y": 8.437473772904626},
        {"x": 9.347094521288259, "y": 3.281583239372617},
        {"x": -3.9262581705016584, "y": 13.12394511823055},
        {"x": 8.70389391348496, "y": 1.8598804964351463},
        {"x": 9.71748573349297, "y": 2.539154203961412},
        {"x": 8.28392578085373, "y": 0.4118930578273855},
        {"x": 9.250977638067196, "y": 2.2276484807744197},
    ],
    ("mixed", False): [
        {
            "x": -4.772057256159187,
            "lr": 1.0525399200424375e-05,
            "units": 71,
            "layers": 3,
            "act": "relu",
        },
        {
            "x": -1.4320571576244978,
            "lr": 0.0002016069954150175,
            "units": 1,
            "layers": 3,
            "act": "sigmoid",
        },
        {
            "x": -1.1362693401064385,
            "lr": 9.320808302114343e-05,
            "units": 13,
            "layers": 2,
            "act": "tanh",
        },
        {
            "x": -1.0731401986389262,
            "lr": 1.6550081826608944e-05,
            "units": 22,
            "layers": 2,
            "act": "relu",
        },
        {
            "x": 2.7095775119434853,
            "lr": 1.3902332253121526e-06,
            "units": 20,
            "layers": 2,
            "act": "relu",
        },
        {
            "x": 3.074615327276497,
            "lr": 8.730653380963406e-06,
            "units": 4,
            "layers": 2,
            "act": "relu",
        },
        {
            "x": 3.584668262486506,
            "lr": 1.7528996383169607e-06,
            "units": 7,
            "layers": 3,
            "act": "relu",
        },
        {
            "x": -0.9103597689423557,
            "lr": 2.1591302287412726e-06,
            "units": 15,
            "layers": 3,
            "act": "tanh",
        },
        {
            "x": 1.4211584578996934,
            "lr": 3.5103926486522144e-05,
            "units": 17,
            "layers": 2,
            "act": "relu",
        },
    ],
    ("mixed", True): [
        {
            "x": 0.9957975383311632,
            "lr": 3.078818727510709e-06,
            "units": 14,
            "layers": 4,
            "act": "relu",
        },
        {
            "x": 3.7218629640057728,
            "lr": 3.3143540062680684e-05,
            "units": 2,
            "layers": 2,
            "act": "tanh",
        },
        {
            "x": 1.6873955413982973,
            "lr": 6.419291698204817e-06,
            "units": 28,
            "layers": 3,
            "act": "relu",
        },
        {
            "x": 3.8652602704726142,
            "lr": 0.00046783051325036254,
            "units": 8,
            "layers": 2,
            "act": "relu",
        },
        {
            "x": -0.18490517653213612,
            "lr": 1.529163156150457e-06,
            "units": 30,
            "layers": 3,
            "act": "relu",
        },
        {
            "x": 1.4654317681579867,
            "lr": 8.959746389959059e-06,
            "units": 7,
            "layers": 4,
            "act": "tanh",
        },
        {
            "x": -1.4169474215613653,
            "lr": 2.9130657675969844e-05,
            "units": 19,
            "layers": 3,
            "act": "relu",
        },
        {
            "x": -1.773811663432367,
            "lr": 1.4320940656424884e-05,
            "units": 12,
            "layers": 3,
            "act": "relu",
        },
        {
            "x": 2.178675630495116,
            "lr": 2.6683423768685445e-06,
            "units": 67,
            "layers": 2,
            "act": "relu",
        },
    ],
}


@pytest.mark.parametrize("multivariate", [False, True])
@pytest.mark.parametrize("name", ["branin", "mixed"])
def test_proposals_are_those_made_before_the_cost_was_cut(name: str, multivariate: bool) -> None:
    # The cheaper proposal path (cached good density, one random draw per sample, both
    # densities scored in one pass, the memo's block read) keeps the same random stream and
    # arithmetic: the same seeds give the same points as before.
    space, loss = {"branin": (BRANIN, _branin), "mixed": (MIXED, _mixed_loss)}[name]
    got = _pinned_run(space, loss, multivariate)
    expected = PINNED[(name, multivariate)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        for key, value in e.items():
            if isinstance(value, float):
                assert g[key] == pytest.approx(value, rel=1e-12, abs=1e-300)
            else:
                assert g[key] == value


def _fresh_proposal(ctx: SearchContext, seed: int) -> list[dict[str, Any]]:
    return TPESampler().propose(ctx, 2, np.random.default_rng(seed))


def test_a_kept_good_density_proposes_what_a_fresh_sampler_would(tmp_path) -> None:
    # The sampler keeps the last good density between requests. Two controllers share one
    # SQLite study; between the first one's requests, trials finish there and the other adds
    # and finishes its own (some better than every trial so far, which changes the good group,
    # some worse, which leaves it as it was). Each request of the long-lived sampler must give
    # what a fresh sampler gives on the same history.
    import optml

    url = f"sqlite:///{tmp_path / 'tpe.db'}"
    first = optml.create_study("tpe", space=BRANIN, sampler="tpe", storage=url, seed=3)
    second = optml.load_study("tpe", storage=url)
    rng = np.random.default_rng(0)
    for config in BRANIN.sample(rng, 12):
        first.add_trial(config, _branin(config))
    sampler = first.sampler
    assert isinstance(sampler, TPESampler)
    hits = misses = 0
    for step in range(12):
        mine = first.ask(heartbeat=False)
        theirs = second.ask(heartbeat=False)
        # The other controller's trial: the best so far on even steps, the worst on odd ones.
        second.tell(theirs, -1.0 - step if step % 2 == 0 else 1e6 + step)
        first.tell(mine, _branin(mine.params))
        ctx = first.context()
        before = getattr(sampler, "_good_cache", None)
        kept = sampler.propose(ctx, 2, np.random.default_rng(step))
        after = getattr(sampler, "_good_cache", None)
        hits += before is not None and after is before
        misses += after is not before
        assert kept == _fresh_proposal(ctx, step)
    assert hits and misses  # both paths were taken


def test_the_good_density_is_fitted_again_when_its_points_change() -> None:
    # Same good points (the history grew by a worse trial): the density is reused. A better
    # trial joins the good group: it is fitted again and the proposal follows it.
    sampler = TPESampler()
    configs = BRANIN.sample(np.random.default_rng(1), 21)  # 21 and 22 trials: 5 good ones
    trials = _done(BRANIN, configs, _branin)
    sampler.propose(SearchContext(space=BRANIN, trials=trials), 1, np.random.default_rng(0))
    kept = sampler._good_cache[1]
    worse = Trial(21, TrialState.COMPLETE, {"x": 0.0, "y": 15.0}, value=1e9)
    ctx = SearchContext(space=BRANIN, trials=[*trials, worse])
    sampler.propose(ctx, 1, np.random.default_rng(0))
    assert sampler._good_cache[1] is kept
    best = Trial(22, TrialState.COMPLETE, {"x": 3.0, "y": 2.0}, value=-1e9)
    ctx = SearchContext(space=BRANIN, trials=[*trials, worse, best])
    out = sampler.propose(ctx, 1, np.random.default_rng(0))
    assert sampler._good_cache[1] is not kept
    assert out == TPESampler().propose(ctx, 1, np.random.default_rng(0))


def test_the_memo_reads_completed_trials_as_encode_many_does() -> None:
    # SearchContext.completed_units reads a whole finished history (numbers 0 .. n-1) from the
    # memo as one block, one new trial at a time or several, and otherwise trial by trial
    # (running trials leave holes, filled when they finish; a shorter snapshot comes later).
    memo = TrialMemo(MIXED)
    configs = MIXED.sample(np.random.default_rng(4), 40)
    trials = _done(MIXED, configs, _mixed_loss)
    trials[5] = Trial(5, TrialState.RUNNING, configs[5])
    for size, hole in (
        (3, True),
        (12, True),
        (13, True),
        (20, False),
        (21, False),
        (30, False),
        (10, False),
        (40, False),
    ):
        history = list(trials[:size])
        if not hole and size > 5:
            history[5] = trials[5].with_changes(state=TrialState.COMPLETE, value=1.0)
        ctx = SearchContext(space=MIXED, trials=history, memo=memo)
        done = ctx.completed
        expected = MIXED.encode_many([t.params for t in done])
        np.testing.assert_array_equal(ctx.completed_units(), expected)
        np.testing.assert_array_equal(
            SearchContext(space=MIXED, trials=history).completed_units(), expected
        )
