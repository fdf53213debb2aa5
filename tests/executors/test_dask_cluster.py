"""Dask on a real cluster started here (a `dask scheduler` and two `dask worker` processes),
really killed: a worker SIGKILLed mid-trial, a trial past its time limit."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from optml import TrialState, create_study
from optml.executors import DaskExecutor
from proc_helpers import events_until, gone, outcomes_in

pytestmark = [pytest.mark.infra, pytest.mark.slow]

distributed = pytest.importorskip("distributed")
DASK = str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(procs) -> None:
    # Workers first: a worker whose scheduler is gone waits to reconnect.
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


@contextlib.contextmanager
def dask_cluster(workdir: Path, workers: int, *worker_args: str, env=None):
    """A `dask scheduler` and `workers` `dask worker` processes (no nanny: a killed worker
    stays dead) on loopback ports, started in ``workdir`` and stopped on leaving; yields the
    scheduler's address and the worker processes."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    log = open(workdir / "dask.log", "w")  # noqa: SIM115 - closed below
    common = {"stdout": log, "stderr": subprocess.STDOUT, "cwd": workdir, "env": env}
    port = address.rsplit(":", 1)[1]
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
            **common,
        )
    ]
    try:
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [DASK, "worker", address, "--no-nanny", "--host", "127.0.0.1"]
                    + ["--no-dashboard", *worker_args],
                    **common,
                )
            )
        with distributed.Client(address, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, procs[1:]
    finally:
        _stop(procs)
        log.close()


@pytest.fixture
def cluster(tmp_path):
    """A scheduler and two single-threaded workers."""
    with dask_cluster(tmp_path, 2, "--nthreads", "1") as running:
        yield running


def slow_point(x, data):
    """Record which Dask worker runs this trial (the runtime's worker process's parent)."""
    Path(data, f"started-{x}-{os.getpid()}").write_text(f"{os.getppid()} {os.getpid()}")
    time.sleep(3.0)
    return float(x)


def test_a_worker_killed_mid_trial_the_grid_still_completes_each_point_once(
    cluster, tmp_path
) -> None:
    address, workers = cluster
    marks = tmp_path / "marks"
    marks.mkdir()
    study = create_study(
        name="grid", storage=f"sqlite:///{tmp_path / 's.db'}", space={"x": [1, 2, 3, 4, 5, 6]}
    )
    killed: list[tuple[int, int]] = []
    worker_pids = {w.pid for w in workers}

    def kill_a_busy_worker() -> None:
        # SIGKILL the Dask worker of a trial some way into it, as running out of memory would.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for mark in marks.iterdir():
                parent, child = (int(p) for p in mark.read_text().split() or (0, 0))
                if parent in worker_pids and 0.5 < time.time() - mark.stat().st_mtime < 2.5:
                    os.kill(parent, signal.SIGKILL)
                    killed.append((parent, child))
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    study.optimize(
        slow_point,
        executor=DaskExecutor(workers=2, address=address),
        data=str(marks),
        show_progress=False,
    )
    killer.join(timeout=60)
    assert killed, "no trial was seen running to kill its worker"
    trials = study.trials
    assert sorted(t.params["x"] for t in trials) == [1, 2, 3, 4, 5, 6]
    assert all(t.state is TrialState.COMPLETE for t in trials), [
        (t.number, t.state, t.error) for t in trials
    ]
    assert any(t.attempts >= 2 for t in trials), "the rerun was not counted as a retry"
    assert gone(killed[0][1]), "the killed worker's trial process lived on"


def spawn_and_sleep(x, data):
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    Path(data, "pids").write_text(f"{os.getpid()} {child.pid}")
    time.sleep(120)
    return 1.0


def test_a_trial_past_its_timeout_on_dask_is_timeout_and_its_processes_aregone(
    cluster, tmp_path
) -> None:
    address, _ = cluster
    study = create_study(name="t", storage="memory://", space={"x": [1]})
    study.optimize(
        spawn_and_sleep,
        executor=DaskExecutor(workers=1, address=address),
        trial_timeout=3,
        data=str(tmp_path),
        show_progress=False,
    )
    (trial,) = study.trials
    assert trial.state is TrialState.TIMEOUT
    assert "time limit of 3 s" in trial.error
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert all(gone(pid) for pid in pids), "a process of the timed-out trial lived on"


def quick(x):
    return float(x)


def test_trials_run_on_after_the_worker_that_read_the_objective_dies(cluster) -> None:
    # The objective waits on the scheduler, which each worker reads once; a worker that held
    # the only copy of it took it along when it died (then Dask cancelled every trial that
    # needed it, or ran them all on one worker while it lived).
    from optml.executors import TrialTask
    from optml.objectives import FunctionObjective

    address, _ = cluster
    ex = DaskExecutor(workers=2, address=address)
    try:
        ex.start(FunctionObjective(quick))
        ex.submit(TrialTask(0, {"x": 1}, "value"))
        (first,) = outcomes_in(events_until(ex, lambda got: len(outcomes_in(got)) == 1, 60))
        assert first.state == "COMPLETE" and first.runner
        pids = ex._client.run(os.getpid)
        os.kill(pids[first.runner], signal.SIGKILL)
        for n in (1, 2):
            ex.submit(TrialTask(n, {"x": n}, "value"))
        outcomes = outcomes_in(events_until(ex, lambda got: len(outcomes_in(got)) == 2, 90))
    finally:
        ex.shutdown(kill=True)
    assert sorted((o.number, o.state) for o in outcomes) == [(1, "COMPLETE"), (2, "COMPLETE")]
    assert {o.runner for o in outcomes} != {first.runner}


def test_trials_submitted_together_start_on_different_workers(tmp_path) -> None:
    # With work stealing off, where the scheduler first puts a task is where it runs: a task
    # that needed the objective as Dask data went to the worker holding it, so two trials ran
    # one after the other there while the other worker stood idle.
    from optml.executors import TrialTask
    from optml.objectives import FunctionObjective

    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": "False"}
    with dask_cluster(tmp_path, 2, "--nthreads", "1", env=env) as (address, _):
        ex = DaskExecutor(workers=2, address=address)
        try:
            ex.start(FunctionObjective(slow_point))
            ex.submit_many([TrialTask(n, {"x": n}, "value", data=str(tmp_path)) for n in (1, 2)])
            outcomes = outcomes_in(events_until(ex, lambda got: len(outcomes_in(got)) == 2, 90))
        finally:
            ex.shutdown(kill=True)
    assert [o.state for o in outcomes] == ["COMPLETE", "COMPLETE"]
    assert outcomes[0].runner != outcomes[1].runner
