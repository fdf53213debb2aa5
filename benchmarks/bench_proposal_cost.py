"""Time to propose the next point given 20, 50, 100 and 500 finished trials, per sampler and peer.

The history is the same for everyone: uniform random points of a 5-D box valued by
Styblinski-Tang. Each repetition builds a fresh optimiser, hands it the history (not timed),
lets it propose once and tells it the value (not timed: the steady state of a running study,
caches warm), adds the last trial of the history and times the next proposal; we report the
median over repetitions, after one untimed warm-up (imports, compilation). The garbage
collector is off during each timed proposal, as ``timeit`` does: a full collection with every
peer's modules loaded takes milliseconds, and would otherwise land in whichever proposal it
happens to. What "one proposal" covers per library:

- OptML: ``sampler.propose(ctx, 1, rng)``.
- Optuna: ``study.ask(distributions)`` (history added with ``add_trials``).
- Hyperopt: one ``tpe.suggest`` call for one new id.
- scikit-optimize: ``tell`` of the last finished point + ``ask`` (its ``tell`` fits the model
  and optimises the acquisition; ``ask`` alone returns a cached point).
- Mango: from ``Tuner.minimize`` with the history as ``initial_custom`` to the first call of the
  objective (random domain draw, GP fit, UCB over the domain); Mango's random exploration is
  switched off so that the GP proposes. Mango's default domain here is 500,000 points.

    python benchmarks/bench_proposal_cost.py run --quick
    python benchmarks/bench_proposal_cost.py run --optimizers gp optuna-gp --sizes 100 --reps 7
    python benchmarks/bench_proposal_cost.py report
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from adapters import (  # noqa: E402
    OPTML,
    OPTML_PREFIX,
    PEERS,
    MangoAdapter,
    SkoptAdapter,
    available,
    canonical,
    make_adapter,
)
from functions import _box, _styblinski_tang  # noqa: E402

OUT = Path(__file__).resolve().parent / "_out" / "cost"
SIZES = (20, 50, 100, 500)
DIM = 5


def history(n: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[float]]:
    space = _box(DIM, -5, 5)
    f = _styblinski_tang(DIM)
    # A stream of its own: the OptML adapter seeds its proposals with [seed, n_trials], and a
    # random sampler drawing the history's own points again would find nothing new.
    configs = space.sample(np.random.default_rng([seed, n, 1]), n)
    return configs, [float(f(c)) for c in configs]


@contextmanager
def _no_gc() -> Iterator[None]:
    """Keep the garbage collector off while timing (as ``timeit`` does).

    With torch, Optuna and the rest imported, one full collection walks millions of objects
    and takes milliseconds; whichever proposal it happens to land in would pay for all. (Not
    collecting first: a collection right before evicts the CPU caches, and the proposal after
    it measured twice as slow for OptML's TPE.)
    """
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def time_one(name: str, n: int, rep: int, mango_domain_size: int | None) -> float:
    space = _box(DIM, -5, 5)
    configs, values = history(n)
    adapter = make_adapter(
        name, space, seed=rep, budget=n + 10, mango_domain_size=mango_domain_size
    )
    with _no_gc():  # the untimed set-up below is not worth a second switch
        return _time_proposal(name, adapter, configs, values)


def _time_proposal(name: str, adapter: Any, configs: list[Any], values: list[float]) -> float:
    if isinstance(adapter, MangoAdapter):
        return adapter.propose_time(configs, values)
    if isinstance(adapter, SkoptAdapter):
        adapter.add_history(configs[:-1], values[:-1])
        start = time.perf_counter()
        adapter.tell(configs[-1:], values[-1:])
        adapter.ask(1)
        return time.perf_counter() - start
    # Steady state, as in a running study: the optimiser has already proposed once and been
    # told the result (warm caches: OptML's per-trial memo, Optuna's storage cache), then one
    # more finished trial arrives and the next proposal is timed. The history is N trials.
    adapter.add_history(configs[:-2], values[:-2])  # type: ignore[attr-defined]
    warm = adapter.ask(1)
    adapter.tell(warm, [float(_styblinski_tang(DIM)(warm[0]))])
    adapter.add_history(configs[-1:], values[-1:])  # type: ignore[attr-defined]
    start = time.perf_counter()
    out = adapter.ask(1)
    elapsed = time.perf_counter() - start
    assert len(out) == 1, f"{name} proposed {len(out)} points"
    return elapsed


def cmd_run(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    names = [
        canonical(o)
        for o in (
            args.optimizers
            or [OPTML_PREFIX + s for s in OPTML if s not in ("random", "sobol")] + PEERS
        )
    ]
    sizes = args.sizes or ([20, 100] if args.quick else list(SIZES))
    reps = 2 if args.quick else args.reps
    ready = []
    for name in names:
        why = available(name)
        if why:
            print(f"skip {name}: {why}", flush=True)
            continue
        try:
            time_one(name, sizes[0], 999, args.mango_domain_size)  # warm-up: imports, JIT
        except Exception as exc:
            print(f"FAILED {name}: {type(exc).__name__}: {exc}", flush=True)
            continue
        ready.append(name)

    def label(name: str) -> str:
        if name == "mango-gp" and args.mango_domain_size:
            return f"mango-gp(domain {args.mango_domain_size})"
        return name

    records = {}
    for name in ready:
        path = args.out / f"{label(name)}.json"
        records[name] = (
            json.loads(path.read_text())
            if path.exists()
            else {"optimizer": label(name), "times": {}}
        )
    for n in sizes:
        # Repetitions interleave the optimisers, so that a change of load on the (shared) machine
        # hits them all alike and the ratios stay fair.
        times: dict[str, list[float]] = {name: [] for name in ready}
        for rep in range(reps):
            for name in ready:
                if times[name] and times[name][-1] > args.max_seconds:
                    continue  # too slow to repeat here: what we have is enough
                times[name].append(time_one(name, n, rep, args.mango_domain_size))
        for name in ready:
            records[name]["times"][str(n)] = times[name]
            print(
                f"{label(name):28s} n={n:4d} median {statistics.median(times[name]) * 1000:9.1f} "
                f"ms ({len(times[name])} reps)",
                flush=True,
            )
            (args.out / f"{label(name)}.json").write_text(json.dumps(records[name]))


def render(out: Path) -> str:
    records = {}
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        records[r["optimizer"]] = {int(k): statistics.median(v) for k, v in r["times"].items()}
    if not records:
        return "(no proposal-cost measurements yet)"
    sizes = sorted({n for r in records.values() for n in r})
    names = sorted(records, key=lambda o: (not o.startswith(OPTML_PREFIX), o))
    lines = [
        f"Median seconds to propose one point in {DIM} dimensions, by number of finished trials:",
        "",
    ]
    lines.append("| optimiser | " + " | ".join(f"n={n}" for n in sizes) + " |")
    lines.append("|---|" + "---:|" * len(sizes))
    for o in names:
        cells = [f"{records[o][n]:.4f}" if n in records[o] else "-" for n in sizes]
        lines.append(f"| {o} | " + " | ".join(cells) + " |")
    lines.append("")
    pairs = [
        ("optml-gp", "optuna-gp"),
        ("optml-tpe", "optuna-tpe"),
        ("optml-gp", "mango-gp"),
        ("optml-gp", "skopt-gp"),
        ("optml-tpe", "hyperopt-tpe"),
    ]
    rows = []
    for a, b in pairs:
        if a in records and b in records:
            cells = [
                f"{records[a][n] / records[b][n]:.3f}"
                if n in records[a] and n in records[b]
                else "-"
                for n in sizes
            ]
            rows.append(f"| {a} / {b} | " + " | ".join(cells) + " |")
    if rows:
        lines += ["Time ratios (ours / peer; below 1 = ours faster):", ""]
        lines.append("| ratio | " + " | ".join(f"n={n}" for n in sizes) + " |")
        lines.append("|---|" + "---:|" * len(sizes))
        lines += rows
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--optimizers", nargs="*", metavar="NAME")
    run.add_argument("--sizes", nargs="*", type=int, help=f"default {SIZES}")
    run.add_argument("--reps", type=int, default=5)
    run.add_argument("--quick", action="store_true", help="n = 20, 100; 2 repetitions")
    run.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="stop repeating a size after a proposal slower than this",
    )
    run.add_argument(
        "--mango-domain-size",
        type=int,
        default=None,
        help="Mango's domain size (default: Mango's own)",
    )
    run.add_argument("--out", type=Path, default=OUT)
    run.set_defaults(fn=cmd_run)
    rep = sub.add_parser("report")
    rep.add_argument("--out", type=Path, default=OUT)
    rep.set_defaults(fn=lambda a: print(render(a.out)))
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
