"""The Kubernetes executor driven through the real client against a loopback API server
(tests/k8s_fake.py) that runs each Job's container command as a local process."""

from __future__ import annotations

import sys
import time

import pytest

pytest.importorskip("kubernetes")

from k8s_fake import FakeKubernetes  # noqa: E402
from optml import TrialState, create_study  # noqa: E402
from optml.executors import (  # noqa: E402
    KubernetesExecutor,
    TrialOutcome,
    TrialReported,
    TrialStarted,
    TrialTask,
)
from optml.executors._k8s import job_name  # noqa: E402
from optml.objectives import CommandObjective, FunctionObjective  # noqa: E402
from proc_helpers import gone, kill, wait_for_text  # noqa: E402

PY = sys.executable


@pytest.fixture
def fake():
    with FakeKubernetes() as server:
        yield server


@pytest.fixture
def make(fake):
    made = []

    def build(objective, workers=2, **options):
        ex = KubernetesExecutor(
            workers, study="k8s test", namespace="ns", api_client=fake.api_client(), **options
        )
        ex.start(objective)
        made.append(ex)
        return ex

    yield build
    for ex in made:
        ex.shutdown(kill=True)


def _drain(ex, n=1, timeout=60.0):
    """Events until ``n`` outcomes have come."""
    events, end = [], time.monotonic() + timeout
    while sum(isinstance(e, TrialOutcome) for e in events) < n:
        assert time.monotonic() < end, f"no outcome in time; got {events}"
        events += ex.events(timeout=1.0)
    return events


def _cmd(code: str) -> CommandObjective:
    return CommandObjective(f"{PY} -c {code!r}")


def _outcomes(events):
    return {e.number: e for e in events if isinstance(e, TrialOutcome)}


def test_command_trials_complete_and_their_jobs_are_deleted(make, fake):
    ex = make(CommandObjective(f"{PY} -c 'print(\"log line\"); print({{x}} * 2)'"))
    ex.submit(TrialTask(0, {"x": 1.5}, "loss"))
    ex.submit(TrialTask(1, {"x": 4}, "loss"))
    events = _drain(ex, 2)
    outcomes = _outcomes(events)
    assert outcomes[0].state == "COMPLETE" and outcomes[0].metrics == {"loss": 3.0}
    assert outcomes[1].metrics == {"loss": 8.0}
    for number in (0, 1):
        mine = [e for e in events if e.number == number]
        assert isinstance(mine[0], TrialStarted) and isinstance(mine[-1], TrialOutcome)
        assert sum(isinstance(e, TrialStarted) for e in mine) == 1
        assert mine[0].host == "fake-node-1" and mine[0].runner.startswith("optml-k8s-test-")
    assert outcomes[0].host == "fake-node-1"
    assert ex.running() == 0 and ex.free_slots() == 2
    assert not fake.jobs and sorted(p for _, p in fake.deleted) == ["Background"] * 2


def _quadratic(params, trial):
    trial.report(1, params["x"])
    return {"loss": (params["x"] - 2) ** 2}


def test_python_trial_runs_the_entry_point(make, fake):
    ex = make(FunctionObjective(_quadratic))
    ex.submit(TrialTask(3, {"x": 5.0}, "loss", attempt=1))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "COMPLETE" and outcome.metrics == {"loss": 9.0}
    assert outcome.attempt == 1 and outcome.intermediate == {1: 5.0}
    assert outcome.host == "fake-node-1"


def test_a_failing_pod_fails_its_job_at_once_with_its_exit_status(make, fake):
    ex = make(_cmd("import sys; print('boom'); sys.exit(3)"))
    ex.submit(TrialTask(0, {}, "loss"))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "FAILED"
    assert "exited unexpectedly with status 3" in outcome.error
    assert "BackoffLimitExceeded" in outcome.error
    assert "boom" in (outcome.logs or "")
    assert sum(fake.pod_runs.values()) == 1  # backoffLimit 0: retries are the controller's
    assert not fake.jobs


