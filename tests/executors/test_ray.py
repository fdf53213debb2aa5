"""The Ray backend on a real local Ray instance (one for the module, with 2 fake GPUs): a Ray
worker SIGKILLed mid-trial, the GPUs Ray assigns, refusals, another process connecting by
address, and the extra."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from optml import TrialState, create_study, load_study
from optml.errors import GpuError
from optml.executors import RayExecutor, TrialStarted, TrialTask
from optml.executors._ray import RayError
from optml.objectives import FunctionObjective
from proc_helpers import events_until, gone, outcomes_in, ray_processes

PY = sys.executable


# -- without a Ray instance -------------------------------------------------------------------


def test_import_optml_does_not_import_ray() -> None:
    code = (
        "import sys, optml, optml.executors, optml.cli, optml.service\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'ray']\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([PY, "-c", code], check=True, timeout=60)


def test_without_ray_the_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['ray'] = None\n"
        "from optml.executors import make_executor\n"
        "from optml.errors import MissingDependencyError\n"
        "try:\n"
        "    make_executor('ray', workers=1)\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'optml[ray]'" in out.stdout, out.stderr


@pytest.mark.parametrize("address", ["tcp://host:8786", "host", "ray://", "http://x:1"])
def test_an_address_ray_cannot_dial_is_refused_naming_the_forms(address) -> None:
    pytest.importorskip("ray")
    with pytest.raises(RayError, match=r"not a Ray cluster address.*ray://host:10001"):
        RayExecutor(workers=1, address=address)


@pytest.mark.slow
def test_an_address_where_no_cluster_listens_is_one_clear_error_soon() -> None:
    # Ray itself keeps retrying such an address for minutes.
    pytest.importorskip("ray")
    code = (
        "from optml.executors import RayExecutor\n"
        "from optml.objectives import FunctionObjective\n"
        "from optml.errors import OptMLError\n"
        "ex = RayExecutor(workers=1, address='ray://127.0.0.1:1')\n"
        "try:\n"
        "    ex.start(FunctionObjective(abs))\n"
        "except OptMLError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert "execution.address 'ray://127.0.0.1:1': could not connect" in out.stdout, out.stderr


# -- on a head started with `ray start` (before the module's instance starts) -----------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLIENT_SCRIPT = """
import json, sys, time
from optml.executors import RayExecutor, TrialOutcome, TrialReported, TrialStarted, TrialTask
from optml.objectives import FunctionObjective

def report_then_sleep(x, trial):
    for step in range(3):
        trial.report(step, x + step)
    time.sleep(x)
    return x * 2

ex = RayExecutor(workers=2, address=sys.argv[1])
try:
    ex.start(FunctionObjective(report_then_sleep))
    ex.submit(TrialTask(0, {"x": 1}, "value"))
    ex.submit(TrialTask(1, {"x": 120}, "value"))
    got, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline and not (
        any(isinstance(e, TrialOutcome) for e in got)
        and any(isinstance(e, TrialStarted) and e.number == 1 for e in got)
    ):
        got += ex.events(0.2)
    ex.cancel(1)
    running = ex.running()
finally:
    ex.shutdown(kill=True)
