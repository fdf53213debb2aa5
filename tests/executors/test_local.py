"""The local executor: process-tree ownership, SIGTERM, KeyboardInterrupt, worker counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from optml import TrialState, create_study
from optml.errors import OptMLError
from optml.executors import LocalExecutor, TrialTask, make_executor
from optml.objectives import FunctionObjective
from proc_helpers import gone, kill, wait_for_text

PY = sys.executable


def _outcomes(ex, n: int, within: float = 30.0):
    got = []
    deadline = time.monotonic() + within
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} outcomes came"
        got += ex.wait(0.5)
    return got


def _spawn_and_record(pidfile: str, detach: bool, then_sleep: float) -> float:
    child = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"], start_new_session=detach)
    Path(pidfile).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(then_sleep)
    return 1.0


def test_sigterm_stops_the_worker_and_every_process_of_its_trial(tmp_path) -> None:
    pidfile = tmp_path / "pids"
    ex = make_executor("local", workers=1)
    ex.start(FunctionObjective(lambda: _spawn_and_record(str(pidfile), True, 120)))
    pids: list[int] = []
    try:
        ex.submit(TrialTask(0, {}, "value"))
        pids = [int(p) for p in wait_for_text(pidfile).split()]
        os.kill(pids[0], signal.SIGTERM)
        (outcome,) = _outcomes(ex, 1)
        assert outcome.state == "FAILED" and "SIGTERM" in outcome.error
        assert gone(pids[1]), "the trial's detached child outlived its worker's SIGTERM"
        assert gone(pids[0])
    finally:
        ex.shutdown(kill=True)
        kill(pids)


def test_a_trial_s_detached_process_ends_with_its_worker(tmp_path) -> None:
    pidfile = tmp_path / "pids"
    ex = make_executor("local", workers=1)
    ex.start(FunctionObjective(lambda: _spawn_and_record(str(pidfile), True, 0)))
    pids: list[int] = []
    try:
        ex.submit(TrialTask(0, {}, "value"))
        (outcome,) = _outcomes(ex, 1)
        assert outcome.state == "COMPLETE", outcome.error
        pids = [int(p) for p in pidfile.read_text().split()]
        ex.shutdown()  # a clean shutdown: the worker ends by itself
        assert gone(pids[1]), "a process the trial started outlived its worker"
        assert gone(pids[0])
    finally:
        ex.shutdown(kill=True)
        kill(pids)


def _joblib_sum(x):
    from joblib import Parallel, delayed

    return float(sum(Parallel(n_jobs=2)(delayed(abs)(x - i) for i in range(4))))


def test_a_process_pool_reused_by_the_next_trial_survives_between_trials() -> None:
    """joblib keeps its loky workers between calls; killing them after a trial broke the next."""
    study = create_study(space={"x": {"uniform": [0, 1]}}, storage="memory://", seed=0)
    study.optimize(_joblib_sum, n_trials=4, workers=1)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4, [
        t.error for t in study.trials
    ]


def _interrupting(x):
    if x == 0:
        raise KeyboardInterrupt
    return float(os.getpid())


def test_an_objective_raising_keyboardinterrupt_fails_its_trial_and_the_worker_lives() -> None:
    ex = make_executor("local", workers=1)
    ex.start(FunctionObjective(_interrupting))
    try:
        ex.submit(TrialTask(0, {"x": 0}, "value"))
        (first,) = _outcomes(ex, 1)
        worker = ex._workers[0].proc.pid
        ex.submit(TrialTask(1, {"x": 1}, "value"))
        (second,) = _outcomes(ex, 1)
    finally:
        ex.shutdown()
    assert first.state == "FAILED" and first.error == "the objective raised KeyboardInterrupt"
    assert second.state == "COMPLETE" and second.metrics["value"] == worker


def test_a_worker_sent_sigterm_is_lost_and_its_trial_retried(tmp_path) -> None:
    marker = tmp_path / "terminated-once"

    def objective(x):
        if not marker.exists():
            marker.write_text("")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(15)  # a worker that ignored SIGTERM would finish this attempt
        return float(x)

    study = create_study(space={"x": [3]}, storage="memory://", sampler="grid")
    study.optimize(objective, workers=1, retries=1)
    (trial,) = study.trials
    assert trial.state is TrialState.COMPLETE and trial.attempts == 2, trial.error


def test_far_more_workers_than_cpus_are_refused_unless_insisted() -> None:
    from optml.executors._local import max_local_workers

    many = max_local_workers() + 1
    with pytest.raises(OptMLError, match=rf"{many} local workers.*oversubscribe"):
        LocalExecutor(workers=many)
    with pytest.raises(OptMLError, match="oversubscribe"):
        make_executor("local", 100_000)
    ex = make_executor("local", 100_000, oversubscribe=True)
    ex.limit_workers(2)
    assert ex.workers == 2
    ex.limit_workers(None)  # the next optimize call may run more trials
    assert ex.workers == 100_000
    assert make_executor("local", max_local_workers()).workers == max_local_workers()


def test_no_more_workers_start_than_trials_can_run() -> None:
    def count_siblings() -> float:
        return float(len(psutil.Process(os.getppid()).children()))

    study = create_study(space={"x": [1, 2, 3]}, storage="memory://", sampler="grid")
    ex = LocalExecutor(workers=100_000, oversubscribe=True)
    study.optimize(lambda x: count_siblings(), n_trials=2, executor=ex)
    counts = [t.value for t in study.trials]
    assert len(counts) == 2 and max(counts) <= 2, counts
    assert study.last_run.workers == 2
    # Without n_trials, a grid's points left bound the workers.
    ex = LocalExecutor(workers=100_000, oversubscribe=True)
    study.optimize(lambda x: count_siblings(), executor=ex)
    assert [t.value for t in study.trials][2:] == [1.0] and study.last_run.workers == 1


HANGING = f"""
import os, subprocess, sys, time
child = subprocess.Popen([{PY!r}, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1], "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}")
time.sleep(120)
"""


def test_a_worker_killed_outright_takes_its_command_trial_with_it(tmp_path) -> None:
    from optml.objectives import CommandObjective

    (tmp_path / "hang.py").write_text(HANGING)
    pidfile = tmp_path / "pids"
    ex = make_executor("local", workers=1)
    ex.start(CommandObjective(f"{PY} hang.py {pidfile}", cwd=str(tmp_path)))
    pids: list[int] = []
    try:
        ex.submit(TrialTask(0, {}, "value"))
        pids = [int(p) for p in wait_for_text(pidfile).split()]
        os.kill(ex._workers[0].proc.pid, signal.SIGKILL)  # as the OOM killer would
        (outcome,) = _outcomes(ex, 1)
        assert outcome.state == "FAILED" and "SIGKILL" in outcome.error
        for pid in pids:
            assert gone(pid), f"process {pid} of the trial outlived its worker"
    finally:
        ex.shutdown(kill=True)
        kill(pids)
