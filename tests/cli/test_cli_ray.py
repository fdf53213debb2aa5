"""`optml run --backend ray` with no address: a local Ray instance started with the study and
shut down on every way out (done, SIGTERM, refused)."""

from __future__ import annotations

import os
import shutil
import signal
import time

import psutil
import pytest

from optml import TrialState, load_study
from proc_helpers import gone, ray_processes

pytest.importorskip("ray")
pytestmark = [pytest.mark.infra, pytest.mark.slow]

OBJECTIVE = """
import os, subprocess, sys, time
from pathlib import Path

def f(x, data):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(data, f"pids-{x}").write_text(f"{os.getpid()} {child.pid}")
    time.sleep(float(os.environ.get("OPTML_TEST_SLEEP", "0")) if x == 1 else 0)
    return float(x)
"""


def _spec(cli, extra: str = "") -> None:
    cli.write("obj.py", OBJECTIVE)
    (cli.workdir / "marks").mkdir(exist_ok=True)
    cli.write(
        "spec.yaml",
        f"""
        name: r
        objective: {{function: obj.py:f}}
        data: marks
        space: {{x: [1, 2, 3]}}
        execution: {{backend: ray, workers: 2{extra}}}
        """,
    )


def _ray_processes() -> list[psutil.Process]:
    """Processes of a local Ray instance a study started (under /tmp/optml-ray-*; the tests'
    shared instance is under /tmp/optml-ray-test-*)."""
    return ray_processes("/tmp/optml-ray-", without="/tmp/optml-ray-test-")


def _none_left(within: float = 30.0) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        left = [p for p in _ray_processes() if p.is_running() and p.status() != "zombie"]
        if not left or time.monotonic() > deadline:
            return [" ".join(p.cmdline())[:120] for p in left if p.is_running()]
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def _no_other_local_instance():
    if _ray_processes():
        pytest.skip("another local Ray instance of optml runs on this machine")


def test_run_with_backend_ray_runs_a_grid_on_a_local_instance_and_stops_it(cli) -> None:
    _spec(cli)
    out = cli.run("run", "spec.yaml", "--backend", "ray", "--storage", cli.storage, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "ray × 2" in out.stdout
    trials = load_study("r", storage=cli.storage).trials
    assert sorted(t.params["x"] for t in trials) == [1, 2, 3]
    assert all(t.state is TrialState.COMPLETE and t.attempts == 1 for t in trials)
    assert all(t.runner.startswith("ray:") for t in trials)
    assert not _none_left(), "the study's Ray instance outlived it"


def test_sigterm_of_the_controller_stops_its_ray_trials_and_instance(cli) -> None:
    _spec(cli)
    os.environ["OPTML_TEST_SLEEP"] = "120"
    try:
        proc = cli.start("run", "spec.yaml", "--storage", cli.storage)
    finally:
        del os.environ["OPTML_TEST_SLEEP"]
    marks = cli.workdir / "marks" / "pids-1"
    deadline = time.monotonic() + 180
    while not (marks.exists() and marks.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the trial never started"
        time.sleep(0.1)
    pids = [int(p) for p in marks.read_text().split()]
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        assert "queued again" in err
        assert all(gone(pid) for pid in pids), "a process of the cancelled trial lived on"
        assert not _none_left(), "the study's Ray instance outlived its controller"
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    study = load_study("r", storage=cli.storage)
    assert TrialState.COMPLETE not in {t.state for t in study.trials if t.params["x"] == 1}


def test_a_study_needing_a_gpu_on_a_ray_instance_without_one_is_refused(cli) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU: the local Ray instance would offer it")
    _spec(cli, extra=", gpus: 1")
    out = cli.run("run", "spec.yaml", "--storage", cli.storage, timeout=240)
    assert out.returncode == 2, out.stderr
    assert "execution.resources.gpus: each trial asks for 1 GPU(s)" in out.stderr
    assert "the best-provided node of the Ray cluster (local) offers 0" in out.stderr
    assert "Traceback" not in out.stderr
    assert load_study("r", storage=cli.storage).trials == []
    assert not list((cli.workdir / "marks").iterdir()), "a trial ran"
    assert not _none_left(), "the refused study's Ray instance lived on"
