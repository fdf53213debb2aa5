"""The storage contract: where studies and their trials live."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from optml.trial import Metric, Trial, TrialState

# Study states: RUNNING while any controller drives it, INTERRUPTED when stopped early (resume
# finishes it), COMPLETE when its budget is spent or its sampler has nothing more to offer.
STUDY_STATES = ("CREATED", "RUNNING", "INTERRUPTED", "COMPLETE")

# Trials that are neither finished nor claimable: a live owner runs them.
UNFINISHED = (TrialState.WAITING, TrialState.RUNNING, TrialState.STALE)

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
        "host",
        "runner",
        "heartbeat_at",
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
    # The most trials the study may have (all controllers together); None: no limit stored.
    budget: int | None = None


@dataclass(frozen=True)
class Reservation:
    """What :meth:`Storage.reserve_trials` did with each proposed configuration.

    ``trials`` are the new RUNNING trials (in the order of the configurations that got one);
    ``taken`` holds the indices of configurations refused because a trial of the study already
    has their key (another controller proposed the same point first); ``budget_spent`` says
    that the study's budget refused the rest.
    """

    trials: list[Trial]
    taken: list[int]
    budget_spent: bool


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

    - Storage is the one source of truth. Any number of controllers (processes, machines) may
      drive one study at once; nothing coordinates them but the storage.
    - Every method is atomic and its effect is durable when it returns (committed), so the
      controller can write a state change first and act on it second.
    - Safe to call from several threads, and for SQL storage from several processes at once:
      ``create_trial`` and ``reserve_trials`` number trials 0, 1, 2, ... within a study without
      gaps or repeats, and ``claim_trial`` hands a WAITING (or STALE) trial to exactly one caller.
    - ``reserve_trials`` counts the study's stored budget in the same transaction that creates
      the trials, and refuses a configuration whose key a trial of the study already has: k
      controllers together run the budget once, and hand each point out once.
    - Every write of a trial except a heartbeat gives it the study's next change number, in
      commit order, so ``changed_trials(since)`` returns exactly what changed after a read.
    - Liveness: a trial's owner (``worker``, a controller's ``host:pid``) refreshes its
      ``heartbeat_at`` with :meth:`heartbeat`; :meth:`mark_stale` turns RUNNING trials whose
      heartbeat lapsed past a grace period into STALE (or FAILED). Controllers record
      themselves as runs with a heartbeat: the study is RUNNING while any live run drives it,
      and a stored stop request reaches every run of the study. Heartbeats are compared with
      the writer's UTC clock: machines sharing a study need clocks that agree to well within
      the grace period (NTP).
    - A finished trial (COMPLETE, FAILED, PRUNED, TIMEOUT) is immutable: updating it raises
      :class:`~optml.errors.StorageError`, except ``user_attrs``. ``update_trial(owner=...)``
      changes a trial only while that owner still runs it (else :class:`LostTrialError`), so a
      controller that was taken for dead cannot overwrite the trial's new run.
    - Returned objects are snapshots; changing them changes nothing stored.
    """

    url: str = ""
    # Whether :meth:`trials_version` costs next to nothing (no round trip to a server or file)
    # and every write of a trial but a heartbeat adds exactly one to it per trial written: a
    # reader whose every change since its last read was its own write then asks it instead of
    # re-reading those trials.
    cheap_version: bool = False

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
        key: str | None = None,
        **fields: Any,
    ) -> Trial:
        """Add a trial with the next number; ``fields`` are any of TRIAL_FIELDS; ``key`` (see
        ``reserve_trials``) makes a later reservation of the same point refused."""

    @abc.abstractmethod
    def claim_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        """Move the lowest-numbered WAITING or STALE trial to RUNNING, owned by ``worker``, and
        return it (None if none)."""

    @abc.abstractmethod
    def reserve_trials(
        self,
        study_id: int,
        configs: Sequence[tuple[Mapping[str, Any], str | None]],
        *,
        worker: str | None,
    ) -> Reservation:
        """Create a RUNNING trial owned by ``worker`` for each ``(params, key)`` in one
        transaction, refusing those whose ``key`` a trial of the study already has and those
        past the study's stored budget (see :class:`Reservation`)."""

    @abc.abstractmethod
    def update_trial(
        self, study_id: int, number: int, *, owner: str | None = None, **fields: Any
    ) -> Trial:
        """Change fields of a trial (see TRIAL_FIELDS) and return the new record. With
        ``owner``, only while the trial is RUNNING and owned by it (else LostTrialError)."""

    def update_trials(
        self,
        study_id: int,
        updates: Mapping[int, Mapping[str, Any]],
        *,
        owner: str | None = None,
    ) -> dict[int, Trial | None]:
        """``update_trial`` for each ``number: fields`` of ``updates``, in one transaction
        where the storage has them (what arrives together, e.g. a wave of trials finishing,
        costs one commit), and the new records by number. With ``owner``, a trial it no
        longer runs is left unchanged and maps to None (where ``update_trial`` raises
        LostTrialError); any other refusal raises and, in one transaction, changes nothing.

        This default makes one ``update_trial`` call per trial."""
        from optml.errors import LostTrialError

        out: dict[int, Trial | None] = {}
        for number, fields in updates.items():
            try:
                out[number] = self.update_trial(study_id, number, owner=owner, **fields)
            except LostTrialError:
                out[number] = None
        return out

    @abc.abstractmethod
    def changed_trials(self, study_id: int, since: int) -> tuple[list[Trial], int]:
        """The trials written after change number ``since`` (0: every trial), and the change
        number to pass next time."""

    @abc.abstractmethod
    def set_study_budget(self, study_id: int, budget: int | None) -> None:
        """Store the most trials the study may have, counted by ``reserve_trials``."""

    # -- liveness ---------------------------------------------------------------------------
    @abc.abstractmethod
    def start_run(self, study_id: int, owner: str) -> int:
        """Record a controller (``owner``, its ``host:pid``) starting to drive the study, mark
        the study RUNNING, and return the run's id."""

    @abc.abstractmethod
    def heartbeat(self, study_id: int, owner: str, run_id: int | None = None) -> bool:
        """Refresh the heartbeat of the RUNNING trials ``owner`` owns (and of its run); return
        whether a stop was requested for that run."""

    @abc.abstractmethod
    def end_run(self, run_id: int, state: str, grace_s: float) -> str:
        """Record the run's end. The study takes ``state`` unless another run is still alive
        (heartbeat within ``grace_s``), when it stays RUNNING; returns the study's state."""

    @abc.abstractmethod
    def live_runs(self, study_id: int, grace_s: float) -> list[str]:
        """The owners of the study's runs that are unfinished with a heartbeat within
        ``grace_s``."""

    @abc.abstractmethod
    def request_stop(self, study_id: int, grace_s: float) -> int:
        """Ask every live run of the study to stop; returns how many were asked. With none
        alive, a RUNNING study is marked INTERRUPTED."""

    @abc.abstractmethod
    def mark_stale(
        self,
        study_id: int,
        grace_s: float,
        *,
        dead_owners: Iterable[str] = (),
        fail: bool = False,
    ) -> list[Trial]:
        """Mark STALE every RUNNING trial whose heartbeat (or start) is older than ``grace_s``
        or whose owner is in ``dead_owners``; FAILED instead with ``fail``. Returns them."""

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

    # -- reading for the web dashboard ------------------------------------------------------
    # Generic versions built on get_trials; SQL storage answers each with one statement.
    def trials_page(
        self,
        study_id: int,
        *,
        offset: int = 0,
        limit: int = 50,
        sort: str = "number",
        descending: bool = False,
        states: Iterable[TrialState] | None = None,
    ) -> tuple[list[Trial], int]:
        """A page of a study's trials sorted by ``sort`` (one of :data:`TRIAL_SORTS`; ties in
        number order, trials without a value or duration last), only those in ``states`` if
        given, and how many trials match in all."""
        check_page(offset, limit, sort)
        chosen = self.get_trials(study_id, states)
        if sort != "number":
            present, absent = _split_missing(chosen, sort)
            present.sort(key=lambda t: (_sort_key(t, sort), t.number), reverse=descending)
            chosen = present + absent
        elif descending:
            chosen.reverse()
        return chosen[offset : offset + limit], len(chosen)

    def trial_rows(
        self,
        study_id: int,
        *,
        params: bool = False,
        times: bool = True,
        states: Iterable[TrialState] | None = None,
    ) -> list[TrialRow]:
        """The trials of a study (only those in ``states`` if given) as light
        :class:`TrialRow` objects in number order, with ``params`` and start and end ``times`` only
        when asked: what the dashboard's charts aggregate."""
        return [
            TrialRow(
                t.number,
                t.state.value,
                t.value,
                t.duration_s,
                t.started_at if times else None,
                t.finished_at if times else None,
                t.host,
                t.runner or t.worker,
                dict(t.params) if params else None,
            )
            for t in self.get_trials(study_id, states)
        ]

    def completed_values(self, study_id: int) -> list[tuple[int, float]]:
        """``(number, value)`` of every COMPLETE trial with a value, in number order."""
        return [
            (t.number, t.value)
            for t in self.get_trials(study_id, [TrialState.COMPLETE])
            if t.value is not None
        ]

    def trial_params(self, study_id: int, numbers: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The parameters of the trials numbered ``numbers`` (those that exist)."""
        wanted = set(numbers)
        return {t.number: dict(t.params) for t in self.get_trials(study_id) if t.number in wanted}

    def trials_version(self, study_id: int) -> int:
        """The study's change number: it grows with every write of one of its trials (except
        heartbeats), so a reader can keep what it computed from the trials until it changes."""
        return self.changed_trials(study_id, 0)[1]

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections. The storage must not be used afterwards."""


