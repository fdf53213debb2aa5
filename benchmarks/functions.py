"""Standard test functions with known optima, as OptML search spaces, for the sampler benchmarks.

Every function is minimised. ``fstar`` is its global minimum and ``xstar`` a point reaching it
(checked by ``tests/benchmarks/test_functions.py``). Regret of a run = best value found - fstar.

The continuous ones follow the usual definitions (Surjanovic & Bingham's Virtual Library of
Simulation Experiments); two mixed ones exercise integer and categorical dimensions:

- ``rosenbrock_int4``: Rosenbrock in 4-D whose last two coordinates are integers in [-5, 10].
- ``mixed_cat5``: a quadratic in 3 reals and 1 integer whose centre and floor are set by a
  categorical choice among four; only one choice reaches 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from optml.space import Categorical, Float, Int, Space


@dataclass(frozen=True)
class TestFunction:
    """A named function over an OptML space with its known global minimum."""

    __test__ = False  # not a pytest class despite the name

    name: str
    space: Space
    fn: Callable[[Mapping[str, Any]], float]
    fstar: float
    xstar: dict[str, Any]

    def __call__(self, params: Mapping[str, Any]) -> float:
        return float(self.fn(params))

    @property
    def dim(self) -> int:
        return len(self.space)

    def regret(self, value: float) -> float:
        # Clip at 0: a local search may land a hair under a published optimum's rounding.
        return max(0.0, float(value) - self.fstar)


def _vec(params: Mapping[str, Any], d: int) -> np.ndarray:
    return np.array([float(params[f"x{i}"]) for i in range(d)])


def _box(d: int, low: float, high: float) -> Space:
    return Space([Float(f"x{i}", low, high) for i in range(d)])


def _point(values: Any) -> dict[str, Any]:
    return {f"x{i}": float(v) for i, v in enumerate(values)}


# -- continuous functions -------------------------------------------------------------------


def _branin(p: Mapping[str, Any]) -> float:
    x1, x2 = _vec(p, 2)
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def _camel(p: Mapping[str, Any]) -> float:
    x1, x2 = _vec(p, 2)
    return (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann(a: np.ndarray, pp: np.ndarray) -> Callable[[Mapping[str, Any]], float]:
    d = a.shape[1]

    def f(p: Mapping[str, Any]) -> float:
        x = _vec(p, d)
        return float(-np.sum(_H_ALPHA * np.exp(-np.sum(a * (x - pp) ** 2, axis=1))))

    return f


def _rosenbrock_x(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _ackley(d: int) -> Callable[[Mapping[str, Any]], float]:
    def f(p: Mapping[str, Any]) -> float:
        x = _vec(p, d)
        return float(
            -20 * np.exp(-0.2 * np.sqrt(np.mean(x**2)))
            - np.exp(np.mean(np.cos(2 * np.pi * x)))
            + 20
            + math.e
        )

    return f


def _levy(d: int) -> Callable[[Mapping[str, Any]], float]:
    def f(p: Mapping[str, Any]) -> float:
        w = 1 + (_vec(p, d) - 1) / 4
        head = math.sin(math.pi * w[0]) ** 2
        mid = np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2))
        tail = (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2)
        return float(head + mid + tail)

    return f


def _rastrigin(d: int) -> Callable[[Mapping[str, Any]], float]:
    def f(p: Mapping[str, Any]) -> float:
        x = _vec(p, d)
        return float(10 * d + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))

    return f


_ST_XSTAR = -2.903534027771178
_ST_FSTAR_1D = -39.16616570377142


def _styblinski_tang(d: int) -> Callable[[Mapping[str, Any]], float]:
    def f(p: Mapping[str, Any]) -> float:
        x = _vec(p, d)
        return float(0.5 * np.sum(x**4 - 16 * x**2 + 5 * x))

    return f


# Each scalable family: its box, function, minimum value and minimiser at dimension d.
_FAMILIES: dict[str, Callable[[int], tuple[tuple[float, float], Any, float, list[float]]]] = {
    "ackley": lambda d: ((-32.768, 32.768), _ackley(d), 0.0, [0.0] * d),
    "levy": lambda d: ((-10, 10), _levy(d), 0.0, [1.0] * d),
    "rastrigin": lambda d: ((-5.12, 5.12), _rastrigin(d), 0.0, [0.0] * d),
    "rosenbrock": lambda d: ((-5, 10), lambda p: _rosenbrock_x(_vec(p, d)), 0.0, [1.0] * d),
    "styblinski": lambda d: ((-5, 5), _styblinski_tang(d), d * _ST_FSTAR_1D, [_ST_XSTAR] * d),
}


def _scaled(family: str, d: int) -> TestFunction:
    """The test function ``{family}{d}``, e.g. ``_scaled("ackley", 5)`` is Ackley-5."""
    (low, high), fn, fstar, xstar = _FAMILIES[family](d)
    return TestFunction(f"{family}{d}", _box(d, low, high), fn, fstar, _point(xstar))


# -- mixed functions ------------------------------------------------------------------------


def _rosenbrock_int(p: Mapping[str, Any]) -> float:
    x = np.array([float(p["x0"]), float(p["x1"]), float(p["k2"]), float(p["k3"])])
    return _rosenbrock_x(x)


_CAT_SHIFT = {"a": 0.0, "b": 2.0, "c": -1.5, "d": 3.0}
_CAT_FLOOR = {"a": 0.8, "b": 0.4, "c": 0.0, "d": 1.5}
_CAT_K = {"a": 4, "b": 10, "c": 13, "d": 17}


def _mixed_cat(p: Mapping[str, Any]) -> float:
    c = str(p["c"])
    x = _vec(p, 3)
    centre = _CAT_SHIFT[c] + 0.5 * np.arange(3)
    return float(
        _CAT_FLOOR[c] + np.sum((x - centre) ** 2) / 4 + ((int(p["k"]) - _CAT_K[c]) / 4) ** 2
    )


def _build() -> dict[str, TestFunction]:
    fns = [
        TestFunction(
            "branin",
            Space([Float("x0", -5, 10), Float("x1", 0, 15)]),
            _branin,
            0.39788735772973816,
            _point([math.pi, 2.275]),
        ),
        TestFunction(
            "camel6",
            Space([Float("x0", -3, 3), Float("x1", -2, 2)]),
            _camel,
            -1.0316284534898774,
            _point([0.08984201368301331, -0.7126564032704135]),
        ),
        TestFunction(
            "hartmann3",
            _box(3, 0, 1),
            _hartmann(_H3_A, _H3_P),
            -3.862779787332663,
            _point([0.11458888932421674, 0.5556488889726049, 0.8525469795448206]),
        ),
        TestFunction(
            "hartmann6",
            _box(6, 0, 1),
            _hartmann(_H6_A, _H6_P),
            -3.3223680114155147,
            _point([0.20168952, 0.15001069, 0.47687398, 0.27533243, 0.31165162, 0.65730054]),
        ),
        _scaled("rosenbrock", 4),
        _scaled("ackley", 5),
        _scaled("levy", 4),
        _scaled("rastrigin", 3),
        _scaled("styblinski", 8),
        TestFunction(
            "rosenbrock_int4",
            Space([Float("x0", -5, 10), Float("x1", -5, 10), Int("k2", -5, 10), Int("k3", -5, 10)]),
            _rosenbrock_int,
            0.0,
            {"x0": 1.0, "x1": 1.0, "k2": 1, "k3": 1},
        ),
        TestFunction(
            "mixed_cat5",
            Space(
                [
                    Float("x0", -5, 5),
                    Float("x1", -5, 5),
                    Float("x2", -5, 5),
                    Int("k", 0, 20),
                    Categorical("c", ("a", "b", "c", "d")),
                ]
            ),
            _mixed_cat,
            0.0,
            {"x0": -1.5, "x1": -1.0, "x2": -0.5, "k": 13, "c": "c"},
        ),
    ]
    return {f.name: f for f in fns}


def _build_holdout() -> dict[str, TestFunction]:
    """Functions kept out of the suite, to check that a change tuned on it generalises: other
    dimensions of the suite's families, and optima on the boundary of the box."""

    def weighted_slope(p: Mapping[str, Any]) -> float:
        return float(np.sum(_vec(p, 4) * np.arange(1, 5)))

    def edge_valley(p: Mapping[str, Any]) -> float:
        x = _vec(p, 5)
        return float(np.sum((x[1:] - 0.3) ** 2) + 2.0 * x[0])

    fns = [
        _scaled("ackley", 3),
        _scaled("levy", 6),
        _scaled("rastrigin", 5),
        _scaled("styblinski", 4),
        _scaled("rosenbrock", 6),
        # Optimum in a corner, in a corner, and on one face.
        TestFunction(
            "sphere_corner6",
            _box(6, 0, 1),
            lambda p: float(np.sum((_vec(p, 6) - 1.0) ** 2)),
            0.0,
            _point([1] * 6),
        ),
        TestFunction("slope_corner4", _box(4, 0, 1), weighted_slope, 0.0, _point([0] * 4)),
        TestFunction(
            "edge_valley5", _box(5, 0, 1), edge_valley, 0.0, _point([0, 0.3, 0.3, 0.3, 0.3])
        ),
    ]
    return {f.name: f for f in fns}


