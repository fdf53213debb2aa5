"""Several objectives at once: Pareto dominance, non-dominated sorting, crowding and hypervolume.

All functions take losses (values to minimise) as an ``(n, k)`` array; :func:`pareto_front`
works on trials and the study's metrics and turns maximised metrics into losses itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from optml.trial import Trial, TrialState


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether loss vector ``a`` Pareto-dominates ``b``: no worse anywhere, better somewhere."""
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_sort(
    losses: np.ndarray, violations: np.ndarray | None = None
) -> list[np.ndarray]:
    """Split rows of ``losses`` into fronts (indices): front 0 is non-dominated, and so on.

    With ``violations`` (0 = feasible), Deb's constrained dominance applies: a feasible row
    dominates every infeasible one, and of two infeasible rows the one with the smaller
    violation dominates.
    """
    losses = np.asarray(losses, dtype=float)
    n = len(losses)
    if n == 0:
        return []
    if losses.ndim == 1:
        losses = losses[:, None]
    # le[i, j]: i no worse than j everywhere; lt[i, j]: i better somewhere.
    le = np.all(losses[:, None, :] <= losses[None, :, :], axis=2)
    lt = np.any(losses[:, None, :] < losses[None, :, :], axis=2)
    dom = le & lt
    if violations is not None:
        v = np.asarray(violations, dtype=float)
        feasible = v <= 0
        both_feasible = feasible[:, None] & feasible[None, :]
        dom = np.where(both_feasible, dom, False)
        dom |= feasible[:, None] & ~feasible[None, :]
        infeasible_pair = ~feasible[:, None] & ~feasible[None, :]
        dom |= infeasible_pair & (v[:, None] < v[None, :])
    dominated_by = dom.sum(axis=0)  # how many rows dominate each row
    fronts: list[np.ndarray] = []
    remaining = np.ones(n, dtype=bool)
    while remaining.any():
        front = np.flatnonzero(remaining & (dominated_by == 0))
        fronts.append(front)
        remaining[front] = False
        dominated_by = dominated_by - dom[front].sum(axis=0)
    return fronts


def crowding_distance(losses: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row within one front (boundary rows get ``inf``)."""
    losses = np.asarray(losses, dtype=float)
    n, k = losses.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(losses[:, j], kind="stable")
        column = losses[order, j]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span <= 0:
            continue
        distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def pareto_front(
    trials: Sequence[Trial], metrics: Sequence[Any], constraints: Sequence[Any] = ()
) -> list[Trial]:
    """The COMPLETE trials that no other COMPLETE trial beats on every metric at once.

    ``metrics`` are :class:`~optml.trial.Metric` objects (or names, taken as minimised).
    Trials without a finite value of every metric are left out, and so, given ``constraints``
    (see :mod:`optml.constraints`), are infeasible ones. Trials with equal values all stay.
    The result is in trial-number order.
    """
    from optml.constraints import parse_constraints
    from optml.ranking import loss_matrix, violations

    constraints = parse_constraints(list(constraints)) if constraints else []
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    if not done or not metrics:
        return []
    losses = loss_matrix(done, metrics)
    keep = np.all(np.isfinite(losses), axis=1)
    if constraints:
        keep &= violations(done, constraints) == 0
    done = [t for t, k in zip(done, keep, strict=True) if k]
    losses = losses[keep]
    if not done:
        return []
    front = non_dominated_sort(losses)[0]
    return sorted((done[i] for i in front), key=lambda t: t.number)


def hypervolume(losses: np.ndarray, reference: Sequence[float] | np.ndarray) -> float:
    """The volume dominated by ``losses`` (rows, minimised) and bounded by ``reference``.

    Exact; for two objectives by a sweep, for more by slicing (fine for the small fronts of a
    tuning study). Rows not strictly better than ``reference`` in every objective add nothing.
    """
    ref = np.asarray(reference, dtype=float)
    points = np.asarray(losses, dtype=float).reshape(-1, len(ref))
    points = points[np.all(points < ref, axis=1) & np.all(np.isfinite(points), axis=1)]
    if not len(points):
        return 0.0
    points = points[non_dominated_sort(points)[0]]
    return _hv(points, ref)


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    k = points.shape[1]
    if k == 1:
        return float(ref[0] - points[:, 0].min())
    if k == 2:
        order = np.argsort(points[:, 0])
        volume, best_y = 0.0, ref[1]
        for x, y in points[order]:
            if y < best_y:
                volume += (ref[0] - x) * (best_y - y)
                best_y = y
        return float(volume)
    # Slice along the last objective: between consecutive levels the dominated set is constant.
    order = np.argsort(points[:, -1])
    points = points[order]
    volume = 0.0
    for i in range(len(points)):
        upper = points[i + 1, -1] if i + 1 < len(points) else ref[-1]
        height = upper - points[i, -1]
        if height <= 0:
            continue
        layer = points[: i + 1, :-1]
        layer = layer[non_dominated_sort(layer)[0]]
        volume += height * _hv(layer, ref[:-1])
    return float(volume)


__all__ = ["crowding_distance", "dominates", "hypervolume", "non_dominated_sort", "pareto_front"]
