"""Events that arrive together are written in one transaction, and nothing is acted on before
that transaction is committed: a controller killed right after acting loses none of them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from optml import create_study, load_study
from optml._controller import Controller
from optml.executors import DaskExecutor
from optml.executors._base import TrialOutcome, TrialReported, TrialStarted
from optml.trial import TrialState

SPACE = {"x": {"uniform": [0.0, 1.0]}}
KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.infra)]


def _objective(x: float) -> float:
    return x


def _controller(study, callbacks=(), executor="serial") -> Controller:
    return Controller(
        study,
        _objective,
        n_trials=8,
        timeout=None,
        workers=8,
        executor=executor,
        trial_timeout=None,
        retries=0,
        target=None,
        callbacks=list(callbacks),
        data=None,
        show_progress=False,
    )


def _in_flight(controller: Controller, n: int) -> list:
    """``n`` trials reserved by the controller's study and recorded as submitted."""
    trials = controller.study._start_trials(n)
    for t in trials:
        controller._task(t.number, t.params, attempt=0)
    return trials


def _done(number: int, value: float) -> TrialOutcome:
    now = datetime.now(UTC)
    return TrialOutcome(
        number, "COMPLETE", metrics={"value": value}, started_at=now, finished_at=now
    )


@pytest.mark.parametrize("kind", KINDS)
def test_outcomes_that_arrive_together_are_one_transaction_then_acted_on(kind, request) -> None:
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url")
    study = create_study("wave", space=SPACE, sampler="random", storage=url, seed=1)
    stored: list[list[TrialState]] = []

    def seen(s, trial) -> None:
        # Acted on only once the whole batch is stored: read back on a fresh connection.
        fresh = load_study("wave", storage=url)
        stored.append([t.state for t in fresh.trials])
        fresh.storage.close()

    controller = _controller(study, [seen])
    trials = _in_flight(controller, 6)
    # Trial 5 was taken for dead and is run by another controller now.
    study.storage.update_trial(study.id, trials[5].number, state=TrialState.STALE)
    assert study.storage.claim_trial(study.id, worker="elsewhere") is not None
    commits = []
    sa.event.listen(study.storage._engine, "commit", lambda conn: commits.append(1))
    events = [TrialReported(t.number, 0, 1, 0.5) for t in trials[:2]]
    events += [_done(t.number, float(t.number)) for t in trials]
    controller._on_events(events)
    assert len(commits) == 1
    assert controller.finished == 5 and not controller.inflight
    assert stored == [[TrialState.COMPLETE] * 5 + [TrialState.RUNNING]] * 5
    got = {t.number: t for t in study.storage.get_trials(study.id)}
    assert got[trials[0].number].intermediate == {}  # the outcome's own (none) wins
    assert got[trials[5].number].worker == "elsewhere"
    assert [got[t.number].value for t in trials[:5]] == [float(t.number) for t in trials[:5]]


@pytest.mark.parametrize("kind", KINDS)
def test_where_trials_started_goes_with_the_next_write_or_the_heartbeat(kind, request) -> None:
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url")
    study = create_study("started", space=SPACE, sampler="random", storage=url, seed=3)
    # A remote executor (never started here: only its events are fed in) says where trials run.
    controller = _controller(study, executor=DaskExecutor(workers=8))
    trials = _in_flight(controller, 5)
    commits = []
    sa.event.listen(study.storage._engine, "commit", lambda conn: commits.append(1))

    def stored():
        return {t.number: t for t in study.storage.get_trials(study.id)}

    controller._on_events([TrialStarted(t.number, 0, "h1", f"r{t.number}") for t in trials])
    assert commits == [] and all(t.host is None for t in stored().values())
    done = TrialOutcome(
        trials[0].number, "COMPLETE", metrics={"value": 0.5}, host="h1", runner="r0"
    )
    controller._on_events([done])
    assert len(commits) == 1
    got = stored()
    assert got[trials[0].number].state is TrialState.COMPLETE
    assert [(got[t.number].host, got[t.number].runner) for t in trials[1:]] == [
        ("h1", f"r{t.number}") for t in trials[1:]
    ]
    # Started alone, then the heartbeat's flush writes it.
    controller._on_events([TrialStarted(trials[1].number, 0, "h2", "r9", run="again")])
    assert len(commits) == 1
    controller._on_events([], flush=True)
    assert len(commits) == 2
    again = stored()[trials[1].number]
    assert (again.host, again.runner, again.attempts) == ("h2", "r9", 2)
    assert again.error == "attempt 1 lost with its worker"
    controller._on_events([], flush=True)  # nothing left to write
    assert len(commits) == 2


_KILLED_AFTER_ACTING = """
import os, signal, sys
from optml import load_study
sys.path.insert(0, {tests!r})
from test_write_batch import _controller, _done, _in_flight

study = load_study("killed", storage={url!r})

def die(s, trial):
    os.kill(os.getpid(), signal.SIGKILL)

controller = _controller(study, [die])
trials = _in_flight(controller, 4)
controller._on_events([_done(t.number, 0.25 * t.number) for t in trials])
"""


@pytest.mark.parametrize("kind", KINDS)
def test_a_controller_killed_right_after_acting_on_a_batch_loses_none_of_it(kind, request) -> None:
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url")
    study = create_study("killed", space=SPACE, sampler="random", storage=url, seed=2)
    study.set_budget(6)
    script = _KILLED_AFTER_ACTING.format(tests=os.path.dirname(__file__), url=url)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, timeout=120
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    trials = study.storage.get_trials(study.id)
    assert [(t.state, t.value) for t in trials] == [
        (TrialState.COMPLETE, 0.25 * n) for n in range(4)
    ]
    # Resuming runs the rest of the budget and none of those again.
    study = load_study("killed", storage=url)
    study.optimize(_objective, executor="serial", show_progress=False)
    trials = study.storage.get_trials(study.id)
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state is TrialState.COMPLETE and t.attempts == 1 for t in trials)
    assert [t.value for t in trials[:4]] == [0.0, 0.25, 0.5, 0.75]
