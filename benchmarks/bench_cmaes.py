"""OptML's CMA-ES against the `cmaes` package and random search on 10-D sphere and Rosenbrock.

Both strategies work in the unit cube from the same start (mean 0.5, sigma 0.25, default
population), so the comparison is of the implementations, not of their settings. Reports the
median best loss over seeds and OptML's time per proposal call (replay included).

    .venv/bin/python benchmarks/bench_cmaes.py --seeds 5 --budget 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from optml.samplers import SearchContext, make_sampler
from optml.space import Float, Space
from optml.trial import Trial, TrialState


def sphere(x: np.ndarray) -> float:
    return float(np.sum((x - 1.3) ** 2))


def rosenbrock(x: np.ndarray) -> float:
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def run_optml(name: str, f, d: int, budget: int, seed: int) -> tuple[float, float, int]:
    space = Space([Float(f"x{i}", -5.0, 5.0) for i in range(d)])
    sampler = make_sampler(name)
    rng = np.random.default_rng(seed)
    popsize = 4 + int(3 * np.log(d))
    trials: list[Trial] = []
    spent, calls = 0.0, 0
    while len(trials) < budget:
        ctx = SearchContext(space=space, trials=trials, seed=seed)
        start = time.perf_counter()
        batch = sampler.propose(ctx, min(popsize, budget - len(trials)), rng)
        spent += time.perf_counter() - start
        calls += 1
        for c in batch:
            x = np.array([c[f"x{i}"] for i in range(d)])
            trials.append(Trial(len(trials), TrialState.COMPLETE, c, value=f(x)))
    return min(t.value for t in trials), spent, calls  # type: ignore[type-var,return-value]


def run_package(f, d: int, budget: int, seed: int) -> float:
    from cmaes import CMA

    bounds = np.tile([0.0, 1.0], (d, 1))
    optimizer = CMA(mean=np.full(d, 0.5), sigma=0.25, bounds=bounds, seed=seed)
    best, used = np.inf, 0
    while used < budget:
        told = []
        for _ in range(optimizer.population_size):
            u = optimizer.ask()
            value = f(-5.0 + 10.0 * u)
            best = min(best, value)
            told.append((u, value))
            used += 1
        optimizer.tell(told)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=10)
    args = parser.parse_args()
    print(f"d={args.dim} budget={args.budget} seeds={args.seeds}; median best loss")
    for label, f in (("sphere", sphere), ("rosenbrock", rosenbrock)):
        ours, pkg, rnd, per_call = [], [], [], []
        for seed in range(args.seeds):
            best, spent, calls = run_optml("cmaes", f, args.dim, args.budget, seed)
            ours.append(best)
            per_call.append(spent / calls)
            pkg.append(run_package(f, args.dim, args.budget, seed))
            rnd.append(run_optml("random", f, args.dim, args.budget, seed)[0])
        print(
            f"{label:>10}: optml cmaes {np.median(ours):.4g}  cmaes package {np.median(pkg):.4g}  "
            f"random {np.median(rnd):.4g}  (optml {1000 * np.median(per_call):.1f} ms per call)"
        )


if __name__ == "__main__":
    main()
