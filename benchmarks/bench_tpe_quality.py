"""Best loss found in a fixed budget: OptML's TPE next to random search and Optuna's TPE.

Four small problems (a 4-D quadratic, Branin, 5-D Rosenbrock, and a mixed space with a log
float, a log integer, a categorical and a float), ``--trials`` sequential evaluations (or
batches of ``--batch`` for OptML, whose sampler proposes batches with a constant liar), over
``--seeds`` seeds. Prints the median and mean of the best loss per problem (lower is better).

    .venv/bin/python benchmarks/bench_tpe_quality.py [--trials 50] [--seeds 20] [--batch 1]
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from optml.samplers import SearchContext, make_sampler
from optml.space import Categorical, Float, Int, Space
from optml.trial import Trial, TrialState

Loss = Callable[[dict[str, Any]], float]


def branin(c: dict[str, Any]) -> float:
    x, y = c["x"], c["y"]
    return (
        (y - 5.1 / (4 * math.pi**2) * x**2 + 5 / math.pi * x - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x)
        + 10
    )


def quadratic(c: dict[str, Any]) -> float:
    return sum((v - 0.3) ** 2 for v in c.values())


def rosenbrock(c: dict[str, Any]) -> float:
    x = [c[f"x{i}"] for i in range(5)]
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(4))


def mixed(c: dict[str, Any]) -> float:
    return (
        (math.log10(c["lr"]) + 3) ** 2
        + (c["units"] - 20) ** 2 / 100
        + {"a": 0.5, "b": 0.0, "c": 1.0}[c["act"]]
        + (c["x"] - 0.7) ** 2
    )


PROBLEMS: list[tuple[str, Space, Loss]] = [
    ("quadratic-4d", Space([Float(f"x{i}", -1, 1) for i in range(4)]), quadratic),
    ("branin", Space([Float("x", -5, 10), Float("y", 0, 15)]), branin),
    ("rosenbrock-5d", Space([Float(f"x{i}", -2, 2) for i in range(5)]), rosenbrock),
    (
        "mixed",
        Space(
            [
                Float("lr", 1e-5, 1, log=True),
                Int("units", 1, 128, log=True),
                Categorical("act", ("a", "b", "c")),
                Float("x", 0, 1),
            ]
        ),
        mixed,
    ),
]


def run_optml(
    spec: dict[str, Any], space: Space, loss: Loss, seed: int, n: int, batch: int
) -> float:
    sampler = make_sampler(spec)
    rng = np.random.default_rng(seed)
    trials: list[Trial] = []
    while len(trials) < n:
        ctx = SearchContext(space=space, trials=trials, seed=seed)
        for config in sampler.propose(ctx, min(batch, n - len(trials)), rng):
            trials.append(Trial(len(trials), TrialState.COMPLETE, config, value=loss(config)))
    return min(t.value for t in trials if t.value is not None)


def run_optuna(multivariate: bool, space: Space, loss: Loss, seed: int, n: int) -> float:
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists: dict[str, BaseDistribution] = {}
    for p in space:
        if isinstance(p, Float):
            dists[p.name] = FloatDistribution(p.low, p.high, log=p.log)
        elif isinstance(p, Int):
            dists[p.name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            dists[p.name] = CategoricalDistribution(p.choices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate is flagged experimental
        study = optuna.create_study(
            sampler=optuna.samplers.TPESampler(seed=seed, multivariate=multivariate)
        )
        for _ in range(n):
            trial = study.ask(dists)
            study.tell(trial, loss(trial.params))
    return float(study.best_value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--no-optuna", action="store_true")
    args = parser.parse_args()

    contenders: dict[str, Callable[[Space, Loss, int], float]] = {
        "random": lambda s, f, seed: run_optml({"name": "random"}, s, f, seed, args.trials, 1),
        "optml tpe": lambda s, f, seed: run_optml(
            {"name": "tpe"}, s, f, seed, args.trials, args.batch
        ),
        "optml tpe mv": lambda s, f, seed: run_optml(
            {"name": "tpe", "multivariate": True}, s, f, seed, args.trials, args.batch
        ),
    }
    if not args.no_optuna:
        contenders["optuna tpe"] = lambda s, f, seed: run_optuna(False, s, f, seed, args.trials)
        contenders["optuna tpe mv"] = lambda s, f, seed: run_optuna(True, s, f, seed, args.trials)

    print(
        f"best loss after {args.trials} trials (OptML batch {args.batch}), "
        f"median / mean over {args.seeds} seeds"
    )
    print(f"{'':>14}  " + "  ".join(f"{name:>19}" for name in contenders))
    for name, space, loss in PROBLEMS:
        cells = []
        for run in contenders.values():
            best = [run(space, loss, seed) for seed in range(args.seeds)]
            cells.append(f"{np.median(best):8.4g} / {np.mean(best):<8.4g}")
        print(f"{name:>14}  " + "  ".join(f"{c:>19}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