def test_past_active_deadline_is_a_timeout(make, fake):
    ex = make(_cmd("import time; time.sleep(60)"))
    ex.submit(TrialTask(0, {}, "loss", timeout=1))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "TIMEOUT" and "activeDeadlineSeconds" in outcome.error
    assert outcome.started_at and outcome.duration_s > 0  # when it ran, though the pod said not
    assert not fake.procs


def test_a_completed_job_whose_pod_log_is_gone_fails_saying_so(make, fake):
    fake.lost_logs = True
    ex = make(_cmd("print(1)"))
    ex.submit(TrialTask(0, {}, "loss"))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "FAILED" and "log is gone" in outcome.error


def test_no_result_line_fails_the_trial(make, fake):
    ex = make(_cmd("print('no number here')"))
    ex.submit(TrialTask(0, {}, "loss"))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "FAILED" and "reported no result" in outcome.error


def test_a_dropped_watch_is_resumed_from_its_resource_version(make, fake):
    fake.drop_watch_after = 1
    ex = make(_cmd("print(7)"), workers=3)
    for n in range(3):
        ex.submit(TrialTask(n, {}, "loss"))
    outcomes = _outcomes(_drain(ex, 3))
    assert {o.state for o in outcomes.values()} == {"COMPLETE"}
    resumed = [int(rv) for rv in fake.watches if rv]
    assert len(fake.watches) >= 3 and len(resumed) >= 2
    assert resumed == sorted(resumed)  # each resumed where the last stream left off


def test_an_expired_watch_lists_the_jobs_again(make, fake):
    fake.drop_watch_after = 1
    fake.expire_watches = 1
    ex = make(_cmd("import time; time.sleep(0.5); print(7)"))
    lists = fake.lists
    ex.submit(TrialTask(0, {}, "loss"))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "COMPLETE" and fake.expire_watches == 0
    assert fake.lists > lists  # it listed again instead of resuming from the expired version


def test_an_existing_job_409_is_taken_over_not_run_twice(make, fake):
    objective = _cmd("import time; time.sleep(0.5); print(5)")
    first = make(objective)
    first.submit(TrialTask(0, {}, "loss"))
    fake.wait_for(lambda: fake.pod_runs)
    first.shutdown(kill=False)  # the controller goes; its Job runs on
    # A controller that did not see it at start (it came later) gets 409 on create.
    second = make(objective)
    second._found.clear()
    second.submit(TrialTask(0, {}, "loss"))
    (outcome,) = _outcomes(_drain(second)).values()
    assert outcome.state == "COMPLETE" and outcome.metrics == {"loss": 5.0}
    assert fake.conflicts == [fake.created[0]] and len(fake.created) == 1
    assert sum(fake.pod_runs.values()) == 1


def test_a_restarted_controller_reattaches_to_running_jobs_by_label(make, fake):
    objective = _cmd("import time; time.sleep(1); print(2)")
    first = make(objective)
    first.submit(TrialTask(0, {}, "loss"))
    fake.wait_for(lambda: fake.pod_runs)
    first.shutdown(kill=False)
    second = make(objective)
    # The trial comes back as a retry (a new attempt): still the same Job, not a new one.
    second.submit(TrialTask(0, {}, "loss", attempt=1))
    events = _drain(second)
    (outcome,) = _outcomes(events).values()
    assert outcome.state == "COMPLETE" and outcome.attempt == 1
    assert isinstance(events[0], TrialStarted)
    assert len(fake.created) == 1 and not fake.conflicts and sum(fake.pod_runs.values()) == 1


def test_jobs_that_finished_unwatched_are_collected(make, fake):
    objective = _cmd("print(11)")
    first = make(objective)
    first.submit(TrialTask(4, {}, "loss"))
    first.shutdown(kill=False)
    fake.wait_for(lambda: any(j["status"].get("conditions") for j in fake.jobs.values()))
    second = make(objective)
    second.submit(TrialTask(4, {}, "loss"))
    (outcome,) = _outcomes(_drain(second)).values()
    assert outcome.metrics == {"loss": 11.0} and len(fake.created) == 1
    assert not fake.jobs