FUNCTIONS: dict[str, TestFunction] = _build()
# Not in the suite's default runs and reports; pass their names to ``--functions``.
HOLDOUT: dict[str, TestFunction] = _build_holdout()


def get_function(name: str) -> TestFunction:
    found = FUNCTIONS.get(name) or HOLDOUT.get(name)
    if found is None:
        known = sorted(FUNCTIONS) + sorted(HOLDOUT)
        raise KeyError(f"unknown test function {name!r}; choose from {known}")
    return found


# -- The GP's high-dimensional suite (issue 14) ----------------------------------------------
# Five families in 10 and 20 dimensions, run with --budget 150 to judge what the GP does above
# ten dimensions (its trust region). Held out of the default runs like the functions above.
GP_HIGHDIM: dict[str, TestFunction] = {
    f.name: f
    for f in (
        _scaled(family, d)
        for d in (10, 20)
        for family in ("levy", "rastrigin", "ackley", "rosenbrock", "styblinski")
    )
}
for _name, _f in GP_HIGHDIM.items():
    HOLDOUT.setdefault(_name, _f)


# -- high-dimensional suite (CMA-ES, issue 14) ----------------------------------------------
#
# 10 to 40 dimensions, for ``bench_cmaes.py``. Functions whose optimum sits at the centre of
# their box (Ackley, Rastrigin, the ellipsoid) are shifted by a fixed vector, so that a search
# that starts at the centre does not start at the optimum.

