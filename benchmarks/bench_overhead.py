"""Per-trial overhead of the local executor, and no-op trials per second through optimize in
every storage pairing, side by side with Optuna doing the same work in the same run.

    .venv/bin/python benchmarks/bench_overhead.py [--trials 2000] [--sql-trials 500] [--repeats 3]

Pairings (OptML's storage against Optuna's, with 1 and 2 workers each): in memory
(``memory://`` / ``InMemoryStorage``), SQLite (both on an SQLite file), and Optuna's journal
file (``JournalFileBackend``) against OptML's nearest equivalent, an SQLite file (the one
file-based storage that several processes on one machine share). One worker: OptML runs the
trials in the controller (``executor="serial"``) and, for reference, in one worker process
(``local``); Optuna with ``n_jobs=1``. Two workers: OptML's two worker processes (``local``)
against Optuna's ``n_jobs=2`` (threads).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def noop(x: float) -> float:
    return x


def executor_overhead(n: int, workers: int) -> float:
    """Median of (round trip controller -> worker -> controller) minus the time inside the trial."""
    from optml.executors import TrialTask, make_executor
    from optml.objectives import FunctionObjective

    ex = make_executor("local", workers=workers)
    ex.start(FunctionObjective(noop))
    overheads = []
    try:
        for i in range(n):
            start = time.perf_counter()
            ex.submit(TrialTask(i, {"x": 0.5}, "value"))
            outcomes = []
            while not outcomes:
                outcomes = ex.wait(1.0)
            overheads.append(time.perf_counter() - start - outcomes[0].duration_s)
    finally:
        ex.shutdown()
    return statistics.median(overheads)


def _cpu() -> float:
    """CPU seconds of this process and of its children reaped so far (worker processes)."""
    import resource

    me, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def optml_rate(n: int, workers: int, executor: str, storage: str, tmp: Path) -> tuple[float, float]:
    import optml

    url = "memory://"
    if storage != "memory":
        url = f"sqlite:///{tmp / f'optml-{time.monotonic_ns()}.db'}"
    study = optml.create_study(
        "noop", space={"x": {"uniform": [0, 1]}}, sampler="random", storage=url, seed=0
    )
    cpu, start = _cpu(), time.perf_counter()
    study.optimize(noop, n_trials=n, workers=workers, executor=executor)
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
    assert len(study.get_trials([optml.TrialState.COMPLETE])) == n
    return n / elapsed, n / cpu


def optuna_rate(n: int, n_jobs: int, storage: str, tmp: Path) -> tuple[float, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend: object = None
    if storage == "sqlite":
        backend = f"sqlite:///{tmp / f'optuna-{time.monotonic_ns()}.db'}"
    elif storage == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        backend = JournalStorage(JournalFileBackend(str(tmp / f"optuna-{time.monotonic_ns()}.log")))
    study = optuna.create_study(storage=backend, sampler=optuna.samplers.RandomSampler(seed=0))
    cpu, start = _cpu(), time.perf_counter()
    study.optimize(lambda t: noop(t.suggest_float("x", 0, 1)), n_trials=n, n_jobs=n_jobs)
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
    assert len(study.trials) == n
    return n / elapsed, n / cpu


def _when() -> str:
    """The UTC time and the load average, to go with the figures."""
    import datetime
    import os

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{now}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000, help="per run, in memory")
    parser.add_argument("--sql-trials", type=int, default=500, help="per run, SQLite / journal")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="optml-bench-"))

    if not args.skip_overhead:
        overhead = statistics.median(executor_overhead(300, workers=1) for _ in range(args.repeats))
        print(
            f"local executor: median per-trial overhead {overhead * 1e3:.3f} ms (no-op, 1 worker)"
        )

    # (pairing, workers): [(runner, rate function)]; runs are interleaved repeat by repeat.
    pairings: dict[tuple[str, int], list[tuple[str, Callable[[], tuple[float, float]]]]] = {}
    for storage, optml_storage in (
        ("memory", "memory"),
        ("sqlite", "sqlite"),
        ("journal", "sqlite"),
    ):
        n = args.trials if storage == "memory" else args.sql_trials
        pairings[(storage, 1)] = [
            ("OptML serial", lambda n=n, s=optml_storage: optml_rate(n, 1, "serial", s, tmp)),
            ("OptML local", lambda n=n, s=optml_storage: optml_rate(n, 1, "local", s, tmp)),
            ("Optuna n_jobs=1", lambda n=n, s=storage: optuna_rate(n, 1, s, tmp)),
        ]
        pairings[(storage, 2)] = [
            ("OptML local", lambda n=n, s=optml_storage: optml_rate(n, 2, "local", s, tmp)),
            ("Optuna n_jobs=2", lambda n=n, s=storage: optuna_rate(n, 2, s, tmp)),
        ]
    rates: dict[tuple[str, int, str], list[float]] = {}
    per_cpu: dict[tuple[str, int, str], list[float]] = {}
    print(f"start {_when()}")
    for _ in range(args.repeats):
        for (storage, workers), runners in pairings.items():
            for label, fn in runners:
                rate, cpu_rate = fn()
                rates.setdefault((storage, workers, label), []).append(rate)
                per_cpu.setdefault((storage, workers, label), []).append(cpu_rate)

    print(f"end {_when()}")
    names = {
        "memory": "in memory",
        "sqlite": "SQLite (both)",
        "journal": "Optuna journal file vs OptML SQLite",
    }
    print(
        f"\nno-op trials per second through optimize (wall clock), and per CPU second of the "
        f"process and its workers; medians of {args.repeats} (all runs):"
    )
    print(
        "| pairing | workers | runner | trials | trials/s | runs | vs Optuna | trials per CPU s "
        "| vs Optuna |"
    )
    print("|---|---:|---|---:|---:|---|---:|---:|---:|")
    for (storage, workers), runners in pairings.items():
        n = args.trials if storage == "memory" else args.sql_trials
        peer = statistics.median(rates[(storage, workers, runners[-1][0])])
        peer_cpu = statistics.median(per_cpu[(storage, workers, runners[-1][0])])
        for label, _ in runners:
            runs = rates[(storage, workers, label)]
            rate = statistics.median(runs)
            cpu_rate = statistics.median(per_cpu[(storage, workers, label)])
            shown = ", ".join(f"{r:.0f}" for r in runs)
            print(
                f"| {names[storage]} | {workers} | {label} | {n} | {rate:.0f} | {shown} "
                f"| {rate / peer:.2f}x | {cpu_rate:.0f} | {cpu_rate / peer_cpu:.2f}x |"
            )


if __name__ == "__main__":
    main()
