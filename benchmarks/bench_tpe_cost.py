"""Cost of one TPE proposal against the length of the history: OptML's TPE next to Optuna's.

Both samplers see the same history of N completed trials in a 5-dimensional box (a quadratic
loss of uniform random points) and are timed proposing one point, repeatedly, in this process.
OptML: ``TPESampler.propose(ctx, 1, rng)`` on a fixed context (the context's own work, ranking
the history, is inside the timing). Optuna: ``study.ask()`` plus five ``suggest_float`` calls on
an in-memory study preloaded with ``add_trials``; the asked trial is told its value outside the
timing, so the history grows by at most ``repeats`` trials per size.

    .venv/bin/python benchmarks/bench_tpe_cost.py [--sizes 20 100 500 1000 2000] [--repeats 25]

Times are CPU time of this process (time.process_time), so that other load on a shared machine
disturbs them less than wall time; both samplers run single-threaded here.
Prints the median milliseconds per proposal and the ratio to the smallest history. The row
"(of which ctx passes)" times the passes over the history that the shared SearchContext and
fill_unique make per request (not per point), which are part of the OptML rows; "optml tpe,
cached ctx" is the sampler's own work with those passes done once beforehand (what caching them
on the immutable context would give).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from optml.samplers import SearchContext
from optml.samplers._tpe import TPESampler
from optml.space import Float, Space
from optml.trial import Trial, TrialState

DIMS = 5


@dataclass(frozen=True)
class _CachedContext(SearchContext):
    """A context that computes its passes over the history once (warmed before timing), to
    time the sampler's own work apart from the shared contract's per-request passes."""

    @functools.cached_property
    def completed(self) -> list[Trial]:  # type: ignore[override]
        return SearchContext.completed.fget(self)  # type: ignore[attr-defined,no-any-return]

    @functools.cached_property
    def _keys(self) -> frozenset[tuple[Any, ...]]:
        return frozenset(SearchContext.seen_keys(self))

    def seen_keys(self) -> set[tuple[Any, ...]]:
        return set(self._keys)


def _history(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, DIMS))
    return x, np.sum((x - 0.3) ** 2, axis=1)


def time_optml(
    n: int, repeats: int, multivariate: bool, batch: int = 1, cached: bool = False
) -> float:
    space = Space([Float(f"x{i}", 0.0, 1.0) for i in range(DIMS)])
    x, y = _history(n)
    trials = [
        Trial(
            i,
            TrialState.COMPLETE,
            {f"x{k}": float(v) for k, v in enumerate(row)},
            value=float(loss),
        )
        for i, (row, loss) in enumerate(zip(x, y, strict=True))
    ]
    ctx = (_CachedContext if cached else SearchContext)(space=space, trials=trials, seed=0)
    sampler = TPESampler(multivariate=multivariate)
    rng = np.random.default_rng(1)
    sampler.propose(ctx, batch, rng)  # warm-up (imports)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        sampler.propose(ctx, batch, rng)
        times.append((time.process_time() - start) / batch)
    return statistics.median(times)


def time_context(n: int, repeats: int) -> float:
    """The history passes every proposal request pays in the shared contract, whatever the
    sampler: ``ctx.completed`` and ``ctx.losses()`` (to rank) and ``ctx.seen_keys()`` (once,
    inside ``fill_unique``)."""
    space = Space([Float(f"x{i}", 0.0, 1.0) for i in range(DIMS)])
    x, y = _history(n)
    trials = [
        Trial(
            i,
            TrialState.COMPLETE,
            {f"x{k}": float(v) for k, v in enumerate(row)},
            value=float(loss),
        )
        for i, (row, loss) in enumerate(zip(x, y, strict=True))
    ]
    ctx = SearchContext(space=space, trials=trials, seed=0)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        ctx.losses(ctx.completed)
        ctx.seen_keys()
        times.append(time.process_time() - start)
    return statistics.median(times)


def time_optuna(n: int, repeats: int, multivariate: bool) -> float:
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists: dict[str, BaseDistribution] = {f"x{i}": FloatDistribution(0.0, 1.0) for i in range(DIMS)}
    x, y = _history(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate is flagged experimental
        sampler = optuna.samplers.TPESampler(seed=1, multivariate=multivariate)
    study = optuna.create_study(sampler=sampler)
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={f"x{k}": float(v) for k, v in enumerate(row)},
                distributions=dists,
                value=float(loss),
            )
            for row, loss in zip(x, y, strict=True)
        ]
    )
    times = []
    for i in range(repeats + 1):
        start = time.process_time()
        trial = study.ask()
        point = [trial.suggest_float(f"x{k}", 0.0, 1.0) for k in range(DIMS)]
        elapsed = time.process_time() - start
        study.tell(trial, float(np.sum((np.array(point) - 0.3) ** 2)))
        if i:  # the first ask warms caches
            times.append(elapsed)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500, 1000, 2000])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--no-optuna", action="store_true")
    args = parser.parse_args()

    columns: dict[str, list[float]] = {
        "optml tpe": [time_optml(n, args.repeats, False) for n in args.sizes],
        "optml tpe mv": [time_optml(n, args.repeats, True) for n in args.sizes],
        "optml tpe batch8/pt": [time_optml(n, args.repeats, False, batch=8) for n in args.sizes],
        "(of which ctx passes)": [time_context(n, args.repeats) for n in args.sizes],
        "optml tpe, cached ctx": [
            time_optml(n, args.repeats, False, cached=True) for n in args.sizes
        ],
    }
    if not args.no_optuna:
        columns["optuna tpe"] = [time_optuna(n, args.repeats, False) for n in args.sizes]
        columns["optuna tpe mv"] = [time_optuna(n, args.repeats, True) for n in args.sizes]

    print(
        f"median CPU ms per proposed point, {DIMS} float dims, {args.repeats} repeats "
        "(x = ratio to the first size)"
    )
    for name, values in columns.items():
        cells = [f"{v * 1e3:8.2f} ({v / values[0]:5.1f}x)" for v in values]
        print(f"{name:>22}: " + "  ".join(cells))
    print(f"{'trials':>22}: " + "  ".join(f"{n:>16}" for n in args.sizes))


if __name__ == "__main__":
    main()
