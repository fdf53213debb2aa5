"""Cost of one GP proposal against history length: OptML's ``gp`` sampler vs Optuna's GPSampler.

Both samplers see the same finished trials (5 continuous dimensions, a smooth objective with a
little noise) and are timed in the same process on a few consecutive ask/tell rounds: a round
adds one finished trial and asks for one new configuration, as a serial study does. Optuna keeps
its fitted kernel parameters between asks (a warm start); OptML's sampler is pure and refits from
scratch every time, so the comparison is conservative for OptML.

    python benchmarks/bench_gp_cost.py                # 20, 50, 100, 500 trials, 3 rounds each
    python benchmarks/bench_gp_cost.py --sizes 20 100 --rounds 5
    python benchmarks/bench_gp_cost.py --pending 1000:32:1 500:0:64 --rounds 20

``--pending FINISHED:PENDING:BATCH`` times OptML's GP alone in a parallel study's steady state
instead (see :func:`time_pending`): per call and per configuration, with refits as they come.

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


def time_pending(
    n: int, pending: int, batch: int, rounds: int, seed: int, dims: int
) -> list[float]:
    """CPU seconds of each of ``rounds`` calls of OptML's GP in a parallel study's steady state.

    The study has ``n`` finished and ``pending`` running trials; each round the ``batch``
    oldest running trials finish and the sampler is asked for ``batch`` new ones (as a
    controller refills freed slots), so the history grows and the hyperparameters' refit steps
    are paid when they come, as in a real study. One sampler serves every round; an untimed
    first call stands for the study's earlier history.
    """
    space = Space([Float(f"x{i}", 0.0, 1.0) for i in range(dims)])
    rng = np.random.default_rng(seed)
    points = rng.random((n + pending, dims))

    def value(p: np.ndarray) -> float:
        return float(np.sum((p - 0.3) ** 2) + 0.1 * np.sin(8 * p[0]))

    def config(p: np.ndarray) -> dict[str, float]:
        return {f"x{i}": float(p[i]) for i in range(dims)}

    trials = [
        Trial(i, TrialState.COMPLETE, config(p), value=value(p)) for i, p in enumerate(points[:n])
    ]
    trials += [Trial(n + i, TrialState.RUNNING, config(p)) for i, p in enumerate(points[n:])]
    sampler = make_sampler("gp")
    # A study that reached n finished trials has fitted its hyperparameters on the way: one
    # untimed call stands for that history, the timed rounds then pay each refit as it comes.
    sampler.propose(SearchContext(space=space, trials=list(trials), seed=seed), batch, rng)
    times = []
    for r in range(rounds):
        running = [i for i, t in enumerate(trials) if t.state is TrialState.RUNNING]
        for i in running[:batch]:
            t = trials[i]
            x = np.array([t.params[f"x{j}"] for j in range(dims)])
            trials[i] = Trial(t.number, TrialState.COMPLETE, t.params, value=value(x))
        ctx = SearchContext(space=space, trials=list(trials), seed=seed)
        start = time.process_time()
        configs = sampler.propose(ctx, batch, np.random.default_rng([seed, r]))
        times.append(time.process_time() - start)
        trials += [Trial(len(trials) + k, TrialState.RUNNING, c) for k, c in enumerate(configs)]
    return times


def pending_table(cases: list[tuple[int, int, int]], rounds: int, seed: int, dims: int) -> None:
    time_pending(20, 4, 1, 2, seed + 99, dims)  # warm-up
    print(f"\nGP cost in a parallel study, {dims} dims, {rounds} rounds each, CPU ms")
    print(
        "| finished | pending | asked at once | per call, median | per call, mean | "
        "per call, max | per configuration (mean) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, pending, batch in cases:
        ts = [1000 * t for t in time_pending(n, pending, batch, rounds, seed, dims)]
        mean = statistics.fmean(ts)
        print(
            f"| {n} | {pending} | {batch} | {statistics.median(ts):.1f} | {mean:.1f} | "
            f"{max(ts):.1f} | {mean / batch:.1f} |",
            flush=True,
        )


def _case(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.split(":")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected FINISHED:PENDING:BATCH, got {text!r}")
    return parts[0], parts[1], parts[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 500])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pending",
        type=_case,
        nargs="+",
        metavar="FINISHED:PENDING:BATCH",
        help="instead: OptML's GP alone in a parallel study's steady state (see time_pending)",
    )
    parser.add_argument("--dims", type=int, default=DIMS, help="dimensions of --pending")
    args = parser.parse_args(argv)
    if args.pending:
        pending_table(args.pending, args.rounds, args.seed, args.dims)
        return

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