print(json.dumps({
    "outcomes": [[e.number, e.state, e.metrics] for e in got if isinstance(e, TrialOutcome)],
    "steps": [e.step for e in got if isinstance(e, TrialReported) and e.number == 0],
    "running": running,
}))
"""


@pytest.mark.infra
@pytest.mark.slow
def test_a_ray_client_address_runs_reports_and_cancels_trials(tmp_path) -> None:
    """`ray start --head` and Ray Client (ray://), with the cluster's token authentication; the
    client runs in a process of its own (Ray keeps one connection per process)."""
    import json

    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="optml-ray-test-head-", dir="/tmp")
    client = _free_port()
    try:
        started = subprocess.run(
            [str(Path(PY).with_name("ray")), "start", "--head", f"--port={_free_port()}"]
            + ["--num-cpus=2", "--object-store-memory=100000000", "--include-dashboard=false"]
            + [f"--temp-dir={temp}", "--disable-usage-stats"]
            + [f"--ray-client-server-port={client}"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert started.returncode == 0, started.stderr
        # `ray start` returns before the head's Ray Client server listens (it starts it in a
        # process of its own, later under load), and the executor refuses an address it cannot
        # reach at once: wait for the port, bounded.
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", client), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray Client server never listened"
                time.sleep(0.5)
        out = subprocess.run(
            [PY, "-c", CLIENT_SCRIPT, f"ray://127.0.0.1:{client}"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr[-3000:]
    finally:
        procs = ray_processes(temp)
        for proc in procs:
            proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=15)
        for proc in alive:
            proc.kill()
        shutil.rmtree(temp, ignore_errors=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["outcomes"] == [[0, "COMPLETE", {"value": 2.0}]]
    assert got["steps"] == [0, 1, 2]
    assert got["running"] == 0
    assert not ray_processes(temp), "the head's processes outlived the test"


# -- on the module's Ray instance -------------------------------------------------------------


def slow_point(x, data):
    """Record which Ray worker runs this trial (the runtime's trial process's parent)."""
    Path(data, f"started-{x}-{os.getpid()}").write_text(f"{os.getppid()} {os.getpid()}")
    time.sleep(3.0)
    return float(x)


def _is_ray_worker(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).cmdline()[0].startswith("ray::")
    except (psutil.Error, IndexError):
        return False


@pytest.mark.infra
@pytest.mark.slow
def test_a_ray_worker_killed_mid_trial_reruns_it_once_as_a_retry(ray_instance, tmp_path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    study = create_study(
        name="grid", storage=f"sqlite:///{tmp_path / 's.db'}", space={"x": [1, 2, 3, 4]}
    )
    killed: list[tuple[int, int]] = []

    def kill_a_busy_worker() -> None:
        # SIGKILL the Ray worker of a trial some way into it, as the OOM killer would.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not killed:
            for mark in marks.iterdir():
                parent, child = (int(p) for p in mark.read_text().split() or (0, 0))
                age = time.time() - mark.stat().st_mtime
                if 0.5 < age < 2.5 and _is_ray_worker(parent):
                    os.kill(parent, signal.SIGKILL)
                    killed.append((parent, child))
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    study.optimize(
        slow_point,
        executor=RayExecutor(workers=2),
        data=str(marks),
        show_progress=False,
    )
    killer.join(timeout=90)
    assert killed, "no trial was seen running to kill its Ray worker"
    trials = study.trials
    assert sorted(t.params["x"] for t in trials) == [1, 2, 3, 4]
    assert all(t.state is TrialState.COMPLETE for t in trials), [
        (t.number, t.state, t.error) for t in trials
    ]
    assert sorted(t.attempts for t in trials) == [1, 1, 1, 2], "the rerun was not one retry"
    assert gone(killed[0][1]), "the killed Ray worker's trial process lived on"


def visible_gpus(x, data):
    """The GPU this trial's own process sees, once both trials run at the same time."""
    Path(data, f"gpu-{x}").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    deadline = time.monotonic() + 60
    while len(list(Path(data).glob("gpu-*"))) < 2:
        if time.monotonic() > deadline:
            return -1.0  # the other trial never ran alongside
        time.sleep(0.05)
    return float(os.environ["CUDA_VISIBLE_DEVICES"])


@pytest.mark.infra
@pytest.mark.slow
def test_two_concurrent_one_gpu_trials_see_different_gpus(ray_instance, tmp_path) -> None:
    ex = RayExecutor(workers=2, gpus=1)
    try:
        ex.start(FunctionObjective(visible_gpus))
        for n in range(2):
            ex.submit(TrialTask(n, {"x": n}, "value", data=str(tmp_path)))
        outcomes = outcomes_in(events_until(ex, lambda g: len(outcomes_in(g)) == 2))
    finally:
        ex.shutdown(kill=True)
    assert all(o.state == "COMPLETE" for o in outcomes), [o.error for o in outcomes]
    assert sorted(o.metrics["value"] for o in outcomes) == [0.0, 1.0]


@pytest.mark.infra
def test_more_gpus_than_any_node_has_is_refused_before_any_trial(ray_instance) -> None:
    ex = RayExecutor(workers=1, gpus=3)
    try:
        with pytest.raises(
            GpuError, match=r"execution.resources.gpus: each trial asks for 3 GPU.*offers 2"
        ):
            ex.start(FunctionObjective(abs))
        assert ex._mailbox is None
    finally:
        ex.shutdown(kill=True)


@pytest.mark.infra
@pytest.mark.slow
def test_a_grid_through_optml_run_on_a_ray_cluster_by_address(ray_instance, tmp_path) -> None:
    """Another process (the CLI) connects to the running instance by its address."""
    (tmp_path / "obj.py").write_text(
        "import os\ndef f(x):\n    return float(x) + float(os.environ['CUDA_VISIBLE_DEVICES'])\n"
    )
    (tmp_path / "spec.yaml").write_text(
        "name: g\n"
        "objective: {function: obj.py:f}\n"
        "space: {x: [10, 20, 30]}\n"
        "execution: {backend: local, workers: 2, resources: {gpus: 1}}\n"
    )
    storage = f"sqlite:///{tmp_path / 'g.db'}"
    out = subprocess.run(
        [PY, "-m", "optml.cli", "run", "spec.yaml", "--storage", storage, "-q"]
        + ["--backend", "ray", "--address", ray_instance],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    trials = load_study("g", storage=storage).trials
    assert all(t.state is TrialState.COMPLETE for t in trials), [t.error for t in trials]
    assert sorted(t.params["x"] for t in trials) == [10, 20, 30]
    assert all(t.value - t.params["x"] in (0.0, 1.0) for t in trials)
    assert all(t.runner and t.runner.startswith("ray:") for t in trials)


def negate(x):
    return -x


@pytest.mark.infra
def test_started_events_name_the_ray_worker(ray_instance) -> None:
    ex = RayExecutor(workers=1)
    try:
        ex.start(FunctionObjective(negate))
        ex.submit(TrialTask(0, {"x": -2}, "value"))
        got = events_until(ex, outcomes_in)
    finally:
        ex.shutdown(kill=True)
    (started,) = [e for e in got if isinstance(e, TrialStarted)]
    assert started.runner.startswith("ray:") and started.pid and started.run
    assert outcomes_in(got)[0].metrics == {"value": 2.0}


class SlowToLoad:
    """A callable whose unpickling takes 3 s, as a large model or import would on a worker."""

    def __call__(self, x):
        return float(x)

    def __setstate__(self, state):
        time.sleep(3.0)


@pytest.mark.infra
@pytest.mark.slow
def test_a_trial_s_time_limit_leaves_out_its_process_s_start(ray_instance) -> None:
    # The fresh process a trial runs in on a Ray (or Dask) worker loads the objective first;
    # that is not the trial's time.
    ex = RayExecutor(workers=1)
    try:
        ex.start(FunctionObjective(SlowToLoad()))
        ex.submit(TrialTask(0, {"x": 5}, "value", timeout=2.0))
        (outcome,) = outcomes_in(events_until(ex, outcomes_in))
    finally:
        ex.shutdown(kill=True)
    assert (outcome.state, outcome.metrics) == ("COMPLETE", {"value": 5.0}), outcome.error
