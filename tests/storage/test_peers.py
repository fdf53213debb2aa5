"""Several controllers on one study, as real `optml` processes really killed: storage is the one
source of truth (shared budget, each point once, STALE trials run again, stop, reconnect)."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from optml import load_study
from optml._process import kill_tree
from optml.trial import TrialState

OBJECTIVE = """
import os, time

def f(x, y):
    time.sleep(float(os.environ["PEERS_SLEEP"]))
    with open("ran.txt", "a") as out:
        out.write(f"{x},{y}\\n")
    return {"loss": (x - 0.3) ** 2 + y}
"""

GRID_X = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def _spec(name: str, *, algorithm: str, space: str, trials: int | None, execution: str) -> str:
    budget = f"budget: {{trials: {trials}}}" if trials is not None else ""
    return textwrap.dedent(
        f"""
        name: {name}
        objective: {{function: obj.py:f}}
        metric: loss
        space: {space}
        algorithm: {algorithm}
        seed: 3
        {budget}
        execution: {execution}
        """
    )


def _grid_space(ys: int) -> str:
    return f"{{x: {GRID_X}, y: {list(range(ys))}}}"


class Peers:
    """Starts `optml` processes in one directory and kills whatever is left at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[str]] = []
        (workdir / "obj.py").write_text(OBJECTIVE)

    def spec(self, text: str) -> Path:
        path = self.workdir / "spec.yaml"
        path.write_text(text)
        return path

    def env(self, sleep: float) -> dict[str, str]:
        return {**os.environ, "PEERS_SLEEP": str(sleep), "PYTHONUNBUFFERED": "1"}

    def start(self, *args: str, sleep: float) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "optml.cli", *args],
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(sleep),
        )
        self.procs.append(proc)
        return proc

    def run(
        self, *args: str, sleep: float = 0.0, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "optml.cli", *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(sleep),
        )

    def finish(self, procs: list[subprocess.Popen[str]], within: float = 180) -> None:
        """Wait for every process to exit 0 (all within one bound)."""
        deadline = time.monotonic() + within
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"controller {proc.pid} still runs after {within} s") from None
            assert proc.returncode == 0, f"controller {proc.pid} exited {proc.returncode}: {err}"

    def ran(self) -> Counter[tuple[float, int]]:
        path = self.workdir / "ran.txt"
        lines = path.read_text().split() if path.exists() else []
        return Counter((float(x), int(y)) for x, y in (line.split(",") for line in lines))

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                kill_tree(proc.pid)
            proc.wait(timeout=30)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    p = Peers(tmp_path)
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.infra)])
def url(request) -> str:
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


def _wait_until(
    check: Callable[[], object], within: float, what: str, peers: Peers | None = None
) -> object:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    why = ""
    if peers is not None:  # say what the controllers that already ended said
        ended = [p for p in peers.procs if p.poll() is not None]
        why = "; ".join(
            f"{p.pid} exited {p.returncode}: {p.communicate()[1][-800:]}" for p in ended
        )
    raise AssertionError(f"{what}: not within {within} s {why}")


def _trials(name: str, url: str) -> list:
    """The study's trials (none while no controller has created it yet)."""
    from optml.errors import StudyNotFoundError

    try:
        study = load_study(name, storage=url)
    except StudyNotFoundError:
        return []
    try:
        return study.trials
    finally:
        study.storage.close()


def _owner(proc: subprocess.Popen[str]) -> str:
    import socket

    return f"{socket.gethostname()}:{proc.pid}"


def _assert_grid_once(trials: list, ys: int) -> None:
    grid = {(x, y) for x, y in itertools.product(GRID_X, range(ys))}
    points = [(t.params["x"], t.params["y"]) for t in trials]
    assert sorted(points) == sorted(grid), "each grid point exactly once"
    assert [t.number for t in trials] == list(range(len(grid)))
    assert all(t.state is TrialState.COMPLETE for t in trials)


