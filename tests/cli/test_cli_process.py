"""End to end: the processes a run starts, the objective `resume` runs, and how many workers."""

from __future__ import annotations

import json
import sqlite3
import sys

from optml import load_study
from optml.trial import TrialState
from proc_helpers import DAEMONIZING_SCRIPT, gone, kill, wait_for_text

PY = sys.executable

# A command trial that leaves a grandchild in a new session, records both pids, and hangs.
HANGING_TRIAL = f"""
import os, subprocess, sys, time
child = subprocess.Popen([{PY!r}, "-c", "import time; time.sleep(120)"], start_new_session=True)
with open("pids-" + sys.argv[1] + ".txt", "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}")
time.sleep(120)
"""


def test_sigkill_of_the_controller_leaves_no_process_of_a_command_trial(cli) -> None:
    cli.write("trial.py", HANGING_TRIAL)
    cli.write(
        "hang.yaml",
        f"""
        name: hang
        objective: {{command: "{PY} trial.py {{x}}"}}
        space: {{x: [1]}}
        algorithm: grid
        execution: {{workers: 1}}
        """,
    )
    proc = cli.start("run", "hang.yaml", "--storage", cli.storage, "--quiet")
    pids: list[int] = []
    try:
        pids = [
            int(p)
            for p in wait_for_text(cli.workdir / "pids-1.txt", within=60.0, proc=proc).split()
        ]
        proc.kill()
        proc.wait(timeout=10)
        for pid in pids:
            assert gone(pid), f"process {pid} of the trial outlived the controller's SIGKILL"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
        kill(pids)


def test_a_daemon_a_command_trial_double_forked_is_gone_after_its_timeout(cli) -> None:
    cli.write("trial.py", DAEMONIZING_SCRIPT)
    cli.write(
        "daemon.yaml",
        f"""
        name: daemon
        objective: {{command: "{PY} trial.py"}}
        space: {{x: [1]}}
        algorithm: grid
        execution: {{workers: 1, trial_timeout: 2s}}
        """,
    )
    pid = None
    try:
        result = cli.run("run", "daemon.yaml", "--storage", cli.storage, "--quiet", timeout=60)
        (trial,) = load_study("daemon", storage=cli.storage).trials
        assert trial.state is TrialState.TIMEOUT, (result.stderr, trial.error)
        pid = int((cli.workdir / "daemon.pid").read_text())
        assert gone(pid, within=5), "the daemon outlived its trial's timeout"
    finally:
        if pid is None and (cli.workdir / "daemon.pid").exists():
            pid = int((cli.workdir / "daemon.pid").read_text())
        kill([pid] if pid else [])


REPORT = """
import json, sys
open("ran-" + sys.argv[1], "w").close()
print(json.dumps({"loss": float(sys.argv[2])}))
"""


def test_resume_refuses_a_stored_command_it_did_not_sign_unless_trusted(cli) -> None:
    cli.write("report.py", REPORT)
    cli.write(
        "s.yaml",
        f"""
        name: shared
        objective: {{command: "{PY} report.py mine {{x}}"}}
        metric: loss
        space: {{x: [1, 2, 3]}}
        algorithm: grid
        budget: {{trials: 1}}
        """,
    )
    assert cli.run("run", "s.yaml", "--storage", cli.storage, "--quiet").returncode == 0
    assert (cli.workdir / "ran-mine").exists()
    # Someone with write access to the database swaps the command (and raises the budget).
    with sqlite3.connect(cli.db) as con:
        (text,) = con.execute("SELECT spec FROM studies WHERE name = 'shared'").fetchone()
        spec = json.loads(text)
        spec["objective"]["command"] = f"{PY} report.py \x1b[8mtheirs {{x}}"
        spec["budget"]["trials"] = 2
        con.execute("UPDATE studies SET spec = ? WHERE name = 'shared'", (json.dumps(spec),))
    refused = cli.run("resume", "shared", "--storage", cli.storage)
    assert refused.returncode != 0
    assert "not signed with your key" in refused.stderr and "--trust" in refused.stderr
    assert "report.py \\u001b[8mtheirs" in refused.stderr, "the command is shown, escaped"
    assert "\x1b" not in refused.stderr
    assert not list(cli.workdir.glob("ran-*theirs"))
    assert len(load_study("shared", storage=cli.storage).trials) == 1
    trusted = cli.run("resume", "shared", "--storage", cli.storage, "--trust", "--quiet")
    assert trusted.returncode == 0, trusted.stderr
    assert (cli.workdir / "ran-\x1b[8mtheirs").exists()


