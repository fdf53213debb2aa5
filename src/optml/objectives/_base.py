"""The objective contract: how one trial runs the user's code and what it gives back."""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optml.errors import ObjectiveError


class TrialTimeoutError(Exception):
    """Raised inside a trial that ran past its time limit."""


class TrialPrunedError(Exception):
    """Raised by an objective (or a pruner) to stop a trial early as PRUNED."""


@dataclass
class TrialContext:
    """What an objective may know about the trial it runs; handed to it in the worker."""

    number: int
    params: dict[str, Any]
    attempt: int = 0
    timeout: float | None = None
    data: str | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    # Set by the worker runtime: where a report goes as it happens, and whether the controller
    # asked for this trial to be pruned.
    on_report: Callable[[int, float], None] | None = field(default=None, repr=False, compare=False)
    should_prune: Callable[[], bool] | None = field(default=None, repr=False, compare=False)

    def report(self, step: int, value: float) -> None:
        """Record an intermediate value (e.g. validation loss after an epoch).

        The value reaches the controller as it is reported. If the controller asked for this
        trial to be pruned, :class:`TrialPrunedError` is raised here: the trial ends PRUNED.
        """
        step, value = int(step), float(value)
        self.intermediate[step] = value
        if self.on_report is not None:
            self.on_report(step, value)
        if self.should_prune is not None and self.should_prune():
            raise TrialPrunedError(f"pruned at step {step}")


class Objective(abc.ABC):
    """Runs user code for one configuration and returns its metrics.

    Contract:

    - An objective is built in the controller and shipped to worker processes (forked, or
      pickled for remote executors), so it holds only plain, picklable configuration.
    - ``setup`` runs once per worker process before the first trial (import the module,
      generate or load the data) and may cache results on ``self``.
    - ``run`` returns a number or a dict of numbers; :func:`normalize_result` turns it into
      metrics. An exception means the trial FAILED; :class:`TrialPrunedError` means PRUNED.
    """

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~optml.errors.ObjectiveError` if the objective cannot run at all (a
        missing file, module or working directory). Called once in the controller before the
        first trial, so that a mistake is reported once instead of failing every trial."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Prepare this process to run trials (called once per worker)."""

    @abc.abstractmethod
    def run(self, params: dict[str, Any], context: TrialContext) -> Any:
        """Evaluate one configuration."""

    def describe(self) -> str:
        return type(self).__name__


def normalize_result(result: Any, metric: str) -> dict[str, float]:
    """Turn what an objective returned into ``{metric name: float}``.

    A bare number becomes the study's primary ``metric``; a dict keeps every numeric entry.
    """
    if type(result) is float:  # the common answer, before the checks below
        return {metric: result}
    if isinstance(result, bool) or result is None:
        raise ObjectiveError(
            f"the objective returned {result!r}; return a number or a dict of numbers "
            f"(e.g. {{{metric!r}: 0.12}})"
        )
    if isinstance(result, numbers.Real):
        return {metric: float(result)}
    if hasattr(result, "item") and getattr(result, "shape", None) == ():
        return {metric: float(result.item())}
    if isinstance(result, dict):
        metrics: dict[str, float] = {}
        for key, value in result.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real | float):
                if hasattr(value, "item") and getattr(value, "shape", None) == ():
                    value = value.item()
                else:
                    raise ObjectiveError(
                        f"the objective returned metric {key!r} = {value!r}; metrics must be numbers"
                    )
            metrics[str(key)] = float(value)
        return metrics
    raise ObjectiveError(
        f"the objective returned a {type(result).__name__}; return a number or a dict of numbers"
    )


def primary_value(metrics: Mapping[str, float], metric: str) -> float:
    """The study's metric out of a trial's metrics; a clear error if the objective left it out or
    it is not a finite number (a NaN or an infinity cannot be ranked: the trial FAILED)."""
    if metric not in metrics:
        raise ObjectiveError(
            f"the objective returned metrics {sorted(metrics)} but the study optimises {metric!r}; "
            "return it, or set the study's metric name to one of those"
        )
    value = metrics[metric]
    if not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else repr(value)
        raise ObjectiveError(
            f"the objective returned {shown} for {metric!r}; an optimised metric must be a "
            "finite number"
        )
    return value


def optimised_value(metrics: Mapping[str, float], names: Sequence[str]) -> float:
    """The primary (first) metric's value, once every metric in ``names`` (those the study
    optimises) is present and finite; :class:`~optml.errors.ObjectiveError` otherwise.

    The one check behind every way a result enters a study (optimize, tell, add_trial)."""
    values = [primary_value(metrics, name) for name in names]
    return values[0]
