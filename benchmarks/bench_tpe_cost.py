"""Cost of one TPE proposal, OptML's against Optuna's, on 2-, 5- and 10-D boxes and a mixed space.

Both run with their defaults (OptML's TPE is independent per parameter; Optuna 5.0's TPE is
multivariate for one objective). Per (space, history size) and repetition, each sampler gets a
fresh instance with the same history of N finished trials (uniform random points valued by the
space's function; added untimed), proposes once and is told the value (untimed: the steady
state, with each library's per-trial caches warm), gets one more finished trial, then proposes
``--asks`` times in a row, each proposal timed and then told. The peers alternate within each
repetition, so that a change of load hits both alike.

What is timed (``--via``):

- ``study`` (the default): a whole ask through each library's study on in-memory storage, the
  same thing for both. OptML: ``Study.ask(heartbeat=False)`` on ``memory://`` (it re-reads what
  changed in storage, builds the ``SearchContext``, positions the proposal's random stream,
  proposes, and reserves the new trial in storage; no heartbeat thread, as Optuna has none);
  Optuna: ``study.ask(distributions)`` on its ``InMemoryStorage`` (it creates the trial in
  storage, proposes, and writes each parameter to storage).
- ``sampler``: OptML's sampler alone, through the benchmark adapter (``adapters.py``: a fresh
  ``SearchContext`` over the adapter's trials with the run's ``TrialMemo``, a generator seeded
  per request, then ``TPESampler.propose``), against Optuna's adapter (``study.ask`` as above,
  plus the adapter's cast of the proposal). This leaves OptML's storage write out and keeps
  Optuna's in.

Times are CPU seconds of this process (``time.process_time``: other load on a shared machine
disturbs them less than wall time; both run single-threaded), with the garbage collector off
during the timed call (as ``timeit`` does). Prints per space and size the median milliseconds
per proposal and the ratio OptML / Optuna; ``--json`` writes them too.

    .venv/bin/python benchmarks/bench_tpe_cost.py [--spaces levy2 levy5 levy10 mixed]
        [--sizes 20 100 500] [--reps 7] [--asks 5] [--via study|sampler]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from adapters import make_adapter  # noqa: E402
from functions import _box, _levy  # noqa: E402

from optml.space import Categorical, Float, Int, Space  # noqa: E402

PEERS = ("optml-tpe", "optuna-tpe")


def _mixed(p: Mapping[str, Any]) -> float:
    return (
        (p["x0"] - 1.0) ** 2
        + (p["x1"] + 2.0) ** 2
        + (math.log10(p["lr"]) + 3.0) ** 2
        + (math.log10(p["wd"]) + 5.0) ** 2 / 4
        + (math.log2(p["units"]) - 6.0) ** 2 / 4
        + (p["depth"] - 7) ** 2 / 10
        + {"relu": 0.0, "tanh": 0.3, "gelu": 0.1}[p["act"]]
        + {"adam": 0.0, "sgd": 0.5, "rmsprop": 0.2, "adagrad": 0.8}[p["opt"]]
    )


MIXED = Space(
    [
        Float("x0", -5.0, 5.0),
        Float("x1", -5.0, 5.0),
        Float("lr", 1e-5, 1e-1, log=True),
        Float("wd", 1e-8, 1e-2, log=True),
        Int("units", 8, 512, log=True),
        Int("depth", 1, 12),
        Categorical("act", ("relu", "tanh", "gelu")),
        Categorical("opt", ("adam", "sgd", "rmsprop", "adagrad")),
    ]
)


def space_of(name: str) -> tuple[Space, Callable[[Mapping[str, Any]], float]]:
    if name == "mixed":
        return MIXED, _mixed
    d = int(name.removeprefix("levy"))
    return _box(d, -10.0, 10.0), _levy(d)


class _StudyPeer:
    """Ask and tell through a library's own study on in-memory storage (``--via study``)."""

    def __init__(self, name: str, space: Space, seed: int) -> None:
        self.space = space
        if name == "optml-tpe":
            import optml

            self.study: Any = optml.create_study(
                space=space, sampler="tpe", storage="memory://", seed=seed
            )
            self.optml = True
        else:
            self.adapter: Any = make_adapter(name, space, seed=seed, budget=0)
            self.study, self.dists = self.adapter.study, self.adapter.dists
            self.optml = False

    def add_history(self, configs: list[dict[str, Any]], values: list[float]) -> None:
        if self.optml:
            for c, v in zip(configs, values, strict=True):
                self.study.add_trial(c, v)
        else:
            self.adapter.add_history(configs, values)

    def ask(self) -> Any:
        if self.optml:
            return self.study.ask(heartbeat=False)
        return self.study.ask(self.dists)

    def params(self, trial: Any) -> dict[str, Any]:
        return dict(trial.params)

    def tell(self, trial: Any, value: float) -> None:
        self.study.tell(trial, value)