def test_a_run_and_resume_by_the_same_user_needs_no_trust(cli) -> None:
    cli.write("report.py", REPORT)
    cli.write(
        "s.yaml",
        f"""
        name: mine
        objective: {{command: "{PY} report.py a {{x}}"}}
        metric: loss
        space: {{x: [1, 2]}}
        algorithm: grid
        """,
    )
    assert cli.run("run", "s.yaml", "--storage", cli.storage, "--quiet").returncode == 0
    again = cli.run("run", "s.yaml", "--storage", cli.storage, "--quiet")
    assert again.returncode == 0, again.stderr  # the signature is not part of "the same spec"
    resumed = cli.run("resume", "mine", "--storage", cli.storage, "--quiet")
    assert resumed.returncode == 0, resumed.stderr


def test_an_objective_raising_keyboardinterrupt_prints_no_traceback(cli) -> None:
    cli.write("objectives.py", "def f(x):\n    raise KeyboardInterrupt\n")
    cli.write(
        "ki.yaml",
        """
        name: ki
        objective: {function: objectives.py:f}
        space: {x: [1, 2]}
        algorithm: grid
        execution: {workers: 1}
        """,
    )
    result = cli.run("run", "ki.yaml", "--storage", cli.storage)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    trials = load_study("ki", storage=cli.storage).trials
    assert [t.state for t in trials] == [TrialState.FAILED] * 2
    assert all(t.error == "the objective raised KeyboardInterrupt" for t in trials)


COUNT_WORKERS = """
import os, psutil
def f(x):
    return float(len(psutil.Process(os.getppid()).children()))
"""


def test_a_huge_worker_count_is_refused_before_any_study_is_written(cli) -> None:
    cli.write("objectives.py", COUNT_WORKERS)
    spec = """
        name: many
        objective: {function: objectives.py:f}
        space: {x: [1, 2, 3]}
        algorithm: grid
        budget: {trials: 2}
        execution: {workers: 100000%s}
    """
    cli.write("many.yaml", spec % "")
    refused = cli.run("run", "many.yaml", "--storage", cli.storage)
    assert refused.returncode != 0
    assert "100000 local workers" in refused.stderr and "oversubscribe: true" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not _has_study(cli, "many")

    cli.write("few.yaml", (spec % "").replace("100000", "2").replace("many", "few"))
    refused = cli.run("run", "few.yaml", "--storage", cli.storage, "--workers", "100000")
    assert refused.returncode != 0 and "--oversubscribe" in refused.stderr
    assert not _has_study(cli, "few")

    cli.write("many.yaml", spec % ", oversubscribe: true")
    result = cli.run("run", "many.yaml", "--storage", cli.storage, "--quiet")
    assert result.returncode == 0, result.stderr
    counts = [t.value for t in load_study("many", storage=cli.storage).trials]
    assert len(counts) == 2 and max(counts) <= 2, f"workers alive during the trials: {counts}"

    result = cli.run(
        "run", "few.yaml", "--storage", cli.storage, "--workers", "100000", "--oversubscribe", "-q"
    )
    assert result.returncode == 0, result.stderr
    assert max(t.value for t in load_study("few", storage=cli.storage).trials) <= 2


def _has_study(cli, name: str) -> bool:
    if not cli.db.exists():
        return False
    with sqlite3.connect(cli.db) as con:
        try:
            return bool(con.execute("SELECT 1 FROM studies WHERE name = ?", (name,)).fetchall())
        except sqlite3.OperationalError:
            return False


def test_a_missing_working_directory_is_reported_before_any_trial(cli) -> None:
    cli.write(
        "nocwd.yaml",
        """
        name: nocwd
        objective: {command: "python train.py {x}", cwd: no/such/dir}
        space: {x: [1, 2]}
        algorithm: grid
        """,
    )
    result = cli.run("run", "nocwd.yaml", "--storage", cli.storage)
    assert result.returncode != 0
    assert "objective.cwd" in result.stderr and "no/such/dir" in result.stderr
    assert "Traceback" not in result.stderr
    if _has_study(cli, "nocwd"):
        assert not load_study("nocwd", storage=cli.storage).trials
