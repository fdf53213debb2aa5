"""Ctrl-C during a run: deferred past storage transactions, never lost (optml._interrupt)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa

from optml import _interrupt, create_study
from optml.errors import Terminated
from optml.storage._sql import SQLStorage
from optml.trial import TrialState


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_inside_a_critical_block_is_raised_when_it_ends() -> None:
    after = []
    with _interrupt.deferring_stop_signals(), pytest.raises(KeyboardInterrupt):
        with _interrupt.critical():
            _ctrl_c()
            after.append("the block ran to its end")
        after.append("never reached")
    assert after == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_ctrl_c_outside_critical_blocks_is_raised_at_once() -> None:
    with _interrupt.deferring_stop_signals(), pytest.raises(KeyboardInterrupt):
        _ctrl_c()
        for _ in range(10_000):  # the handler runs at the next bytecode, well before this ends
            pass
        pytest.fail("Ctrl-C was not raised")


def test_sigterm_is_handled_as_ctrl_c_and_told_apart() -> None:
    with _interrupt.deferring_stop_signals(), pytest.raises(Terminated) as raised:
        with _interrupt.critical():
            os.kill(os.getpid(), signal.SIGTERM)  # would end the process on the spot
        pytest.fail("SIGTERM was not raised after the block")
    assert isinstance(raised.value, KeyboardInterrupt)  # every Ctrl-C path handles it
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


def test_a_swallowed_ctrl_c_is_raised_by_check() -> None:
    # As when SIGINT lands in a finaliser: CPython prints "Exception ignored" and goes on.
    with _interrupt.deferring_stop_signals():
        try:
            _ctrl_c()
            for _ in range(10_000):
                pass
        except KeyboardInterrupt:
            pass  # swallowed
        with pytest.raises(KeyboardInterrupt):
            _interrupt.check()
        _interrupt.clear()
        _interrupt.check()  # handled: nothing pending any more


def test_without_the_loop_python_handles_ctrl_c_as_usual() -> None:
    # ask/tell from a user's own code: critical blocks only count, Ctrl-C is raised at once.
    with pytest.raises(KeyboardInterrupt), _interrupt.critical():
        _ctrl_c()
        for _ in range(10_000):
            pass
        pytest.fail("Ctrl-C was not raised")


def test_an_ignored_sigint_stays_ignored() -> None:
    # A background job of a shell without job control starts with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _interrupt.deferring_stop_signals():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            _ctrl_c()
        _interrupt.check()  # nothing recorded
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_in_a_sqlite_write_commits_it_and_leaves_no_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = SQLStorage(url, busy_timeout_s=2.0)
    study = create_study(name="s", storage=storage, space={"x": [1, 2, 3]})
    trial = study.ask()

    def write_then_ctrl_c(conn: sa.Connection) -> None:
        conn.execute(sa.text("UPDATE studies SET state = 'RUNNING'"))
        _ctrl_c()  # lands inside the open write transaction

    with _interrupt.deferring_stop_signals(), pytest.raises(KeyboardInterrupt):
        storage._write(write_then_ctrl_c)
    # The transaction was committed before the interrupt was raised ...
    assert storage.load_study("s").state == "RUNNING"
    # ... and nothing holds SQLite's write lock: another process's connection writes at once.
    other = SQLStorage(url, busy_timeout_s=0.5)
    study_again = other.load_study("s")
    other.set_study_state(study_again.id, "INTERRUPTED")
    study.tell(trial, 1.0)
    assert study.get_trials([TrialState.COMPLETE])


def test_ctrl_c_while_workers_start_leaves_none_behind() -> None:
    # A Ctrl-C right after a fork used to leave that worker out of the list shutdown() kills,
    # and the exiting controller then waited for it forever.
    import psutil

    from optml.executors import make_executor
    from optml.objectives import FunctionObjective

    ex = make_executor("local", workers=2)
    spawn = ex._spawn

    def spawn_then_ctrl_c(*slot):
        worker = spawn(*slot)
        _ctrl_c()  # lands between the fork and the worker's record
        return worker

    ex._spawn = spawn_then_ctrl_c
    try:
        with _interrupt.deferring_stop_signals(), pytest.raises(KeyboardInterrupt):
            ex.start(FunctionObjective(lambda x: x))
        procs = [psutil.Process(w.pid) for w in ex._workers]
        assert len(procs) == 2
        ex.shutdown(kill=True)
        gone, alive = psutil.wait_procs(procs, timeout=10)
        assert not alive
    finally:  # a worker left out would otherwise hold up the end of the test run
        for child in multiprocessing.active_children():
            child.kill()


def test_ctrl_c_as_outcomes_arrive_keeps_the_finished_trials(tmp_path: Path) -> None:
    # The signal lands right after finished trials were received from the workers: they must
    # be recorded COMPLETE, not dropped and queued again.
    from optml.executors import TrialOutcome, make_executor

    ex = make_executor("local", workers=2)
    received: list[int] = []
    events = ex.events

    def events_then_ctrl_c(timeout=None):
        got = events(timeout)
        outcomes = [e for e in got if isinstance(e, TrialOutcome)]
        if outcomes and not received:
            received.extend(o.number for o in outcomes)
            _ctrl_c()
        return got

    ex.events = events_then_ctrl_c
    study = create_study(
        name="s", storage=f"sqlite:///{tmp_path / 's.db'}", space={"x": [1, 2, 3, 4, 5, 6]}
    )
    with pytest.raises(KeyboardInterrupt):
        study.optimize(lambda x: float(x), n_trials=6, executor=ex)
    complete = {t.number for t in study.get_trials([TrialState.COMPLETE])}
    assert received and set(received) <= complete
    assert study.state == "INTERRUPTED"
    assert not study.get_trials([TrialState.RUNNING])
