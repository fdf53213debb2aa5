"""Per-trial overhead of the local executor, and no-op trials per second through optimize with
SQLite storage, side by side with Optuna doing the same work in the same run.

    .venv/bin/python benchmarks/bench_overhead.py [--trials 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
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


def optml_throughput(n: int, workers: int, executor: str, tmp: Path) -> float:
    import optml

    db = tmp / f"optml-{executor}-{workers}-{time.monotonic_ns()}.db"
    study = optml.create_study(
        "noop",
        space={"x": {"uniform": [0, 1]}},
        sampler="random",
        storage=f"sqlite:///{db}",
        seed=0,
    )
    start = time.perf_counter()
    study.optimize(noop, n_trials=n, workers=workers, executor=executor)
    elapsed = time.perf_counter() - start
    assert len(study.get_trials([optml.TrialState.COMPLETE])) == n
    return n / elapsed


def optuna_throughput(n: int, n_jobs: int, tmp: Path) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp / f"optuna-{n_jobs}-{time.monotonic_ns()}.db"
    study = optuna.create_study(
        storage=f"sqlite:///{db}", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    start = time.perf_counter()
    study.optimize(lambda t: noop(t.suggest_float("x", 0, 1)), n_trials=n, n_jobs=n_jobs)
    elapsed = time.perf_counter() - start
    assert len(study.trials) == n
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="optml-bench-"))

    overhead = statistics.median(executor_overhead(300, workers=1) for _ in range(args.repeats))
    print(
        f"local executor: median per-trial overhead {overhead * 1e3:.3f} ms (no-op trials, 1 worker)"
    )

    rows = []
    for label, fn in [
        (
            "OptML, local executor, 2 workers",
            lambda: optml_throughput(args.trials, 2, "local", tmp),
        ),
        ("OptML, local executor, 1 worker", lambda: optml_throughput(args.trials, 1, "local", tmp)),
        ("OptML, serial (in process)", lambda: optml_throughput(args.trials, 1, "serial", tmp)),
        ("Optuna, n_jobs=1 (in process)", lambda: optuna_throughput(args.trials, 1, tmp)),
        ("Optuna, n_jobs=2 (threads)", lambda: optuna_throughput(args.trials, 2, tmp)),
    ]:
        rates = [fn() for _ in range(args.repeats)]
        rows.append((label, statistics.median(rates)))
    optuna_best = max(r for label, r in rows if label.startswith("Optuna"))
    print(
        f"\nno-op trials per second through optimize, SQLite storage, {args.trials} trials, "
        f"median of {args.repeats}:"
    )
    print(f"| {'runner':40s} | trials/s | vs best Optuna |")
    print(f"|{'-' * 42}|---------:|---------------:|")
    for label, rate in rows:
        print(f"| {label:40s} | {rate:8.0f} | {rate / optuna_best:13.2f}x |")


if __name__ == "__main__":
    main()
