"""Study: ask/tell and the optimisation loop (the controller)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import numbers
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, overload

import numpy as np

from optml._controller import DEFAULT_GRACE_S, DEFAULT_HEARTBEAT_S, Controller
from optml._process import controller_id, dead_local_owners
from optml.errors import LostTrialError, OptMLError, SpecError, StorageError
from optml.objectives._base import Objective, normalize_result, optimised_value
from optml.samplers import Metric, Sampler, SearchContext, TrialMemo, make_sampler
from optml.space import Space, parse_space
from optml.storage import Storage, StudyRecord, open_storage
from optml.trial import Trial, TrialState, detached

Callback = Callable[["Study", Trial], None]

# Storage keeps seeds as signed 64-bit integers (SQL BIGINT).
SEED_LIMIT = 2**63


def check_seed(seed: Any, where: str = "seed") -> int:
    """``seed`` as an int, or an :class:`OptMLError` saying what is accepted."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise SpecError(f"{where} must be an integer in [0, 2**63), got {seed!r}")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise SpecError(f"{where} must be an integer in [0, 2**63), got {int(seed)}")
    return int(seed)


def _finished_state(state: Any, where: str) -> TrialState:
    """The finished state named by ``state`` (case-insensitive), or a clear error."""
    accepted = ", ".join(s.value for s in TrialState if s.is_finished)
    try:
        parsed = TrialState(state.upper() if isinstance(state, str) else state)
    except ValueError:
        raise OptMLError(f"{where}: state {state!r} is not one of {accepted}") from None
    if not parsed.is_finished:
        raise OptMLError(
            f"{where}: state {parsed.value} is not a finished state; use one of {accepted}"
        )
    return parsed


def _metrics_from(
    metric: str | Metric | Sequence[str | Metric | Mapping[str, str]] | None, direction: str | None
) -> tuple[Metric, ...]:
    if metric is None:
        metric = "value"
    if isinstance(metric, str | Metric):
        metric = [metric]
    out = []
    for m in metric:
        if isinstance(m, Metric):
            out.append(m)
        elif isinstance(m, Mapping):
            out.append(Metric(str(m["name"]), m.get("direction", "minimize")))  # type: ignore[arg-type]
        else:
            out.append(Metric(str(m), (direction or "minimize")))  # type: ignore[arg-type]
    for m in out:
        if m.direction not in ("minimize", "maximize"):
            raise SpecError(
                f"metric {m.name!r}: direction must be minimize or maximize, not {m.direction!r}"
            )
    return tuple(out)


