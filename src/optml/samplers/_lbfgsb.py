"""Box-constrained L-BFGS-B for the samplers' small inner problems, with little per-call cost.

The GP sampler runs L-BFGS-B several times per proposal (the kernel hyperparameters, then the
acquisition), on functions that take tens of microseconds. ``scipy.optimize.minimize`` adds
about as much again per evaluation, and a few hundred microseconds per call, for checks and
bookkeeping these problems do not need. :func:`minimize_box` drives SciPy's own L-BFGS-B
routine directly, with the loop and settings ``minimize`` uses, so it visits the same points
and returns the same result; where SciPy's internal routine has another interface (SciPy older
than 1.15), it calls ``minimize``.
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
    """SciPy's compiled L-BFGS-B step (the SciPy >= 1.15 interface), or None."""
    try:
        import scipy
        from scipy.optimize import _lbfgsb

        major, minor = (int(part) for part in scipy.__version__.split(".")[:2])
    except (ImportError, ValueError):
        return None
    return _lbfgsb.setulb if (major, minor) >= (1, 15) else None


_SETULB: Any = _direct_routine()


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
    lower = np.ascontiguousarray(lower, dtype=np.float64)
    upper = np.ascontiguousarray(upper, dtype=np.float64)
    if _SETULB is None:
        return _minimize_scipy(fun, x0, lower, upper, maxiter, ftol)
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
        _SETULB(
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
