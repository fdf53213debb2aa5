"""The controller loop behind Study.optimize: keep the workers busy, record every change first."""

from __future__ import annotations

import math
import numbers
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from optml import _interrupt
from optml._process import controller_id
from optml.errors import LostTrialError, OptMLError
from optml.executors import (
    Executor,
    TrialEvent,
    TrialOutcome,
    TrialReported,
    TrialStarted,
    TrialTask,
    make_executor,
)
from optml.executors._base import RecentDurations
from optml.objectives import FunctionObjective, Objective, optimised_value
from optml.ranking import best_trial, target_reached
from optml.storage._base import UNFINISHED
from optml.trial import Trial, TrialState, detached

if TYPE_CHECKING:
    from optml.study import Study

# How often a controller heartbeats its running trials (and its run, reading stop requests and
# marking other controllers' lapsed trials STALE), and how long a heartbeat may lapse before
# its trials are taken for abandoned. The grace must cover a controller's longest pause (a
# storage outage it rides out, a slow proposal), several heartbeats long.
DEFAULT_HEARTBEAT_S = 5.0
DEFAULT_GRACE_S = 30.0
STALE_POLICIES = ("requeue", "fail")

# Trials far shorter than a controller's bookkeeping (a proposal, a reservation) are reserved a
# few at a time, ahead of free slots, when the sampler's proposals do not depend on results:
# one proposal and one reservation then serve several trials. While trials are short
# (RecentDurations.short), at most AHEAD trials wait in the controller.
AHEAD = 32
# The same reservation ahead serves a refill that is dear next to the trials it refills (a
# model-based sampler proposing hundreds of points for one-second trials that end in waves):
# while every slot is busy and nothing waits ahead, the next wave (as many trials as there are
# slots) is proposed and reserved, so that slots that free get trials at once instead of
# idling through the proposal. Those proposals see one wave less than a refill would (the
# running trials are pending), and a model-based search whose every proposal lags a wave found
# worse points, per wave and at equal wall time (bench_parallel_quality --ahead): so it is only
# done when asked for (``propose_ahead``), and then only where it pays most: trials alike in
# length (the recent ones within one refill of each other: they end in waves, and a wave's
# slots would all idle through its refill; trials that end one by one get nothing ahead), a
# refill costing at least AHEAD_SHARE of a typical trial and no more than one (it must be ready
# before the slots free), and at least AHEAD_FROM_SLOTS slots (a sequential or few-worker study
# leans on each result).
AHEAD_SHARE = 0.05
AHEAD_FROM_SLOTS = 16

# A finished state by name (what an outcome says), without an Enum call per trial.
_STATES = {s.value: s for s in TrialState if s.is_finished}


@dataclass(frozen=True)
class RunStats:
    """What one call of ``optimize`` did: wall time, time spent in trials, and workers."""

    trials: int
    wall_s: float
    busy_s: float
    workers: int
    stop_reason: str

    @property
    def speedup(self) -> float:
        """Sum of trial durations over wall time: how much faster than one after another."""
        return self.busy_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def efficiency(self) -> float:
        """Speedup per worker (1.0 = every worker busy all the time)."""
        return self.speedup / self.workers if self.workers else 0.0