class Study:
    """A named search: a space, the metric(s) to optimise, a sampler and every trial so far.

    Create one with :func:`create_study`, load one with :func:`load_study`. Drive it with
    :meth:`optimize`, or by hand with :meth:`ask` and :meth:`tell`.

    >>> study = create_study(space={"x": {"uniform": [-2, 2]}}, storage="memory://", seed=0)
    >>> study.optimize(lambda x: (x - 1) ** 2, n_trials=20, executor="serial")
    >>> round(study.best_value, 1) < 0.2
    True
    """

    def __init__(
        self,
        storage: Storage,
        record: StudyRecord,
        sampler: Sampler | None = None,
        space: Space | None = None,
        constraints: Sequence[Any] = (),
    ) -> None:
        self.storage = storage
        self._record = record
        self.space = space or Space.from_dict(record.space)
        self.constraints = self._parse_constraints(constraints)
        self.sampler = sampler or make_sampler(
            record.sampler, space=self.space, n_metrics=len(record.metrics)
        )
        self._cache: _TrialCache | None = None
        self._seq = 0  # the storage's change number as of the cache's last read
        # Changes this Study wrote since that read (each one's result already in the cache).
        self._own_changes = 0
        # Per-trial keys and unit points, kept across sampler requests (parameters never change).
        self._memo = TrialMemo(self.space)
        self._streams = _Streams(record.seed)
        self._stop_requested = False
        # Whether the sampler's proposals ignore every trial's result (see proposes_blind).
        self._blind = proposes_blind(self.sampler)
        self.last_run: Any = None
        # How often trials handed out by ask() heartbeat (see _AskHeartbeat).
        self.heartbeat_s = 5.0
        self._ask_heartbeat: Heartbeat | None = None

    # -- identity -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._record.name

    @property
    def id(self) -> int:
        return self._record.id

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return self._record.metrics

    @property
    def metric(self) -> Metric:
        return self._record.metrics[0]

    @property
    def seed(self) -> int:
        return self._record.seed

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._record.spec)

    @property
    def state(self) -> str:
        """CREATED, RUNNING (while any controller of it is alive), INTERRUPTED or COMPLETE.

        A study stored RUNNING whose every controller stopped heartbeating (killed, or its
        machine lost) is INTERRUPTED: ``optml resume`` continues it.
        """
        return study_state(self.storage, self.storage.load_study(self.name))

    @property
    def user_attrs(self) -> dict[str, Any]:
        return dict(self.storage.load_study(self.name).user_attrs)

    def __repr__(self) -> str:
        return f"Study(name={self.name!r}, sampler={self.sampler!r}, storage={self.storage.url!r})"

    # -- reading --------------------------------------------------------------------------
    @property
    def trials(self) -> list[Trial]:
        """Every trial, in number order (read from storage)."""
        return self.get_trials()

    def get_trials(self, states: Iterable[TrialState] | None = None) -> list[Trial]:
        """The trials in ``states`` (all when None), in number order (read from storage)."""
        return [self._own(t) for t in self.storage.get_trials(self.id, states)]

    def _best(self) -> Trial | None:
        """The best trial as :func:`optml.ranking.best_trial` ranks them, or None."""
        if not self.constraints:  # storage ranks under the stored ones itself, the fast way
            return self.storage.get_best_trial(self.id)
        from optml.ranking import best_trial

        return best_trial(self.get_trials([TrialState.COMPLETE]), self.metric, self.constraints)

    @property
    def best_trial(self) -> Trial:
        """The COMPLETE trial with the best finite value of the primary metric (feasible ones
        only, when the study has constraints; lowest number on ties): see :mod:`optml.ranking`."""
        best = self._best()
        if best is None:
            feasible = " that meets its constraints" if self.constraints else ""
            raise OptMLError(f"study {self.name!r} has no completed trial{feasible} yet")
        return best

    @property
    def best_value(self) -> float:
        value = self.best_trial.value
        assert value is not None
        return value

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best_trial.params)

    @property
    def best_trials(self) -> list[Trial]:
        """The Pareto front over every metric (the best trial when there is one metric)."""
        if len(self.metrics) == 1:
            best = self._best()
            return [best] if best else []
        from optml.pareto import pareto_front

        return pareto_front(self.get_trials([TrialState.COMPLETE]), self.metrics, self.constraints)

    def trials_table(self) -> list[dict[str, Any]]:
        """Every trial as a flat dict (one column per parameter and metric), pandas-free."""
        rows = []
        for t in self.trials:
            row: dict[str, Any] = {"number": t.number, "state": t.state.value}
            row.update({f"params.{k}": v for k, v in t.params.items()})
            row["value"] = t.value
            row.update({f"metrics.{k}": v for k, v in t.metrics.items()})
            row.update(duration_s=t.duration_s, attempts=t.attempts, error=t.error)
            rows.append(row)
        return rows

    def export(self, fmt: str = "json") -> str:
        """The trials as JSON (a list of trial dicts) or CSV (one row per trial)."""
        if fmt == "json":
            return json.dumps([t.to_dict() for t in self.trials], indent=2, default=str)
        if fmt == "csv":
            rows = self.trials_table()
            columns: list[str] = []
            for row in rows:
                columns += [c for c in row if c not in columns]
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=columns or ["number"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            return buf.getvalue()
        raise SpecError(f"export format {fmt!r} is not supported; use json or csv")

    # -- warm start -----------------------------------------------------------------------
    def enqueue(self, params: Mapping[str, Any]) -> Trial:
        """Queue a configuration to run before any the sampler proposes."""
        config = self.space.validate(params, where="enqueued configuration")
        return detached(self._write_new(config, TrialState.WAITING, key=self._key(config)))

    def add_trial(
        self,
        params: Mapping[str, Any],
        value: float | Mapping[str, float] | None = None,
        *,
        state: TrialState | str = TrialState.COMPLETE,
        error: str | None = None,
    ) -> Trial:
        """Record a trial evaluated elsewhere (warm start).

        A value that the study cannot rank (an optimised metric missing, NaN or infinite) is
        recorded as a FAILED trial that says why, as :meth:`tell` and :meth:`optimize` do.
        """
        config = self.space.validate(params, where="added trial")
        state = _finished_state(state, "add_trial")
        fields: dict[str, Any] = {"state": state, "error": error, "finished_at": datetime.now(UTC)}
        if value is not None:
            fields.update(self._result_fields(value, state))
        elif state is TrialState.COMPLETE:
            raise OptMLError("add_trial: a COMPLETE trial needs a value")
        return detached(self._write_new(config, **fields))

    # -- ask / tell -----------------------------------------------------------------------
    @overload
    def ask(self, n: None = None) -> Trial: ...

    @overload
    def ask(self, n: int) -> list[Trial]: ...

    @overload
    def ask(self, n: int | None) -> Trial | list[Trial]: ...

    def ask(self, n: int | None = None, *, heartbeat: bool = True) -> Trial | list[Trial]:
        """Start new trials: queued ones first, then the sampler's proposals.

        Returns one RUNNING trial, or a list of up to ``n`` when ``n`` is given (fewer when a
        grid is used up, or the study's stored budget is spent).

        With ``heartbeat`` (the default) a daemon thread refreshes the heartbeat of the trials
        this process was handed, every :attr:`heartbeat_s` seconds while any is still running,
        so that no controller takes them for abandoned (STALE) while this process lives. Pass
        ``heartbeat=False`` for no thread: such a trial has no owner (``worker`` None) and is
        taken for abandoned (STALE, run again by a controller) once it is older than a
        controller's grace period.
        """
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0):
            raise OptMLError(f"ask: n must be a whole number >= 0, got {n!r}")
        # Copies: what the caller does with them must not change the trials this Study keeps.
        trials = [
            detached(t) for t in self._start_trials(1 if n is None else int(n), owned=heartbeat)
        ]
        if heartbeat and trials:
            self._start_ask_heartbeat()
        if n is None:
            if not trials:
                raise OptMLError(f"study {self.name!r}: the sampler has no configuration left")
            return trials[0]
        return trials

    def tell(
        self,
        trial: Trial | int,
        value: float | Mapping[str, float] | None = None,
        *,
        state: TrialState | str = TrialState.COMPLETE,
        error: str | None = None,
    ) -> Trial:
        """Finish a trial that :meth:`ask` handed out (a RUNNING trial of this study).

        ``trial`` is the :class:`Trial` or its number; ``state`` is one of the finished states
        COMPLETE (the default, which needs ``value``), FAILED, PRUNED or TIMEOUT. A COMPLETE
        result whose optimised metric is missing, NaN or infinite is recorded FAILED with the
        reason. Another study's trial, a trial still WAITING in the queue or already finished,
        an unknown number and a state that is not a finished one are refused with an
        :class:`~optml.errors.OptMLError`; nothing is written then.
        """
        number = self._told_number(trial)
        state = _finished_state(state, "tell")
        fields: dict[str, Any] = {"state": state, "error": error, "finished_at": datetime.now(UTC)}
        if value is not None:
            fields.update(self._result_fields(value, state))
        elif state is TrialState.COMPLETE:
            raise OptMLError("tell: a COMPLETE trial needs a value")
        current = self._told_trial(number)
        if current.started_at is not None:
            fields["duration_s"] = (fields["finished_at"] - current.started_at).total_seconds()
        return detached(self._write(number, **fields))

    def _told_number(self, trial: Any) -> int:
        if isinstance(trial, Trial):
            if trial.study is not None and trial.study != self.name:
                raise OptMLError(
                    f"tell: trial {trial.number} belongs to study {trial.study!r}, not to "
                    f"{self.name!r}; tell it to the study that asked for it"
                )
            return trial.number
        if isinstance(trial, bool) or not isinstance(trial, numbers.Integral):
            raise OptMLError(f"tell: expected a Trial or a trial number (an int), got {trial!r}")
        return int(trial)

    def _told_trial(self, number: int) -> Trial:
        """The stored trial ``number``, which must be RUNNING (handed out and not finished)."""
        try:
            current = self.storage.get_trial(self.id, number)
        except StorageError:
            if number < 0 or number >= sum(self.storage.count_trials(self.id).values()):
                raise OptMLError(
                    f"tell: study {self.name!r} has no trial {number}; tell finishes trials "
                    "handed out by ask()"
                ) from None
            raise
        if current.state is TrialState.WAITING:
            raise OptMLError(
                f"tell: trial {number} of study {self.name!r} is WAITING in the queue and was "
                "never handed out; ask() for it first"
            )
        if current.state.is_finished:
            raise OptMLError(
                f"tell: trial {number} of study {self.name!r} is already {current.state.value}; "
                "a finished trial is immutable"
            )
        return current

    def _result_fields(
        self, value: float | Mapping[str, float], state: TrialState
    ) -> dict[str, Any]:
        """The record of a reported result: its metrics and the value of the primary metric.

        A COMPLETE result the study cannot rank becomes FAILED with the reason; another
        finished state keeps its state and error and gets no value."""
        metrics = normalize_result(
            dict(value) if isinstance(value, Mapping) else value, self.metric.name
        )
        try:
            return {
                "metrics": metrics,
                "value": optimised_value(metrics, [m.name for m in self.metrics]),
            }
        except OptMLError as exc:
            if state is TrialState.COMPLETE:
                return {
                    "metrics": metrics,
                    "value": None,
                    "state": TrialState.FAILED,
                    "error": str(exc),
                }
            return {"metrics": metrics, "value": None}

    def stop(self, everywhere: bool = False) -> int:
        """Ask a running :meth:`optimize` in this process to start no new trial (e.g. from a
        callback); with ``everywhere``, store the request so that every controller of the
        study, on any machine, stops (as ``optml stop`` does).

        Running trials finish (or are put back in the queue on Ctrl-C) and the study ends
        INTERRUPTED. Returns how many live controllers the stored request reached (0 without
        ``everywhere``).
        """
        self._stop_requested = True
        if not everywhere:
            return 0
        from optml._controller import DEFAULT_GRACE_S

        return self.storage.request_stop(self.id, DEFAULT_GRACE_S)

    def set_budget(self, trials: int | None) -> None:
        """Store the most trials the study may have, all controllers together (None: no limit).

        Every controller counts against this one number when it reserves a trial, so k
        controllers together run it once. :meth:`optimize`'s ``n_trials`` further limits one
        call.
        """
        if trials is not None and (
            isinstance(trials, bool) or not isinstance(trials, numbers.Integral) or trials < 0
        ):
            raise OptMLError(f"budget must be a whole number of trials >= 0, got {trials!r}")
        self.storage.set_study_budget(self.id, None if trials is None else int(trials))
        self._record = self.storage.load_study(self.name)

    @property
    def budget(self) -> int | None:
        """The study's stored trial budget (see :meth:`set_budget`)."""
        return self.storage.load_study(self.name).budget

    # -- the loop -------------------------------------------------------------------------
    def optimize(
        self,
        objective: Callable[..., Any] | Objective,
        n_trials: int | None = None,
        *,
        timeout: float | None = None,
        workers: int | None = None,
        executor: Any = "local",
        trial_timeout: float | None = None,
        retries: int = 0,
        target: float | None = None,
        callbacks: Sequence[Callback] = (),
        data: str | None = None,
        show_progress: bool = False,
        heartbeat: float | None = None,
        grace: float | None = None,
        stale: str = "requeue",
        propose_ahead: bool = False,
    ) -> None:
        """Run trials in parallel until ``n_trials`` more have finished, ``timeout`` seconds
        have passed, the best value reaches ``target``, the study's stored budget (see
        :meth:`set_budget`) is spent, or the sampler has nothing left.

        Any number of processes, on any machines, may optimize one study in SQL storage at
        once: each reserves its trials in storage against the one stored budget, and sees the
        others' trials before proposing. Every ``heartbeat`` seconds (default 5) this call
        refreshes the heartbeat of its running trials, reads a stored stop request (``optml
        stop``, :meth:`stop` with ``everywhere``), and marks STALE the running trials of any
        controller whose heartbeat lapsed for more than ``grace`` seconds (default 30); it then
        runs them again, or records them FAILED with ``stale="fail"``. Trials of other
        controllers are waited for before this call returns, since they may need running again.

        ``timeout`` is a wall-clock budget for this call: when it runs out, trials still running
        are stopped and recorded TIMEOUT ("stopped: the study's time budget of ... s ran out").
        ``executor`` is ``"local"`` (``workers`` processes, the default), ``"serial"`` or an
        :class:`~optml.executors.Executor`. A trial past ``trial_timeout`` seconds is killed and
        recorded TIMEOUT; a failed trial is retried up to ``retries`` times, then recorded FAILED.
        A result whose optimised metric is missing, NaN or infinite is recorded FAILED. A
        missing objective file or module is reported before the first trial. Bad arguments
        (a negative or non-integer count, a time limit that is not a positive finite number)
        raise :class:`~optml.errors.OptMLError` naming the argument.
        On Ctrl-C running trials are put back in the queue and the study is marked
        INTERRUPTED; :meth:`optimize` again (or ``optml resume``) finishes it. SIGTERM does the
        same (in the main thread, where no other handler is installed) and raises
        ``optml.errors.Terminated``, a ``KeyboardInterrupt``.

        With ``propose_ahead``, a model-based sampler whose proposals are dear next to trials
        that end in waves (at least 16 slots, every one busy) proposes the next wave while the
        current one runs, so that freed slots get trials at once: a busier cluster, but each
        proposal sees one wave less, and the search found worse points at equal wall time in
        this project's benchmarks; off by default.
        """
        self.last_run = Controller(
            self,
            objective,
            n_trials=n_trials,
            timeout=timeout,
            workers=workers,
            executor=executor,
            trial_timeout=trial_timeout,
            retries=retries,
            target=target,
            callbacks=callbacks,
            data=data,
            show_progress=show_progress,
            heartbeat=DEFAULT_HEARTBEAT_S if heartbeat is None else heartbeat,
            grace=DEFAULT_GRACE_S if grace is None else grace,
            stale=stale,
            propose_ahead=propose_ahead,
        ).run()

    # -- internals shared by ask/tell and the controller ----------------------------------
    def _trial_cache(self) -> _TrialCache:
        if self._cache is None:
            self._sync()
        assert self._cache is not None
        return self._cache

    def _refresh(self) -> None:
        self._cache = None
        self._seq = 0
        self._own_changes = 0

    def _sync(self) -> None:
        """Bring the trial cache up to date, reading only what changed since the last read
        (other controllers' trials included). Where the storage's change number costs nothing
        to ask, a cache whose every change since was this Study's own write is not re-read."""
        storage = self.storage
        if self._cache is not None and storage.cheap_version:
            version = storage.trials_version(self.id)
            if version == self._seq + self._own_changes:  # nobody else wrote meanwhile
                self._seq, self._own_changes = version, 0
                return
        changed, self._seq = storage.changed_trials(self.id, self._seq)
        self._own_changes = 0
        if self._cache is None:
            self._cache = _TrialCache()
        for t in changed:
            self._cache[t.number] = self._own(t)

    def _key(self, params: Mapping[str, Any]) -> str:
        """A point's identity in storage (see Storage.reserve_trials)."""
        return hashlib.sha1(repr(self.space.key(params)).encode()).hexdigest()

    def _own(self, trial: Trial) -> Trial:
        """``trial`` marked as this study's (see :meth:`tell`). Storage hands out fresh
        trials that nothing else holds: an unmarked one is marked in place.

        The trial cache keeps such trials, never handing them to user code (which gets
        :func:`~optml.trial.detached` copies), so that they need no re-read to stay true."""
        name = self._record.name
        if trial.study is None:
            trial.__dict__["study"] = name  # frozen, but fresh: nothing else holds it yet
            return trial
        return trial if trial.study == name else trial.with_changes(study=name)

    def _write_new(self, params: dict[str, Any], state: TrialState, **fields: Any) -> Trial:
        cached = self._cache is not None  # else the read that fills the cache sees this write
        trial = self._own(self.storage.create_trial(self.id, params, state=state, **fields))
        self._trial_cache()[trial.number] = trial
        self._own_changes += cached
        return trial

    def _write(self, number: int, owner: str | None = None, **fields: Any) -> Trial:
        trial = self._own(self.storage.update_trial(self.id, number, owner=owner, **fields))
        if self._cache is not None:
            self._cache[number] = trial
            self._own_changes += 1
        return trial

    def _write_many(
        self, updates: dict[int, dict[str, Any]], owner: str | None = None
    ) -> dict[int, Trial | None]:
        """:meth:`_write` for several trials in one storage transaction; None for a trial
        ``owner`` no longer runs."""
        if len(updates) == 1:  # the common case of trials run one at a time, kept cheap
            [(number, fields)] = updates.items()
            try:
                return {number: self._write(number, owner=owner, **fields)}
            except LostTrialError:
                return {number: None}
        written = self.storage.update_trials(self.id, updates, owner=owner)
        for number, trial in written.items():
            if trial is not None:
                trial = written[number] = self._own(trial)
                if self._cache is not None:
                    self._cache[number] = trial
                    self._own_changes += 1
        return written

    def context(self, budget: int | None = None) -> SearchContext:
        """What the sampler sees now."""
        trials = self._trial_cache().ordered()
        return SearchContext(
            space=self.space,
            trials=trials,
            metrics=self.metrics,
            seed=self.seed,
            budget=budget,
            constraints=self.constraints,
            memo=self._memo,
        )

    def _parse_constraints(self, extra: Sequence[Any]) -> tuple[Any, ...]:
        """Stored constraints (spec strings and dicts) plus ``extra`` ones (e.g. callables)."""
        specs = list(self._record.spec.get("constraints") or []) + list(extra)
        if not specs:
            return ()
        from optml.constraints import parse_constraints

        return tuple(parse_constraints(specs, names=self.space.names))

    # Proposals refused because another controller took the same points first are made again
    # (from the history that now holds them) at most this many times per request.
    PROPOSAL_ROUNDS = 4

    def _start_trials(self, n: int, budget: int | None = None, owned: bool = True) -> list[Trial]:
        """Claim queued (and STALE) trials, then reserve the sampler's proposals for the rest;
        all come back RUNNING. Fewer than ``n`` when the space or the stored budget runs out.

        The sampler sees every controller's trials (re-read: only what changed), and its
        random state comes from the number the next trial gets, so that two controllers with
        the same history still propose different points; a point another controller reserved
        first is refused by storage and proposed afresh. Without ``owned`` the trials get no
        owner, so nothing heartbeats them.
        """
        me = controller_id() if owned else None
        started: list[Trial] = []
        self._sync()
        # Only a trial queued (or left STALE) in the history just read can be claimed.
        claimable = bool(self._trial_cache().queued)
        while claimable and len(started) < n:
            claimed = self.storage.claim_trial(self.id, worker=me)
            if claimed is None:
                break
            claimed = self._own(claimed)
            self._trial_cache()[claimed.number] = claimed
            self._own_changes += 1
            started.append(claimed)
        want = n - len(started)
        for round_ in range(self.PROPOSAL_ROUNDS):
            if want <= 0:
                break
            if round_ or started:
                self._sync()
            ctx = self.context(budget)
            number = self._trial_cache().top + 1
            if want == 1 or not self._blind:
                rng = self._streams.at(number * self.PROPOSAL_ROUNDS + round_)
                configs = self.sampler.propose(ctx, want, rng)[:want]
            else:  # each point from its own trial's stream: the same points as one by one
                configs = []
                for i in range(want):
                    rng = self._streams.at((number + i) * self.PROPOSAL_ROUNDS + round_)
                    configs += self.sampler.propose(ctx, 1, rng)[:1]
            if not configs:
                break
            got = self.storage.reserve_trials(
                self.id, [(c, self._key(c)) for c in configs], worker=me
            )
            cache = self._trial_cache()
            for trial in got.trials:
                trial = self._own(trial)
                cache[trial.number] = trial
                started.append(trial)
            self._own_changes += len(got.trials)
            want -= len(got.trials)
            if got.budget_spent or not got.taken:
                break
        return started

    def reap_stale(self, grace_s: float, policy: str = "requeue") -> list[Trial]:
        """Mark STALE the RUNNING trials whose owner stopped heartbeating more than ``grace_s``
        seconds ago, or whose owner was a process of this machine that is gone; a controller
        then runs them again (``policy="fail"``: they are recorded FAILED instead)."""
        if policy not in ("requeue", "fail"):
            raise OptMLError(f"stale policy must be requeue or fail, got {policy!r}")
        running = self.storage.get_trials(self.id, [TrialState.RUNNING])
        dead = dead_local_owners({t.worker for t in running if t.worker})
        marked = self.storage.mark_stale(self.id, grace_s, dead_owners=dead, fail=policy == "fail")
        if self._cache is not None:
            for t in marked:
                self._cache[t.number] = self._own(t)
            self._own_changes += len(marked)
        return marked

    def requeue_orphans(self, grace_s: float | None = None) -> list[Trial]:
        """Mark STALE (to be run again) RUNNING trials whose controller is gone (see
        :meth:`reap_stale`)."""
        from optml._controller import DEFAULT_GRACE_S

        return self.reap_stale(DEFAULT_GRACE_S if grace_s is None else grace_s)

    def _start_ask_heartbeat(self) -> None:
        beat = self._ask_heartbeat
        if beat is None or not beat.is_alive():
            self._ask_heartbeat = Heartbeat(self, self.heartbeat_s)
            self._ask_heartbeat.start()

    def _pause_ask_heartbeat(self) -> bool:
        """Stop the ask() heartbeat thread (a controller about to fork must have none); returns
        whether one was running. The controller's loop heartbeats the same trials meanwhile."""
        beat = self._ask_heartbeat
        if beat is None or not beat.is_alive():
            return False
        beat.halt()
        return True


