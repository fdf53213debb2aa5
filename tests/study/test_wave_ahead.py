"""With ``propose_ahead``, the next wave proposed and reserved while every slot is busy, when a
refill is dear next to a trial (see optml._controller.AHEAD_SHARE): only then (and never unasked), each trial run once, budgets kept, and
what was reserved ahead goes back to the queue when the run stops."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from optml import create_study, load_study
from optml.trial import TrialState

distributed = pytest.importorskip("distributed")

from optml.executors import DaskExecutor  # noqa: E402
from wave_helpers import RecordingTPE, SlowLearner, runs, sleeper  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.infra]

SLOTS = 16  # optml._controller.AHEAD_FROM_SLOTS: the fewest slots that get a wave ahead
SPACE = {"x": {"uniform": [0.0, 1.0]}}
TESTS = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    """Two Dask worker processes with enough threads for two controllers' slots."""
    local = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=SLOTS,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    try:
        yield local
    finally:
        local.close(timeout=30)


def _executor(cluster, slots: int = SLOTS) -> DaskExecutor:
    return DaskExecutor(workers=slots, address=cluster.scheduler_address, in_thread=True)


def _study(sampler, storage: str = "memory://", **kwargs):
    return create_study("wave", space=SPACE, sampler=sampler, storage=storage, seed=3, **kwargs)


def _run(study, cluster, objective, slots: int = SLOTS, ahead: bool = True, **kwargs) -> None:
    """``study.optimize`` on ``slots`` slots of the cluster, proposing ahead unless not
    ``ahead``."""
    study.optimize(
        objective,
        executor=_executor(cluster, slots),
        show_progress=False,
        propose_ahead=ahead,
        **kwargs,
    )


def _ahead(calls: list[tuple[int, int]], slots: int = SLOTS) -> list[tuple[int, int]]:
    """The calls made while every slot of the controller was busy: proposals ahead (a refill
    is made for free slots, so it sees fewer of the controller's trials running)."""
    return [(n, pending) for n, pending in calls if pending >= slots]


def _ran_once(log: Path, trials) -> None:
    done = [t.params["x"] for t in trials if t.state is TrialState.COMPLETE]
    counts = Counter(runs(log))
    assert sorted(counts) == sorted(done)
    assert set(counts.values()) == {1}
    assert all(t.attempts == 1 for t in trials if t.state is TrialState.COMPLETE)


def test_a_dear_refill_proposes_the_next_wave_while_every_slot_is_busy(cluster, tmp_path):
    sampler = SlowLearner(cost=0.1)
    study = _study(sampler)
    log = tmp_path / "runs.log"
    _run(study, cluster, sleeper(log, 0.3), n_trials=5 * SLOTS)
    ahead = _ahead(sampler.calls)
    assert ahead, sampler.calls
    assert all(n <= SLOTS for n, _ in ahead)  # at most one wave ahead
    assert max(pending for _, pending in sampler.calls) < 2 * SLOTS
    trials = study.trials
    assert [t.number for t in trials] == list(range(5 * SLOTS))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    _ran_once(log, trials)


def test_nothing_is_proposed_ahead_unless_asked_for(cluster, tmp_path):
    sampler = SlowLearner(cost=0.1)
    study = _study(sampler)
    log = tmp_path / "runs.log"
    _run(study, cluster, sleeper(log, 0.3), n_trials=4 * SLOTS, ahead=False)
    assert sampler.calls and not _ahead(sampler.calls), sampler.calls
    assert all(t.state is TrialState.COMPLETE for t in study.trials)
    _ran_once(log, study.trials)


def test_trials_proposed_ahead_go_back_to_waiting_when_the_run_stops(cluster, tmp_path):
    sampler = SlowLearner(cost=0.1)
    study = _study(sampler)
    log = tmp_path / "runs.log"

    def stop_midway(study, trial) -> None:
        if sum(t.state is TrialState.COMPLETE for t in study.trials) >= 3 * SLOTS - SLOTS // 2:
            study.stop()

    _run(study, cluster, sleeper(log, 0.3), n_trials=8 * SLOTS, callbacks=[stop_midway])
    assert _ahead(sampler.calls)
    trials = study.trials
    waiting = [t for t in trials if t.state is TrialState.WAITING]
    assert 1 <= len(waiting) <= SLOTS
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    assert all(t.state in (TrialState.COMPLETE, TrialState.WAITING) for t in trials)
    _ran_once(log, trials)  # none of the waiting ones ran
    # The next run starts them first, once each, and proposes nothing for them.
    before = len(trials)
    _run(study, cluster, sleeper(log, 0.3), n_trials=len(waiting))
    trials = study.trials
    assert len(trials) == before
    assert all(t.state is TrialState.COMPLETE for t in trials)
    _ran_once(log, trials)


