"""Dask against the local executor, and how many concurrent trials one controller keeps busy.

1. Per-trial overhead with no-op trials, 2 workers each: local executor, Dask (trial in the
   runtime's worker process on the Dask worker), Dask in-thread.
2. Parallel efficiency on the seed's ANN grid (examples/ann_grid.yaml), 2 workers each.
3. Scale by simulation: trials that sleep 1 s on a Dask cluster started here (a scheduler and
   2 worker processes) with 64 and 256 slots (threads; trials run in-thread: a process per
   trial is too heavy for hundreds of slots on 2 cores), random and GP samplers: efficiency
   (trial time / (slots x wall time), the wall time of optimize, connecting to the cluster
   included), controller CPU per trial, the part of it spent proposing, and the CPU the
   scheduler and the workers spent per trial.
4. ``scale-peers``: the same with ``--controllers`` controllers (4) on one PostgreSQL study
   (a throwaway server, as bench_peers.py starts it, or ``--postgres URL``), each its own
   process with its share of the slots.

    .venv/bin/python benchmarks/bench_dask.py [--parts overhead ann scale scale-peers gp]
        [--slots 64 256] [--samplers random gp] [--controllers 4]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def noop(x):
    return 0.0


def sleep_1s(x, y):
    time.sleep(1.0)
    return x


def _executor(kind: str, workers: int, threads: int = 1):
    from optml.executors import DaskExecutor, LocalExecutor

    if kind == "local":
        return LocalExecutor(workers=workers)
    return DaskExecutor(
        workers=workers, threads_per_worker=threads, in_thread=kind == "dask-in-thread"
    )


def overhead(n: int) -> None:
    from optml import create_study
    from optml.objectives import FunctionObjective

    print(f"\n### No-op trials, 2 workers ({n} trials)\n")
    print(
        "| executor | start + stop (s) | optimize wall (s) | trials/s after start | "
        "per-trial overhead (ms x workers) |"
    )
    print("|---|---:|---:|---:|---:|")
    for kind in ("local", "dask", "dask-in-thread"):
        # Starting the workers (and the Dask cluster) alone, measured apart.
        ex = _executor(kind, 2)
        t0 = time.perf_counter()
        ex.start(FunctionObjective(noop))
        ex.shutdown()
        startup = time.perf_counter() - t0
        study = create_study(
            name=kind, storage="memory://", space={"x": {"uniform": [0.0, 1.0]}}, sampler="random"
        )
        start = time.perf_counter()
        study.optimize(noop, n_trials=n, executor=_executor(kind, 2), show_progress=False)
        wall = time.perf_counter() - start
        assert len(study.trials) == n
        steady = max(wall - startup, 1e-9)
        print(
            f"| {kind} | {startup:.2f} | {wall:.2f} | {n / steady:.0f} | "
            f"{1000 * steady * 2 / n:.2f} |",
            flush=True,
        )


def ann() -> None:
    from optml.spec import build_objective, load_spec, study_from_spec

    spec = load_spec(ROOT / "examples" / "ann_grid.yaml")
    print("\n### ANN grid (20 trials), 2 workers\n")
    print("| executor | wall (s) | sum of trial times (s) | efficiency |")
    print("|---|---:|---:|---:|")
    for kind in ("dask", "local"):
        study = study_from_spec(spec, storage="memory://", name=f"ann-{kind}")
        start = time.perf_counter()
        study.optimize(
            build_objective(spec), executor=_executor(kind, 2), data=spec.data, show_progress=False
        )
        wall = time.perf_counter() - start
        busy = sum(t.duration_s or 0.0 for t in study.trials)
        print(f"| {kind} | {wall:.2f} | {busy:.2f} | {busy / (2 * wall):.3f} |", flush=True)


class _Cluster:
    """A `dask scheduler` and two `dask worker` processes of ``threads`` threads each, started
    here, so that the scheduler's CPU is not counted as the controller's."""

    def __init__(self, threads: int) -> None:
        import socket
        import subprocess
        import sys

        import distributed

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{port}"
        dask = str(Path(sys.executable).with_name("dask"))
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs = [
            subprocess.Popen(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                **quiet,
            )
        ]
        for _ in range(2):
            self.procs.append(
                subprocess.Popen(
                    [dask, "worker", self.address, "--nthreads", str(threads), "--no-nanny"]
                    + ["--host", "127.0.0.1", "--no-dashboard"],
                    **quiet,
                )
            )
        with distributed.Client(self.address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=60)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds used so far by the scheduler, and by the workers together."""
        import psutil

        used = [sum(psutil.Process(p.pid).cpu_times()[:2]) for p in self.procs]
        return used[0], sum(used[1:])

    def close(self) -> None:
        # Workers first: a worker whose scheduler is gone waits to reconnect.
        for p in reversed(self.procs):
            p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except Exception:  # noqa: BLE001 - a worker slow to close is killed
                p.kill()
                p.wait(timeout=10)