def proposes_blind(sampler: Sampler) -> bool:
    """Whether ``sampler``'s proposals depend on no trial's result (see ``Sampler.learns``);
    a sampler not derived from :class:`Sampler` is taken to learn."""
    return not getattr(sampler, "learns", True)


class _Streams:
    """The random state of each proposal, a pure function of the study's seed and a position
    (from the number the next trial gets): the seed's PCG64 stream, advanced by ``position``
    times 2**64 draws, so positions never share numbers. One generator is moved, instead of one
    built per proposal (seeding a numpy generator costs more than a random proposal)."""

    def __init__(self, seed: int) -> None:
        self._bits = np.random.PCG64(seed)
        self._start = self._bits.state
        self._generator = np.random.Generator(self._bits)

    def at(self, position: int) -> np.random.Generator:
        self._bits.state = self._start
        self._bits.advance(position << 64)
        return self._generator


class _TrialCache(dict[int, Trial]):
    """A study's trials by number, as last read from storage. It keeps which ones are queued
    (WAITING or STALE) and the highest number, and lists them in number order, so that the
    controller's loop asks none of these questions of every trial of a long history."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: set[int] = set()
        self.top = -1
        self._in_order = True  # keys were inserted in increasing order
        # Trial i at index i while the numbers held are exactly 0 .. top (None otherwise):
        # copying it lists the trials without a pass over the dict.
        self._listed: list[Trial] | None = []

    def __setitem__(self, number: int, trial: Trial) -> None:
        listed = self._listed
        if listed is not None:
            if number < len(listed):
                listed[number] = trial
            elif number == len(listed):
                listed.append(trial)
            else:
                self._listed = None  # a gap: a lower number is not read yet
        if number > self.top:
            self.top = number
        elif number not in self:
            self._in_order = False  # another controller's trial, read after a later one
        dict.__setitem__(self, number, trial)
        if trial.state is TrialState.WAITING or trial.state is TrialState.STALE:
            self.queued.add(number)
        else:
            self.queued.discard(number)

    def ordered(self) -> list[Trial]:
        """Every trial, in number order (a fresh list)."""
        if self._listed is not None:
            return self._listed.copy()
        if not self._in_order:
            items = sorted(self.items())
            super().clear()
            for number, trial in items:
                super().__setitem__(number, trial)
            self._in_order = True
        trials = list(self.values())
        if len(trials) == self.top + 1:  # the gap is filled
            self._listed = trials.copy()
        return trials


class Heartbeat(threading.Thread):
    """Refreshes, every ``interval`` seconds, the heartbeat of the RUNNING trials this process
    owns in one study: for ask() until none is left (then it ends; the next ask() starts
    another); for a controller that runs trials in its own process (``run_id``), until halted,
    reading stop requests too."""

    def __init__(self, study: Study, interval: float, run_id: int | None = None) -> None:
        super().__init__(name=f"optml-heartbeat-{study.name}", daemon=True)
        self.study = study
        self.interval = interval
        self.run_id = run_id
        self._halt = threading.Event()

    def run(self) -> None:
        study, me = self.study, controller_id()
        while not self._halt.wait(self.interval):
            try:
                if study.storage.heartbeat(study.id, me, self.run_id):
                    study._stop_requested = True
                if self.run_id is not None:
                    continue
                mine = study.storage.get_trials(study.id, [TrialState.RUNNING])
            except OptMLError:
                continue  # storage unreachable for now: try again next beat
            if not any(t.worker == me for t in mine):
                return

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def study_state(storage: Storage, record: StudyRecord) -> str:
    """The state of a study as every reader should show it: the stored state, except that a
    study stored RUNNING whose every controller stopped heartbeating is INTERRUPTED."""
    if record.state != "RUNNING":
        return record.state
    from optml._controller import DEFAULT_GRACE_S

    owners = set(storage.live_runs(record.id, DEFAULT_GRACE_S))
    return "INTERRUPTED" if not owners - dead_local_owners(owners) else "RUNNING"


# -- module-level constructors --------------------------------------------------------------
def create_study(
    name: str | None = None,
    *,
    space: Space | Mapping[str, Any],
    metric: str | Metric | Sequence[str | Metric | Mapping[str, str]] | None = None,
    direction: str | None = None,
    sampler: str | Mapping[str, Any] | Sampler = "auto",
    storage: str | Storage | None = None,
    seed: int | None = None,
    load_if_exists: bool = False,
    spec: Mapping[str, Any] | None = None,
    budget: int | None = None,
    constraints: Sequence[Any] = (),
) -> Study:
    """Create a study (or load it, with ``load_if_exists``).

    ``space`` is a Space or a dict (Mango/YAML style, see :func:`optml.space.parse_space`);
    ``metric`` names what the objective reports (default ``"value"``), or a list of metrics
    to optimise together; ``sampler`` is an algorithm name (``auto``, ``grid``, ``random``,
    ``sobol``, ``tpe``, ``gp``, ...), a ``{"name": ..., **options}`` dict, or a Sampler.
    ``storage`` is a URL (default ``sqlite:///optml.db``) or ``memory://``. ``seed`` is an
    integer in [0, 2**63) (drawn at random when None) and makes the study's proposals
    reproducible. A parameter object in ``space`` must be keyed by its own name.
    ``constraints`` are conditions on the parameters (``"units * layers <= 256"`` or a callable
    ``params -> bool``) or limits on metrics (``{"metric": "memory_mb", "max": 500}``); strings
    and dicts are stored with the study, callables live only as long as this Study object.
    """
    if seed is not None:
        seed = check_seed(seed)
    store = open_storage(storage)
    if name is None:
        name = f"study-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}"
    if load_if_exists:
        try:
            return load_study(name, storage=store)
        except StorageError:
            pass
    parsed = parse_space(space)
    metrics = _metrics_from(metric, direction)
    chosen = make_sampler(sampler, space=parsed, budget=budget, n_metrics=len(metrics))
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))  # type: ignore[operator]
    stored_spec = dict(spec or {})
    storable = [c for c in constraints if isinstance(c, str | Mapping)]
    if storable:
        stored_spec["constraints"] = storable
    from optml.constraints import parse_constraints

    parse_constraints(list(constraints), names=parsed.names)  # fail before anything is written
    record = store.create_study(
        name,
        metrics=metrics,
        space=parsed.to_dict(),
        sampler=chosen.to_spec(),
        seed=seed,
        spec=stored_spec,
    )
    callables = [c for c in constraints if not isinstance(c, str | Mapping)]
    return Study(store, record, sampler=chosen, space=parsed, constraints=callables)


def load_study(name: str, storage: str | Storage | None = None) -> Study:
    """Load an existing study by name."""
    store = open_storage(storage)
    return Study(store, store.load_study(name))


__all__ = ["Study", "create_study", "load_study"]
