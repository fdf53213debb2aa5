"""OptML's CMA-ES against Optuna's CmaEsSampler and the `cmaes` package on 10-40 dimensions.

The problems are ``HIGH_DIM`` in ``functions.py``: Rosenbrock, Levy, shifted Rastrigin and
Ackley, Schwefel, a rotated ill-conditioned ellipsoid, and ellipsoid / Levy problems with integer
and with categorical dimensions. Every optimiser runs sequentially (ask one point, evaluate,
tell), each problem with the same seeds, and the report judges OptML against each peer seed by
seed: on how many seeds OptML ends lower, higher or equal, with a two-sided sign test.

Optimisers:

- ``optml-cmaes``, and variants with options: ``optml-cmaes:sigma0=0.1667,restart=none``.
- ``optuna-cmaes``: Optuna's ``CmaEsSampler(seed=seed)`` with its defaults (no restarts: Optuna
  5 ignores ``restart_strategy``; categoricals drawn at random by its independent sampler).
- ``optuna-cmaes-margin``: the same with ``with_margin=True`` (CMA-ES with margin on the
  integer dimensions).
- ``cmaes-ipop``, ``cmaes-bipop``: the `cmaes` package's ``CMA`` in the unit cube (mean 0.5,
  sigma 1/6, as Optuna starts it), restarted on its ``should_stop()`` with a doubled population
  (IPOP) or alternating with small local runs (BIPOP, Hansen 2009): the restart strategies
  Optuna no longer offers. Integers and categoricals are decoded from the cube as OptML does.
- ``random``.

    .venv/bin/python benchmarks/bench_cmaes.py run --seeds 5 --budget 400
    .venv/bin/python benchmarks/bench_cmaes.py report --budget 400
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from adapters import Adapter, OptMLAdapter, _clean, _optuna_dist  # noqa: E402
from functions import HIGH_DIM, TestFunction  # noqa: E402

from optml.space import Space  # noqa: E402

OUT = Path(__file__).resolve().parent / "_out" / "cmaes"
DEFAULT = ["optml-cmaes", "optuna-cmaes", "optuna-cmaes-margin", "cmaes-ipop", "cmaes-bipop"]


def _variant(name: str) -> dict[str, Any]:
    """``optml-cmaes:sigma0=0.1667,restart=none`` -> the sampler spec."""
    spec: dict[str, Any] = {"name": "cmaes"}
    if ":" in name:
        for item in name.split(":", 1)[1].split(","):
            key, value = item.split("=")
            try:
                spec[key] = json.loads(value)
            except json.JSONDecodeError:
                spec[key] = value
    return spec


class OptunaCmaAdapter(Adapter):
    def __init__(self, space: Space, seed: int, budget: int, margin: bool) -> None:
        super().__init__(space, seed, budget)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.CmaEsSampler(
            seed=seed, with_margin=margin, warn_independent_sampling=False
        )
        self.study = optuna.create_study(sampler=sampler, direction="minimize")
        self.dists = {p.name: _optuna_dist(p) for p in space}
        self.pending: list[Any] = []

    def ask(self, n: int) -> list[dict[str, Any]]:
        self.pending = [self.study.ask(self.dists) for _ in range(n)]
        return [_clean(self.space, t.params) for t in self.pending]

    def tell(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        for trial, v in zip(self.pending, values, strict=True):
            self.study.tell(trial, float(v))


class PackageRestartAdapter(Adapter):
    """The `cmaes` package's CMA in the unit cube, restarted IPOP or BIPOP style."""

    def __init__(self, space: Space, seed: int, budget: int, strategy: str) -> None:
        super().__init__(space, seed, budget)
        self.strategy = strategy
        self.dim = len(space)
        self.rng = np.random.default_rng(seed)
        self.default_popsize = 4 + int(3 * math.log(self.dim))
        self.large_popsize = self.default_popsize
        self.large_evals = self.small_evals = self.run_evals = 0
        self.restarts = 0
        self.large = True
        self.told: list[tuple[np.ndarray, float]] = []
        self.asked: list[np.ndarray] = []
        self._start(self.default_popsize, 1 / 6)

    def _start(self, popsize: int, sigma: float) -> None:
        from cmaes import CMA

        mean = np.full(self.dim, 0.5) if self.restarts == 0 else self.rng.random(self.dim)
        self.opt = CMA(
            mean=mean,
            sigma=sigma,
            bounds=np.tile([0.0, 1.0], (self.dim, 1)),
            seed=int(self.rng.integers(2**31)),
            population_size=popsize,
        )

    def _restart(self) -> None:
        self.restarts += 1
        if self.large:
            self.large_evals += self.run_evals
        else:
            self.small_evals += self.run_evals
        self.run_evals = 0
        # BIPOP: a large-population run whenever those have used no more evaluations so far.
        self.large = self.strategy == "ipop" or self.large_evals <= self.small_evals
        if self.large:
            self.large_popsize *= 2
            self._start(self.large_popsize, 1 / 6)
        else:
            ratio = 0.5 * self.large_popsize / self.default_popsize
            popsize = int(self.default_popsize * ratio ** (self.rng.random() ** 2))
            sigma = (1 / 6) * 10 ** (-2 * self.rng.random())
            self._start(max(popsize, self.default_popsize), sigma)

    def ask(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            x = self.opt.ask()
            self.asked.append(x)
            out.append(_clean(self.space, self.space.decode(x)))
        return out

    def tell(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        for x, v in zip(self.asked, values, strict=True):
            self.told.append((x, float(v)))
            self.run_evals += 1
        self.asked = []
        if len(self.told) == self.opt.population_size:
            self.opt.tell(self.told)
            self.told = []
            if self.opt.should_stop():
                self._restart()


class RandomAdapter(Adapter):
    def __init__(self, space: Space, seed: int, budget: int) -> None:
        super().__init__(space, seed, budget)
        self.rng = np.random.default_rng(seed)

    def ask(self, n: int) -> list[dict[str, Any]]:
        return self.space.sample(self.rng, n)

    def tell(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        pass


def make(name: str, space: Space, seed: int, budget: int) -> Adapter:
    if name.startswith("optml-cmaes"):
        adapter = OptMLAdapter(space, seed, budget, _variant(name))
        adapter.label = name
        return adapter
    if name in ("optuna-cmaes", "optuna-cmaes-margin"):
        return OptunaCmaAdapter(space, seed, budget, margin=name.endswith("margin"))
    if name in ("cmaes-ipop", "cmaes-bipop"):
        return PackageRestartAdapter(space, seed, budget, name.split("-")[1])
    if name == "random":
        return RandomAdapter(space, seed, budget)
    raise SystemExit(f"unknown optimiser {name!r}")


def _dir(out: Path, budget: int, name: str, fn: str) -> Path:
    return out / f"n{budget}" / name.replace(":", "_").replace("=", "-") / fn


def cmd_run(args: argparse.Namespace) -> None:
    functions = args.functions or sorted(HIGH_DIM)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for fn in functions:
            f = HIGH_DIM[fn]
            for name in args.optimizers:
                path = _dir(args.out, args.budget, name, fn) / f"seed{seed}.json"
                if path.exists() and not args.force:
                    continue
                start = time.process_time()
                values = make(name, f.space, seed, args.budget).run(f, args.budget, 1)
                seconds = time.process_time() - start
                record = {"optimizer": name, "function": fn, "seed": seed, "values": values}
                record["cpu_seconds"] = seconds
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record))
                print(
                    f"{name:28s} {fn:20s} seed {seed} regret {f.regret(min(values)):.4g} "
                    f"({seconds:.1f} s CPU)",
                    flush=True,
                )


def _records(out: Path, budget: int, name: str, fn: str) -> list[dict[str, Any]]:
    paths = sorted(_dir(out, budget, name, fn).glob("seed*.json"))
    return [json.loads(p.read_text()) for p in paths]


def _same(a: float, b: float) -> bool:
    """Equal to 3 significant digits, or both below 1e-4 (solved)."""
    if a < 1e-4 and b < 1e-4:
        return True
    return float(f"{a:.3g}") == float(f"{b:.3g}")


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test p-value, ties dropped.

    >>> round(sign_test(5, 0), 4)
    0.0625
    """
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def cmd_report(args: argparse.Namespace) -> None:
    functions = args.functions or sorted(HIGH_DIM)
    names = args.optimizers
    ours = args.ours or names[0]
    at = args.at or args.budget
    table: dict[str, dict[str, dict[int, float]]] = {}
    cpu: dict[str, list[float]] = {}
    for n in names:
        table[n] = {}
        for fn in functions:
            records = _records(args.out, args.budget, n, fn)
            f: TestFunction = HIGH_DIM[fn]
            if args.seeds is not None:
                records = [r for r in records if r["seed"] < args.seeds]
            table[n][fn] = {r["seed"]: f.regret(min(r["values"][:at])) for r in records}
            cpu.setdefault(n, []).extend(r["cpu_seconds"] for r in records)
    print(f"Median regret after {at} evaluations:\n")
    print("| problem | d | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for fn in functions:
        cells = [
            f"{np.median(list(table[n][fn].values())):.3g}" if table[n][fn] else "-" for n in names
        ]
        print(f"| {fn} | {HIGH_DIM[fn].dim} | " + " | ".join(cells) + " |")
    print(f"\n{ours} against each, seed by seed: wins-losses-ties (sign-test p)\n")
    print("| problem | " + " | ".join(n for n in names if n != ours) + " |")
    print("|---|" + "---|" * (len(names) - 1))
    totals = {n: [0, 0] for n in names}
    for fn in functions:
        cells = []
        for peer in names:
            if peer == ours:
                continue
            a, b = table[ours][fn], table[peer][fn]
            seeds = sorted(set(a) & set(b))
            w = sum(1 for s in seeds if not _same(a[s], b[s]) and a[s] < b[s])
            lo = sum(1 for s in seeds if not _same(a[s], b[s]) and a[s] > b[s])
            totals[peer][0] += w > lo
            totals[peer][1] += lo > w
            cells.append(f"{w}-{lo}-{len(seeds) - w - lo} ({sign_test(w, lo):.2f})")
        print(f"| {fn} | " + " | ".join(cells) + " |")
    won = " | ".join(f"{totals[n][0]} won, {totals[n][1]} lost" for n in names if n != ours)
    print(f"| problems | {won} |")
    print(
        "\nCPU seconds per run (median): "
        + ", ".join(f"{n} {np.median(v):.2f}" for n, v in cpu.items() if v)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("run", "report"):
        p = sub.add_parser(command)
        p.add_argument("--optimizers", nargs="+", default=DEFAULT)
        p.add_argument("--functions", nargs="+", choices=sorted(HIGH_DIM))
        p.add_argument("--budget", type=int, default=400)
        p.add_argument("--out", type=Path, default=OUT)
        if command == "run":
            p.add_argument("--seeds", type=int, default=5)
            p.add_argument("--first-seed", type=int, default=0)
            p.add_argument("--force", action="store_true")
        else:
            p.add_argument("--ours", help="the optimiser judged against the others (first)")
            p.add_argument("--at", type=int, help="evaluations to judge after (the budget)")
            p.add_argument("--seeds", type=int, help="only seeds 0 .. SEEDS-1 (default: all)")
    args = parser.parse_args()
    cmd_run(args) if args.command == "run" else cmd_report(args)


if __name__ == "__main__":
    main()