@pytest.mark.slow
def test_three_controllers_run_the_grid_once_between_them(peers, url) -> None:
    spec = peers.spec(
        _spec(
            "grid3",
            algorithm="grid",
            space=_grid_space(4),
            trials=24,
            execution="{workers: 1, heartbeat: 0.5s, grace: 10s}",
        )
    )
    procs = [peers.start("run", str(spec), "--storage", url, "-q", sleep=0.4) for _ in range(3)]
    peers.finish(procs)
    trials = _trials("grid3", url)
    _assert_grid_once(trials, 4)
    assert len(trials) == 24  # the budget once, not three times
    assert len({t.worker for t in trials}) >= 2, "the controllers shared the work"
    assert all(t.host and t.runner and t.runner.isdigit() for t in trials)  # where each ran
    assert sum(peers.ran().values()) == 24
    assert load_study("grid3", storage=url).state == "COMPLETE"


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["tpe", "gp"])
def test_two_controllers_with_a_model_sampler_propose_no_duplicates(peers, url, algorithm) -> None:
    spec = peers.spec(
        _spec(
            f"model-{algorithm}",
            algorithm=algorithm,
            space="{x: {uniform: [0, 1]}, y: [0, 1, 2]}",
            trials=14,
            execution="{workers: 1, heartbeat: 0.5s, grace: 10s}",
        )
    )
    procs = [peers.start("run", str(spec), "--storage", url, "-q", sleep=0.05) for _ in range(2)]
    peers.finish(procs)
    trials = _trials(f"model-{algorithm}", url)
    assert len(trials) == 14
    points = [(t.params["x"], t.params["y"]) for t in trials]
    assert len(set(points)) == len(points), f"duplicate proposals: {sorted(points)}"
    assert all(t.state is TrialState.COMPLETE for t in trials)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
def test_a_dead_controllers_trials_go_stale_and_the_others_finish_them(peers, url, how) -> None:
    """SIGKILL: a dead process of this machine. SIGSTOP: alive but silent, as a controller on a
    machine cut off from the database looks; only its lapsed heartbeat tells."""
    grace = 3.0
    spec = peers.spec(
        _spec(
            "stale",
            algorithm="grid",
            space=_grid_space(2),
            trials=None,
            execution=f"{{workers: 1, heartbeat: 0.3s, grace: {grace}s}}",
        )
    )
    procs = [peers.start("run", str(spec), "--storage", url, "-q", sleep=1.5) for _ in range(3)]
    victim = procs[1]
    held = _wait_until(
        lambda: [
            t
            for t in _trials("stale", url)
            if t.state is TrialState.RUNNING and t.worker == _owner(victim)
        ],
        within=60,
        what="the victim runs a trial",
        peers=peers,
    )
    number = held[0].number
    if how == "SIGKILL":
        kill_tree(victim.pid)
    else:
        os.kill(victim.pid, signal.SIGSTOP)
    stopped = time.monotonic()

    def marked():
        t = [t for t in _trials("stale", url) if t.number == number][0]
        return t.user_attrs.get("stale") and t

    seen = _wait_until(marked, within=grace + 20, what=f"trial {number} taken for abandoned")
    assert time.monotonic() - stopped < grace + 20
    assert seen.worker != _owner(victim) or seen.state is TrialState.STALE
    if how == "SIGSTOP":

        def taken_over():
            t = [t for t in _trials("stale", url) if t.number == number][0]
            return t.state is not TrialState.STALE and t.worker != _owner(victim)

        _wait_until(taken_over, within=60, what=f"trial {number} run by another controller")
        os.kill(victim.pid, signal.SIGCONT)  # its late result must be refused, not recorded
    peers.finish([p for p in procs if p is not victim])
    if how == "SIGSTOP":
        peers.finish([victim])
    trials = _trials("stale", url)
    _assert_grid_once(trials, 2)
    redone = trials[number]
    assert redone.worker != _owner(victim) and redone.user_attrs["stale"] == 1
    assert load_study("stale", storage=url).state == "COMPLETE"


