"""`optml run --backend dask`: a local Dask cluster with the study, SIGTERM requeues its trials."""

from __future__ import annotations

import os
import signal
import time

import pytest

from optml import TrialState, load_study
from proc_helpers import gone

pytest.importorskip("distributed")

OBJECTIVE = """
import os, subprocess, sys, time
from pathlib import Path

def f(x, data):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(data, f"pids-{x}").write_text(f"{os.getpid()} {child.pid}")
    time.sleep(float(os.environ.get("OPTML_TEST_SLEEP", "0")) if x == 1 else 0)
    return float(x)
"""


def _spec(cli, sleep_first: bool) -> None:
    cli.write("obj.py", OBJECTIVE)
    (cli.workdir / "marks").mkdir(exist_ok=True)
    cli.write(
        "spec.yaml",
        """
        name: d
        objective: {function: obj.py:f}
        data: marks
        space: {x: [1, 2]}
        execution: {backend: local, workers: 2}
        """,
    )


@pytest.mark.slow
def test_run_with_backend_dask_runs_the_study_on_a_local_cluster(cli) -> None:
    _spec(cli, sleep_first=False)
    out = cli.run("run", "spec.yaml", "--backend", "dask", "--storage", cli.storage, timeout=180)
    assert out.returncode == 0, out.stderr
    assert "dask × 2" in out.stdout
    study = load_study("d", storage=cli.storage)
    assert sorted(t.state for t in study.trials) == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_sigterm_of_the_controller_cancels_its_dask_trials_and_requeues_them(cli) -> None:
    _spec(cli, sleep_first=True)
    os.environ["OPTML_TEST_SLEEP"] = "120"
    try:
        proc = cli.start("run", "spec.yaml", "--backend", "dask", "--storage", cli.storage)
    finally:
        del os.environ["OPTML_TEST_SLEEP"]
    marks = cli.workdir / "marks" / "pids-1"
    deadline = time.monotonic() + 120
    while not (marks.exists() and marks.read_text().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the trial never started"
        time.sleep(0.1)
    pids = [int(p) for p in marks.read_text().split()]
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 143, err
        assert "queued again" in err
        assert all(gone(pid) for pid in pids), "a process of the cancelled trial lived on"
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    study = load_study("d", storage=cli.storage)
    states = {t.params["x"]: t.state for t in study.trials}
    assert states[1] is TrialState.WAITING
    assert not study.get_trials([TrialState.RUNNING])


def test_an_address_without_the_dask_backend_is_refused(cli) -> None:
    _spec(cli, sleep_first=False)
    out = cli.run("run", "spec.yaml", "--address", "tcp://127.0.0.1:8786", "--storage", cli.storage)
    assert out.returncode == 2
    assert "execution.address applies to backend dask or ray, not 'local'" in out.stderr
