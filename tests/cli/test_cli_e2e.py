"""End to end through the `optml` command, with a real SQLite file and real worker processes."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections import Counter

import psutil
import pytest

from optml import load_study
from optml.trial import TrialState

OBJECTIVES = """
import os, time, json, subprocess, sys

def quadratic(x, n):
    return {"loss": (x - 0.2) ** 2 + n, "size": n * 10}

def flaky(x):
    if x == 2:
        raise ValueError("x=2 is cursed")
    return float(x)

def sleepy(x, trial):
    # Leave a grandchild behind so the test can see the whole tree is killed.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(f"pids-{x}.txt", "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    if x == 1:
        time.sleep(120)
    child.kill()
    return float(x)

def slow(a, b):
    time.sleep(0.3)
    with open("runs.log", "a") as f:
        f.write(json.dumps({"a": a, "b": b}) + "\\n")
    return a * 10 + b
"""


@pytest.fixture
def objectives(cli):
    cli.write("objectives.py", OBJECTIVES)
    return cli


def test_grid_study_completes_every_trial_in_sqlite(objectives) -> None:
    cli = objectives
    cli.write(
        "grid.yaml",
        """
        name: tiny-grid
        objective: {function: objectives.py:quadratic}
        metric: {name: loss, direction: minimize}
        space:
          x: [0.1, 0.2, 0.3]
          n: [1, 2]
        algorithm: grid
        execution: {workers: 2}
    """,
    )
    result = cli.run("run", "grid.yaml", "--storage", cli.storage)
    assert result.returncode == 0, result.stderr
    assert "★ best" in result.stdout and "6 trial(s) in" in result.stdout
    with sqlite3.connect(cli.db) as con:
        rows = con.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall()
    assert rows == [("COMPLETE", 6)]
    study = load_study("tiny-grid", storage=cli.storage)
    assert study.best_params == {"x": 0.2, "n": 1}
    assert study.best_trial.metrics["size"] == 10.0
    listing = cli.run("studies", "--storage", cli.storage)
    assert "tiny-grid" in listing.stdout and "COMPLETE" in listing.stdout
    shown = cli.run("show", "tiny-grid", "--storage", cli.storage)
    assert shown.returncode == 0 and "★ best" in shown.stdout

    exported = cli.run("export", "tiny-grid", "--format", "json", "--storage", cli.storage)
    trials = json.loads(exported.stdout)
    assert len(trials) == 6
    assert {"number", "state", "params", "value", "metrics", "duration_s", "error"} <= set(
        trials[0]
    )
    csv_text = cli.run("export", "tiny-grid", "--format", "csv", "--storage", cli.storage).stdout
    assert csv_text.splitlines()[0].startswith("number,state,params.x,params.n,value")
    assert len(csv_text.strip().splitlines()) == 7

    again = cli.run("run", "grid.yaml", "--storage", cli.storage)
    assert again.returncode == 0
    assert len(load_study("tiny-grid", storage=cli.storage).trials) == 6, (
        "re-run must not repeat trials"
    )


def test_timeout_kills_the_whole_process_tree(objectives) -> None:
    cli = objectives
    cli.write(
        "sleepy.yaml",
        """
        name: sleepy
        objective: {function: objectives.py:sleepy}
        space: {x: [0, 1]}
        algorithm: grid
        execution: {workers: 2, trial_timeout: 2s}
    """,
    )
    result = cli.run("run", "sleepy.yaml", "--storage", cli.storage, timeout=60)
    assert result.returncode == 0, result.stderr
    states = {t.params["x"]: t for t in load_study("sleepy", storage=cli.storage).trials}
    assert states[0].state is TrialState.COMPLETE
    assert states[1].state is TrialState.TIMEOUT
    assert "time limit" in (states[1].error or "")
    worker_pid, grandchild_pid = map(int, (cli.workdir / "pids-1.txt").read_text().split())
    for pid in (worker_pid, grandchild_pid):
        deadline = time.monotonic() + 10
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, f"process {pid} of the timed-out trial still runs"
            time.sleep(0.1)


def test_failing_trial_is_recorded_and_the_study_goes_on(objectives) -> None:
    cli = objectives
    cli.write(
        "flaky.yaml",
        """
        name: flaky
        objective: {function: objectives.py:flaky}
        space: {x: [1, 2, 3]}
        algorithm: grid
        execution: {workers: 2, retries: 1}
    """,
    )
    result = cli.run("run", "flaky.yaml", "--storage", cli.storage)
    assert result.returncode == 0, result.stderr
    trials = {t.params["x"]: t for t in load_study("flaky", storage=cli.storage).trials}
    assert trials[2].state is TrialState.FAILED
    assert "x=2 is cursed" in (trials[2].error or "")
    assert trials[2].attempts == 2, "one retry, then FAILED"
    assert trials[1].state is TrialState.COMPLETE and trials[3].state is TrialState.COMPLETE


SLOW_SPEC = """
    name: slow-grid
    objective: {function: objectives.py:slow}
    space:
      a: [0, 1, 2, 3]
      b: [0, 1, 2, 3]
    algorithm: grid
    execution: {workers: 2}