def test_cancel_deletes_the_job_and_no_outcome_follows(make, fake):
    ex = make(_cmd("import time; time.sleep(60)"))
    ex.submit(TrialTask(0, {}, "loss"))
    fake.wait_for(lambda: fake.procs)
    ex.cancel(0)
    assert ex.running() == 0 and ex.events(timeout=0.5) == []
    fake.wait_for(lambda: not fake.procs and not fake.jobs)
    assert fake.deleted[0][1] == "Background"


def test_shutdown_kill_deletes_jobs_in_flight(make, fake):
    ex = make(_cmd("import time; time.sleep(60)"))
    ex.submit(TrialTask(0, {}, "loss"))
    fake.wait_for(lambda: fake.procs)
    ex.shutdown(kill=True)
    fake.wait_for(lambda: not fake.jobs and not fake.procs)


def test_an_api_error_on_create_is_one_line(make, fake):
    from optml.errors import OptMLError

    ex = make(_cmd("print(1)"))
    ex.settings = ex.settings.__class__(**{**ex.settings.__dict__, "namespace": "forbidden"})
    with pytest.raises(OptMLError, match="Kubernetes refused Job .* 403 .*cannot create"):
        ex.submit(TrialTask(0, {}, "loss"))
    assert ex.running() == 0


# -- retries: the controller's, one Job per attempt -----------------------------------------


def test_retries_run_one_job_per_attempt_and_record_the_trial_once(fake, tmp_path):
    """retries=2: x=0 fails once, then succeeds (2 pods); x=1 always fails (3 pods). No
    Job is retried by Kubernetes on top (backoffLimit 0), and each trial is recorded once."""
    marker = tmp_path / "failed-once"
    code = (
        "import os, sys; x = int(sys.argv[1]); m = sys.argv[2]\n"
        "if x == 1 or not os.path.exists(m):\n"
        "    open(m, 'w').close(); print('failing', x); sys.exit(4)\n"
        "print(x + 10)"
    )
    script = tmp_path / "flaky.py"
    script.write_text(code)
    ex = KubernetesExecutor(1, study="retries", namespace="ns", api_client=fake.api_client())
    study = create_study(space={"x": [0, 1]}, storage="memory://", sampler="grid", metric="loss")
    study.optimize(
        CommandObjective(f"{PY} {script} {{x}} {marker}"), executor=ex, retries=2, workers=1
    )
    trials = {t.params["x"]: t for t in study.trials}
    assert len(study.trials) == 2
    assert trials[0].state is TrialState.COMPLETE and trials[0].value == 10.0
    assert trials[0].attempts == 2
    assert trials[1].state is TrialState.FAILED and trials[1].attempts == 3
    assert "exited unexpectedly with status 4" in (trials[1].error or "")
    n0, n1 = trials[0].number, trials[1].number
    want = {job_name("retries", n0, a) for a in (0, 1)} | {
        job_name("retries", n1, a) for a in (0, 1, 2)
    }
    assert sorted(fake.created) == sorted(want)  # one Job per attempt, none twice
    assert all(fake.pod_runs[name] == 1 for name in fake.created)  # one pod per Job
    assert not fake.jobs


# -- live reports, prune --------------------------------------------------------------------


def _reports_then_checks_storage(db, trial):
    """Report, then wait (bounded) until the study's database shows the value while this
    trial still runs: the metric says whether it did."""
    import time as _time

    from optml import load_study

    trial.report(0, 1.25)
    end = _time.monotonic() + 30
    while _time.monotonic() < end:
        study = load_study("live", storage=f"sqlite:///{db}")
        (mine,) = [t for t in study.trials if t.number == trial.number]
        if mine.intermediate == {0: 1.25} and mine.state.value == "RUNNING":
            return 1.0
        _time.sleep(0.1)
    return 0.0