def test_budgets_hold_while_waves_are_proposed_ahead(cluster, tmp_path):
    sampler = SlowLearner(cost=0.1)
    study = _study(sampler)
    log = tmp_path / "runs.log"
    n = 3 * SLOTS + 5  # the last wave ahead is cut to what the budget leaves
    _run(study, cluster, sleeper(log, 0.3), n_trials=n)
    assert _ahead(sampler.calls)
    trials = study.trials
    assert len(trials) == n and all(t.state is TrialState.COMPLETE for t in trials)
    _ran_once(log, trials)

    stored = SlowLearner(cost=0.1)
    study = create_study("budgeted", space=SPACE, sampler=stored, storage="memory://", seed=4)
    study.set_budget(n)
    log = tmp_path / "budgeted.log"
    _run(study, cluster, sleeper(log, 0.3))
    assert _ahead(stored.calls)
    trials = study.trials
    assert len(trials) == n and all(t.state is TrialState.COMPLETE for t in trials)
    assert study.last_run.stop_reason == "budget"
    _ran_once(log, trials)


def test_a_time_budget_stops_waves_ahead_and_leaves_none_running(cluster, tmp_path):
    sampler = SlowLearner(cost=0.1)
    study = _study(sampler)
    log = tmp_path / "runs.log"
    _run(study, cluster, sleeper(log, 0.3), timeout=3.0)
    assert study.last_run.stop_reason == "timeout"
    assert _ahead(sampler.calls)
    trials = study.trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.WAITING) for t in trials)
    assert sum(t.state is TrialState.WAITING for t in trials) <= SLOTS
    _ran_once(log, trials)


def test_cheap_refills_of_a_learning_sampler_propose_nothing_ahead(cluster, tmp_path):
    sampler = RecordingTPE()
    study = _study(sampler)
    _run(study, cluster, sleeper(tmp_path / "runs.log", 1.0), n_trials=3 * SLOTS)
    assert len(sampler.calls) >= 3
    assert not _ahead(sampler.calls), sampler.calls


def test_a_few_slots_never_get_a_wave_ahead_however_dear_the_refill(cluster, tmp_path):
    slots = SLOTS // 2
    sampler = SlowLearner(cost=0.1)
    study = _study(sampler)
    _run(study, cluster, sleeper(tmp_path / "runs.log", 0.3), n_trials=5 * slots, slots=slots)
    assert not _ahead(sampler.calls, slots), sampler.calls


def test_trials_unlike_in_length_never_get_a_wave_ahead(cluster, tmp_path):
    sampler = SlowLearner(cost=0.1)
    study = _study(sampler)
    log = str(tmp_path / "runs.log")

    def uneven(x: float) -> float:  # 0.15 to 0.75 s: trials end one by one, not in waves
        import time

        time.sleep(0.15 + 0.6 * x)
        with open(log, "a") as f:
            f.write(f"{x!r}\n")
        return x

    _run(study, cluster, uneven, n_trials=5 * SLOTS)
    assert len(sampler.calls) >= 5
    assert not _ahead(sampler.calls), sampler.calls


_PEER = textwrap.dedent(
    """
    import json, sys
    from optml import load_study
    from optml.executors import DaskExecutor
    from optml.study import Study
    from wave_helpers import SlowLearner, sleeper

    url, address, log, out = sys.argv[1:]
    store = load_study("peers", storage=url).storage
    sampler = SlowLearner(cost=0.1)
    study = Study(store, store.load_study("peers"), sampler=sampler)
    study.optimize(
        sleeper(log, 0.3),
        executor=DaskExecutor(workers=16, address=address, in_thread=True),
        show_progress=False,
        propose_ahead=True,
    )
    with open(out, "w") as f:
        json.dump(sampler.calls, f)
    """
)


def test_two_controllers_proposing_ahead_share_the_budget_and_run_each_trial_once(
    cluster, tmp_path
):
    import json

    url = f"sqlite:///{tmp_path / 'peers.db'}"
    n = 6 * SLOTS
    create_study("peers", space=SPACE, sampler="random", storage=url, seed=5).set_budget(n)
    script = tmp_path / "peer.py"
    script.write_text(_PEER)
    log = tmp_path / "runs.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    outs = [tmp_path / f"calls{i}.json" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, cluster.scheduler_address, str(log), str(out)],
            env=env,
        )
        for out in outs
    ]
    try:
        for p in procs:
            assert p.wait(timeout=180) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    calls = [json.loads(out.read_text()) for out in outs]
    assert any(_ahead([tuple(c) for c in mine]) for mine in calls), calls
    trials = load_study("peers", storage=url).trials
    assert len(trials) == n
    assert all(t.state is TrialState.COMPLETE for t in trials)
    _ran_once(log, trials)