"""


def _wait_for_completed(cli, study_name: str, count: int, proc, db=None) -> None:
    db = db or cli.db
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    done = con.execute(
                        "SELECT COUNT(*) FROM trials WHERE state='COMPLETE'"
                    ).fetchone()[0]
                if done >= count:
                    return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    raise AssertionError("the study did not progress")


def _assert_each_config_done_once(cli) -> None:
    study = load_study("slow-grid", storage=cli.storage)
    trials = study.trials
    assert len(trials) == 16
    assert all(t.state is TrialState.COMPLETE for t in trials), [t.state for t in trials]
    configs = Counter((t.params["a"], t.params["b"]) for t in trials)
    assert set(configs.values()) == {1} and len(configs) == 16
    for t in trials:
        assert t.value == t.params["a"] * 10 + t.params["b"]


def test_sigkill_of_the_controller_then_resume_runs_each_configuration_once(objectives) -> None:
    cli = objectives
    cli.write("slow.yaml", SLOW_SPEC)
    proc = cli.start("run", "slow.yaml", "--storage", cli.storage, "--quiet")
    _wait_for_completed(cli, "slow-grid", 5, proc)
    proc.kill()
    proc.wait()
    finished_before = {
        (t.params["a"], t.params["b"])
        for t in load_study("slow-grid", storage=cli.storage).trials
        if t.state is TrialState.COMPLETE
    }
    assert 5 <= len(finished_before) < 16
    time.sleep(1.5)  # orphaned workers notice the controller is gone and exit
    result = cli.run("resume", "slow-grid", "--storage", cli.storage)
    assert result.returncode == 0, result.stderr
    _assert_each_config_done_once(cli)
    runs = Counter(
        tuple(json.loads(line).values())
        for line in (cli.workdir / "runs.log").read_text().splitlines()
    )
    for config in finished_before:
        assert runs[config] == 1, f"finished trial {config} was run again"


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [
        (signal.SIGINT, 130, "interrupted"),
        # `kill PID`, or a container runtime stopping the run: the default would end the
        # controller on the spot with trials RUNNING; it stops as after Ctrl-C instead, with
        # the shell's code for SIGTERM.
        (signal.SIGTERM, 143, "terminated"),
    ],
)
def test_ctrl_c_or_sigterm_requeues_running_trials_and_resume_finishes(
    objectives, sig, code, word
) -> None:
    cli = objectives
    cli.write("slow.yaml", SLOW_SPEC)
    proc = cli.start("run", "slow.yaml", "--storage", cli.storage)
    _wait_for_completed(cli, "slow-grid", 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert word in err and "optml resume slow-grid" in err
    study = load_study("slow-grid", storage=cli.storage)
    assert study.state == "INTERRUPTED"
    assert not study.get_trials([TrialState.RUNNING]), "no trial may stay RUNNING after Ctrl-C"
    result = cli.run("resume", "slow-grid", "--storage", cli.storage)
    assert result.returncode == 0, result.stderr
    _assert_each_config_done_once(cli)


FAST_SPEC = """
    name: fast
    objective: {function: objectives.py:quadratic}
    metric: loss
    space:
      x: {uniform: [0, 1]}
      n: {int: [0, 5]}
    algorithm: random
    budget: {trials: 100000}
    execution: {workers: 2}
"""


@pytest.mark.slow
def test_ctrl_c_at_random_moments_of_a_busy_run_always_stops_it_cleanly(objectives) -> None:
    # Hundreds of trials a second: most of the controller's time is spent in SQLite writes.
    # Before optml._interrupt, 2 in 60 such Ctrl-Cs hung (one in a write transaction holding
    # the lock, one swallowed). Each run here must stop within 20 s, requeue its trials and
    # keep every finished one.
    cli = objectives
    cli.write("fast.yaml", FAST_SPEC)
    for i in range(5):
        db = cli.workdir / f"fast-{i}.db"
        storage = f"sqlite:///{db}"
        proc = cli.start("run", "fast.yaml", "--storage", storage, "--quiet")
        _wait_for_completed(cli, "fast", 20 * (i + 1), proc, db=db)
        time.sleep(0.05 * i)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        study = load_study("fast", storage=storage)
        assert study.state == "INTERRUPTED"
        assert not study.get_trials([TrialState.RUNNING])
        assert len(study.get_trials([TrialState.COMPLETE])) >= 20 * (i + 1)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "bad_spec.yaml",
            "name: s\nobjective: {function: objectives.py:flaky}\nspace: {x: [1]}\nexecution: {workers: 0}\n",
            "bad_spec.yaml: execution.workers",
        ),
        (
            "bad_space.yaml",
            "name: s\nobjective: {function: objectives.py:flaky}\nspace: {x: {uniform: [5, 1]}}\nalgorithm: random\n",
            "bad_space.yaml: space.x",
        ),
        (
            "bad_yaml.yaml",
            "name: s\nobjective: {function: x\nspace: [\n",
            "bad_yaml.yaml:3: invalid YAML",
        ),
        (
            "bad_grid.yaml",
            "name: s\nobjective: {function: objectives.py:flaky}\ngrid_file: grid.txt\n",
            "grid.txt:3: expected 1 values (x), found 2",
        ),
    ],
)
def test_bad_input_gives_a_one_line_error_naming_where(objectives, name, text, expected) -> None:
    cli = objectives
    cli.write("grid.txt", "# x\n1\n2 3\n")
    cli.write(name, text)
    result = cli.run("run", name, "--storage", cli.storage)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]


def test_help_says_what_each_command_does(cli) -> None:
    for command, words in [
        ("run", "spec"),
        ("resume", "interrupted"),
        ("studies", "List"),
        ("show", "trials"),
        ("export", "CSV"),
    ]:
        result = cli.run(command, "--help")
        assert result.returncode == 0 and words in result.stdout, command


def test_reading_commands_do_not_create_a_database(cli) -> None:
    for args in (["studies"], ["show", "x"], ["export", "x"], ["resume", "x"]):
        result = cli.run(*args)
        assert result.returncode == 2 and "no OptML database at optml.db" in result.stderr, args
    assert not cli.db.exists()