class _SamplerPeer:
    """Ask and tell through the benchmark adapters (``--via sampler``)."""

    def __init__(self, name: str, space: Space, seed: int, budget: int) -> None:
        self.adapter: Any = make_adapter(name, space, seed=seed, budget=budget)

    def add_history(self, configs: list[dict[str, Any]], values: list[float]) -> None:
        self.adapter.add_history(configs, values)

    def ask(self) -> Any:
        out = self.adapter.ask(1)
        assert len(out) == 1
        return out

    def params(self, asked: Any) -> dict[str, Any]:
        return dict(asked[0])

    def tell(self, asked: Any, value: float) -> None:
        self.adapter.tell(asked, [value])


def time_run(name: str, space_name: str, n: int, rep: int, asks: int, via: str) -> list[float]:
    """CPU seconds of ``asks`` consecutive proposals after ``n`` finished trials."""
    space, f = space_of(space_name)
    configs = space.sample(np.random.default_rng([rep, n, 7]), n)
    values = [float(f(c)) for c in configs]
    peer: Any = (
        _StudyPeer(name, space, rep)
        if via == "study"
        else _SamplerPeer(name, space, rep, n + asks + 10)
    )
    peer.add_history(configs[:-1], values[:-1])
    warm = peer.ask()
    peer.tell(warm, float(f(peer.params(warm))))
    peer.add_history(configs[-1:], values[-1:])
    times = []
    for _ in range(asks):
        gc.disable()
        try:
            start = time.process_time()
            asked = peer.ask()
            elapsed = time.process_time() - start
        finally:
            gc.enable()
        peer.tell(asked, float(f(peer.params(asked))))
        times.append(elapsed)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["levy2", "levy5", "levy10", "mixed"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--asks", type=int, default=5)
    parser.add_argument(
        "--via",
        choices=("study", "sampler"),
        default="study",
        help="time a whole ask through each study (default) or OptML's sampler alone",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    for name in PEERS:  # warm-up: imports, first-call costs
        time_run(name, "levy2", 20, 999, 1, args.via)
    results: dict[str, dict[str, dict[str, float]]] = {}
    print(
        f"median CPU ms per proposal ({args.reps} reps x {args.asks} asks, via {args.via}); "
        "ratio = optml / optuna"
    )
    print(f"{'space':>8} {'trials':>6} {'optml-tpe':>10} {'optuna-tpe':>10} {'ratio':>6}")
    for space_name in args.spaces:
        for n in args.sizes:
            times: dict[str, list[float]] = {name: [] for name in PEERS}
            for rep in range(args.reps):
                for name in PEERS if rep % 2 == 0 else PEERS[::-1]:
                    times[name] += time_run(name, space_name, n, rep, args.asks, args.via)
            med = {name: statistics.median(v) for name, v in times.items()}
            ratio = med["optml-tpe"] / med["optuna-tpe"]
            results.setdefault(space_name, {})[str(n)] = {**med, "ratio": ratio}
            print(
                f"{space_name:>8} {n:6d} {med['optml-tpe'] * 1e3:10.2f} "
                f"{med['optuna-tpe'] * 1e3:10.2f} {ratio:6.3f}",
                flush=True,
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