def test_reports_reach_storage_while_the_trial_runs(fake, tmp_path):
    db = str(tmp_path / "live.db")
    study = create_study("live", space={"db": [db]}, storage=f"sqlite:///{db}", sampler="grid")
    ex = KubernetesExecutor(1, study="live", namespace="ns", api_client=fake.api_client())
    study.optimize(FunctionObjective(_reports_then_checks_storage), executor=ex)
    (trial,) = study.trials
    assert trial.state is TrialState.COMPLETE, trial.error
    assert trial.value == 1.0, "the report reached storage only after the trial"
    assert fake.log_follows >= 1


def _report_once(x, trial):
    trial.report(0, x)
    return x


def test_a_pending_pod_s_log_is_not_asked_for_until_it_runs(make, fake):
    """Thousands of trials may wait for nodes: their logs are followed only once their pods
    run (the Job counts them ready), not polled meanwhile."""
    fake.hold_pods = True
    ex = make(FunctionObjective(_report_once), workers=1)
    ex.submit(TrialTask(0, {"x": 2.5}, "value"))
    events = []
    end = time.monotonic() + 30
    while not any(isinstance(e, TrialStarted) for e in events):
        assert time.monotonic() < end
        events += ex.events(timeout=0.5)
    fake.wait_for(lambda: any(p["status"]["phase"] == "Pending" for p in fake.pods.values()))
    events += ex.events(timeout=1.0)  # a while with the Job active and its pod Pending
    assert fake.log_requests == 0
    with fake.lock:
        fake.hold_pods = False
    events += _drain(ex)
    (outcome,) = _outcomes(events).values()
    assert outcome.state == "COMPLETE" and outcome.metrics == {"value": 2.5}
    assert [(e.step, e.value) for e in events if isinstance(e, TrialReported)] == [(0, 2.5)]


def _report_forever(pidfile, trial):
    import os as _os
    import time as _time

    open(pidfile, "w").write(str(_os.getpid()))
    for step in range(600):
        trial.report(step, float(step))
        _time.sleep(0.1)
    return 0.0


def test_prune_deletes_the_job_and_ends_the_trial_pruned(make, fake, tmp_path):
    pidfile = tmp_path / "pid"
    ex = make(FunctionObjective(_report_forever), workers=1)
    ex.submit(TrialTask(0, {"pidfile": str(pidfile)}, "loss"))
    pid = int(wait_for_text(pidfile))
    try:
        events = []
        end = time.monotonic() + 60
        while not any(isinstance(e, TrialReported) for e in events):
            assert time.monotonic() < end
            events += ex.events(timeout=1.0)
        ex.prune(0)
        events += _drain(ex)
        (outcome,) = _outcomes(events).values()
        assert outcome.state == "PRUNED"
        assert outcome.started_at and outcome.finished_at and outcome.duration_s > 0
        reports = [e for e in events if isinstance(e, TrialReported)]
        assert [r.step for r in reports] == list(range(len(reports)))
        assert outcome.intermediate == {r.step: r.value for r in reports}
        assert ex.running() == 0 and fake.deleted[0][1] == "Background"
        assert gone(pid), "the pruned trial's process lived on"
    finally:
        kill([pid])


# -- paths on a pod ---------------------------------------------------------------------------


