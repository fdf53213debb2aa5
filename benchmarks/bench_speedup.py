"""Speedup of the seed's ANN and LMS grids: serial (one trial after another, in process) vs the
local executor with N worker processes, on the same machine in the same run.

Reports wall times, speedup (serial wall / parallel wall) and parallel efficiency
(sum of trial durations in the parallel run / (workers x parallel wall time)).

    .venv/bin/python benchmarks/bench_speedup.py [--workers N] [--grids ann lms]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_grid(spec_path: Path, executor: str, workers: int, db: Path) -> tuple[float, float, int]:
    from optml._process import limit_threads
    from optml.spec import build_objective, load_spec, study_from_spec
    from optml.trial import TrialState

    spec = load_spec(spec_path)
    study = study_from_spec(spec, storage=f"sqlite:///{db}", name=f"{spec.name}-{executor}")
    if executor == "serial":
        limit_threads(1)  # the same single-threaded BLAS the workers get
    start = time.perf_counter()
    study.optimize(build_objective(spec), executor=executor, workers=workers, data=spec.data)
    wall = time.perf_counter() - start
    trials = study.get_trials([TrialState.COMPLETE])
    busy = sum(t.duration_s or 0.0 for t in trials)
    return wall, busy, len(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--grids", nargs="+", default=["ann", "lms"])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="optml-speedup-"))
    print(f"machine: {os.cpu_count()} CPUs; local executor with {args.workers} workers\n")
    print("| grid | trials | serial wall (s) | parallel wall (s) | speedup | efficiency |")
    print("|---|---:|---:|---:|---:|---:|")
    for grid in args.grids:
        spec = ROOT / "examples" / f"{grid}_grid.yaml"
        serial_wall, _, n = run_grid(spec, "serial", 1, tmp / f"{grid}.db")
        par_wall, par_busy, n2 = run_grid(spec, "local", args.workers, tmp / f"{grid}.db")
        assert n == n2
        print(
            f"| {grid.upper()} | {n} | {serial_wall:.2f} | {par_wall:.2f} | "
            f"{serial_wall / par_wall:.2f}x | {par_busy / (args.workers * par_wall):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
