"""One study, several controllers, in one process: the stored budget, ask()'s heartbeat, STALE
trials, and a controller that waits for its peers (the multi-process tests are in
tests/storage/test_peers.py)."""

from __future__ import annotations

import time

from optml import TrialState, create_study, load_study
from optml.errors import LostTrialError


def _grid(tmp_path, name: str = "g", values=(1, 2, 3, 4, 5, 6)):
    return create_study(
        name,
        space={"x": list(values)},
        sampler="grid",
        storage=f"sqlite:///{tmp_path / 'peers.db'}",
        seed=0,
    )


def test_the_stored_budget_is_shared_by_every_controller(tmp_path) -> None:
    first = _grid(tmp_path)
    first.set_budget(4)
    second = load_study("g", storage=first.storage.url)
    assert second.budget == 4
    first.optimize(lambda x: x, n_trials=3, executor="serial")
    second.optimize(lambda x: x, executor="serial")  # only what the budget leaves: one
    assert second.last_run.trials == 1 and second.last_run.stop_reason == "budget"
    trials = first.trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert len({t.params["x"] for t in trials}) == 4
    assert first.state == "COMPLETE"


def test_a_controller_proposes_from_the_history_other_controllers_wrote(tmp_path) -> None:
    a = _grid(tmp_path)
    b = load_study("g", storage=a.storage.url)
    mine = a.ask(2)
    theirs = b.ask(2)  # b's cache was empty: it reads a's trials before proposing
    assert {t.params["x"] for t in mine}.isdisjoint(t.params["x"] for t in theirs)
    assert [t.number for t in theirs] == [2, 3]


def test_ask_heartbeats_its_trials_while_the_process_lives(tmp_path) -> None:
    study = _grid(tmp_path)
    study.heartbeat_s = 0.1
    beating = study.ask()
    silent = study.ask(heartbeat=False)
    first = beating.heartbeat_at
    # The grace is ten heartbeats long, so that a loaded machine delaying a beat or two does
    # not make the beating trial look abandoned; the silent one is past it either way.
    time.sleep(1.6)
    peer = load_study("g", storage=study.storage.url)  # another controller looks
    stale = peer.reap_stale(grace_s=1.0)
    assert [t.number for t in stale] == [silent.number]
    assert peer.storage.get_trial(peer.id, beating.number).heartbeat_at > first
    assert peer.storage.get_trial(peer.id, beating.number).state is TrialState.RUNNING
    study.tell(beating, 1.0)
    study._ask_heartbeat.halt()


def test_a_stale_trial_is_run_again_and_its_old_owner_cannot_record_it(tmp_path) -> None:
    study = _grid(tmp_path, values=(1, 2))
    study.heartbeat_s = 3600  # owned, but its heartbeat lapses (a controller cut off)
    lost = study.ask()
    peer = load_study("g", storage=study.storage.url)
    time.sleep(0.3)
    assert [t.number for t in peer.reap_stale(grace_s=0.1)] == [lost.number]
    assert peer.storage.get_trial(peer.id, lost.number).state is TrialState.STALE
    peer.optimize(lambda x: x * 10, executor="serial", heartbeat=0.05, grace=60)
    redone = peer.storage.get_trial(peer.id, lost.number)
    assert redone.state is TrialState.COMPLETE and redone.value == lost.params["x"] * 10
    assert redone.user_attrs["stale"] == 1 and redone.host and redone.runner
    try:
        study._write(lost.number, owner=lost.worker, state=TrialState.COMPLETE, value=0.0)
    except LostTrialError:
        pass
    else:
        raise AssertionError("the old owner overwrote the trial")
    study._ask_heartbeat.halt()


def test_optimize_ends_with_an_asked_trial_of_its_own_still_running(tmp_path) -> None:
    study = _grid(tmp_path, values=(1, 2, 3))
    asked = study.ask(heartbeat=False)
    study.optimize(lambda x: x, executor="serial", timeout=60)
    assert study.last_run.stop_reason == "exhausted" and study.last_run.trials == 2
    assert study.storage.get_trial(study.id, asked.number).state is TrialState.RUNNING


def test_stop_everywhere_reaches_a_running_controller(tmp_path) -> None:
    study = _grid(tmp_path, values=tuple(range(50)))
    other = load_study("g", storage=study.storage.url)

    def stop_after_three(s, trial) -> None:
        if trial.number == 2:
            assert other.stop(everywhere=True) == 1  # as `optml stop` does, from elsewhere

    study.optimize(
        lambda x: x, executor="serial", callbacks=[stop_after_three], heartbeat=0.01, grace=60
    )
    assert study.last_run.stop_reason == "stopped"
    assert 3 <= study.last_run.trials < 50
    assert study.state == "INTERRUPTED"


def test_a_slow_trial_run_in_the_controllers_process_keeps_its_heartbeat(tmp_path) -> None:
    """The serial executor blocks the controller's loop for a whole trial: a thread beats."""
    study = _grid(tmp_path, values=(1,))
    peer = load_study("g", storage=study.storage.url)
    reaped = []

    def slow(x):
        time.sleep(1.0)  # past the grace another controller judges it by
        reaped.extend(peer.reap_stale(grace_s=0.5))
        return x

    study.optimize(slow, executor="serial", heartbeat=0.1, grace=60)
    assert reaped == []
    trial = study.trials[0]
    assert trial.state is TrialState.COMPLETE and "stale" not in trial.user_attrs
