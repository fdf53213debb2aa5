"""Which trials are best: feasibility under a study's constraints, the best trial, whether a target
is reached, and the losses of several metrics at once.

Storage, the study, the controller, the command line and the samplers all rank trials here, so
"best" means one thing everywhere:

- Only COMPLETE trials whose primary value is a finite number take part: NaN and infinities
  (recorded by older versions) are never best.
- With constraints (see :mod:`optml.constraints`), a trial that breaks any is infeasible and
  never best; :func:`violation` says by how much it misses.
- Of the rest, the one with the lowest loss (:meth:`Metric.loss`) is best; on ties, the
  lowest-numbered.

>>> from optml.trial import Metric, Trial, TrialState
>>> trials = [Trial(n, TrialState.COMPLETE, {}, value=v) for n, v in enumerate([3.0, 1.0, 1.0])]
>>> best_trial(trials, Metric("value")).number
1
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from optml.trial import Metric, Trial, TrialState


def violation(trial: Trial, constraints: Sequence[Any]) -> float:
    """Total violation of ``trial`` (0 when it meets every constraint, ``inf`` if unknowable)."""
    return float(sum(c.violation(trial) for c in constraints))


def violations(trials: Sequence[Trial], constraints: Sequence[Any]) -> np.ndarray:
    """:func:`violation` of each of ``trials``, as an array."""
    if not constraints:
        return np.zeros(len(trials))
    return np.array([violation(t, constraints) for t in trials], dtype=float).reshape(len(trials))


def is_feasible(trial: Trial, constraints: Sequence[Any]) -> bool:
    """Whether a finished trial meets every constraint."""
    return violation(trial, constraints) == 0.0


def has_metric_constraints(constraints: Iterable[Any]) -> bool:
    """Whether any of ``constraints`` limits a metric (so feasibility is known only after a run)."""
    return any(getattr(c, "kind", None) == "metric" for c in constraints)


def is_ranked(trial: Trial) -> bool:
    """Whether ``trial`` takes part in ranking: COMPLETE with a finite primary value."""
    value = trial.value
    return trial.state is TrialState.COMPLETE and value is not None and math.isfinite(value)


def best_trial(
    trials: Iterable[Trial], metric: Metric, constraints: Sequence[Any] = ()
) -> Trial | None:
    """The best of ``trials`` (see the module docstring), or None when none takes part."""
    best: Trial | None = None
    best_loss = math.inf
    for t in trials:
        if not is_ranked(t) or (constraints and not is_feasible(t, constraints)):
            continue
        loss = metric.loss(t.value)  # type: ignore[arg-type]
        if best is None or loss < best_loss or (loss == best_loss and t.number < best.number):
            best, best_loss = t, loss
    return best


def target_reached(
    trials: Iterable[Trial], metric: Metric, target: float, constraints: Sequence[Any] = ()
) -> bool:
    """Whether the best of ``trials`` is at least as good as ``target``."""
    best = best_trial(trials, metric, constraints)
    return best is not None and metric.loss(best.value) <= metric.loss(target)  # type: ignore[arg-type]


def loss_matrix(trials: Sequence[Trial], metrics: Sequence[Metric | str]) -> np.ndarray:
    """Every metric of ``trials`` as an ``(n, k)`` array of values to minimise.

    ``metrics`` are :class:`Metric` objects or names (taken as minimised). The first metric falls
    back to the trial's value; a metric a trial did not report is NaN.
    """
    ms = [m if isinstance(m, Metric) else Metric(str(m)) for m in metrics]
    rows = []
    for t in trials:
        row = []
        for i, m in enumerate(ms):
            value = t.metrics.get(m.name, t.value if i == 0 else None)
            row.append(math.nan if value is None else m.loss(value))
        rows.append(row)
    return np.array(rows, dtype=float).reshape(len(trials), len(ms))


__all__ = [
    "best_trial",
    "has_metric_constraints",
    "is_feasible",
    "is_ranked",
    "loss_matrix",
    "target_reached",
    "violation",
    "violations",
]
