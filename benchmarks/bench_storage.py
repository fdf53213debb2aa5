"""Storage speed: OptML's SQL storage against Optuna's RDBStorage, both on a SQLite file.

Run:  .venv/bin/python benchmarks/bench_storage.py [--trials 10000] [--insert 2000] [--repeat 5]
      [--postgres URL]   also time OptML's storage on that (empty, throwaway) PostgreSQL database

It builds a study of ``--trials`` finished trials in each storage, then times, as the median of
``--repeat`` runs on a warm storage object: loading the study record, the best trial, the list of
studies (counts and best values), all trials, and an export of all trials to JSON. Separately it
times ``--insert`` trials written one at a time the way a running study writes them
(OptML: create WAITING, claim, finish; Optuna: ask with fixed distributions, tell) and scales
that to ``--trials``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from optml.samplers._base import Metric
from optml.storage._sql import SQLStorage
from optml.trial import TrialState

STUDY = "bench"


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall-clock seconds of ``repeat`` calls, and the last result."""
    times, cpus, out = [], [], None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    median = statistics.median(times)
    LAST_CPU.append(statistics.median(cpus))
    return median, out


LAST_CPU: list[float] = []


def trial_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The same n finished trials for both libraries: 3 params, a value, a duration."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        x, k, kind = float(rng.uniform(-5, 5)), int(rng.integers(1, 100)), ["a", "b", "c"][i % 3]
        begun = start + timedelta(seconds=10 * i)
        rows.append(
            {
                "params": {"x": x, "k": k, "kind": kind},
                "value": x * x + k / 100,
                "started_at": begun,
                "finished_at": begun + timedelta(seconds=2.5),
            }
        )
    return rows


# -- OptML ---------------------------------------------------------------------------------
def fill_optml(storage: SQLStorage, rows: list[dict[str, Any]]) -> int:
    study = storage.create_study(
        STUDY,
        metrics=[Metric("loss")],
        space={"x": {}, "k": {}, "kind": {}},
        sampler={"name": "random"},
        seed=0,
    )
    for r in rows:
        storage.create_trial(
            study.id,
            r["params"],
            state=TrialState.COMPLETE,
            value=r["value"],
            metrics={"loss": r["value"]},
            attempts=1,
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            duration_s=2.5,
            worker="w0",
        )
    return study.id


