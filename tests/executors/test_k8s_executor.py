"""The Kubernetes executor driven through the real client against a loopback API server
(tests/k8s_fake.py) that runs each Job's container command as a local process."""

from __future__ import annotations

import sys
import time

import pytest

pytest.importorskip("kubernetes")

from k8s_fake import FakeKubernetes  # noqa: E402
from optml.executors import (  # noqa: E402
    KubernetesExecutor,
    TrialOutcome,
    TrialStarted,
    TrialTask,
)
from optml.objectives import CommandObjective, FunctionObjective  # noqa: E402

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


def test_failing_pods_exhaust_backoff_limit_and_fail_the_trial(make, fake):
    ex = make(_cmd("import sys; print('boom'); sys.exit(3)"), retries=1)
    ex.submit(TrialTask(0, {}, "loss"))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "FAILED" and "BackoffLimitExceeded" in outcome.error
    assert "boom" in (outcome.logs or "")
    assert sum(fake.pod_runs.values()) == 2  # backoffLimit 1: the pod ran twice
    assert not fake.jobs


def test_past_active_deadline_is_a_timeout(make, fake):
    ex = make(_cmd("import time; time.sleep(60)"))
    ex.submit(TrialTask(0, {}, "loss", timeout=1))
    (outcome,) = _outcomes(_drain(ex)).values()
    assert outcome.state == "TIMEOUT" and "activeDeadlineSeconds" in outcome.error
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