def test_small_files_travel_inside_the_job(make, fake, tmp_path):
    """A function's .py file and a data file of 200 KB (more than one environment variable
    holds) are shipped in the Job; the pod sees them though the paths are gone."""
    module = tmp_path / "my_objective.py"
    module.write_text("def f(x, data):\n    return x + len(open(data, 'rb').read())\n")
    data = tmp_path / "data.bin"
    data.write_bytes(b"a" * 200_000)
    fake.hold = True  # the Job exists, its pod not yet
    ex = make(FunctionObjective(f"{module}:f", data=str(data)), workers=1)
    ex.submit(TrialTask(0, {"x": 1}, "value", data=str(data)))
    env = {
        e["name"]: e["value"]
        for e in next(iter(fake.jobs.values()))["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "OPTML_TASK_1" in env and all(len(v) < 128 * 1024 for v in env.values())
    module.unlink()
    data.unlink()
    with fake.lock:
        fake.hold = False
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "COMPLETE", outcome.error
    assert outcome.metrics == {"value": 200_001.0}


def test_a_path_neither_shipped_nor_in_the_pod_fails_the_trial_naming_it(make, fake, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"b" * (300 * 1024))  # over the 256 KB shipped inside a Job
    fake.hold = True
    ex = make(FunctionObjective(_reports_then_checks_storage), workers=1)
    ex.submit(TrialTask(0, {"db": "unused"}, "value", data=str(big)))
    big.unlink()
    with fake.lock:
        fake.hold = False
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "FAILED"
    assert f"data {str(big)!r} does not exist on pod" in outcome.error
    assert "256 KB" in outcome.error and "image" in outcome.error


def test_a_command_s_missing_path_fails_the_trial_naming_it(make, fake, tmp_path):
    here = tmp_path / "data.txt"
    here.write_text("xyz")
    ok = make(CommandObjective(f"{PY} -c 'print(len(open(\"{here}\").read()))'", data=str(here)))
    ok.submit(TrialTask(0, {}, "loss"))
    (outcome,) = _outcomes(_drain(ok)).values()
    assert outcome.state == "COMPLETE" and outcome.metrics == {"loss": 3.0}
    missing = tmp_path / "not-in-the-image" / "data.csv"
    ex = make(CommandObjective(f"{PY} -c 'print(1)'", data=str(missing)))
    ex.submit(TrialTask(1, {}, "loss"))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "FAILED"
    assert outcome.error.startswith(f"data {str(missing)!r} does not exist in pod optml-")
    assert "not shipped" in outcome.error and "image" in outcome.error
    gone_cwd = tmp_path / "no-such-dir"
    ex2 = make(CommandObjective(f"{PY} -c 'print(1)'", cwd=str(gone_cwd)))
    ex2.submit(TrialTask(2, {}, "loss"))
    (outcome,) = _outcomes(_drain(ex2)).values()
    assert outcome.state == "FAILED" and f"objective.cwd {str(gone_cwd)!r}" in outcome.error


# -- the fake's own semantics the executor relies on -------------------------------------------


def test_deleting_a_job_without_propagation_leaves_its_pod_running(make, fake, tmp_path):
    """Why the executor deletes with propagationPolicy Background: batch/v1's default
    (orphanDependents) leaves the pod, and the trial's processes, running."""
    pidfile = tmp_path / "pid"
    ex = make(
        _cmd(
            f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
        )
    )
    ex.submit(TrialTask(0, {}, "loss"))
    pid = int(wait_for_text(pidfile))
    try:
        (name,) = fake.jobs
        ex.batch.delete_namespaced_job(name, "ns")  # no propagationPolicy
        fake.wait_for(lambda: not fake.jobs)
        assert fake.orphaned and not gone(pid, within=1.0)
    finally:
        kill([pid])


def test_the_fake_server_kills_its_pods_when_it_closes(tmp_path):
    pidfile = tmp_path / "pid"
    script = tmp_path / "detach.py"
    script.write_text(
        "import os, subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        f"open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{c.pid}}')\n"
        "time.sleep(60)\n"
    )
    with FakeKubernetes() as server:
        ex = KubernetesExecutor(1, study="closing", namespace="ns", api_client=server.api_client())
        ex.start(CommandObjective(f"{PY} {script}"))
        ex.submit(TrialTask(0, {}, "loss"))
        pids = [int(p) for p in wait_for_text(pidfile).split()]
        ex.shutdown(kill=False)  # the Job runs on: only the server's close ends it
    try:
        assert all(gone(pid) for pid in pids), "a pod's process outlived the fake server"
    finally:
        kill(pids)