@pytest.mark.slow
def test_sigkilled_controller_then_resume_loses_and_reruns_no_finished_trial(peers, url) -> None:
    spec = peers.spec(
        _spec(
            "resume",
            algorithm="grid",
            space=_grid_space(2),
            trials=None,
            execution="{workers: 2, heartbeat: 0.5s, grace: 30s}",
        )
    )
    proc = peers.start("run", str(spec), "--storage", url, "-q", sleep=0.5)
    _wait_until(
        lambda: sum(t.state is TrialState.COMPLETE for t in _trials("resume", url)) >= 3,
        within=90,
        what="three trials finished",
    )
    kill_tree(proc.pid)
    assert load_study("resume", storage=url).state == "INTERRUPTED"  # no live controller left
    before = {t.number: t for t in _trials("resume", url) if t.state.is_finished}
    ran_before = peers.ran()
    result = peers.run("resume", "resume", "--storage", url, "-q", sleep=0.5)
    assert result.returncode == 0, result.stderr
    trials = _trials("resume", url)
    _assert_grid_once(trials, 2)
    for number, t in before.items():  # kept as they were, not run again
        assert trials[number] == t
    ran = peers.ran()
    for t in before.values():
        point = (t.params["x"], t.params["y"])
        assert ran[point] == ran_before[point] == 1


@pytest.mark.slow
@pytest.mark.infra
def test_postgres_restart_mid_study_controllers_reconnect_and_finish(peers) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
    folder = tempfile.mkdtemp(prefix="optml-pg-restart.", dir="/tmp")
    started = subprocess.run(
        ["bash", str(script), "start", folder], capture_output=True, text=True, timeout=180
    )
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"cannot start a PostgreSQL server: {started.stderr[-500:]}")
    url = started.stdout.strip().splitlines()[-1]
    try:
        spec = peers.spec(
            _spec(
                "restart",
                algorithm="grid",
                space=_grid_space(3),
                trials=None,
                execution="{workers: 1, heartbeat: 0.5s, grace: 30s}",
            )
        )
        procs = [peers.start("run", str(spec), "--storage", url, "-q", sleep=0.4) for _ in range(2)]
        _wait_until(
            lambda: sum(t.state is TrialState.COMPLETE for t in _trials("restart", url)) >= 3,
            within=90,
            what="three trials finished",
        )
        restarted = subprocess.run(
            ["bash", str(script), "restart", folder], capture_output=True, text=True, timeout=120
        )
        assert restarted.returncode == 0, restarted.stderr
        peers.finish(procs)
        trials = _trials("restart", url)
        _assert_grid_once(trials, 3)
        assert sum(peers.ran().values()) == 18
    finally:
        peers.cleanup()
        subprocess.run(["bash", str(script), "stop", folder], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_optml_stop_stops_two_running_controllers_cleanly(peers, url) -> None:
    spec = peers.spec(
        _spec(
            "stopme",
            algorithm="grid",
            space=_grid_space(6),
            trials=None,
            execution="{workers: 1, heartbeat: 0.3s, grace: 10s}",
        )
    )
    procs = [peers.start("run", str(spec), "--storage", url, "-q", sleep=0.5) for _ in range(2)]
    _wait_until(
        lambda: len({t.worker for t in _trials("stopme", url)}) == 2,
        within=60,
        what="both controllers run trials",
        peers=peers,
    )
    result = peers.run("stop", "stopme", "--storage", url)
    assert result.returncode == 0, result.stderr
    assert "asked 2 controller(s)" in result.stdout
    peers.finish(procs, within=60)
    trials = _trials("stopme", url)
    assert 0 < len(trials) < 36
    assert all(t.state is TrialState.COMPLETE for t in trials)  # running trials finished
    assert load_study("stopme", storage=url).state == "INTERRUPTED"
    again = peers.run("stop", "stopme", "--storage", url)
    assert again.returncode == 0 and "no controller is running" in again.stdout
