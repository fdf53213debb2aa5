"""The executor contract, checked on every executor (serial, local, Dask on real worker processes,
Ray on a real local instance, Kubernetes Jobs through the real client against the loopback API
server of tests/k8s_fake.py, which runs each Job's pod as a local process tree)."""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optml.executors import (
    DaskExecutor,
    RayExecutor,
    TrialOutcome,
    TrialReported,
    TrialStarted,
    TrialTask,
    make_executor,
)
from optml.objectives import FunctionObjective
from proc_helpers import events_until, gone, kill, outcomes_in, wait_for_text

PY = sys.executable
BACKENDS = ["serial", "local", "dask", "ray"] + (
    ["kubernetes"] if importlib.util.find_spec("kubernetes") else []
)


@pytest.fixture(scope="module")
def dask_cluster():
    """Two real Dask worker processes, one thread each, for the whole module."""
    distributed = pytest.importorskip("distributed")
    import logging

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    try:
        yield cluster
    finally:
        cluster.close(timeout=30)


@pytest.fixture
def k8s_fake():
    """A loopback Kubernetes API server whose Jobs run as local processes (one per test)."""
    from k8s_fake import FakeKubernetes

    with FakeKubernetes() as fake:
        yield fake


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def executor_for(backend, request):
    """Build and start an executor of ``backend`` for an objective; shut down after the test."""
    made = []
    # Set up before the executors, so that it is torn down after they are shut down.
    fake = request.getfixturevalue("k8s_fake") if backend == "kubernetes" else None

    def build(objective, workers: int = 2):
        if backend == "dask":
            cluster = request.getfixturevalue("dask_cluster")
            ex = DaskExecutor(workers=workers, address=cluster.scheduler_address)
        elif backend == "ray":
            request.getfixturevalue("ray_instance")
            ex = RayExecutor(workers=workers)  # on the module's instance
        elif backend == "kubernetes":
            from optml.executors import KubernetesExecutor

            ex = KubernetesExecutor(
                workers, study="conformance", namespace="ns", api_client=fake.api_client()
            )
        else:
            ex = make_executor(backend, workers=workers)
        made.append(ex)
        ex.start(objective)
        return ex

    yield build
    for ex in made:
        ex.shutdown(kill=True)


# -- objectives (module level: they travel by value to the Dask workers) ----------------------


def square(x):
    return x * x


def crash(x):
    raise ValueError(f"boom at {x}")


def die(x):
    os._exit(3)


def report_steps(x, trial):
    for step in range(5):
        trial.report(step, x + step / 10)
    return x


def report_then_wait(flag, trial):
    trial.report(0, 1.5)
    deadline = time.monotonic() + 60
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return 1.0


def report_slowly(x, trial):
    time.sleep(0.3)
    for step in range(100):
        trial.report(step, float(step))
        time.sleep(0.05)
    return 0.0


def spawn_and_sleep(pidfile, seconds):
    child = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"], start_new_session=True)
    Path(pidfile).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(seconds)
    return 1.0


# -- the contract ---------------------------------------------------------------------------


def test_every_task_yields_exactly_one_outcome(executor_for) -> None:
    ex = executor_for(FunctionObjective(square))
    got: list = []
    for n in range(5):
        got += events_until(ex, lambda _: ex.free_slots() > 0)
        ex.submit(TrialTask(n, {"x": n}, "value"))
    got += events_until(ex, lambda g: ex.running() == 0)
    got += ex.events(0.5)  # nothing more may come
    outcomes = outcomes_in(got)
    assert sorted(o.number for o in outcomes) == [0, 1, 2, 3, 4]
    assert all(o.state == "COMPLETE" for o in outcomes)
    assert {o.number: o.metrics["value"] for o in outcomes} == {n: n * n for n in range(5)}
    assert all(o.host for o in outcomes)


def test_tasks_handed_over_together_each_yield_one_outcome(executor_for, backend) -> None:
    ex = executor_for(FunctionObjective(square), workers=3)
    batch = [TrialTask(n, {"x": n}, "value") for n in range(ex.free_slots())]
    ex.submit_many(batch)
    assert ex.running() == len(batch) and ex.free_slots() == 0
    got = events_until(ex, lambda g: ex.running() == 0)
    got += ex.events(0.5)  # nothing more may come
    assert sorted(o.number for o in outcomes_in(got)) == [t.number for t in batch]
    assert {o.number: o.metrics["value"] for o in outcomes_in(got)} == {
        t.number: t.number**2 for t in batch
    }


