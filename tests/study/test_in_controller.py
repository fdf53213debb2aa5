"""Trials run in the controller (executor="serial"): the guarantees it keeps, and the per-trial
bookkeeping that makes it fast (the study's trial cache, its random streams)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import optml
from optml.study import _Streams, _TrialCache
from optml.trial import Trial, TrialState


def _study(url: str, **kwargs):
    return optml.create_study(
        "s", space={"x": {"uniform": [0, 1]}}, sampler="random", storage=url, seed=3, **kwargs
    )


@pytest.fixture(params=["memory", "sqlite"])
def url(request, tmp_path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 's.db'}"


def test_results_are_stored_with_the_points_that_made_them(url) -> None:
    study = _study(url)
    study.optimize(lambda x: 2 * x, n_trials=40, executor="serial")
    done = study.get_trials([TrialState.COMPLETE])
    assert [t.number for t in done] == list(range(40))
    assert all(t.value == 2 * t.params["x"] for t in done)
    assert len({t.params["x"] for t in done}) == 40  # every trial its own point


def test_a_crash_of_the_objective_is_a_failed_trial_and_the_study_goes_on(url) -> None:
    def objective(x: float) -> float:
        if x < 0.5:
            raise ValueError(f"bad x {x}")
        return x

    study = _study(url)
    study.optimize(objective, n_trials=20, executor="serial")
    failed = study.get_trials([TrialState.FAILED])
    assert failed and all(t.params["x"] < 0.5 and "bad x" in t.error for t in failed)
    assert len(study.trials) == 20


def test_ctrl_c_in_a_trial_requeues_it_and_optimize_finishes_the_budget(url) -> None:
    calls = []

    def objective(x: float) -> float:
        calls.append(x)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the interrupt lands here
        return x

    study = _study(url)
    study.set_budget(10)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, executor="serial")
    interrupted = study.trials[3]
    assert interrupted.state is TrialState.WAITING
    assert interrupted.user_attrs.get("interrupted") is True
    assert [t.state for t in study.trials[:3]] == [TrialState.COMPLETE] * 3
    assert study.state == "INTERRUPTED"

    study.optimize(objective, executor="serial")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 10
    assert study.trials[3].params == interrupted.params  # the requeued point, run again


def test_a_trial_past_its_time_limit_in_the_controller_takes_its_processes_with_it(
    tmp_path,
) -> None:
    pid_file = tmp_path / "child.pid"

    def objective(x: float) -> float:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        pid_file.write_text(str(child.pid))
        time.sleep(60)
        return x

    study = _study("memory://")
    study.optimize(objective, n_trials=1, executor="serial", trial_timeout=1)
    assert study.trials[0].state is TrialState.TIMEOUT
    pid = int(pid_file.read_text())
    for _ in range(100):  # reaped by the controller's runtime
        try:
            os.waitpid(pid, os.WNOHANG)
            os.kill(pid, 0)
        except (ChildProcessError, ProcessLookupError):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the trial's child {pid} outlived its time limit")


def test_another_controllers_trials_read_out_of_order_reach_the_sampler_in_number_order(
    tmp_path,
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    mine = _study(url)
    other = optml.load_study("s", storage=url)
    mine.ask(2)  # trials 0 and 1; the cache has read them
    other.ask(2)  # 2 and 3, not read by `mine` yet
    mine.enqueue({"x": 0.25})  # 4, in the cache before 2 and 3
    (claimed, late) = mine._start_trials(2)  # reads 2 and 3, claims 4, proposes 5
    numbers = [t.number for t in mine.context().trials]
    assert numbers == list(range(6))
    assert (claimed.number, late.number) == (4, 5)
    assert mine._trial_cache().top == 5 and not mine._trial_cache().queued


def test_the_trial_cache_knows_its_queued_trials_and_order() -> None:
    cache = _TrialCache()
    cache[1] = Trial(1, TrialState.WAITING, {})
    cache[0] = Trial(0, TrialState.RUNNING, {})  # read after a later number
    assert cache.queued == {1} and cache.top == 1
    assert [t.number for t in cache.ordered()] == [0, 1]
    cache[1] = Trial(1, TrialState.RUNNING, {})
    cache[2] = Trial(2, TrialState.STALE, {})
    assert cache.queued == {2}
    cache[2] = Trial(2, TrialState.COMPLETE, {}, value=1.0)
    assert not cache.queued and [t.number for t in cache.ordered()] == [0, 1, 2]
    listed = cache.ordered()
    listed.clear()  # a fresh list each time: the cache's own is untouched
    cache[4] = Trial(4, TrialState.RUNNING, {})  # a gap: 3 not read yet
    cache[1] = Trial(1, TrialState.COMPLETE, {}, value=2.0)
    assert [t.number for t in cache.ordered()] == [0, 1, 2, 4]
    cache[3] = Trial(3, TrialState.RUNNING, {})
    cache[5] = Trial(5, TrialState.WAITING, {})
    cache[0] = Trial(0, TrialState.FAILED, {})
    ordered = cache.ordered()
    assert [t.number for t in ordered] == [0, 1, 2, 3, 4, 5] and cache.queued == {5}
    assert [t.state for t in ordered[:2]] == [TrialState.FAILED, TrialState.COMPLETE]
    assert ordered == [cache[n] for n in range(6)]


def test_a_proposal_s_random_stream_depends_only_on_the_seed_and_its_position() -> None:
    streams = _Streams(7)
    first = streams.at(12).random(4)
    streams.at(3).random(100)  # another position drawn from meanwhile
    assert np.array_equal(_Streams(7).at(12).random(4), first)  # a fresh study, same answer
    assert np.array_equal(streams.at(12).random(4), first)
    assert not np.array_equal(streams.at(13).random(4), first)
    assert not np.array_equal(_Streams(8).at(12).random(4), first)


def test_two_studies_with_one_seed_propose_the_same_points(url, tmp_path) -> None:
    a = _study(url)
    a.optimize(lambda x: x, n_trials=15, executor="serial")
    b = optml.create_study(
        "t", space={"x": {"uniform": [0, 1]}}, sampler="random", storage="memory://", seed=3
    )
    b.optimize(lambda x: x, n_trials=15, executor="serial")
    assert [t.params for t in a.trials] == [t.params for t in b.trials]


def test_a_study_run_in_the_controller_loads_no_other_backend_and_no_process_tools() -> None:
    """Start-up inside optimize: the serial backend needs neither the other backends' modules
    nor psutil (no other controller's process to look at); each still loads when asked."""
    code = (
        "import sys, optml\n"
        "s = optml.create_study(space={'x': {'uniform': [0, 1]}}, storage='memory://', seed=0)\n"
        "s.optimize(lambda x: x, n_trials=3, executor='serial')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('optml.executors.', 'psutil'))))\n"
        "from optml.executors import DaskExecutor, LocalExecutor, make_executor, run_trial\n"
        "print(type(make_executor('local', 1)).__name__, LocalExecutor.__name__)\n"
        "import optml.executors as e\n"
        "print(hasattr(e, 'NoSuchExecutor'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    assert out[0] == str(
        ["optml.executors._base", "optml.executors._inprocess", "optml.executors._serial"]
    )
    assert out[1:] == ["LocalExecutor LocalExecutor", "False"]


def test_a_study_skips_re_reading_its_own_writes_but_never_another_writers() -> None:
    """On memory storage a Study does not re-read the trials it wrote itself; a write by
    anyone else since its last read (another Study on the same storage) is read."""
    storage = optml.storage.open_storage("memory://")
    mine = optml.create_study(
        "s", space={"x": {"uniform": [0, 1]}}, sampler="random", storage=storage, seed=3
    )
    other = optml.load_study("s", storage=storage)
    queued = mine.enqueue({"x": 0.5})  # the first write fills the cache by reading it
    other.add_trial({"x": 0.25}, 1.0)  # then one write by someone else
    mine._sync()
    assert sorted(mine._trial_cache()) == [queued.number, queued.number + 1]
    asked = mine.ask()
    other.tell(asked.number, 2.0)  # its own write and another one's: both since the last read
    mine._sync()
    assert mine._trial_cache()[asked.number].state is TrialState.COMPLETE
    assert mine._trial_cache()[asked.number].value == 2.0
    mine.tell(mine.ask(), 3.0)
    before = mine._seq
    mine._sync()  # only its own writes since: nothing re-read, the change number moves on
    assert mine._seq == storage.trials_version(mine.id) > before
    assert [t.value for t in mine._trial_cache().ordered()] == [
        t.value for t in storage.get_trials(mine.id)
    ]


def test_what_user_code_does_to_a_trial_it_was_given_changes_nothing_the_study_keeps(
    url,
) -> None:
    study = _study(url)
    queued = study.enqueue({"x": 0.5})
    queued.params["x"] = 0.9
    asked = study.ask()  # the queued one
    asked.params["x"] = 0.7
    told = study.tell(asked, 1.0)
    told.metrics["value"] = -5.0
    added = study.add_trial({"x": 0.1}, 4.0)
    added.params["x"] = 0.2

    def meddle(s, trial) -> None:
        trial.params["x"] = -1.0
        trial.metrics["value"] = -1.0

    study.optimize(lambda x: x, n_trials=3, executor="serial", callbacks=[meddle])
    stored = study.storage.get_trials(study.id)
    cached = study._trial_cache().ordered()
    assert [t.params for t in cached] == [t.params for t in stored]
    assert [t.metrics for t in cached] == [t.metrics for t in stored]
    assert (stored[0].params, stored[0].metrics) == ({"x": 0.5}, {"value": 1.0})
    assert (stored[1].params, stored[1].metrics) == ({"x": 0.1}, {"value": 4.0})
    assert len(stored) == 5
    assert all(0 <= t.params["x"] <= 1 and t.value == t.params["x"] for t in stored[2:])