def scale(slots_list: list[int], waves: int, samplers: list[str]) -> None:
    import resource

    from optml import create_study
    from optml.executors import DaskExecutor

    print(
        f"\n### 1-second trials on a Dask cluster of 2 workers started here (in-thread), "
        f"{waves} waves\n"
    )
    print(
        "| slots | sampler | trials | wall (s) | efficiency | efficiency, first start to last "
        "finish | controller CPU per trial (ms) | of which proposing (ms) | scheduler CPU per "
        "trial (ms) | workers' CPU per trial (ms) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for slots in slots_list:
        cluster = _Cluster(slots // 2)
        try:
            for sampler in samplers:
                n = slots * waves
                # "gp+ahead": the GP with propose_ahead (the next wave proposed while one runs).
                base, _, mode = sampler.partition("+")
                study = create_study(
                    name=f"{sampler}-{slots}",
                    storage="memory://",
                    space={"x": {"uniform": [0.0, 1.0]}, "y": {"uniform": [0.0, 1.0]}},
                    sampler=base,
                )
                proposing = [0.0]
                start_trials = study._start_trials

                def timed(*args, _start=start_trials, _spent=proposing, **kwargs):
                    t = time.process_time()
                    try:
                        return _start(*args, **kwargs)
                    finally:
                        _spent[0] += time.process_time() - t

                study._start_trials = timed
                ex = DaskExecutor(workers=slots, address=cluster.address, in_thread=True)
                cpu0 = resource.getrusage(resource.RUSAGE_SELF)
                cluster0 = cluster.cpu()
                study.optimize(
                    sleep_1s,
                    n_trials=n,
                    executor=ex,
                    show_progress=False,
                    propose_ahead=mode == "ahead",
                )
                cpu1 = resource.getrusage(resource.RUSAGE_SELF)
                scheduler, workers = (b - a for a, b in zip(cluster0, cluster.cpu(), strict=True))
                stats = study.last_run
                cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
                busy = sum(t.duration_s or 0.0 for t in study.trials)
                span = (
                    max(t.finished_at for t in study.trials)
                    - min(t.started_at for t in study.trials)
                ).total_seconds()
                print(
                    f"| {slots} | {sampler} | {n} | {stats.wall_s:.2f} | "
                    f"{busy / (slots * stats.wall_s):.3f} | {busy / (slots * span):.3f} | "
                    f"{1000 * cpu / n:.2f} | "
                    f"{1000 * proposing[0] / n:.2f} | {1000 * scheduler / n:.2f} | "
                    f"{1000 * workers / n:.2f} |",
                    flush=True,
                )
        finally:
            cluster.close()


def _peer_controller(url: str, name: str, slots: int, address: str, go: Any, out: Any) -> None:
    """One of several controllers of a study on PostgreSQL, each with its share of the slots."""
    import resource

    from optml import load_study
    from optml.executors import DaskExecutor

    study = load_study(name, storage=url)
    study.trials  # noqa: B018 - connect before the clock starts
    go.wait()
    t0 = time.time()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    # A lambda travels to the Dask workers by value (this module is __mp_main__ here).
    study.optimize(
        lambda x, y: time.sleep(1.0) or x,
        executor=DaskExecutor(workers=slots, address=address, in_thread=True),
        show_progress=False,
    )
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out.put((t0, time.time(), study.last_run.trials, cpu))


def scale_peers(
    slots_list: list[int], waves: int, controllers: int, samplers: list[str], postgres: str | None
) -> None:
    """The scale simulation with several controllers on one PostgreSQL study, each its own
    process with slots / controllers Dask slots, released together; efficiency over the
    span from the common start to the last controller's end."""
    import multiprocessing as mp

    from bench_peers import _database, postgres_server

    from optml import create_study, load_study

    print(
        f"\n### 1-second trials, {controllers} controllers on one PostgreSQL study, a Dask "
        f"cluster of 2 workers started here (in-thread), {waves} waves\n"
    )
    print(
        "| slots | sampler | trials | wall (s) | efficiency | efficiency, first start to last "
        "finish | controllers' CPU per trial (ms) | scheduler CPU per trial (ms) | workers' CPU "
        "per trial (ms) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    with postgres_server(postgres) as server:
        url = _database(server, "optml_scale")
        for slots in slots_list:
            cluster = _Cluster(slots // 2)
            try:
                for sampler in samplers:
                    n = slots * waves
                    name = f"{sampler}-{slots}"
                    study = create_study(
                        name,
                        storage=url,
                        space={"x": {"uniform": [0.0, 1.0]}, "y": {"uniform": [0.0, 1.0]}},
                        sampler=sampler,
                    )
                    study.set_budget(n)
                    study.storage.close()
                    ctx = mp.get_context("spawn")
                    go, out = ctx.Event(), ctx.Queue()
                    share = slots // controllers
                    procs = [
                        ctx.Process(
                            target=_peer_controller,
                            args=(url, name, share, cluster.address, go, out),
                        )
                        for _ in range(controllers)
                    ]
                    for p in procs:
                        p.start()
                    time.sleep(3.0 + controllers)  # every process imports and connects first
                    cluster0 = cluster.cpu()
                    go.set()
                    results = [out.get(timeout=900) for _ in procs]
                    scheduler, workers = (
                        b - a for a, b in zip(cluster0, cluster.cpu(), strict=True)
                    )
                    for p in procs:
                        p.join(timeout=60)
                    wall = max(r[1] for r in results) - min(r[0] for r in results)
                    done = load_study(name, storage=url).trials
                    busy = sum(t.duration_s or 0.0 for t in done)
                    span = (
                        max(t.finished_at for t in done) - min(t.started_at for t in done)
                    ).total_seconds()
                    ran = sum(r[2] for r in results)
                    cpu = sum(r[3] for r in results)
                    print(
                        f"| {slots} | {sampler} | {ran} | {wall:.2f} | "
                        f"{busy / (slots * wall):.3f} | {busy / (slots * span):.3f} | "
                        f"{1000 * cpu / ran:.2f} | "
                        f"{1000 * scheduler / ran:.2f} | {1000 * workers / ran:.2f} |",
                        flush=True,
                    )
            finally:
                cluster.close()


def gp_cost() -> None:
    """Why GP stops keeping up: the CPU time of one proposal call, by history, pending trials
    and how many configurations the call asks for (2 dimensions, as in the scale runs)."""
    import numpy as np

    from optml.samplers import SearchContext, make_sampler
    from optml.space import Float, Space
    from optml.trial import Trial, TrialState

    space = Space([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])
    sampler = make_sampler("gp")
    print("\n### GP proposal cost (CPU ms), 2 dimensions\n")
    print("| finished | pending | asked at once | per call (ms) | per configuration (ms) |")
    print("|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    warm = [Trial(i, TrialState.COMPLETE, {"x": 0.1 * i, "y": 0.5}, value=i) for i in range(9)]
    sampler.propose(SearchContext(space=space, trials=warm), 1, np.random.default_rng(0))
    for finished, pending, n in [
        (256, 0, 1),
        (256, 64, 1),
        (256, 256, 1),
        (256, 256, 16),
        (256, 256, 64),
        (768, 256, 1),
        (1024, 0, 256),  # a wave of 256 one-second trials ended together
        (2048, 0, 256),
    ]:
        trials = [
            Trial(i, TrialState.COMPLETE, {"x": a, "y": b}, value=a + b)
            for i, (a, b) in enumerate(rng.random((finished, 2)))
        ]
        trials += [
            Trial(finished + i, TrialState.RUNNING, {"x": a, "y": b})
            for i, (a, b) in enumerate(rng.random((pending, 2)))
        ]
        ctx = SearchContext(space=space, trials=trials)
        t = time.process_time()
        sampler.propose(ctx, n, np.random.default_rng(1))
        spent = time.process_time() - t
        print(
            f"| {finished} | {pending} | {n} | {1000 * spent:.1f} | {1000 * spent / n:.1f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["overhead", "ann", "scale", "gp"])
    parser.add_argument("--noop-trials", type=int, default=200)
    parser.add_argument("--slots", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument(
        "--samplers",
        nargs="+",
        default=["random", "gp"],
        help="samplers to compare; NAME+ahead runs NAME with propose_ahead (e.g. gp+ahead)",
    )
    parser.add_argument("--controllers", type=int, default=4, help="for --parts scale-peers")
    parser.add_argument("--postgres", default=None, help="a server URL (default: one started here)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs")
    if "overhead" in args.parts:
        overhead(args.noop_trials)
    if "ann" in args.parts:
        ann()
    if "scale" in args.parts:
        scale(args.slots, args.waves, args.samplers)
    if "scale-peers" in args.parts:
        scale_peers(args.slots, args.waves, args.controllers, args.samplers, args.postgres)
    if "gp" in args.parts:
        gp_cost()


if __name__ == "__main__":
    main()
