"""Cost of one GP proposal against history length: OptML's ``gp`` sampler vs Optuna's GPSampler.

Both samplers see the same finished trials (5 continuous dimensions, a smooth objective with a
little noise) and are timed in the same process on a few consecutive ask/tell rounds: a round
adds one finished trial and asks for one new configuration, as a serial study does. Optuna keeps
its fitted kernel parameters between asks (a warm start); OptML's sampler is pure and refits from
scratch every time, so the comparison is conservative for OptML.

    python benchmarks/bench_gp_cost.py                # 20, 50, 100, 500 trials, 3 rounds each
    python benchmarks/bench_gp_cost.py --sizes 20 100 --rounds 5

Prints one row per history length: median wall and CPU seconds per proposal, and the ratios.
On a shared machine wall time swings with the load, CPU time much less; run with
OMP_NUM_THREADS=1 to compare single-threaded costs (OptML's GP limits BLAS to one thread
itself; torch otherwise spins a thread per core). Optuna's GPSampler needs torch (and runs its
L-BFGS-B in a batched mode only when the ``greenlet`` package is installed); without torch the
Optuna column says so.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from optml.samplers import SearchContext, make_sampler
from optml.space import Float, Space
from optml.trial import Trial, TrialState

DIMS = 5


def objective(x: np.ndarray, rng: np.random.Generator) -> float:
    """A smooth 5-D test function (shifted sphere plus a ripple) with a little noise."""
    return float(np.sum((x - 0.3) ** 2) + 0.1 * np.sin(8 * x[0]) + 0.01 * rng.standard_normal())


def history(n: int, seed: int) -> tuple[list[dict[str, float]], list[float]]:
    rng = np.random.default_rng(seed)
    points = rng.random((n, DIMS))
    configs = [{f"x{i}": float(p[i]) for i in range(DIMS)} for p in points]
    return configs, [objective(p, rng) for p in points]


Timing = tuple[float, float]  # (wall seconds, CPU seconds of the process, all threads)


def _clock() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def time_optml(n: int, rounds: int, seed: int) -> list[Timing]:
    space = Space([Float(f"x{i}", 0.0, 1.0) for i in range(DIMS)])
    configs, values = history(n, seed)
    trials = [
        Trial(i, TrialState.COMPLETE, c, value=v)
        for i, (c, v) in enumerate(zip(configs, values, strict=True))
    ]
    sampler = make_sampler("gp")
    rng = np.random.default_rng(seed + 1)
    times = []
    for r in range(rounds):
        ctx = SearchContext(space=space, trials=list(trials), seed=seed)
        start = _clock()
        (config,) = sampler.propose(ctx, 1, np.random.default_rng([seed, r]))
        times.append(_since(start))
        x = np.array([config[f"x{i}"] for i in range(DIMS)])
        trials.append(Trial(len(trials), TrialState.COMPLETE, config, value=objective(x, rng)))
    return times


def time_optuna(n: int, rounds: int, seed: int) -> list[Timing] | str:
    try:
        import optuna
        import torch  # noqa: F401  (Optuna's GPSampler is written on torch)
    except ImportError as exc:
        return f"not run ({exc.name} missing)"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, Any] = {
        f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(DIMS)
    }
    study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=seed))
    configs, values = history(n, seed)
    for c, v in zip(configs, values, strict=True):
        study.add_trial(optuna.trial.create_trial(params=c, distributions=dists, value=v))
    rng = np.random.default_rng(seed + 1)
    times = []
    for _ in range(rounds):
        start = _clock()
        trial = study.ask(dists)
        times.append(_since(start))
        x = np.array([trial.params[f"x{i}"] for i in range(DIMS)])
        study.tell(trial, objective(x, rng))
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 500])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # Warm both up (imports, first BLAS and torch calls) so that the rows compare steady states.
    time_optml(20, 1, args.seed + 99)
    time_optuna(20, 1, args.seed + 99)

    print(f"GP proposal cost, {DIMS} dims, median of {args.rounds} ask/tell rounds, seconds")
    print("(wall: elapsed time; cpu: process CPU time, all threads; ratio = optml / optuna)")
    print(
        f"{'trials':>7} {'optml wall':>11} {'optml cpu':>10} {'optuna wall':>12} "
        f"{'optuna cpu':>11} {'ratio wall':>11} {'ratio cpu':>10}"
    )
    for n in args.sizes:
        ours = time_optml(n, args.rounds, args.seed)
        ours_wall = statistics.median(t[0] for t in ours)
        ours_cpu = statistics.median(t[1] for t in ours)
        theirs = time_optuna(n, args.rounds, args.seed)
        if isinstance(theirs, str):
            print(f"{n:>7} {ours_wall:>11.4f} {ours_cpu:>10.4f} {theirs:>12}")
            continue
        wall = statistics.median(t[0] for t in theirs)
        cpu = statistics.median(t[1] for t in theirs)
        print(
            f"{n:>7} {ours_wall:>11.4f} {ours_cpu:>10.4f} {wall:>12.4f} {cpu:>11.4f} "
            f"{ours_wall / wall:>11.2f} {ours_cpu / cpu:>10.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
