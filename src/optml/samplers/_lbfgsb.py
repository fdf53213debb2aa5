"""Box-constrained L-BFGS-B for the samplers' small inner problems, with little per-call cost.

The GP sampler runs L-BFGS-B several times per proposal (the kernel hyperparameters, then the
acquisition), on functions that take tens of microseconds. ``scipy.optimize.minimize`` adds
about as much again per evaluation, and a few hundred microseconds per call, for checks and
bookkeeping these problems do not need. :func:`minimize_box` drives SciPy's own L-BFGS-B
routine directly, with the loop and settings ``minimize`` uses, so it visits the same points
and returns the same result. Where that internal routine has another interface (SciPy older
than 1.15), or fails a check against ``minimize`` on first use, it calls ``minimize``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]

_MAXCOR = 10  # minimize's defaults for L-BFGS-B
_MAXLS = 20
_GTOL = 1e-5
_NEW_X, _FG, _STOP = 1, 3, 5


def _direct_routine() -> Any:
    """SciPy's compiled L-BFGS-B step, or None where it cannot be used as :func:`minimize_box`
    drives it (SciPy < 1.15 has another interface; a later release might change it again).

    Checked once, on a small problem with an active bound, against ``minimize`` itself: any
    error or any difference in the result means ``minimize`` is used instead.
    """
    try:
        import scipy
        from scipy.optimize import _lbfgsb

        major, minor = (int(part) for part in scipy.__version__.split(".")[:2])
        if (major, minor) < (1, 15):
            return None
        target = np.array([0.3, 1.7, -0.4])

        def check(x: np.ndarray) -> tuple[float, np.ndarray]:  # a bowl with a ripple in x0
            d = x - target
            grad = 2.0 * d
            grad[0] += 3.0 * np.cos(3.0 * x[0])
            return float(d @ d + np.sin(3.0 * x[0])), grad

        lower, upper = np.full(3, -1.0), np.full(3, 1.0)
        start = np.array([0.9, 0.0, 0.5])
        direct = _run(_lbfgsb.setulb, check, start, lower, upper, 50, 1e-9)
        reference = _minimize_scipy(check, start, lower, upper, 50, 1e-9)
        if direct[1] != reference[1] or not np.array_equal(direct[0], reference[0]):
            return None
    except Exception:  # a private routine whose interface moved: use the public one
        return None
    return _lbfgsb.setulb


_UNSET: Any = object()
_SETULB: Any = _UNSET  # resolved on first use (SciPy is imported only when a GP runs)


def minimize_box(
    fun: Objective,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    maxiter: int,
    ftol: float = 2.2204460492503131e-09,
) -> tuple[np.ndarray, float]:
    """Minimise ``fun`` (returning the value and its gradient) within finite bounds.

    Same iterates and result as ``scipy.optimize.minimize(fun, x0, jac=True,
    method="L-BFGS-B", bounds=..., options={"maxiter": maxiter, "ftol": ftol})``; returns
    ``(x, value)`` of its final iterate.
    """
    global _SETULB
    lower = np.ascontiguousarray(lower, dtype=np.float64)
    upper = np.ascontiguousarray(upper, dtype=np.float64)
    if _SETULB is _UNSET:
        _SETULB = _direct_routine()
    if _SETULB is None:
        return _minimize_scipy(fun, x0, lower, upper, maxiter, ftol)
    return _run(_SETULB, fun, x0, lower, upper, maxiter, ftol)


def _run(
    setulb: Any,
    fun: Objective,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    maxiter: int,
    ftol: float,
) -> tuple[np.ndarray, float]:
    """The loop of SciPy's ``_minimize_lbfgsb``, with its defaults, around ``setulb``."""
    n = len(lower)
    x = np.clip(np.asarray(x0, dtype=np.float64).ravel(), lower, upper)
    f: Any = np.array(0.0)
    g = np.zeros(n)
    wa = np.zeros(2 * _MAXCOR * n + 5 * n + 11 * _MAXCOR * _MAXCOR + 8 * _MAXCOR)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task = np.zeros(2, dtype=np.int32)
    ln_task = np.zeros(2, dtype=np.int32)
    lsave = np.zeros(4, dtype=np.int32)
    isave = np.zeros(44, dtype=np.int32)
    dsave = np.zeros(29)
    nbd = np.full(n, 2, dtype=np.int32)  # bounded on both sides
    factr = ftol / np.finfo(float).eps
    iterations = 0
    while True:
        setulb(
            _MAXCOR, x, lower, upper, nbd, f, g, factr, _GTOL, wa, iwa, task, lsave, isave,
            dsave, _MAXLS, ln_task,
        )  # fmt: skip
        if task[0] == _FG:
            value, grad = fun(x.copy())
            f, g = float(value), np.asarray(grad, dtype=np.float64).ravel()
        elif task[0] == _NEW_X:
            iterations += 1
            if iterations >= maxiter:
                task[0], task[1] = _STOP, 504
        else:
            return x, float(f)


def _minimize_scipy(
    fun: Objective,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    maxiter: int,
    ftol: float,
) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    result = minimize(
        fun,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lower, upper, strict=True)),
        options={"maxiter": maxiter, "ftol": ftol},
    )
    return np.asarray(result.x, dtype=float), float(result.fun)
