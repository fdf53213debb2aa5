"""In-memory storage: thread-safe, gone when the process ends; hands out copies."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from optml.errors import DuplicateStudyError, StorageError, StudyNotFoundError
from optml.ranking import best_trial
from optml.storage._base import (
    STUDY_STATES,
    Reservation,
    Storage,
    StudyRecord,
    StudySummary,
    check_owner,
    check_study_name,
    check_update,
    stale_changes,
    stored_constraints,
)
from optml.trial import Metric, Trial, TrialState, detached, fresh_dict


@dataclass
class _Run:
    study_id: int
    owner: str
    heartbeat_at: datetime
    finished: bool = False
    stop_requested: bool = False


class InMemoryStorage(Storage):
    """Keeps everything in this process's memory (``memory://``)."""

    url = "memory://"
    cheap_version = True

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._studies: dict[str, StudyRecord] = {}
        self._trials: dict[int, list[Trial]] = {}
        self._next_id = 1
        # Per study: the last change number, each trial's change number, the trials' numbers
        # from least to most recently changed, and the trial keys.
        self._seq: dict[int, int] = {}
        self._trial_seq: dict[int, list[int]] = {}
        self._recent: dict[int, dict[int, None]] = {}
        self._keys: dict[int, set[str]] = {}
        self._runs: dict[int, _Run] = {}

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
        check_study_name(name)
        with self._lock:
            if name in self._studies:
                raise DuplicateStudyError(f"a study named {name!r} already exists in {self.url}")
            record = StudyRecord(
                id=self._next_id,
                name=name,
                metrics=tuple(metrics),
                space=dict(space),
                sampler=dict(sampler),
                seed=seed,
                spec=dict(spec or {}),
                created_at=datetime.now(UTC),
                user_attrs=dict(user_attrs or {}),
            )
            self._next_id += 1
            self._studies[name] = record
            self._trials[record.id] = []
            self._seq[record.id] = 0
            self._trial_seq[record.id] = []
            self._recent[record.id] = {}
            self._keys[record.id] = set()
            return record

    def load_study(self, name: str) -> StudyRecord:
        with self._lock:
            try:
                return self._studies[name]
            except KeyError:
                raise StudyNotFoundError(f"no study named {name!r} in {self.url}") from None

    def _by_id(self, study_id: int) -> StudyRecord:
        for record in self._studies.values():
            if record.id == study_id:
                return record
        raise StudyNotFoundError(f"no study with id {study_id} in {self.url}")

    def list_studies(self) -> list[StudySummary]:
        with self._lock:
            return [
                StudySummary(
                    name=r.name,
                    state=r.state,
                    metric=r.metrics[0],
                    counts=self.count_trials(r.id),
                    best_value=(b.value if (b := self.get_best_trial(r.id)) else None),
                    created_at=r.created_at,
                )
                for r in self._studies.values()
            ]

    def delete_study(self, name: str) -> None:
        with self._lock:
            record = self.load_study(name)
            del self._studies[name]
            del self._trials[record.id]
            for run_id in [i for i, r in self._runs.items() if r.study_id == record.id]:
                del self._runs[run_id]

    def _replace_study(self, study_id: int, **changes: Any) -> None:
        from dataclasses import replace

        record = self._by_id(study_id)
        self._studies[record.name] = replace(record, **changes)

    def set_study_state(self, study_id: int, state: str) -> None:
        if state not in STUDY_STATES:
            raise StorageError(f"study state {state!r} is not one of {list(STUDY_STATES)}")
        with self._lock:
            self._replace_study(study_id, state=state)

    def set_study_attrs(self, study_id: int, attrs: Mapping[str, Any]) -> None:
        with self._lock:
            record = self._by_id(study_id)
            self._replace_study(study_id, user_attrs={**record.user_attrs, **attrs})

    def create_trial(
        self,
        study_id: int,
        params: Mapping[str, Any],
        *,
        state: TrialState = TrialState.WAITING,
        key: str | None = None,
        **fields: Any,
    ) -> Trial:
        with self._lock:
            trials = self._trials_of(study_id)
            base = Trial(number=len(trials), state=TrialState.WAITING, params=dict(params))
            trial = base.with_changes(**check_update(base, {"state": state, **fields}))
            self._append(study_id, trial, key)
            return trial

    def _append(self, study_id: int, trial: Trial, key: str | None) -> None:
        self._trials[study_id].append(detached(trial))
        self._trial_seq[study_id].append(self._bump(study_id))
        self._recent[study_id][trial.number] = None
        if key is not None:
            self._keys[study_id].add(key)

    def _bump(self, study_id: int) -> int:
        self._seq[study_id] += 1
        return self._seq[study_id]

    def reserve_trials(
        self,
        study_id: int,
        configs: Sequence[tuple[Mapping[str, Any], str | None]],
        *,
        worker: str | None,
    ) -> Reservation:
        with self._lock:
            trials = self._trials_of(study_id)
            budget = self._by_id(study_id).budget
            keys = self._keys[study_id]
            made: list[Trial] = []
            taken: list[int] = []
            spent = False
            now = datetime.now(UTC)
            for i, (params, key) in enumerate(configs):
                if key is not None and key in keys:
                    taken.append(i)
                    continue
                if budget is not None and len(trials) >= budget:
                    spent = True
                    break
                trial = Trial(
                    number=len(trials),
                    state=TrialState.RUNNING,
                    params=fresh_dict(params),
                    worker=worker,
                    started_at=now,
                    heartbeat_at=now,
                )
                self._append(study_id, trial, key)
                made.append(trial)
            return Reservation(made, taken, spent)

    def set_study_budget(self, study_id: int, budget: int | None) -> None:
        with self._lock:
            self._replace_study(study_id, budget=budget)

    def changed_trials(self, study_id: int, since: int) -> tuple[list[Trial], int]:
        with self._lock:
            trials = self._trials_of(study_id)
            seqs = self._trial_seq[study_id]
            changed = []
            for number in reversed(self._recent[study_id]):  # most recently changed first
                if seqs[number] <= since:
                    break
                changed.append(detached(trials[number]))
            changed.sort(key=lambda t: t.number)  # as SQL storage answers
            return changed, max(since, self._seq[study_id])

    # -- liveness -------------------------------------------------------------------------
    def start_run(self, study_id: int, owner: str) -> int:
        with self._lock:
            self._replace_study(study_id, state="RUNNING")
            run_id = len(self._runs) + 1
            self._runs[run_id] = _Run(study_id, owner, datetime.now(UTC))
            return run_id

    def heartbeat(self, study_id: int, owner: str, run_id: int | None = None) -> bool:
        with self._lock:
            trials = self._trials_of(study_id)
            now = datetime.now(UTC)
            for i, t in enumerate(trials):
                if t.state is TrialState.RUNNING and t.worker == owner:
                    trials[i] = t.with_changes(heartbeat_at=now)
            run = self._runs.get(run_id) if run_id is not None else None
            if run is None:
                return False
            run.heartbeat_at = now
            return run.stop_requested

    def _live(self, study_id: int, grace_s: float) -> list[int]:
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
        return [
            i
            for i, r in self._runs.items()
            if r.study_id == study_id and not r.finished and r.heartbeat_at >= cutoff
        ]

    def trials_version(self, study_id: int) -> int:
        with self._lock:
            self._by_id(study_id)
            return self._seq[study_id]

    def end_run(self, run_id: int, state: str, grace_s: float) -> str:
        if state not in STUDY_STATES:
            raise StorageError(f"study state {state!r} is not one of {list(STUDY_STATES)}")
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise StorageError(f"no run with id {run_id} in {self.url}")
            run.finished = True
            if self._live(run.study_id, grace_s):
                return "RUNNING"
            self._replace_study(run.study_id, state=state)
            return state

    def live_runs(self, study_id: int, grace_s: float) -> list[str]:
        with self._lock:
            return [self._runs[i].owner for i in self._live(study_id, grace_s)]

    def request_stop(self, study_id: int, grace_s: float) -> int:
        with self._lock:
            record = self._by_id(study_id)
            live = self._live(study_id, grace_s)
            for i in live:
                self._runs[i].stop_requested = True
            if not live and record.state == "RUNNING":
                self._replace_study(study_id, state="INTERRUPTED")
            return len(live)

    def mark_stale(
        self,
        study_id: int,
        grace_s: float,
        *,
        dead_owners: Iterable[str] = (),
        fail: bool = False,
    ) -> list[Trial]:
        dead = set(dead_owners)
        with self._lock:
            trials = self._trials_of(study_id)
            now = datetime.now(UTC)
            cutoff = now - timedelta(seconds=grace_s)
            out = []
            for t in list(trials):
                if t.state is not TrialState.RUNNING:
                    continue
                last = t.heartbeat_at or t.started_at
                if t.worker in dead or (last is not None and last < cutoff):
                    out.append(self._update(study_id, t, stale_changes(t, now, fail)))
            return out

    def _trials_of(self, study_id: int) -> list[Trial]:
        try:
            return self._trials[study_id]
        except KeyError:
            raise StudyNotFoundError(f"no study with id {study_id} in {self.url}") from None

    def claim_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        with self._lock:
            for t in self._trials_of(study_id):
                if t.state is TrialState.WAITING or t.state is TrialState.STALE:
                    now = datetime.now(UTC)
                    return self.update_trial(
                        study_id,
                        t.number,
                        state=TrialState.RUNNING,
                        worker=worker,
                        started_at=now,
                        heartbeat_at=now,
                    )
            return None

    def update_trial(
        self, study_id: int, number: int, *, owner: str | None = None, **fields: Any
    ) -> Trial:
        with self._lock:
            trials = self._trials_of(study_id)
            if not 0 <= number < len(trials):
                raise StorageError(f"study {study_id} has no trial {number}")
            trial = trials[number]  # replaced, never changed: the update copies what it keeps
            check_owner(trial, owner)
            return self._update(study_id, trial, fields)

    def _update(self, study_id: int, trial: Trial, fields: Mapping[str, Any]) -> Trial:
        updated = trial.with_changes(**check_update(trial, fields))
        self._trials[study_id][trial.number] = detached(updated)
        self._trial_seq[study_id][trial.number] = self._bump(study_id)
        recent = self._recent[study_id]
        recent.pop(trial.number, None)
        recent[trial.number] = None
        return updated

    def get_trial(self, study_id: int, number: int) -> Trial:
        with self._lock:
            trials = self._trials_of(study_id)
            if not 0 <= number < len(trials):
                raise StorageError(f"study {study_id} has no trial {number}")
            return detached(trials[number])

    def get_trials(self, study_id: int, states: Iterable[TrialState] | None = None) -> list[Trial]:
        with self._lock:
            trials = [detached(t) for t in self._trials_of(study_id)]
        if states is not None:
            wanted = set(states)
            trials = [t for t in trials if t.state in wanted]
        return trials

    def get_best_trial(self, study_id: int) -> Trial | None:
        with self._lock:
            record = self._by_id(study_id)
            best = best_trial(
                self._trials_of(study_id), record.metrics[0], stored_constraints(record.spec)
            )
            return None if best is None else detached(best)

    def count_trials(self, study_id: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.get_trials(study_id):
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        return counts
