"""The trial record, its states, and the metrics a study optimises."""

from __future__ import annotations

import copy
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal

Direction = Literal["minimize", "maximize"]


class TrialState(enum.StrEnum):
    """Where a trial is in its life: WAITING → RUNNING → one of the finished states.

    STALE: the trial was RUNNING but its owner stopped heartbeating past the grace period (its
    controller died, or lost its machine). It is not finished: a live controller runs it again
    (or fails it, by the study's ``stale`` policy).
    """

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    STALE = "STALE"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    PRUNED = "PRUNED"
    TIMEOUT = "TIMEOUT"

    @property
    def is_finished(self) -> bool:
        # Identity tests: this runs once per trial per sampler request.
        return (
            self is not TrialState.WAITING
            and self is not TrialState.RUNNING
            and self is not TrialState.STALE
        )


FINISHED_STATES = tuple(s for s in TrialState if s.is_finished)


@dataclass(frozen=True)
class Metric:
    """A metric the study optimises: its name as the objective reports it, and its direction."""

    name: str
    direction: Direction = "minimize"

    def loss(self, value: float) -> float:
        """The value turned into something to minimise."""
        return float(value) if self.direction == "minimize" else -float(value)


@dataclass(frozen=True)
class Trial:
    """One configuration of a study and what became of it. Immutable: storage hands out copies.

    ``value`` is the study's primary metric (as reported, not negated); ``metrics`` holds every
    metric the objective returned. ``intermediate`` maps a step to a reported value (for pruning).
    ``worker`` is the controller that owns the trial (``host:pid``); ``host`` and ``runner`` say
    where it ran (the machine, and the process or executor worker there); ``heartbeat_at`` is
    when its owner last said it was alive.
    """

    number: int
    state: TrialState
    params: dict[str, Any]
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    intermediate: dict[int, float] = field(default_factory=dict)
    error: str | None = None
    logs: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    worker: str | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    runner: str | None = None
    heartbeat_at: datetime | None = None
    # The name of the study that handed this trial out (set by Study, not stored): lets
    # Study.tell refuse another study's trial. Not part of equality or the export form.
    study: str | None = field(default=None, compare=False, repr=False)

    # Written out, not generated: a frozen dataclass's own __init__ sets each of the 18 fields
    # through object.__setattr__, several times the cost of this for a record every trial makes
    # a few of. A test keeps it in step with the fields.
    def __init__(
        self,
        number: int,
        state: TrialState,
        params: dict[str, Any],
        value: float | None = None,
        metrics: dict[str, float] | None = None,
        intermediate: dict[int, float] | None = None,
        error: str | None = None,
        logs: str | None = None,
        attempts: int = 0,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        duration_s: float | None = None,
        worker: str | None = None,
        user_attrs: dict[str, Any] | None = None,
        host: str | None = None,
        runner: str | None = None,
        heartbeat_at: datetime | None = None,
        study: str | None = None,
    ) -> None:
        self.__dict__.update(
            number=number,
            state=state,
            params=params,
            value=value,
            metrics={} if metrics is None else metrics,
            intermediate={} if intermediate is None else intermediate,
            error=error,
            logs=logs,
            attempts=attempts,
            started_at=started_at,
            finished_at=finished_at,
            duration_s=duration_s,
            worker=worker,
            user_attrs={} if user_attrs is None else user_attrs,
            host=host,
            runner=runner,
            heartbeat_at=heartbeat_at,
            study=study,
        )

    def with_changes(self, **changes: Any) -> Trial:
        # What dataclasses.replace does (the class has no __post_init__ to run), without its
        # cost: the controller's loop makes several of these per trial.
        if not _TRIAL_FIELDS.issuperset(changes):
            return replace(self, **changes)  # raises its TypeError naming the field
        new = object.__new__(Trial)
        state = new.__dict__
        state.update(self.__dict__)
        state.update(changes)
        return new

    def to_dict(self) -> dict[str, Any]:
        """The export form: plain JSON types."""
        return {
            "number": self.number,
            "state": self.state.value,
            "params": dict(self.params),
            "value": _json_float(self.value),
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "duration_s": self.duration_s,
            "error": self.error,
            "attempts": self.attempts,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "host": self.host,
            "runner": self.runner,
            "user_attrs": dict(self.user_attrs),
        }


_TRIAL_FIELDS = frozenset(f.name for f in fields(Trial))

# Values a trial's dicts hold that need no copying (anything else is deep-copied).
_ATOMS = frozenset({int, float, str, bool, type(None)})


def fresh_dict(values: Mapping[Any, Any]) -> dict[Any, Any]:
    """A copy of ``values`` that shares nothing mutable with it."""
    if not values:
        return {}
    for v in values.values():
        if type(v) not in _ATOMS:
            return copy.deepcopy(dict(values))
    return dict(values)


def detached(trial: Trial) -> Trial:
    """A copy of ``trial`` that shares nothing mutable with it (it is frozen; its dicts are
    not): what storage keeps and hands out, and what user code gets of a trial a study keeps.
    Cheaper than ``copy.deepcopy``, which every trial read and write would pay."""
    new = object.__new__(Trial)
    state = new.__dict__
    state.update(trial.__dict__)
    state["params"] = fresh_dict(trial.params)
    state["metrics"] = dict(trial.metrics)
    state["intermediate"] = dict(trial.intermediate)
    state["user_attrs"] = fresh_dict(trial.user_attrs)
    return new


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value
