"""The samplers' direct L-BFGS-B driver visits what scipy.optimize.minimize visits."""

from __future__ import annotations

import numpy as np
import pytest

from optml.samplers import _lbfgsb
from optml.samplers._lbfgsb import minimize_box


def _rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    a, b = x[:-1], x[1:]
    value = float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2))
    grad = np.zeros_like(x)
    grad[:-1] = -400.0 * a * (b - a * a) - 2.0 * (1.0 - a)
    grad[1:] += 200.0 * (b - a * a)
    return value, grad


def _walled(x: np.ndarray) -> tuple[float, np.ndarray]:
    """A quadratic that reports failure (a huge value, no gradient) past x0 = 0.8."""
    if x[0] > 0.8:
        return 1e25, np.zeros_like(x)
    d = x - 0.9
    return float(d @ d), 2.0 * d


CASES = [
    # (function, start, lower, upper, maxiter, ftol)
    (_rosenbrock, np.full(4, -1.0), np.full(4, -2.0), np.full(4, 2.0), 200, 1e-9),
    (_rosenbrock, np.full(4, -1.0), np.full(4, -2.0), np.full(4, 2.0), 7, 1e-9),  # maxiter stops
    (_rosenbrock, np.full(3, 0.5), np.full(3, 0.0), np.full(3, 0.6), 100, 1e-7),  # active bounds
    (_rosenbrock, np.full(3, 5.0), np.full(3, -1.0), np.full(3, 0.6), 50, 1e-7),  # start outside
    (_walled, np.zeros(2), np.zeros(2), np.ones(2), 30, 2.2e-9),
]


def _counting(fun):  # type: ignore[no-untyped-def]
    calls: list[np.ndarray] = []

    def wrapped(x: np.ndarray) -> tuple[float, np.ndarray]:
        calls.append(x.copy())
        return fun(x)

    return wrapped, calls


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "fallback"])
def test_minimize_box_matches_scipy_minimize(
    case: int, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    fun, x0, lower, upper, maxiter, ftol = CASES[case]
    routine = _lbfgsb._direct_routine() if direct else None
    if direct and routine is None:
        pytest.skip("this SciPy has the older L-BFGS-B interface; minimize_box calls minimize")
    monkeypatch.setattr(_lbfgsb, "_SETULB", routine)
    ours_fun, ours_calls = _counting(fun)
    theirs_fun, theirs_calls = _counting(fun)
    x, value = minimize_box(ours_fun, x0, lower, upper, maxiter, ftol)
    # The reference: scipy.optimize.minimize itself (what the fallback calls).
    x_ref, value_ref = _lbfgsb._minimize_scipy(theirs_fun, x0, lower, upper, maxiter, ftol)
    assert value == value_ref
    np.testing.assert_array_equal(x, x_ref)
    assert len(ours_calls) == len(theirs_calls)  # the same evaluations, in the same order
    for a, b in zip(ours_calls, theirs_calls, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.all(x >= lower) and np.all(x <= upper)


def test_minimize_box_reaches_the_optimum() -> None:
    x, value = minimize_box(_rosenbrock, np.zeros(3), np.full(3, -2.0), np.full(3, 2.0), 500)
    np.testing.assert_allclose(x, np.ones(3), atol=1e-3)
    assert value < 1e-6


def test_the_direct_routine_is_used_on_this_scipy_and_dropped_when_it_misbehaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import scipy
    from scipy.optimize import _lbfgsb as scipy_lbfgsb

    major, minor = (int(part) for part in scipy.__version__.split(".")[:2])
    if (major, minor) >= (1, 15):  # the interface minimize_box drives: a change here is a bug
        assert _lbfgsb._direct_routine() is scipy_lbfgsb.setulb

    def moved(*args: object) -> None:
        raise TypeError("setulb() takes 16 positional arguments")

    monkeypatch.setattr(scipy_lbfgsb, "setulb", moved)
    assert _lbfgsb._direct_routine() is None  # then minimize_box calls minimize (tested above)

    def off_by_a_little(*args: object) -> None:  # runs, but is not the routine minimize runs
        task = args[11]
        task[0] = 4  # converged at once, at the start

    monkeypatch.setattr(scipy_lbfgsb, "setulb", off_by_a_little)
    monkeypatch.setattr(_lbfgsb, "_minimize_scipy", lambda *a: (np.zeros(3), 0.0))
    assert _lbfgsb._direct_routine() is None
