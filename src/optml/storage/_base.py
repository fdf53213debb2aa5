"""The storage contract: where studies and their trials live."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from optml.trial import Metric, Trial, TrialState

# Study states: RUNNING while a controller drives it, INTERRUPTED when stopped early (resume
# finishes it), COMPLETE when its budget is spent or its sampler has nothing more to offer.
STUDY_STATES = ("CREATED", "RUNNING", "INTERRUPTED", "COMPLETE")

# Fields of a trial that update_trial may change.
TRIAL_FIELDS = frozenset(
    {
        "state",
        "value",
        "metrics",
        "intermediate",
        "error",
        "logs",
        "attempts",
        "started_at",
        "finished_at",
        "duration_s",
        "worker",
        "user_attrs",
    }
)


@dataclass(frozen=True)
class StudyRecord:
    """What storage keeps about a study besides its trials."""

    id: int
    name: str
    metrics: tuple[Metric, ...]
    space: dict[str, Any]
    sampler: dict[str, Any]
    seed: int
    state: str = "CREATED"
    spec: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySummary:
    """One line of a study listing."""

    name: str
    state: str
    metric: Metric
    counts: dict[str, int]
    best_value: float | None
    created_at: datetime | None

    @property
    def n_trials(self) -> int:
        return sum(self.counts.values())


class Storage(abc.ABC):
    """Keeps studies and trials.

    Contract:

    - Every method is atomic and its effect is durable when it returns (committed), so the
      controller can write a state change first and act on it second.
    - Safe to call from several threads, and for SQL storage from several processes at once:
      ``create_trial`` numbers trials 0, 1, 2, ... within a study without gaps or repeats, and
      ``claim_trial`` hands a WAITING trial to exactly one caller.
    - A finished trial (COMPLETE, FAILED, PRUNED, TIMEOUT) is immutable: updating it raises
      :class:`~optml.errors.StorageError`, except ``user_attrs``.
    - Returned objects are snapshots; changing them changes nothing stored.
    """

    url: str = ""

    # -- studies --------------------------------------------------------------------------
    @abc.abstractmethod
    def create_study(
        self,
        name: str,
        *,
        metrics: Sequence[Metric],
        space: Mapping[str, Any],
        sampler: Mapping[str, Any],
        seed: int,
        spec: Mapping[str, Any] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
    ) -> StudyRecord:
        """Create a study; raise DuplicateStudyError if the name is taken."""

    @abc.abstractmethod
    def load_study(self, name: str) -> StudyRecord:
        """Return the study of that name; raise StudyNotFoundError if there is none."""

    @abc.abstractmethod
    def list_studies(self) -> list[StudySummary]:
        """Every study, oldest first, with trial counts per state and the best value."""

    @abc.abstractmethod
    def delete_study(self, name: str) -> None:
        """Delete a study and its trials; raise StudyNotFoundError if there is none."""

    @abc.abstractmethod
    def set_study_state(self, study_id: int, state: str) -> None:
        """Record the study's state (one of STUDY_STATES)."""

    @abc.abstractmethod
    def set_study_attrs(self, study_id: int, attrs: Mapping[str, Any]) -> None:
        """Merge ``attrs`` into the study's user attributes."""

    # -- trials ---------------------------------------------------------------------------
    @abc.abstractmethod
    def create_trial(
        self,
        study_id: int,
        params: Mapping[str, Any],
        *,
        state: TrialState = TrialState.WAITING,
        **fields: Any,
    ) -> Trial:
        """Add a trial with the next number; ``fields`` are any of TRIAL_FIELDS."""

    @abc.abstractmethod
    def claim_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        """Move the lowest-numbered WAITING trial to RUNNING and return it (None if none)."""

    @abc.abstractmethod
    def update_trial(self, study_id: int, number: int, **fields: Any) -> Trial:
        """Change fields of a trial (see TRIAL_FIELDS) and return the new record."""

    @abc.abstractmethod
    def get_trial(self, study_id: int, number: int) -> Trial:
        """One trial; raise StorageError if it does not exist."""

    @abc.abstractmethod
    def get_trials(self, study_id: int, states: Iterable[TrialState] | None = None) -> list[Trial]:
        """Trials of a study in number order, optionally only those in ``states``."""

    @abc.abstractmethod
    def get_best_trial(self, study_id: int) -> Trial | None:
        """The best trial under the study's stored constraints, as :func:`optml.ranking.best_trial`
        ranks them (COMPLETE with a finite value, feasible, lowest number on ties)."""

    @abc.abstractmethod
    def count_trials(self, study_id: int) -> dict[str, int]:
        """Number of trials per state (states with none are left out)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections. The storage must not be used afterwards."""


# The longest study name any storage keeps (the SQL column's width).
MAX_STUDY_NAME = 255


def check_study_name(name: Any) -> str:
    """Refuse a study name no storage should keep: not a string, empty, too long, or holding a
    control character or line break (it would break every listing and terminal it is shown in).
    Every storage calls this in ``create_study``; the spec's ``name`` field uses it too."""
    import unicodedata

    from optml.errors import StorageError

    if not isinstance(name, str) or not 0 < len(name) <= MAX_STUDY_NAME:
        raise StorageError(
            f"study name {name!r} must be a string of 1 to {MAX_STUDY_NAME} characters"
        )
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise StorageError(
            f"study name {name!r} contains the control character {bad!r}; use printable "
            "characters (letters, digits, spaces, punctuation), without line breaks or tabs"
        )
    return name


def check_update(trial: Trial, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an update of ``trial``; shared by every storage so all refuse the same things."""
    from optml.errors import StorageError

    unknown = set(fields) - TRIAL_FIELDS
    if unknown:
        raise StorageError(
            f"trial {trial.number}: cannot update unknown field(s) {sorted(unknown)}"
        )
    if trial.state.is_finished and set(fields) - {"user_attrs"}:
        raise StorageError(
            f"trial {trial.number} is already {trial.state.value}; a finished trial is immutable"
        )
    out = dict(fields)
    if "state" in out:
        out["state"] = TrialState(out["state"])
    return out


def stored_constraints(spec: Mapping[str, Any]) -> tuple[Any, ...]:
    """The constraints kept in a study's spec (strings and dicts; callables are never stored).

    A storage ranks trials under them, so that its best trial is the study's (see
    :mod:`optml.ranking`).
    """
    specs = spec.get("constraints") if isinstance(spec, Mapping) else None
    if not specs:
        return ()
    from optml.constraints import parse_constraints

    return tuple(parse_constraints(list(specs)))