_HD_RNG = np.random.default_rng(14)


def _shift(d: int, half: float) -> np.ndarray:
    """A fixed offset of each coordinate, within 40 % of the half-range ``half``."""
    return np.round(_HD_RNG.uniform(-0.4, 0.4, d) * half, 3)


def _shifted(family: str, d: int, half: float) -> TestFunction:
    (low, high), fn, fstar, _ = _FAMILIES[family](d)
    shift = _shift(d, half)

    def f(p: Mapping[str, Any]) -> float:
        return float(fn(_point(_vec(p, d) - shift)))

    return TestFunction(f"{family}{d}_shifted", _box(d, low, high), f, fstar, _point(shift))


def _schwefel(d: int) -> TestFunction:
    def f(p: Mapping[str, Any]) -> float:
        x = _vec(p, d)
        return float(418.98288727243374 * d - np.sum(x * np.sin(np.sqrt(np.abs(x)))))

    xstar = 420.9687463
    best = _point([xstar] * d)
    return TestFunction(f"schwefel{d}", _box(d, -500, 500), f, f(best), best)


def _ellipsoid(d: int) -> TestFunction:
    """A rotated ellipsoid of condition number 1e6 with a shifted centre."""
    rotation, _ = np.linalg.qr(_HD_RNG.standard_normal((d, d)))
    scales = 10.0 ** (3.0 * np.arange(d) / (d - 1))
    centre = _shift(d, 5.0)

    def f(p: Mapping[str, Any]) -> float:
        z = rotation @ (_vec(p, d) - centre)
        return float(np.sum((scales * z) ** 2))

    return TestFunction(f"ellipsoid{d}", _box(d, -5, 5), f, 0.0, _point(centre))