def time_optml(storage: SQLStorage, study_id: int, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    out["load study"], _ = median_time(lambda: storage.load_study(STUDY), repeat)
    out["best trial"], best = median_time(lambda: storage.get_best_trial(study_id), repeat)
    out["list studies"], listing = median_time(storage.list_studies, repeat)
    out["get all trials"], trials = median_time(lambda: storage.get_trials(study_id), repeat)
    out["export JSON"], text = median_time(
        lambda: json.dumps([t.to_dict() for t in storage.get_trials(study_id)]), repeat
    )
    assert len(trials) == listing[0].n_trials and best.value == listing[0].best_value
    assert len(json.loads(text)) == len(trials)
    add_cpu(out)
    return out


def add_cpu(out: dict[str, float]) -> None:
    """Pair each timing with the CPU time this process spent on it (same order)."""
    for op, cpu in zip(list(out), LAST_CPU[-len(out) :], strict=True):
        out[op + " cpu"] = cpu


def insert_optml(storage: SQLStorage, rows: list[dict[str, Any]]) -> float:
    study = storage.create_study(
        STUDY + "-insert", metrics=[Metric("loss")], space={}, sampler={}, seed=0
    )
    t0 = time.perf_counter()
    for r in rows:
        storage.create_trial(study.id, r["params"])
        trial = storage.claim_trial(study.id, worker="w0")
        storage.update_trial(
            study.id,
            trial.number,
            state=TrialState.COMPLETE,
            value=r["value"],
            metrics={"loss": r["value"]},
            finished_at=datetime.now(UTC),
            duration_s=0.0,
        )
    return time.perf_counter() - t0


# -- Optuna --------------------------------------------------------------------------------
def optuna_distributions():
    import optuna

    return {
        "x": optuna.distributions.FloatDistribution(-5, 5),
        "k": optuna.distributions.IntDistribution(1, 100),
        "kind": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
    }


def fill_optuna(storage, rows: list[dict[str, Any]]) -> int:
    import optuna

    study = optuna.create_study(study_name=STUDY, storage=storage)
    dists = optuna_distributions()
    study.add_trials(
        [
            optuna.trial.create_trial(
                params=r["params"],
                distributions=dists,
                value=r["value"],
                state=optuna.trial.TrialState.COMPLETE,
            )
            for r in rows
        ]
    )
    return storage.get_study_id_from_name(STUDY)


def optuna_export(trials) -> str:
    def finite(v):
        return v if v is None or math.isfinite(v) else str(v)

    return json.dumps(
        [
            {
                "number": t.number,
                "state": t.state.name,
                "params": t.params,
                "value": finite(t.value),
                "duration_s": t.duration.total_seconds() if t.duration else None,
                "started_at": t.datetime_start.isoformat() if t.datetime_start else None,
                "finished_at": t.datetime_complete.isoformat() if t.datetime_complete else None,
                "user_attrs": t.user_attrs,
            }
            for t in trials
        ]
    )


def time_optuna(storage, study_id: int, repeat: int) -> dict[str, float]:
    import optuna

    def load():
        # What OptML's StudyRecord holds: id, direction, attributes.
        sid = storage.get_study_id_from_name(STUDY)
        return (
            storage.get_study_directions(sid),
            storage.get_study_user_attrs(sid),
            storage.get_study_system_attrs(sid),
        )

    out: dict[str, float] = {}
    out["load study"], _ = median_time(load, repeat)
    out["best trial"], best = median_time(lambda: storage.get_best_trial(study_id), repeat)
    out["list studies"], listing = median_time(
        lambda: optuna.get_all_study_summaries(storage, include_best_trial=True), repeat
    )
    out["get all trials"], trials = median_time(
        lambda: storage.get_all_trials(study_id, deepcopy=False), repeat
    )
    out["export JSON"], _ = median_time(
        lambda: optuna_export(storage.get_all_trials(study_id, deepcopy=False)), repeat
    )
    assert len(trials) == listing[0].n_trials and best.value == listing[0].best_trial.value
    add_cpu(out)
    return out


def sqlite_pragmas(storage, *pragmas: str) -> None:
    """Run ``pragmas`` on every new connection of an Optuna RDBStorage's engine."""
    import sqlalchemy as sa

    @sa.event.listens_for(storage.engine, "connect")
    def _on_connect(dbapi_conn, _record):
        for pragma in pragmas:
            dbapi_conn.execute(f"PRAGMA {pragma}")

    storage.engine.dispose()


def insert_optuna_storage(storage, rows: list[dict[str, Any]]) -> float:
    """The storage calls an Optuna trial makes: create, one per parameter, finish."""
    import optuna
    from optuna.trial import TrialState as OptunaState

    dists = optuna_distributions()
    study_id = storage.create_new_study(
        [optuna.study.StudyDirection.MINIMIZE], STUDY + "-insert-raw"
    )
    t0 = time.perf_counter()
    for r in rows:
        trial_id = storage.create_new_trial(study_id)
        for name, dist in dists.items():
            storage.set_trial_param(trial_id, name, dist.to_internal_repr(r["params"][name]), dist)
        storage.set_trial_state_values(trial_id, OptunaState.COMPLETE, [r["value"]])
    return time.perf_counter() - t0


def insert_optuna(storage, rows: list[dict[str, Any]]) -> float:
    """What an Optuna study does: ask (with fixed distributions) and tell."""
    import optuna

    study = optuna.create_study(study_name=STUDY + "-insert", storage=storage)
    dists = optuna_distributions()
    t0 = time.perf_counter()
    for r in rows:
        trial = study.ask(dists)
        study.tell(trial, r["value"])
    return time.perf_counter() - t0


# -- report --------------------------------------------------------------------------------
def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--insert", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--insert-few",
        type=int,
        default=200,
        help="trials for the slow Optuna insert variants (ask/tell, fsync)",
    )
    parser.add_argument("--postgres", default=os.environ.get("OPTML_BENCH_POSTGRES_URL"))
    args = parser.parse_args(argv)

    import optuna
    import sqlalchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = trial_rows(args.trials)
    insert_rows = trial_rows(args.insert, seed=1)
    results: dict[str, dict[str, float]] = {}
    fill: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends = [("OptML SQLite", f"sqlite:///{tmp}/optml.db")]
        if args.postgres:
            backends.append(("OptML PostgreSQL", args.postgres))
        for label, url in backends:
            storage = SQLStorage(url)
            for name in (STUDY, STUDY + "-insert"):  # left by an earlier run on that database
                if any(s.name == name for s in storage.list_studies()):
                    storage.delete_study(name)
            t0 = time.perf_counter()
            study_id = fill_optml(storage, rows)
            fill[label] = time.perf_counter() - t0
            results[label] = time_optml(storage, study_id, args.repeat)
            results[label]["insert"] = insert_optml(storage, insert_rows)
            storage.close()

        # Build Optuna's study without fsync (its default would take minutes here), then time
        # the reads through a storage object with Optuna's default settings.
        builder = optuna.storages.RDBStorage(f"sqlite:///{tmp}/optuna.db")
        sqlite_pragmas(builder, "synchronous = OFF")
        t0 = time.perf_counter()
        study_id = fill_optuna(builder, rows)
        fill["Optuna SQLite"] = time.perf_counter() - t0
        builder.engine.dispose()
        rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp}/optuna.db")
        results["Optuna SQLite"] = time_optuna(rdb, study_id, args.repeat)

        # Inserting one trial at a time. Optuna with OptML's SQLite settings (WAL,
        # synchronous=NORMAL), and as it comes (rollback journal, synchronous=FULL: an fsync per
        # commit); the slow variants on fewer trials.
        few = min(args.insert, args.insert_few)
        inserts: dict[str, tuple[int, float]] = {
            "OptML SQLite: create, claim, finish": (args.insert, results["OptML SQLite"]["insert"])
        }
        if "OptML PostgreSQL" in results:
            inserts["OptML PostgreSQL: create, claim, finish"] = (
                args.insert,
                results["OptML PostgreSQL"]["insert"],
            )
        same = optuna.storages.RDBStorage(f"sqlite:///{tmp}/optuna-wal.db")
        sqlite_pragmas(same, "journal_mode = WAL", "synchronous = NORMAL")
        inserts["Optuna RDBStorage calls, WAL + NORMAL"] = (
            args.insert,
            insert_optuna_storage(same, insert_rows),
        )
        inserts["Optuna study.ask + tell, WAL + NORMAL"] = (
            few,
            insert_optuna(same, insert_rows[:few]),
        )
        default = optuna.storages.RDBStorage(f"sqlite:///{tmp}/optuna-default.db")
        inserts["Optuna RDBStorage calls, its defaults (fsync)"] = (
            few,
            insert_optuna_storage(default, insert_rows[:few]),
        )

    labels = list(results)
    print(
        f"# {args.trials:,} finished trials; median of {args.repeat} runs; python "
        f"{sys.version.split()[0]}, SQLAlchemy {sqlalchemy.__version__}, optuna "
        f"{optuna.__version__}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print()
    print(
        "Wall-clock time (in brackets: CPU time of the benchmark process; PostgreSQL's server "
        "works in its own processes)."
    )
    print()
    header = ["operation", *labels, "Optuna / OptML SQLite"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    ops = ["load study", "best trial", "list studies", "get all trials", "export JSON"]
    for op in ops:
        cells = [
            f"{fmt(results[label][op])} ({fmt(results[label][op + ' cpu'])})" for label in labels
        ]
        ratio = results["Optuna SQLite"][op] / results["OptML SQLite"][op]
        print(f"| {op} | " + " | ".join(cells) + f" | {ratio:.1f}x |")
    print(
        "| (set-up: add the trials) | " + " | ".join(fmt(fill[label]) for label in labels) + " | |"
    )
    print()
    base = results["OptML SQLite"]["insert"] / args.insert
    print(
        f"| insert one trial at a time | trials | total | per trial | "
        f"~{args.trials:,} trials | / OptML SQLite |"
    )
    print("|---|---|---|---|---|---|")
    for label, (n, seconds) in inserts.items():
        per = seconds / n
        print(
            f"| {label} | {n:,} | {fmt(seconds)} | {per * 1000:.2f} ms | "
            f"{fmt(per * args.trials)} | {per / base:.1f}x |"
        )


if __name__ == "__main__":
    main()