def check_owner(trial: Trial, owner: str | None) -> None:
    """Refuse a change by ``owner`` of a trial it no longer runs (see update_trial)."""
    if owner is None:
        return
    if trial.state is not TrialState.RUNNING or trial.worker != owner:
        from optml.errors import LostTrialError

        raise LostTrialError(
            f"trial {trial.number} is {trial.state.value} and owned by {trial.worker!r}, no "
            f"longer by {owner!r}: its heartbeat lapsed and another controller took it over"
        )


def stale_changes(trial: Trial, now: datetime, fail: bool) -> dict[str, Any]:
    """What :meth:`Storage.mark_stale` writes to a trial whose owner stopped heartbeating."""
    attrs = {**trial.user_attrs, "stale": int(trial.user_attrs.get("stale", 0)) + 1}
    if not fail:
        return {"state": TrialState.STALE, "user_attrs": attrs}
    return {
        "state": TrialState.FAILED,
        "user_attrs": attrs,
        "finished_at": now,
        "error": f"stale: its controller {trial.worker} stopped heartbeating "
        "(the study's stale policy is fail)",
    }


# What trials_page sorts by: the trial number, the primary value, the duration, the state.
TRIAL_SORTS = ("number", "value", "duration", "state")
# The most trials one page may hold.
MAX_PAGE = 1000


