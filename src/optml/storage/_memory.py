"""In-memory storage: thread-safe, gone when the process ends; hands out deep copies."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from optml.errors import DuplicateStudyError, StorageError, StudyNotFoundError
from optml.ranking import best_trial
from optml.storage._base import (
    STUDY_STATES,
    Storage,
    StudyRecord,
    StudySummary,
    check_study_name,
    check_update,
    stored_constraints,
)
from optml.trial import Metric, Trial, TrialState


class InMemoryStorage(Storage):
    """Keeps everything in this process's memory (``memory://``)."""

    url = "memory://"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._studies: dict[str, StudyRecord] = {}
        self._trials: dict[int, list[Trial]] = {}
        self._next_id = 1

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
        **fields: Any,
    ) -> Trial:
        with self._lock:
            trials = self._trials_of(study_id)
            base = Trial(number=len(trials), state=TrialState.WAITING, params=dict(params))
            trial = base.with_changes(**check_update(base, {"state": state, **fields}))
            trials.append(copy.deepcopy(trial))
            return trial

    def _trials_of(self, study_id: int) -> list[Trial]:
        try:
            return self._trials[study_id]
        except KeyError:
            raise StudyNotFoundError(f"no study with id {study_id} in {self.url}") from None

    def claim_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        with self._lock:
            for t in self._trials_of(study_id):
                if t.state is TrialState.WAITING:
                    return self.update_trial(
                        study_id,
                        t.number,
                        state=TrialState.RUNNING,
                        worker=worker,
                        started_at=datetime.now(UTC),
                    )
            return None

    def update_trial(self, study_id: int, number: int, **fields: Any) -> Trial:
        with self._lock:
            trials = self._trials_of(study_id)
            trial = self.get_trial(study_id, number)
            updated = trial.with_changes(**check_update(trial, fields))
            trials[number] = copy.deepcopy(updated)
            return updated

    def get_trial(self, study_id: int, number: int) -> Trial:
        with self._lock:
            trials = self._trials_of(study_id)
            if not 0 <= number < len(trials):
                raise StorageError(f"study {study_id} has no trial {number}")
            return copy.deepcopy(trials[number])

    def get_trials(self, study_id: int, states: Iterable[TrialState] | None = None) -> list[Trial]:
        with self._lock:
            trials = copy.deepcopy(self._trials_of(study_id))
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
            return copy.deepcopy(best)

    def count_trials(self, study_id: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.get_trials(study_id):
            counts[t.state.value] = counts.get(t.state.value, 0) + 1
        return counts