def test_a_trial_past_its_timeout_is_timeout_and_its_processes_aregone(
    executor_for, tmp_path
) -> None:
    pidfile = tmp_path / "pids"
    ex = executor_for(FunctionObjective(spawn_and_sleep), workers=1)
    ex.submit(TrialTask(0, {"pidfile": str(pidfile), "seconds": 60}, "value", timeout=2.0))
    got = events_until(ex, lambda g: outcomes_in(g))
    pids = [int(p) for p in wait_for_text(pidfile).split()]
    try:
        (outcome,) = outcomes_in(got)
        assert outcome.state == "TIMEOUT"
        assert "2 s" in outcome.error
        assert gone(pids[1]), "the trial's detached child outlived its timeout"
    finally:
        kill(pids[1:])


def test_a_crash_is_failed_with_its_error(executor_for) -> None:
    ex = executor_for(FunctionObjective(crash), workers=1)
    ex.submit(TrialTask(7, {"x": 7}, "value"))
    (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    assert outcome.state == "FAILED"
    assert "ValueError: boom at 7" in outcome.error


def test_a_worker_process_that_dies_fails_its_trial(executor_for, backend) -> None:
    if backend == "serial":
        pytest.skip("the serial executor's trial runs in the controller's own process")
    ex = executor_for(FunctionObjective(die), workers=1)
    ex.submit(TrialTask(0, {"x": 0}, "value"))
    (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    assert outcome.state == "FAILED"
    assert "exited unexpectedly with status 3" in outcome.error


def test_shutdown_kill_stops_running_work(executor_for, backend, tmp_path) -> None:
    if backend == "serial":
        pytest.skip("the serial executor runs a trial only inside events(): none runs here")
    pidfile = tmp_path / "pids"
    ex = executor_for(FunctionObjective(spawn_and_sleep), workers=1)
    ex.submit(TrialTask(0, {"pidfile": str(pidfile), "seconds": 120}, "value"))
    pids = [int(p) for p in wait_for_text(pidfile).split()]
    try:
        ex.shutdown(kill=True)
        assert gone(pids[0]), "the process running the trial outlived shutdown(kill=True)"
        assert gone(pids[1]), "the trial's detached child outlived shutdown(kill=True)"
    finally:
        kill(pids)


def test_reports_arrive_in_order_and_before_the_outcome(executor_for) -> None:
    ex = executor_for(FunctionObjective(report_steps), workers=1)
    ex.submit(TrialTask(3, {"x": 1}, "value"))
    got = events_until(ex, outcomes_in)
    kinds = [type(e) for e in got]
    assert kinds[0] is TrialStarted and kinds[-1] is TrialOutcome
    reports = [e for e in got if isinstance(e, TrialReported)]
    assert [(r.step, r.value) for r in reports] == [(s, 1 + s / 10) for s in range(5)]
    assert got[-1].intermediate == {s: 1 + s / 10 for s in range(5)}


def test_a_report_arrives_while_the_trial_runs(executor_for, backend, tmp_path) -> None:
    if backend == "serial":
        pytest.skip("the serial executor hands over a trial's events when it ends")
    flag = tmp_path / "go"
    ex = executor_for(FunctionObjective(report_then_wait), workers=1)
    ex.submit(TrialTask(0, {"flag": str(flag)}, "value"))
    got = events_until(ex, lambda g: any(isinstance(e, TrialReported) for e in g))
    assert not outcomes_in(got), "the report came only with the outcome"
    started = [e for e in got if isinstance(e, TrialStarted)]
    # A pod's process id means nothing to the controller (another machine, its own PID space).
    assert started and started[0].host and (started[0].pid or backend == "kubernetes")
    flag.write_text("go")
    (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    assert outcome.state == "COMPLETE"


def test_prune_ends_the_trial_pruned_at_its_next_report(executor_for) -> None:
    ex = executor_for(FunctionObjective(report_slowly), workers=1)
    ex.submit(TrialTask(0, {"x": 0}, "value"))
    ex.prune(0)
    (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    assert outcome.state == "PRUNED"
    assert len(outcome.intermediate) < 100


def test_cancel_stops_the_trial_and_no_outcome_follows(executor_for, backend, tmp_path) -> None:
    pidfile = tmp_path / "pids"
    ex = executor_for(FunctionObjective(spawn_and_sleep), workers=1)
    ex.submit(TrialTask(0, {"pidfile": str(pidfile), "seconds": 120}, "value"))
    if backend == "serial":  # cancelled before it ran
        ex.cancel(0)
        assert ex.events(0.2) == [] and ex.running() == 0
        return
    pids = [int(p) for p in wait_for_text(pidfile).split()]
    try:
        ex.cancel(0)
        assert gone(pids[1]), "a cancelled trial's process lived on"
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert not outcomes_in(ex.events(0.2))
        assert ex.running() == 0 and ex.free_slots() == 1
    finally:
        kill(pids)


def test_a_task_and_its_objective_survive_serialisation(executor_for) -> None:
    task = TrialTask(4, {"x": 3, "name": "a"}, "value", attempt=1, timeout=30.0)
    assert pickle.loads(pickle.dumps(task)) == task
    offset = 10  # a closure: travels by value where the backend pickles it
    ex = executor_for(FunctionObjective(lambda x, name: x + offset + len(name)), workers=1)
    ex.submit(task)
    (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    assert outcome.state == "COMPLETE" and outcome.metrics == {"value": 14.0}
    assert outcome.attempt == 1


# -- Dask: what travels to the workers ------------------------------------------------------


def test_dask_ships_a_small_objective_file_the_worker_cannot_see(dask_cluster, tmp_path) -> None:
    module = tmp_path / "my_objective.py"
    module.write_text("def f(x, data):\n    return x + len(open(data).read())\n")
    data = tmp_path / "data.txt"
    data.write_text("abc")
    ex = DaskExecutor(workers=1, address=dask_cluster.scheduler_address)
    try:
        ex.start(FunctionObjective(f"{module}:f", data=str(data)))
        module.unlink()  # gone from the path the controller named: the worker gets a copy
        data.unlink()
        ex.submit(TrialTask(0, {"x": 1}, "value", data=str(data)))
        (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    finally:
        ex.shutdown(kill=True)
    assert outcome.state == "COMPLETE", outcome.error
    assert outcome.metrics == {"value": 4.0}


def test_dask_fails_a_trial_whose_path_the_worker_cannot_see(dask_cluster, tmp_path) -> None:
    missing = tmp_path / "not-shared" / "dataset"
    ex = DaskExecutor(workers=1, address=dask_cluster.scheduler_address)
    try:
        ex.start(FunctionObjective(square))
        ex.submit(TrialTask(0, {"x": 1}, "value", data=str(missing)))
        (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    finally:
        ex.shutdown(kill=True)
    assert outcome.state == "FAILED"
    assert f"data {str(missing)!r} does not exist on Dask worker host" in outcome.error
    assert "shared" in outcome.error


def test_import_optml_does_not_import_dask() -> None:
    code = (
        "import sys, optml, optml.executors, optml.cli\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'cloudpickle')]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([PY, "-c", code], check=True, timeout=60)


def test_without_dask_the_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['distributed'] = None\n"
        "from optml.executors import make_executor\n"
        "from optml.errors import MissingDependencyError\n"
        "try:\n"
        "    make_executor('dask', workers=1)\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'optml[dask]'" in out.stdout, out.stderr


def malloc_trim_set(x):
    return float("MALLOC_TRIM_THRESHOLD_" in os.environ)


def test_dask_trials_run_without_the_nanny_s_malloc_setting(dask_cluster) -> None:
    # The nanny sets MALLOC_TRIM_THRESHOLD_ for its worker; in a trial's process it made numpy
    # code that allocates large arrays several times slower.
    ex = DaskExecutor(workers=1, address=dask_cluster.scheduler_address)
    try:
        ex.start(FunctionObjective(malloc_trim_set))
        ex.submit(TrialTask(0, {"x": 1}, "value"))
        (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    finally:
        ex.shutdown(kill=True)
    assert outcome.state == "COMPLETE" and outcome.metrics == {"value": 0.0}