def _check_count(name: str, value: Any, minimum: int) -> None:
    """A whole number >= ``minimum`` (or None), else a clear error naming the argument."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise OptMLError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def _check_seconds(name: str, value: Any, zero_ok: bool) -> None:
    """A finite number of seconds (or None), else a clear error naming the argument."""
    if value is None:
        return
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if ok:
        seconds = float(value)
        ok = math.isfinite(seconds) and (seconds >= 0 if zero_ok else seconds > 0)
    if not ok:
        bound = ">= 0" if zero_ok else "> 0"
        raise OptMLError(
            f"{name} must be a finite number of seconds {bound} (or None for no limit), "
            f"got {value!r}"
        )


def as_objective(objective: Callable[..., Any] | Objective, data: str | None = None) -> Objective:
    if isinstance(objective, Objective):
        return objective
    if callable(objective) or isinstance(objective, str):
        return FunctionObjective(objective, data=data)
    raise OptMLError(
        f"objective must be a callable or an Objective, got {type(objective).__name__}"
    )


class Controller:
    """Runs one ``optimize`` call. See :meth:`optml.study.Study.optimize` for the options."""

    def __init__(
        self,
        study: Study,
        objective: Callable[..., Any] | Objective,
        *,
        n_trials: int | None,
        timeout: float | None,
        workers: int | None,
        executor: str | Executor,
        trial_timeout: float | None,
        retries: int,
        target: float | None,
        callbacks: Sequence[Callable[[Study, Trial], None]],
        data: str | None,
        show_progress: bool,
        heartbeat: float = DEFAULT_HEARTBEAT_S,
        grace: float = DEFAULT_GRACE_S,
        stale: str = "requeue",
        propose_ahead: bool = False,
    ) -> None:
        _check_count("n_trials", n_trials, minimum=0)
        _check_seconds("heartbeat", heartbeat, zero_ok=False)
        _check_seconds("grace", grace, zero_ok=False)
        if heartbeat is None or grace is None or grace <= heartbeat:
            raise OptMLError(
                f"grace ({grace!r} s) must be longer than heartbeat ({heartbeat!r} s): a trial "
                "is taken for abandoned when its heartbeat lapses past the grace"
            )
        if stale not in STALE_POLICIES:
            raise OptMLError(f"stale must be one of {', '.join(STALE_POLICIES)}, got {stale!r}")
        _check_count("workers", workers, minimum=1)
        _check_count("retries", retries, minimum=0)
        _check_seconds("timeout", timeout, zero_ok=True)
        _check_seconds("trial_timeout", trial_timeout, zero_ok=False)
        self.stored_budget = study.budget
        if (
            n_trials is None
            and timeout is None
            and self.stored_budget is None
            and study.sampler.remaining(study.context()) is None
        ):
            raise OptMLError(
                f"{study.sampler.name} search never runs out of configurations: "
                "give n_trials or timeout"
            )
        self.study = study
        self.objective = as_objective(objective, data)
        self.objective.check()
        self.n_trials = n_trials
        self.timeout = timeout
        self.executor = make_executor(executor, workers)
        self.executor.limit_workers(self._most_trials())
        self.trial_timeout = trial_timeout
        self.retries = retries
        self.target = target
        self.callbacks = list(callbacks)
        self.data = data
        self.show_progress = show_progress
        self.inflight: dict[int, TrialTask] = {}
        # Per running trial: the values reported so far, and the runs started (a cluster may
        # rerun a task whose worker died: each further run counts as a retry).
        self.reported: dict[int, dict[int, float]] = {}
        self.runs: dict[int, set[str]] = {}
        self.deadline: float | None = None
        # Trials whose time limit is what was left of the study's time budget.
        self.cut_by_budget: set[int] = set()
        self.launched = 0
        self.finished = 0
        self.busy_s = 0.0
        self.heartbeat_s = float(heartbeat)
        self.grace_s = float(grace)
        self.stale = stale
        self.me = controller_id()
        self.run_id: int | None = None
        self.next_beat = 0.0
        self.beat_thread: Any = None
        # What one refill costs (seconds, a running estimate; None before the first), and what
        # the last one cost.
        self.refill_s: float | None = None
        self.last_refill_s = 0.0
        # Trials reserved ahead (RUNNING, owned here, not yet submitted), and the durations
        # of the last trials, which decide whether to reserve ahead.
        self.ahead: deque[Trial] = deque()
        self.propose_ahead = bool(propose_ahead)
        # What started events said (where a trial runs, a rerun after a lost worker), not yet
        # written: it goes with the next write of outcomes or reports, or at the heartbeat.
        self.unwritten: dict[int, dict[str, Any]] = {}
        self.recent = RecentDurations()
        self.blind = study._blind
        self.metric_names = [m.name for m in study.metrics]

    def _most_trials(self) -> int | None:
        """The most trials this call can still launch (None: no bound known), so that no more
        workers start than can have work."""
        study = self.study
        most = self.n_trials
        if self.stored_budget is not None:  # what the study's budget leaves, queued included
            cache = study._trial_cache().values()
            queued = sum(t.state in (TrialState.WAITING, TrialState.STALE) for t in cache)
            room = max(self.stored_budget - len(cache), 0) + queued
            most = room if most is None else min(most, room)
        left = study.sampler.remaining(study.context())
        if left is not None:  # a finite space: what is left of it, and the trials queued
            left += sum(not t.state.is_finished for t in study._trial_cache().values())
            most = left if most is None else min(most, left)
        return most

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> RunStats:
        # The local executor forks workers: no thread may run in this process meanwhile, so
        # the ask() heartbeat pauses and this loop heartbeats the same trials.
        resume_beat = self.study._pause_ask_heartbeat()
        try:
            with _interrupt.deferring_stop_signals():
                return self._run()
        finally:
            if resume_beat:
                self.study._start_ask_heartbeat()

    def _run(self) -> RunStats:
        study = self.study
        study._refresh()
        study.reap_stale(self.grace_s, self.stale)
        start = time.monotonic()
        deadline = start + self.timeout if self.timeout is not None else None
        self.deadline = deadline
        budget = self.stored_budget
        if self.n_trials is not None:
            budget = len(study._trial_cache()) + self.n_trials
        self.run_id = study.storage.start_run(study.id, self.me)
        self.next_beat = time.monotonic() + self.heartbeat_s
        if self.executor.in_process:
            # A trial run in this process blocks the loop for as long as it runs: its
            # heartbeat comes from a thread (nothing is forked here, so one may run).
            from optml.study import Heartbeat

            self.beat_thread = Heartbeat(study, self.heartbeat_s, self.run_id)
            self.beat_thread.start()
        study._stop_requested = False
        progress = _Progress(self) if self.show_progress else None
        stop_reason = ""
        # Outcomes of trials run elsewhere are collected and recorded with Ctrl-C deferred (at
        # most the wait's half second), so that a finished trial is never received and then
        # dropped; trials run in this process must stay interruptible.
        collecting = nullcontext if self.executor.in_process else _interrupt.critical
        try:
            self.executor.start(self.objective)
            while True:
                _interrupt.check()  # a Ctrl-C whose raise was swallowed (see _interrupt)
                self._tick()
                if not stop_reason:
                    stop_reason = self._stop_reason(deadline)
                idle = False
                if not stop_reason:
                    free = self.executor.free_slots()
                    if not self.blind:  # one that learns: no trial waits behind a running one
                        free = min(free, self.executor.workers - self.executor.running())
                    if self.n_trials is not None:
                        free = min(free, self.n_trials - self.launched)
                    if free > 0:
                        new = self._next_trials(free, budget)
                        self.executor.submit_many(
                            [self._task(t.number, t.params, attempt=0) for t in new]
                        )
                        if not new and self.executor.running() == 0:
                            # Nothing to start here; trials of other controllers may still
                            # lapse and need running again, so wait for them to finish.
                            idle = self._others_unfinished()
                            if not idle:
                                spent = (
                                    self.stored_budget is not None
                                    and len(study._trial_cache()) >= self.stored_budget
                                )
                                stop_reason = "budget" if spent else "exhausted"
                    wave = self._wave_ahead()
                    if wave:
                        self.ahead.extend(self._reserve(wave, budget))
                if self.executor.running() == 0 and (stop_reason or not self.inflight):
                    if idle:
                        time.sleep(min(0.5, self.heartbeat_s))
                        continue
                    if not stop_reason:
                        stop_reason = "exhausted"
                    break
                if stop_reason == "timeout" and self._past_grace():
                    self._stop_overrunning()
                    break
                left = None if deadline is None else deadline - time.monotonic()
                wait = 0.5 if left is None or left <= 0 else min(0.5, left)
                with collecting():
                    self._collect(wait)
                if progress:
                    progress.update()
            self._release_ahead()
        except BaseException:
            _interrupt.clear()  # this Ctrl-C is being handled; a second one stops the clean-up
            self._abandon()
            raise
        finally:
            if self.beat_thread is not None:
                self.beat_thread.halt()
            self.executor.shutdown(kill=True)
            if progress:
                progress.close()
        assert self.run_id is not None
        study.storage.end_run(
            self.run_id, "INTERRUPTED" if stop_reason == "stopped" else "COMPLETE", self.grace_s
        )
        return RunStats(
            self.finished, time.monotonic() - start, self.busy_s, self.executor.workers, stop_reason
        )

    # A refill (proposing and reserving its trials) dearer than this is worth waiting for:
    # when trials finish in a burst, more of them are gathered (see _collect) so that one
    # proposal call serves them all.
    COALESCE_FROM_S = 0.02
    # The longest wait for more finished trials before a refill, and the quiet gap that ends it.
    COALESCE_MAX_S = 0.25
    COALESCE_GAP_S = 0.05

    def _refill_cost(self, spent: float) -> None:
        """Keep a running estimate of what one refill costs, in seconds of wall time, and what
        the last one cost."""
        self.refill_s = spent if self.refill_s is None else 0.5 * (self.refill_s + spent)
        self.last_refill_s = spent

    def _collect(self, wait: float) -> None:
        """Take the executor's events (waiting up to ``wait`` for the first); when some trial
        finished and a refill is dear, keep taking them while trials go on finishing.

        A proposal call of a model-based sampler costs about the same for one configuration as
        for dozens (it fits and scores candidates first): when a wave of trials ends within a
        few tens of milliseconds, proposing at its first outcome and again for the rest costs
        several calls, each delaying every slot that waits on it. Waiting while outcomes keep
        arriving (each within a gap that scales with the refill's cost), at most as long as a
        refill costs and never past COALESCE_MAX_S, makes one call out of the burst. Cheap
        samplers never wait.
        """
        done = self.finished
        self._on_events(self.executor.events(timeout=wait))
        cost = self.refill_s
        if cost is None or cost < self.COALESCE_FROM_S or self.finished == done:
            return
        if len(self.ahead) >= self.finished - done:
            return  # trials reserved ahead wait for these slots: the refill costs nothing
        if self.executor.in_process:
            return  # its events run the trials: waiting on them is running them
        until = time.monotonic() + min(cost, self.COALESCE_MAX_S)
        if self.deadline is not None:
            until = min(until, self.deadline)
        gap = min(cost / 4, self.COALESCE_GAP_S)
        while self.executor.running() > 0 and not self.study._stop_requested:
            left = until - time.monotonic()
            if left <= 0:
                return
            done = self.finished
            self._on_events(self.executor.events(timeout=min(gap, left)))
            if self.finished == done:
                return  # the burst is over

    def _next_trials(self, free: int, budget: int | None) -> list[Trial]:
        """Up to ``free`` trials to start: those reserved ahead first, then new ones (with
        more reserved ahead while trials are short, see :data:`AHEAD`)."""
        ahead = self.ahead
        if len(ahead) >= free:
            return [ahead.popleft() for _ in range(free)]
        taken = list(ahead)
        ahead.clear()
        want = free - len(taken)
        more = self._room_ahead(want)
        new = self._reserve(want + more, budget)
        ahead.extend(new[want:])
        return taken + new[:want]

    def _reserve(self, n: int, budget: int | None) -> list[Trial]:
        """Claim or propose ``n`` trials (fewer when the budget or the space runs out), timing
        the refill."""
        asked = time.monotonic()
        new = self.study._start_trials(n, budget=budget)
        if new:
            self._refill_cost(time.monotonic() - asked)
        return new

    def _room_ahead(self, want: int) -> int:
        """How many trials to reserve ahead of the ``want`` that slots are free for."""
        if not self.blind or not self.recent.short():
            return 0
        room = AHEAD
        if self.n_trials is not None:  # this call's trials, not more
            room = min(room, self.n_trials - self.launched - want)
        return max(room, 0)

    def _wave_ahead(self) -> int:
        """How many trials to propose and reserve ahead now: the next wave, while every slot is
        busy and a refill is dear next to trials that end in waves (see :data:`AHEAD_SHARE`)."""
        executor = self.executor
        slots = executor.workers
        if not self.propose_ahead or self.ahead or executor.in_process:
            return 0
        if slots < AHEAD_FROM_SLOTS:
            return 0
        if executor.running() < slots:
            return 0
        typical, spread = self.recent.typical(), self.recent.spread()
        if typical is None or spread is None or self.refill_s is None:
            return 0
        # Dear lately and still: the first refill, paying for imports and caches, is no guide.
        cost = min(self.refill_s, self.last_refill_s)
        if not AHEAD_SHARE * typical <= cost <= typical or spread > cost:
            return 0
        if self.deadline is not None and time.monotonic() + typical >= self.deadline:
            return 0  # the time budget ends before the running trials do: the wave never starts
        wave = slots
        if self.n_trials is not None:  # this call's trials, not more
            wave = min(wave, self.n_trials - self.launched)
        return max(wave, 0)

    def _release_ahead(self) -> None:
        """Put back in the queue the trials reserved ahead that this run did not start."""
        while self.ahead:
            trial = self.ahead.popleft()
            try:
                self.study._write(
                    trial.number, owner=self.me, state=TrialState.WAITING, worker=None
                )
            except LostTrialError:
                pass  # taken for dead meanwhile: its new owner runs it

    def _tick(self) -> None:
        """Every heartbeat: refresh this controller's trials and run, read a stored stop
        request, and mark STALE the trials of controllers whose heartbeat lapsed."""
        now = time.monotonic()
        if now < self.next_beat:
            return
        self.next_beat = now + self.heartbeat_s
        study = self.study
        try:
            self._on_events([], flush=True)
            if self.beat_thread is None and study.storage.heartbeat(study.id, self.me, self.run_id):
                study._stop_requested = True
            study.reap_stale(self.grace_s, self.stale)
        except LostTrialError:
            pass
        except OptMLError:
            pass  # storage unreachable past its own retries: the next beat tries again

    def _others_unfinished(self) -> bool:
        """Whether trials this controller does not run are still unfinished (from the read
        that the last proposal made)."""
        return any(
            t.state in UNFINISHED
            and t.number not in self.inflight
            # Handed out by ask() (in this process, or with no owner): only the caller can
            # finish it, or it lapses.
            and not (t.state is TrialState.RUNNING and t.worker in (self.me, None))
            for t in self.study._trial_cache().values()
        )

    def _stop_reason(self, deadline: float | None) -> str:
        if self.study._stop_requested:
            return "stopped"
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"
        if self.n_trials is not None and self.launched >= self.n_trials:
            return "budget"
        if self.target is not None and self._target_reached():
            return "target"
        return ""

    def _target_reached(self) -> bool:
        assert self.target is not None
        study = self.study
        return target_reached(
            study._trial_cache().values(), study.metric, self.target, study.constraints
        )

    def _submit(self, number: int, params: dict[str, Any], attempt: int) -> None:
        self.executor.submit(self._task(number, params, attempt))

    def _task(self, number: int, params: dict[str, Any], attempt: int) -> TrialTask:
        """The task of a trial about to be submitted, recorded as in flight."""
        # A trial gets at most what is left of the study's time budget, so that the executor
        # stops it when the budget runs out (a hanging trial must not keep the study running).
        timeout = self.trial_timeout
        if self.deadline is not None:
            left = max(self.deadline - time.monotonic(), 0.001)
            if timeout is None or left < timeout:
                timeout = left
                self.cut_by_budget.add(number)
            else:
                self.cut_by_budget.discard(number)
        task = TrialTask(number, params, self.study.metric.name, attempt, timeout, self.data)
        self.inflight[number] = task
        if attempt == 0:
            self.launched += 1
        return task

    def _on_events(self, events: list[TrialEvent], flush: bool = False) -> None:
        """Record what the executor saw happen, then act on it.

        What arrives together (a wave of trials finishing) is written in one storage
        transaction, each trial's events merged into one write; nothing is acted on (a retry
        submitted, a result counted or handed to callbacks) before that write is committed.
        What started events say is no result and changes no decision: it waits for the next
        such write (or ``flush``, at the heartbeat) instead of a transaction of its own.
        Events of trials no longer running here (one cancelled, or already recorded) are
        dropped, so that no trial is recorded twice.
        """
        writes: dict[int, dict[str, Any]] = {}
        outcomes: dict[int, tuple[TrialOutcome, TrialTask, bool]] = {}
        for event in events:
            number = event.number
            if number not in self.inflight:
                continue
            fields = writes.setdefault(number, {})
            if isinstance(event, TrialOutcome):
                task = self.inflight.pop(number)
                retry = self._outcome_fields(event, task, fields)
                outcomes[number] = (event, task, retry)
            elif isinstance(event, TrialReported):
                values = self.reported.setdefault(number, {})
                values[event.step] = event.value
                fields["intermediate"] = dict(values)
            elif isinstance(event, TrialStarted):
                runs = self.runs.setdefault(number, set())
                runs.add(event.run)
                started: dict[str, Any] = {}
                if len(runs) > 1:  # run again elsewhere after its worker was lost
                    task = self.inflight[number]
                    started["attempts"] = task.attempt + len(runs)
                    started["error"] = (
                        f"attempt {task.attempt + len(runs) - 1} lost with its worker"
                    )
                if self.executor.remote:  # others give where with the outcome
                    started.update(host=event.host, runner=event.runner)
                if started:
                    self.unwritten.setdefault(number, {}).update(started)
        writes = {number: fields for number, fields in writes.items() if fields}
        if not writes and not (flush and self.unwritten):
            return
        # What the trials' started events said goes first: their outcomes override it.
        for number, started in self.unwritten.items():
            if number in self.inflight or number in writes:
                writes[number] = {**started, **writes.get(number, {})}
        if not writes:
            self.unwritten.clear()  # only trials no longer running here
            return
        written = self.study._write_many(writes, owner=self.me)
        self.unwritten.clear()
        for number, trial in written.items():
            if number in outcomes:
                outcome, task, retry = outcomes[number]
                if trial is None:
                    continue  # taken for dead meanwhile: its new owner's run counts
                if retry:
                    self._submit(number, task.params, attempt=task.attempt + 1)
                    continue
                self.finished += 1
                self.busy_s += outcome.duration_s
                self.recent.add(outcome.duration_s)
                if self.callbacks:
                    trial = detached(trial)  # the study keeps the record: callbacks get their own
                    for callback in self.callbacks:
                        callback(self.study, trial)
            elif trial is None and number in self.inflight:
                # Taken for dead meanwhile (another controller runs it again): stop it here.
                self.executor.cancel(number)
                self.inflight.pop(number, None)
                self.runs.pop(number, None)
                self.reported.pop(number, None)

    def _outcome_fields(
        self, outcome: TrialOutcome, task: TrialTask, fields: dict[str, Any]
    ) -> bool:
        """Add to ``fields`` what ``outcome`` writes to its trial; True when the trial is to
        run again (a failed attempt with retries left)."""
        reruns = max(0, len(self.runs.pop(outcome.number, ())) - 1)
        self.reported.pop(outcome.number, None)
        out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
        if outcome.state == "FAILED" and task.attempt < self.retries and not out_of_time:
            fields["attempts"] = task.attempt + 1
            fields["error"] = f"attempt {task.attempt + 1} failed: {outcome.error}"
            return True
        fields.update(
            state=_STATES.get(outcome.state) or TrialState(outcome.state),
            metrics=outcome.metrics,
            error=outcome.error,
            logs=outcome.logs,
            attempts=task.attempt + 1 + reruns,
            started_at=outcome.started_at,
            finished_at=outcome.finished_at,
            duration_s=outcome.duration_s,
            intermediate=outcome.intermediate,
            host=outcome.host,
            runner=outcome.runner,
        )
        if outcome.state == "COMPLETE":
            try:
                fields["value"] = optimised_value(outcome.metrics, self.metric_names)
            except OptMLError as exc:
                fields.update(state=TrialState.FAILED, error=str(exc))
        elif outcome.state == "TIMEOUT" and outcome.number in self.cut_by_budget:
            fields["error"] = self._budget_message()
        self.cut_by_budget.discard(outcome.number)
        return False

    def _budget_message(self) -> str:
        assert self.timeout is not None
        return f"stopped: the study's time budget of {self.timeout:g} s ran out"

    # How long past the study's time budget the executor has to stop its trials itself (it is
    # given each trial's share of the budget as its time limit) before they are stopped here.
    GRACE_S = 5.0

    def _past_grace(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline + self.GRACE_S

    def _stop_overrunning(self) -> None:
        """Stop trials still running past the time budget and record each one TIMEOUT."""
        self.executor.shutdown(kill=True)
        now = datetime.now(UTC)
        for number, task in list(self.inflight.items()):
            started = self.study._trial_cache().get(number)
            started_at = started.started_at if started else None
            try:
                self.study._write(
                    number,
                    owner=self.me,
                    state=TrialState.TIMEOUT,
                    error=self._budget_message(),
                    attempts=task.attempt + 1,
                    finished_at=now,
                    duration_s=(now - started_at).total_seconds() if started_at else None,
                )
            except LostTrialError:
                continue  # taken for dead meanwhile: its new owner runs it
            self.finished += 1
        self.inflight.clear()

    def _abandon(self) -> None:
        """On Ctrl-C or an error: stop the workers, put running trials back in the queue.

        "Running" is read from storage (every RUNNING trial this controller claimed), not from
        ``inflight``: Ctrl-C can land after a trial was written RUNNING and before it reached
        ``inflight`` (inside ``_start_trials``), and that trial must not stay RUNNING.
        """
        self.executor.shutdown(kill=True)
        study = self.study
        try:
            mine = [
                t
                for t in study.storage.get_trials(study.id, [TrialState.RUNNING])
                if t.worker == self.me
            ]
        except OptMLError:
            mine = []
        for t in mine:
            try:
                study._write(
                    t.number,
                    state=TrialState.WAITING,
                    worker=None,
                    user_attrs={**t.user_attrs, "interrupted": True},
                )
            except OptMLError:
                pass
        self.inflight.clear()
        self.ahead.clear()  # RUNNING and owned here: put back in the queue above
        try:
            if self.run_id is not None:
                study.storage.end_run(self.run_id, "INTERRUPTED", self.grace_s)
            else:
                study.storage.set_study_state(study.id, "INTERRUPTED")
        except OptMLError:
            pass


class _Progress:
    """A progress bar refreshed from the controller loop (no thread: workers are forked)."""

    def __init__(self, controller: Controller) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.controller = controller
        study = controller.study
        total = controller.n_trials
        if total is None and controller.stored_budget is not None:
            total = max(controller.stored_budget - len(study._trial_cache()), 0)
        if total is None:  # None still when the sampler never runs out
            remaining = study.sampler.remaining(study.context())
            if remaining is not None:
                unfinished = sum(not t.state.is_finished for t in study._trial_cache().values())
                total = remaining + unfinished
        self.progress = Progress(
            # The study and metric names are user text: never read as markup.
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[best]}", markup=False),
            auto_refresh=False,
            transient=False,
        )
        self.task = self.progress.add_task(study.name, total=total, best="")
        self.progress.start()
        self.last = 0.0

    def update(self) -> None:
        c = self.controller
        best = ""
        study = c.study
        top = best_trial(study._trial_cache().values(), study.metric, study.constraints)
        if top is not None:
            best = f"best {study.metric.name} {top.value:.6g}"
        self.progress.update(self.task, completed=c.finished, best=best)
        now = time.monotonic()
        if now - self.last > 0.1:
            self.progress.refresh()
            self.last = now

    def close(self) -> None:
        self.update()
        self.progress.refresh()
        self.progress.stop()