def _int_ellipsoid(n_float: int, n_int: int) -> TestFunction:
    """A rotated ellipsoid (condition 1e3) over ``n_float`` reals in [-5, 5] and ``n_int``
    integers in [-4, 4] (9 values each), centred on a shifted point whose integer coordinates
    are integers: a search whose integer dimensions collapse onto a wrong value stays there."""
    d = n_float + n_int
    rotation, _ = np.linalg.qr(_HD_RNG.standard_normal((d, d)))
    scales = 10.0 ** (1.5 * np.arange(d) / (d - 1))
    centre = np.concatenate([_shift(n_float, 5.0), np.round(_shift(n_int, 4.0))])
    names = [f"x{i}" for i in range(n_float)] + [f"k{i}" for i in range(n_int)]

    def f(p: Mapping[str, Any]) -> float:
        z = rotation @ (np.array([float(p[n]) for n in names]) - centre)
        return float(np.sum((scales * z) ** 2))

    space = Space(
        [Float(n, -5, 5) for n in names[:n_float]] + [Int(n, -4, 4) for n in names[n_float:]]
    )
    xstar = {
        n: (int(c) if n.startswith("k") else float(c)) for n, c in zip(names, centre, strict=True)
    }
    return TestFunction(f"int_ellipsoid{d}", space, f, 0.0, xstar)


def _int_levy(n_float: int, n_int: int) -> TestFunction:
    """Levy over ``n_float`` reals in [-10, 10] and ``n_int`` integers in [-10, 10]."""
    d = n_float + n_int
    levy = _levy(d)
    names = [f"x{i}" for i in range(n_float)] + [f"k{i}" for i in range(n_int)]

    def f(p: Mapping[str, Any]) -> float:
        return levy({f"x{i}": p[n] for i, n in enumerate(names)})

    space = Space(
        [Float(n, -10, 10) for n in names[:n_float]] + [Int(n, -10, 10) for n in names[n_float:]]
    )
    xstar = {n: (1 if n.startswith("k") else 1.0) for n in names}
    return TestFunction(f"int_levy{d}", space, f, 0.0, xstar)


_HD_CHOICES = ("a", "b", "c", "d")


def _cat_ellipsoid(n_float: int, n_cat: int) -> TestFunction:
    """A rotated ellipsoid (condition 1e2) over ``n_float`` reals in [-5, 5], plus ``n_cat``
    categoricals of four choices: each choice adds its own cost and moves the reals' centre, and
    one combination reaches 0."""
    rotation, _ = np.linalg.qr(_HD_RNG.standard_normal((n_float, n_float)))
    scales = 10.0 ** (1.0 * np.arange(n_float) / (n_float - 1))
    centre = _shift(n_float, 5.0)
    cost = np.round(_HD_RNG.uniform(2.0, 20.0, (n_cat, len(_HD_CHOICES))), 2)
    best = _HD_RNG.integers(0, len(_HD_CHOICES), n_cat)
    cost[np.arange(n_cat), best] = 0.0
    moves = np.round(_HD_RNG.uniform(-1.0, 1.0, (n_cat, len(_HD_CHOICES), n_float)), 3)
    moves[np.arange(n_cat), best] = 0.0

    def f(p: Mapping[str, Any]) -> float:
        x = _vec(p, n_float)
        picks = [_HD_CHOICES.index(p[f"c{j}"]) for j in range(n_cat)]
        target = centre + sum(moves[j, c] for j, c in enumerate(picks))
        z = rotation @ (x - target)
        return float(np.sum((scales * z) ** 2) + sum(cost[j, c] for j, c in enumerate(picks)))

    space = Space(
        [Float(f"x{i}", -5, 5) for i in range(n_float)]
        + [Categorical(f"c{j}", _HD_CHOICES) for j in range(n_cat)]
    )
    xstar: dict[str, Any] = _point(centre)
    xstar.update({f"c{j}": _HD_CHOICES[int(best[j])] for j in range(n_cat)})
    return TestFunction(f"cat_ellipsoid{n_float + n_cat}", space, f, 0.0, xstar)


def _build_high_dim() -> dict[str, TestFunction]:
    fns = [
        _scaled("rosenbrock", 10),
        _scaled("rosenbrock", 30),
        _scaled("levy", 10),
        _scaled("levy", 20),
        _shifted("rastrigin", 10, 5.12),
        _shifted("rastrigin", 20, 5.12),
        _shifted("ackley", 20, 32.768),
        _schwefel(10),
        _schwefel(20),
        _ellipsoid(40),
        _int_ellipsoid(10, 10),
        _int_levy(10, 10),
        _cat_ellipsoid(14, 6),
    ]
    return {f.name: f for f in fns}


# Run by ``bench_cmaes.py`` only (not by ``bench_quality.py``).
HIGH_DIM: dict[str, TestFunction] = _build_high_dim()
