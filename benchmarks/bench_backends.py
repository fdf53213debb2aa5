"""The local executor, Dask and Ray side by side, 2 workers each, in one run (issue 11).

For each backend, started with the study as a user gets it (a local Dask cluster, a local Ray
instance):

1. Start-up and shut-down time, and memory: RSS summed over every process of the backend
   (every descendant of this process: workers, Dask's worker processes, Ray's GCS, raylet,
   agents and workers, and the trial processes they run) plus what this process grew by (the
   Dask scheduler and Ray's driver run in it), after two warm-up trials. Shared pages are
   counted once per process.
2. No-op trials: trials/s and per-trial overhead (ms x workers) over the span from the first
   trial's start to the last one's end (start-up apart), and controller CPU per trial.
3. Parallel efficiency on the seed's ANN grid (examples/ann_grid.yaml): the sum of trial times
   over (2 x that span), and over optimize's whole wall time (start-up included).

    .venv/bin/python benchmarks/bench_backends.py [--backends local dask ray] [--noop 200]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import psutil
from bench_dask import noop

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


def _executor(kind: str):
    from optml.executors import make_executor

    return make_executor(kind, WORKERS)


def _rss_of_descendants() -> float:
    total = 0
    for proc in psutil.Process().children(recursive=True):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _span(trials) -> float:
    return (max(t.finished_at for t in trials) - min(t.started_at for t in trials)).total_seconds()


def startup(kinds: list[str]) -> None:
    from optml.executors import TrialOutcome, TrialTask
    from optml.objectives import FunctionObjective

    print(f"\n### Start-up and memory, {WORKERS} workers\n")
    print(
        "| backend | start (s) | stop (s) | processes | RSS of its processes (MiB) | "
        "controller grew by (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    me = psutil.Process()
    for kind in kinds:
        before = me.memory_info().rss / 2**20
        ex = _executor(kind)
        t0 = time.perf_counter()
        ex.start(FunctionObjective(noop))
        started = time.perf_counter() - t0
        for n in range(WORKERS):  # the trial processes exist once trials ran
            ex.submit(TrialTask(n, {"x": n}, "value"))
        done = 0
        while done < WORKERS:
            done += sum(isinstance(e, TrialOutcome) for e in ex.events(1.0))
        procs = len(me.children(recursive=True))
        rss = _rss_of_descendants()
        grew = me.memory_info().rss / 2**20 - before
        t0 = time.perf_counter()
        ex.shutdown()
        stopped = time.perf_counter() - t0
        print(
            f"| {kind} | {started:.2f} | {stopped:.2f} | {procs} | {rss:.0f} | {grew:.0f} |",
            flush=True,
        )
        time.sleep(2)  # let the backend's processes go before the next one is measured


def overhead(kinds: list[str], n: int) -> None:
    from optml import create_study

    print(f"\n### No-op trials, {WORKERS} workers ({n} trials)\n")
    print(
        "| backend | optimize wall (s) | first start to last end (s) | trials/s | "
        "per-trial overhead (ms x workers) | controller CPU per trial (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        study = create_study(
            name=kind, storage="memory://", space={"x": {"uniform": [0.0, 1.0]}}, sampler="random"
        )
        cpu0, t0 = time.process_time(), time.perf_counter()
        study.optimize(noop, n_trials=n, executor=_executor(kind), show_progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        trials = study.trials
        assert len(trials) == n and all(t.state.name == "COMPLETE" for t in trials)
        span = _span(trials)
        print(
            f"| {kind} | {wall:.2f} | {span:.2f} | {n / span:.0f} | "
            f"{1000 * span * WORKERS / n:.2f} | {1000 * cpu / n:.2f} |",
            flush=True,
        )


def ann(kinds: list[str]) -> None:
    from optml.spec import build_objective, load_spec, study_from_spec

    spec = load_spec(ROOT / "examples" / "ann_grid.yaml")
    print(f"\n### ANN grid (20 trials), {WORKERS} workers\n")
    print(
        "| backend | optimize wall (s) | first start to last end (s) | sum of trial times (s) | "
        "efficiency over the span | over the wall |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in kinds:
        study = study_from_spec(spec, storage="memory://", name=f"ann-{kind}")
        t0 = time.perf_counter()
        study.optimize(
            build_objective(spec), executor=_executor(kind), data=spec.data, show_progress=False
        )
        wall = time.perf_counter() - t0
        trials = study.trials
        assert len(trials) == 20 and all(t.state.name == "COMPLETE" for t in trials)
        busy = sum(t.duration_s or 0.0 for t in trials)
        span = _span(trials)
        print(
            f"| {kind} | {wall:.2f} | {span:.2f} | {busy:.2f} | "
            f"{busy / (WORKERS * span):.3f} | {busy / (WORKERS * wall):.3f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["local", "dask", "ray"])
    parser.add_argument("--parts", nargs="+", default=["startup", "overhead", "ann"])
    parser.add_argument("--noop", type=int, default=200, help="no-op trials per backend")
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    if "startup" in args.parts:
        startup(args.backends)
    if "overhead" in args.parts:
        overhead(args.backends, args.noop)
    if "ann" in args.parts:
        ann(args.backends)
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


if __name__ == "__main__":
    main()
