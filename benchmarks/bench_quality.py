"""Optimisation quality of OptML's samplers against peer libraries on standard test functions.

Every optimiser runs the same functions, seeds and budget in the same run. Each (mode, optimiser,
function, seed) run is written as soon as it ends to
``benchmarks/_out/quality/b{batch}_n{budget}/{optimiser}/{function}/seed{seed}.json``, so partial
runs are useful and a rerun skips what is done. ``report`` renders Markdown tables from those files.

    python benchmarks/bench_quality.py run --quick
    python benchmarks/bench_quality.py run --seeds 10 --batch 1 4
    python benchmarks/bench_quality.py run --optimizers optuna-gp skopt-gp --seeds 5
    python benchmarks/bench_quality.py report > benchmarks/_out/quality.md

Measured: simple regret (best value found - known optimum) after 20, 40 and 80 evaluations;
per function the median over seeds; per optimiser the mean rank over functions (ranked by median
regret, ties shared) and, for OptML's best sampler, on how many functions it beats each peer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapters import OPTML, OPTML_PREFIX, PEERS, available, canonical, make_adapter  # noqa: E402
from functions import FUNCTIONS, HOLDOUT, TestFunction, get_function  # noqa: E402

OUT = Path(__file__).resolve().parent / "_out" / "quality"
CHECKPOINTS = (20, 40, 80)
# Median regrets below this count as "solved" (equal) when ranking and counting wins: the test
# functions' values range over units to thousands, so 1e-5 against 3e-5 is no real difference.
SOLVED = 1e-4


def _key(regret: float) -> float:
    """The value that ranks and comparisons use: 0 when solved, else 3 significant digits."""
    return 0.0 if regret < SOLVED else float(f"{regret:.3g}")


DEFAULT_OPTIMIZERS = [OPTML_PREFIX + s for s in OPTML] + PEERS


def _path(out: Path, batch: int, budget: int, optimizer: str, function: str, seed: int) -> Path:
    return out / f"b{batch}_n{budget}" / optimizer / function / f"seed{seed}.json"


def run_one(task: dict[str, Any]) -> str:
    """Run one optimiser on one function with one seed; write its JSON. Returns a log line."""
    path = Path(task["path"])
    f = get_function(task["function"])
    start = time.perf_counter()
    try:
        adapter = make_adapter(
            task["optimizer"],
            f.space,
            task["seed"],
            task["budget"],
            mango_domain_size=task.get("mango_domain_size"),
        )
        values = adapter.run(f, task["budget"], task["batch"])
    except Exception as exc:  # record and go on: one broken optimiser must not stop the rest
        return (
            f"FAILED {task['optimizer']} {task['function']} seed {task['seed']}: "
            f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
        )
    seconds = time.perf_counter() - start
    best = min(values)
    record = {
        **{k: v for k, v in task.items() if k != "path"},
        "values": values,
        "seconds": seconds,
        "regret": f.regret(best),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    return (
        f"{task['optimizer']:14s} b{task['batch']} {task['function']:16s} seed {task['seed']:2d} "
        f"regret {f.regret(best):.4g} ({seconds:.1f}s)"
    )


def cmd_run(args: argparse.Namespace) -> None:
    functions = args.functions or sorted(FUNCTIONS)
    optimizers = [canonical(o) for o in (args.optimizers or DEFAULT_OPTIMIZERS)]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    budget, batches = args.budget, args.batch
    if args.quick:
        functions = args.functions or ["branin", "hartmann3", "mixed_cat5"]
        seeds = seeds[:2] if args.seeds == parser_defaults["seeds"] else seeds
        budget = min(budget, 30)
    ok = []
    for o in optimizers:
        why = available(o)
        if why:
            print(f"skip {o}: {why}", flush=True)
        else:
            ok.append(o)
    tasks = []
    for seed in seeds:  # seeds outermost: an interrupted run still covers every function
        for batch in batches:
            for fn in functions:
                for o in ok:
                    path = _path(args.out, batch, budget, o, fn, seed)
                    if path.exists() and not args.force:
                        continue
                    tasks.append(
                        {
                            "optimizer": o,
                            "function": fn,
                            "seed": seed,
                            "batch": batch,
                            "budget": budget,
                            "path": str(path),
                            "mango_domain_size": args.mango_domain_size,
                        }
                    )
    print(f"{len(tasks)} runs to do", flush=True)
    if args.jobs > 1:
        from multiprocessing import Pool

        with Pool(args.jobs) as pool:
            for line in pool.imap_unordered(run_one, tasks):
                print(line, flush=True)
    else:
        for task in tasks:
            print(run_one(task), flush=True)


# -- report ---------------------------------------------------------------------------------


Runs = dict[int, list[float]]  # seed -> values in evaluation order


def load(
    out: Path, batch: int, budget: int, seeds: int | None = None
) -> dict[str, dict[str, Runs]]:
    """optimizer -> function -> seed -> value trajectory (only seeds < ``seeds``)."""
    data: dict[str, dict[str, Runs]] = {}
    root = out / f"b{batch}_n{budget}"
    for path in sorted(root.glob("*/*/seed*.json")):
        record = json.loads(path.read_text())
        if seeds is not None and record["seed"] >= seeds:
            continue
        runs = data.setdefault(record["optimizer"], {}).setdefault(record["function"], {})
        runs[record["seed"]] = record["values"]
    return data


def _median_regret(fn: str, runs: Runs, at: int) -> float:
    import numpy as np

    f = get_function(fn)
    return float(np.median([f.regret(min(v[:at])) for v in runs.values()]))


def paired(fn: str, a: Runs, b: Runs, at: int) -> tuple[int, int, int]:
    """Seeds (run by both) on which ``a`` ends with a lower regret than ``b``, a higher one,
    and the same (both solved, or equal to 3 digits), after ``at`` evaluations.

    >>> paired("branin", {0: [5.0], 1: [0.39789], 2: [0.39789]}, {0: [6.0], 1: [0.3979], 2: [9.0]}, 1)
    (2, 0, 1)
    """
    f = get_function(fn)
    wins = losses = ties = 0
    for seed in sorted(set(a) & set(b)):
        ra, rb = _key(f.regret(min(a[seed][:at]))), _key(f.regret(min(b[seed][:at])))
        wins, losses, ties = wins + (ra < rb), losses + (ra > rb), ties + (ra == rb)
    return wins, losses, ties


def summarise(
    data: dict[str, dict[str, Runs]],
    at: int,
    optimizers: list[str] | None = None,
    min_seeds: int = 1,
    suite: Mapping[str, TestFunction] = FUNCTIONS,
) -> dict[str, Any]:
    """Median regrets on the functions of ``suite`` every listed optimiser ran, mean ranks,
    win counts."""
    import numpy as np
    from scipy.stats import rankdata

    optimizers = optimizers or sorted(data)
    functions = sorted(
        fn for fn in suite if all(len(data.get(o, {}).get(fn, [])) >= min_seeds for o in optimizers)
    )
    med = {o: {fn: _median_regret(fn, data[o][fn], at) for fn in functions} for o in optimizers}
    ranks: dict[str, list[float]] = {o: [] for o in optimizers}
    for fn in functions:
        r = rankdata([_key(med[o][fn]) for o in optimizers], method="average")
        for o, ri in zip(optimizers, r, strict=True):
            ranks[o].append(float(ri))
    mean_rank = {o: float(np.mean(ranks[o])) if functions else float("nan") for o in optimizers}
    return {"functions": functions, "median": med, "mean_rank": mean_rank, "ranks": ranks}


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def _seeds(data: dict[str, dict[str, Runs]], o: str) -> str:
    counts = sorted({len(v) for v in data.get(o, {}).values()})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def render(
    out: Path,
    budget: int,
    batches: list[int],
    min_seeds: int,
    only: list[str] | None = None,
    seeds: int | None = None,
    suite: Mapping[str, TestFunction] = FUNCTIONS,
) -> str:
    lines: list[str] = []
    for batch in batches:
        data = load(out, batch, budget, seeds)
        if only:
            data = {o: v for o, v in data.items() if o in {canonical(x) for x in only}}
        if not data:
            continue
        mode = "sequential" if batch == 1 else f"batches of {batch}"
        optimizers = sorted(data, key=lambda o: (not o.startswith(OPTML_PREFIX), o))
        final = summarise(data, budget, optimizers, min_seeds, suite)
        functions = final["functions"]
        lines += [f"### {mode.capitalize()} ({budget} evaluations)", ""]
        if not functions:
            lines += ["(no function has been run by every optimiser yet)", ""]
            continue
        seed_counts = ", ".join(f"{o} {_seeds(data, o)}" for o in optimizers)
        lines += [f"Seeds per optimiser: {seed_counts}.", ""]
        lines += [
            f"Median simple regret after {budget} evaluations (lower is better; best in bold):",
            "",
        ]
        lines.append("| function | " + " | ".join(optimizers) + " |")
        lines.append("|---|" + "---:|" * len(optimizers))
        for fn in functions:
            vals = [final["median"][o][fn] for o in optimizers]
            best = min(_key(v) for v in vals)
            cells = [f"**{_fmt(v)}**" if _key(v) == best else _fmt(v) for v in vals]
            lines.append(f"| {fn} | " + " | ".join(cells) + " |")
        lines.append("")
        checks = [c for c in CHECKPOINTS if c < budget] + [budget]
        lines += [
            "Mean rank over functions (1 = best), by median regret after "
            f"{' / '.join(map(str, checks))} evaluations:",
            "",
        ]
        lines.append("| optimiser | " + " | ".join(f"@{c}" for c in checks) + " |")
        lines.append("|---|" + "---:|" * len(checks))
        per_at = {c: summarise(data, c, optimizers, min_seeds, suite) for c in checks}
        for o in sorted(optimizers, key=lambda o: final["mean_rank"][o]):
            lines.append(
                f"| {o} | " + " | ".join(f"{per_at[c]['mean_rank'][o]:.2f}" for c in per_at) + " |"
            )
        lines.append("")
        ours = [o for o in optimizers if o.startswith(OPTML_PREFIX)]
        peers = [o for o in optimizers if not o.startswith(OPTML_PREFIX)]
        if ours and peers:
            best = min(ours, key=lambda o: final["mean_rank"][o])
            lines += [
                f"OptML's best sampler here: **{best}** (mean rank "
                f"{final['mean_rank'][best]:.2f}). Functions where it has a lower median "
                f"regret after {budget} evaluations than each peer (wins / ties / losses; "
                "losses listed):",
                "",
            ]
            lines.append("| peer | beats on | wins | ties | losses | lost on |")
            lines.append("|---|---:|---:|---:|---:|---|")
            for p in peers:
                w = t = 0
                lost = []
                for fn in functions:
                    a = _key(final["median"][best][fn])
                    b = _key(final["median"][p][fn])
                    if a < b:
                        w += 1
                    elif a == b:
                        t += 1
                    else:
                        lost.append(fn)
                n = len(functions)
                lines.append(
                    f"| {p} | {100 * w / n:.0f}% | {w} | {t} | {len(lost)} | "
                    f"{', '.join(lost) or '-'} |"
                )
            lines.append("")
            lines += _paired_table(data, best, peers, functions, budget)
        # Regret at the earlier checkpoints, per function, for the record.
        for c in checks[:-1]:
            s = per_at[c]
            lines += [f"<details><summary>Median regret after {c} evaluations</summary>", ""]
            lines.append("| function | " + " | ".join(optimizers) + " |")
            lines.append("|---|" + "---:|" * len(optimizers))
            for fn in functions:
                lines.append(
                    f"| {fn} | " + " | ".join(_fmt(s["median"][o][fn]) for o in optimizers) + " |"
                )
            lines += ["", "</details>", ""]
        secs = []
        for o in optimizers:
            total = sum(
                json.loads(p.read_text())["seconds"]
                for p in (out / f"b{batch}_n{budget}" / o).glob("*/seed*.json")
            )
            runs = sum(len(v) for v in data[o].values())
            secs.append(f"{o} {total / max(runs, 1):.1f}")
        lines += [
            "Wall seconds per run of " + str(budget) + " evaluations (shared, loaded "
            "machine; indicative only): " + ", ".join(secs) + ".",
            "",
        ]
    return "\n".join(lines)


def _paired_table(
    data: dict[str, dict[str, Runs]], best: str, peers: list[str], functions: list[str], at: int
) -> list[str]:
    """Per function and peer, seed by seed: how often ``best`` ends lower / higher.

    Medians of a few seeds flip on one run; the per-seed counts show how settled a win or a
    loss is. A dagger marks a count that a two-sided sign test over the seeds that differ
    finds unlikely by chance (p < 0.05).
    """
    from scipy.stats import binomtest

    lines = [
        f"Seed by seed (the same seeds for both): seeds on which {best} ends with a lower "
        "regret than the peer - seeds on which it ends higher (both solved or equal: "
        "neither); † = a two-sided sign test gives p < 0.05:",
        "",
        "| function | " + " | ".join(peers) + " |",
        "|---|" + "---:|" * len(peers),
    ]
    for fn in functions:
        cells = []
        for p in peers:
            w, lo, _ = paired(fn, data[best][fn], data[p][fn], at)
            sure = w + lo > 0 and binomtest(w, w + lo).pvalue < 0.05
            cells.append(f"{w}-{lo}{' †' if sure else ''}")
        lines.append(f"| {fn} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def cmd_report(args: argparse.Namespace) -> None:
    suite = HOLDOUT if args.holdout else FUNCTIONS
    print(
        render(
            args.out, args.budget, args.batch, args.min_seeds, args.optimizers, args.seeds, suite
        )
    )


parser_defaults = {"seeds": 10}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmark (resumable)")
    run.add_argument(
        "--functions",
        nargs="*",
        choices=sorted(FUNCTIONS) + sorted(HOLDOUT),
        metavar="NAME",
        help=f"default: all of {', '.join(sorted(FUNCTIONS))}; held out of the suite (not run "
        f"unless named): {', '.join(sorted(HOLDOUT))}",
    )
    run.add_argument(
        "--optimizers",
        nargs="*",
        metavar="NAME",
        help=f"OptML sampler names and/or peers; default: {' '.join(DEFAULT_OPTIMIZERS)}",
    )
    run.add_argument("--seeds", type=int, default=parser_defaults["seeds"], help="number of seeds")
    run.add_argument("--first-seed", type=int, default=0)
    run.add_argument("--budget", type=int, default=80, help="evaluations per run")
    run.add_argument(
        "--batch", type=int, nargs="+", default=[1, 4], help="batch sizes to run (1 = sequential)"
    )
    run.add_argument("--jobs", type=int, default=1, help="worker processes")
    run.add_argument(
        "--quick", action="store_true", help="3 functions, 2 seeds, 30 evaluations (a smoke test)"
    )
    run.add_argument("--force", action="store_true", help="rerun runs already on disk")
    run.add_argument(
        "--mango-domain-size",
        type=int,
        default=5000,
        help="random points Mango scores per proposal (its default is 50,000 to "
        "500,000, minutes per run); 0 = Mango's default",
    )
    run.add_argument("--out", type=Path, default=OUT)
    run.set_defaults(fn=cmd_run)
    rep = sub.add_parser("report", help="print Markdown tables of what is on disk")
    rep.add_argument("--budget", type=int, default=80)
    rep.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    rep.add_argument(
        "--min-seeds",
        type=int,
        default=1,
        help="only functions that every optimiser ran with this many seeds",
    )
    rep.add_argument("--optimizers", nargs="*", metavar="NAME", help="only these (default: all)")
    rep.add_argument("--seeds", type=int, help="only seeds 0..N-1 (same seeds for everyone)")
    rep.add_argument(
        "--holdout", action="store_true", help="report the held-out functions instead of the suite"
    )
    rep.add_argument("--out", type=Path, default=OUT)
    rep.set_defaults(fn=cmd_report)
    args = parser.parse_args(argv)
    if getattr(args, "mango_domain_size", None) == 0:
        args.mango_domain_size = None
    args.fn(args)


if __name__ == "__main__":
    main()
