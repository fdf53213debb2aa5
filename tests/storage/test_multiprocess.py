"""Several processes writing one database: no lock errors, no gaps, no trial claimed twice."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

from optml.samplers._base import Metric
from optml.trial import TrialState

# Each worker creates a trial, claims the lowest WAITING one (maybe another worker's) and
# finishes what it claimed; it prints the numbers it created and claimed.
WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from optml.storage import open_storage
    from optml.trial import TrialState

    url, name, worker, n, go = sys.argv[1:6]
    storage = open_storage(url)
    study = storage.load_study(name)
    print("ready", flush=True)
    while not os.path.exists(go):  # start together, for the most contention
        time.sleep(0.005)
    created, claimed = [], []
    for i in range(int(n)):
        created.append(storage.create_trial(study.id, {"x": i, "worker": worker}).number)
        trial = storage.claim_trial(study.id, worker=worker)
        if trial is not None:
            claimed.append(trial.number)
            storage.update_trial(study.id, trial.number, state=TrialState.COMPLETE,
                                 value=float(trial.number))
    storage.close()
    print(json.dumps({"created": created, "claimed": claimed}))
    """
)


def run_workers(url: str, processes: int, per_process: int, tmp_path) -> list[dict]:
    from optml.storage import open_storage

    storage = open_storage(url)
    storage.create_study("shared", metrics=[Metric("loss")], space={}, sampler={}, seed=0)
    storage.close()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, "shared", f"w{i}", str(per_process), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        assert "locked" not in err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def check(url: str, results: list[dict], total: int) -> None:
    from optml.storage import open_storage

    created = [n for r in results for n in r["created"]]
    claimed = [n for r in results for n in r["claimed"]]
    assert sorted(created) == list(range(total))
    assert len(claimed) == len(set(claimed))

    storage = open_storage(url)
    study = storage.load_study("shared")
    trials = storage.get_trials(study.id)
    assert [t.number for t in trials] == list(range(total))
    by_number = {t.number: t for t in trials}
    for i, r in enumerate(results):
        for n in r["claimed"]:
            assert by_number[n].worker == f"w{i}"
            assert by_number[n].state is TrialState.COMPLETE and by_number[n].value == n
    unclaimed = set(range(total)) - set(claimed)
    assert {n for n, t in by_number.items() if t.state is TrialState.WAITING} == unclaimed
    # What is left is claimed exactly once, by one more caller.
    again = [storage.claim_trial(study.id) for _ in range(len(unclaimed) + 1)]
    assert again[-1] is None
    assert Counter(t.number for t in again[:-1]) == Counter(unclaimed)
    storage.close()


@pytest.mark.slow
def test_many_processes_share_one_sqlite_file(sqlite_url, tmp_path):
    results = run_workers(sqlite_url, processes=4, per_process=50, tmp_path=tmp_path)
    check(sqlite_url, results, 200)


@pytest.mark.slow
@pytest.mark.infra
def test_many_processes_share_one_postgres_database(postgres_url, tmp_path):
    results = run_workers(postgres_url, processes=4, per_process=50, tmp_path=tmp_path)
    check(postgres_url, results, 200)
