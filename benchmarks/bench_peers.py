"""Trials per second with 1 and 4 controllers on one PostgreSQL study: OptML against Optuna's RDB
storage, on the same server in the same run.

Run:  .venv/bin/python benchmarks/bench_peers.py [--trials 400] [--controllers 1 4] [--repeat 3]
      [--postgres URL]   a PostgreSQL server URL to use (default: one started here with
                         scripts/postgres.sh); databases optml_peers and optuna_peers are created

Each controller is its own process (as on separate machines) driving one shared study of no-op
trials (the objective returns x + y) with the random sampler: OptML through ``Study.optimize``
with the serial executor against the study's stored budget of ``--trials`` (k controllers together
run it once); Optuna through ``Study.optimize`` with ``MaxTrialsCallback(--trials)``. Processes
import, open the storage and load the study first, then start together; the time is from the
common start to the last one's end. Reported: the median over ``--repeat`` fresh studies.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"x": {"uniform": [-5, 5]}, "y": {"uniform": [0, 1]}}


def _noop(x: float, y: float) -> float:
    return x + y


def count_statements(storage: Any) -> list[int]:
    """[statements, commits] that ``storage`` (an OptML SQL storage) sends from now on, kept
    up to date: one statement per execute or executemany, a round trip each."""
    import sqlalchemy as sa

    counts = [0, 0]

    def sent(*args: Any) -> None:
        counts[0] += 1

    def committed(*args: Any) -> None:
        counts[1] += 1

    sa.event.listen(storage._engine, "before_cursor_execute", sent)
    sa.event.listen(storage._engine, "commit", committed)
    return counts


def _optml_controller(url: str, name: str, go: Any, out: Any) -> None:
    from optml import load_study

    study = load_study(name, storage=url)
    study.trials  # noqa: B018 - connect and warm up before the clock starts
    counted = count_statements(study.storage)
    go.wait()
    t0 = time.time()
    study.optimize(_noop, executor="serial")
    out.put((t0, time.time(), study.last_run.trials, *counted))


def _optuna_noop(trial: Any) -> float:
    return trial.suggest_float("x", -5, 5) + trial.suggest_float("y", 0, 1)


def _optuna_controller(url: str, name: str, trials: int, go: Any, out: Any) -> None:
    import optuna
    from optuna.study import MaxTrialsCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=url, sampler=optuna.samplers.RandomSampler())
    study.get_trials(deepcopy=False)
    ran = []  # this process's trials (the study's count includes the other processes')
    go.wait()
    t0 = time.time()
    study.optimize(
        _optuna_noop,
        callbacks=[MaxTrialsCallback(trials, states=None), lambda s, t: ran.append(t.number)],
    )
    out.put((t0, time.time(), len(ran)))


def _race(target: Any, args: tuple[Any, ...], k: int) -> tuple[float, list[tuple[Any, ...]]]:
    """Start k controller processes, release them together; trials per second of them all,
    and what each reported."""
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, go, out)) for _ in range(k)]
    for p in procs:
        p.start()
    time.sleep(3.0 + k)  # let every process import and connect (they wait on the event)
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"a controller exited {p.exitcode}")
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    return sum(r[2] for r in results) / (end - start), results


def _database(server: str, db: str) -> str:
    import sqlalchemy as sa

    from optml.storage._sql import _engine_url

    engine = sa.create_engine(_engine_url(server), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {db}"))
        conn.execute(sa.text(f"CREATE DATABASE {db}"))
    engine.dispose()
    return server.rsplit("/", 1)[0] + "/" + db


@contextlib.contextmanager
def postgres_server(url: str | None = None) -> Iterator[str]:
    """``url``, or a throwaway PostgreSQL server started with scripts/postgres.sh (stopped and
    removed on the way out): the server's URL."""
    if url is not None:
        yield url
        return
    folder = tempfile.mkdtemp(prefix="optml-bench-pg.", dir="/tmp")
    started = subprocess.run(
        ["bash", str(ROOT / "scripts" / "postgres.sh"), "start", folder],
        capture_output=True,
        text=True,
        check=True,
    )
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", folder], capture_output=True
        )


def run(server: str, trials: int, controllers: list[int], repeat: int) -> list[dict[str, Any]]:
    import optuna

    from optml import create_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optml_url = _database(server, "optml_peers")
    optuna_url = _database(server, "optuna_peers").replace("postgresql://", "postgresql+psycopg://")
    rows = []
    for k in controllers:
        ours, theirs, statements, commits = [], [], [], []
        for r in range(repeat):
            name = f"peers-{k}-{r}"
            study = create_study(name, space=SPACE, sampler="random", storage=optml_url, seed=r)
            study.set_budget(trials)
            study.storage.close()
            rate, results = _race(_optml_controller, (optml_url, name), k)
            ours.append(rate)
            ran = sum(x[2] for x in results)
            statements.append(sum(x[3] for x in results) / ran)
            commits.append(sum(x[4] for x in results) / ran)
            optuna.create_study(study_name=name, storage=optuna_url)
            theirs.append(_race(_optuna_controller, (optuna_url, name, trials), k)[0])
            print(
                f"  {k} controller(s), run {r + 1}: OptML {ours[-1]:.0f}/s "
                f"({statements[-1]:.2f} statements, {commits[-1]:.2f} commits a trial), "
                f"Optuna {theirs[-1]:.0f}/s"
            )
        a, b = statistics.median(ours), statistics.median(theirs)
        rows.append(
            {
                "controllers": k,
                "optml": a,
                "optuna": b,
                "ratio": a / b,
                "statements": statistics.median(statements),
                "commits": statistics.median(commits),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--controllers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("OPTML_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    with postgres_server(args.postgres) as server:
        import optuna

        print(
            f"{args.trials} no-op trials per study, random sampler, PostgreSQL; "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, optuna {optuna.__version__}"
        )
        rows = run(server, args.trials, args.controllers, args.repeat)
    print()
    print(
        "| controllers | OptML trials/s | Optuna RDB trials/s | OptML / Optuna | "
        "OptML statements per trial | OptML commits per trial |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['controllers']} | {row['optml']:.0f} | {row['optuna']:.0f} | "
            f"{row['ratio']:.1f}x | {row['statements']:.2f} | {row['commits']:.2f} |"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
