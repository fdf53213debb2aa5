"""The controller records what executors stream: reported values as they come, where a trial runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optml import TrialState, create_study

WATCHER = """
import sys, time
from optml import load_study
url, flag = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    trials = load_study("s", storage=url).trials
    trial = trials[0] if trials else None
    if trial is not None and trial.intermediate:
        open(flag, "w").write(repr(trial.intermediate) + " " + trial.state.value)
        break
    time.sleep(0.1)
"""


def report_then_wait(x, data, trial):
    trial.report(0, 0.25)
    flag = Path(data, "seen")
    deadline = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return float(flag.exists())


@pytest.mark.parametrize("backend", ["local", "dask"])
def test_a_reported_value_is_stored_while_the_trial_runs(tmp_path, backend) -> None:
    if backend == "dask":
        pytest.importorskip("distributed")
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = create_study(name="s", storage=url, space={"x": [1]})
    watcher = subprocess.Popen(
        [sys.executable, "-c", WATCHER, url, str(tmp_path / "seen")], env=os.environ.copy()
    )
    try:
        study.optimize(
            report_then_wait,
            executor=backend,
            workers=1,
            data=str(tmp_path),
            show_progress=False,
        )
        watcher.wait(timeout=60)
    finally:
        watcher.kill()
        watcher.wait()
    (trial,) = study.trials
    # 1.0: the watcher saw the value in the database before the trial ended, and let it end.
    assert trial.state is TrialState.COMPLETE and trial.value == 1.0
    assert (tmp_path / "seen").read_text() == "{0: 0.25} RUNNING"
    assert trial.intermediate == {0: 0.25}
    assert trial.host == socket.gethostname() and trial.runner