class TrialRow(NamedTuple):
    """One trial reduced to what charts need (see :meth:`Storage.trial_rows`)."""

    number: int
    state: str
    value: float | None
    duration_s: float | None
    started_at: datetime | None
    finished_at: datetime | None
    host: str | None
    runner: str | None
    params: dict[str, Any] | None


def check_page(offset: int, limit: int, sort: str) -> None:
    """Refuse a page request no storage can answer (shared, so all refuse the same)."""
    from optml.errors import StorageError

    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise StorageError(f"offset must be a whole number >= 0, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise StorageError(f"limit must be a whole number from 1 to {MAX_PAGE}, got {limit!r}")
    if sort not in TRIAL_SORTS:
        raise StorageError(f"sort must be one of {', '.join(TRIAL_SORTS)}, got {sort!r}")


def _sort_key(trial: Trial, sort: str) -> Any:
    if sort == "value":
        return trial.value
    if sort == "duration":
        return trial.duration_s
    return trial.state.value


def _split_missing(trials: list[Trial], sort: str) -> tuple[list[Trial], list[Trial]]:
    """Trials that have the sort key, and those without it (no value, NaN, no duration)."""
    present: list[Trial] = []
    absent: list[Trial] = []
    for t in trials:
        key = _sort_key(t, sort)
        missing = key is None or (isinstance(key, float) and key != key)
        (absent if missing else present).append(t)
    return present, absent


# The longest study name any storage keeps (the SQL column's width).
MAX_STUDY_NAME = 255


def check_study_name(name: Any) -> str:
    """Refuse a study name no storage should keep: not a string, empty, too long, holding a
    control character or line break (it would break every listing and terminal it is shown in),
    or a slash or dot-segment (it would break the study's web addresses).
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
    if "/" in name or name in (".", ".."):
        # A study's name is one segment of its dashboard and REST API addresses
        # (/studies/NAME); a slash or a dot-segment would address another resource.
        raise StorageError(
            f"study name {name!r} cannot contain '/' or be '.' or '..' (it is one segment of "
            "the study's web and REST addresses); use another separator, e.g. '-' or ':'"
        )
    return name


def check_update(trial: Trial, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an update of ``trial``; shared by every storage so all refuse the same things."""
    from optml.errors import StorageError

    if not TRIAL_FIELDS.issuperset(fields):
        unknown = set(fields) - TRIAL_FIELDS
        raise StorageError(
            f"trial {trial.number}: cannot update unknown field(s) {sorted(unknown)}"
        )
    if trial.state.is_finished and not _ATTRS_ONLY.issuperset(fields):
        raise StorageError(
            f"trial {trial.number} is already {trial.state.value}; a finished trial is immutable"
        )
    out = dict(fields)
    if "state" in out and type(out["state"]) is not TrialState:
        out["state"] = TrialState(out["state"])
    return out


# What a finished trial still lets change.
_ATTRS_ONLY = frozenset({"user_attrs"})


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
