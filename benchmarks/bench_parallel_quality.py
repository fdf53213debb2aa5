"""Optimisation quality with many trials in flight: 16 or 64 pending, told as they finish.

A simulated cluster of ``P`` slots: the optimiser proposes ``P`` points at once, then each
time a trial finishes its value is told and one new point is asked for, until ``--budget``
points have been proposed; the run ends when the last one finishes. Trial ``k`` (in proposal
order) lasts a time drawn from a log-normal distribution (median 1, sigma ``--spread``) from a
stream seeded by the run's seed, the same for every optimiser, so trials finish in another
order than they were proposed. The simulated clock also advances by the CPU time each proposal
takes (the controller proposes between events, one at a time), so a slow sampler finishes
later; the trial durations are in units of ``--duration`` seconds (default 10, a short
training run).

Measured, per (pending, optimiser, function, seed), written as it ends to
``benchmarks/_out/parallel/p{P}_n{budget}/{optimiser}/{function}/seed{k}.json``:

- regret (best value - known optimum) against evaluations, in the order they finished;
- regret against simulated wall time: at the times a zero-cost optimiser would have finished
  half and all of the budget (the same for everyone: the durations depend on the proposal
  index only);
- seconds per proposal.

``cost`` times one proposal of a batch of 64 after 500 finished trials (5-D Styblinski-Tang,
the history of ``bench_proposal_cost.py``): OptML in one ``propose(n=64)`` call, Optuna with 64
``ask`` calls, each seeing the earlier ones as running.

    python benchmarks/bench_parallel_quality.py run            # the default set (~15 min, 2 cores)
    python benchmarks/bench_parallel_quality.py report
    python benchmarks/bench_parallel_quality.py cost
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from adapters import OPTML_PREFIX, available, canonical, make_adapter  # noqa: E402
from bench_quality import _fmt, _key, _paired_table, summarise  # noqa: E402
from functions import FUNCTIONS, get_function  # noqa: E402

OUT = Path(__file__).resolve().parent / "_out" / "parallel"
FUNCTION_SET = ["hartmann6", "styblinski8"]
OPTIMIZERS = [
    "optml-gp",
    "optml-tpe",
    "optml-cmaes",
    "optml-auto",
    "optuna-tpe-cl",
    "optuna-gp",
    "optuna-cmaes",
    "optml-random",
]


def durations(seed: int, n: int, spread: float) -> np.ndarray:
    """Trial durations in units of the median, by proposal index (the same for everyone)."""
    return np.random.default_rng([seed, 1729]).lognormal(0.0, spread, n)


def simulate(
    adapter: Any,
    f: Any,
    budget: int,
    pending: int,
    lengths: np.ndarray,
    unit: float,
    charge: bool = True,
    ahead: float = 0.0,
) -> dict[str, Any]:
    """Run the asynchronous loop; values, finish times and proposal seconds.

    ``charge``: advance the clock by each proposal's CPU time. Without it the order of events
    depends on the durations alone, so a run repeats exactly.

    Trials that end at the same instant (``--spread 0``: waves) are told together and refilled
    by one call, as the controller gathers a burst; with any spread no two end together.

    ``ahead``: as the controller does when its wave-ahead rule fires (a refill dear next to a
    trial, see ``optml._controller.AHEAD_SHARE``): whenever every slot is busy and no trial is
    waiting ahead, ``ahead`` x ``pending`` points (rounded up) are proposed at once, seeing the
    running trials as pending, and slots that free start those first. Only while the last 16
    trials (at least 8) were alike in length, within 5 % of their median of each other (the
    controller's rule: within the cost of a refill, which must be at least 5 % of a trial): so
    never with ``--spread`` above 0. 0: never.
    """
    clock = 0.0
    running: list[tuple[float, int, dict[str, Any]]] = []
    launched = 0
    asked = 0
    waiting: deque[dict[str, Any]] = deque()
    ask_seconds: list[float] = []

    def ask(k: int) -> list[dict[str, Any]]:
        nonlocal clock, asked
        start = time.process_time()
        configs = adapter.ask(k)
        spent = time.process_time() - start
        ask_seconds.append(spent / max(len(configs), 1))
        if charge:
            clock += spent
        if not configs:
            raise RuntimeError(f"{adapter.label} proposed nothing")
        asked += len(configs)
        return configs

    values: list[float] = []
    finished: list[float] = []
    done: list[int] = []  # launch indices of the finished trials, in finishing order

    def launch(configs: list[dict[str, Any]]) -> None:
        nonlocal launched
        for c in configs:
            heapq.heappush(running, (clock + unit * float(lengths[launched]), launched, c))
            launched += 1
        if not ahead or waiting or asked >= budget or len(running) < pending:
            return
        recent = [float(lengths[k]) for k in done[-16:]]
        if len(recent) >= 8 and max(recent) - min(recent) <= 0.05 * float(np.median(recent)):
            waiting.extend(ask(min(math.ceil(ahead * pending), budget - asked)))

    launch(ask(min(pending, budget)))
    while running:
        end, k, config = heapq.heappop(running)
        ended = [config]
        done.append(k)
        while running and running[0][0] == end:
            _, k, c = heapq.heappop(running)
            ended.append(c)
            done.append(k)
        clock = max(clock, end)
        ys = [float(f(c)) for c in ended]
        adapter.tell(ended, ys)
        values.extend(ys)
        finished.extend([clock] * len(ys))
        free = len(ended)
        refill = [waiting.popleft() for _ in range(min(free, len(waiting)))]
        if len(refill) < free and asked < budget:
            refill += ask(min(free - len(refill), budget - asked))
        if refill:
            launch(refill)
    return {"values": values, "finished": finished, "ask_seconds": ask_seconds}


def free_times(lengths: np.ndarray, budget: int, pending: int, unit: float) -> list[float]:
    """Finish times of every trial, in finishing order, for an optimiser that costs nothing."""
    running = [unit * float(lengths[k]) for k in range(min(pending, budget))]
    heapq.heapify(running)
    proposed, out = len(running), []
    while running:
        end = heapq.heappop(running)
        out.append(end)
        if proposed < budget:
            heapq.heappush(running, end + unit * float(lengths[proposed]))
            proposed += 1
    return out


def _path(out: Path, pending: int, budget: int, optimizer: str, function: str, seed: int) -> Path:
    return out / f"p{pending}_n{budget}" / optimizer / function / f"seed{seed}.json"


def run_one(task: dict[str, Any]) -> str:
    f = get_function(task["function"])
    start = time.perf_counter()
    lengths = durations(task["seed"], task["budget"], task["spread"])
    try:
        adapter = make_adapter(task["optimizer"], f.space, task["seed"], task["budget"])
        record = simulate(
            adapter,
            f,
            task["budget"],
            task["pending"],
            lengths,
            task["duration"],
            charge=task.get("charge", True),
            ahead=float(task.get("ahead", 0.0)),
        )
    except Exception as exc:  # record and go on
        return (
            f"FAILED {task['optimizer']} {task['function']} seed {task['seed']}: "
            f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        )
    seconds = time.perf_counter() - start
    path = Path(task["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **{k: v for k, v in task.items() if k != "path"},
        **record,
        "free": free_times(lengths, task["budget"], task["pending"], task["duration"]),
        "seconds": seconds,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    return (
        f"{task['optimizer']:14s} p{task['pending']} {task['function']:12s} seed {task['seed']} "
        f"regret {f.regret(min(record['values'])):.4g} ({seconds:.1f}s)"
    )


def cmd_run(args: argparse.Namespace) -> None:
    optimizers = [canonical(o) for o in args.optimizers]
    ok = []
    for o in optimizers:
        why = available(o)
        if why:
            print(f"skip {o}: {why}", flush=True)
        else:
            ok.append(o)
    tasks = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for pending in args.pending:
            for fn in args.functions:
                for o in ok:
                    path = _path(args.out, pending, args.budget, o, fn, seed)
                    if path.exists() and not args.force:
                        continue
                    tasks.append(
                        {
                            "optimizer": o,
                            "function": fn,
                            "seed": seed,
                            "pending": pending,
                            "budget": args.budget,
                            "spread": args.spread,
                            "duration": args.duration,
                            "charge": not args.free_proposals,
                            "ahead": args.ahead,
                            "path": str(path),
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


def _load(out: Path, pending: int, budget: int) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    data: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for path in sorted((out / f"p{pending}_n{budget}").glob("*/*/seed*.json")):
        r = json.loads(path.read_text())
        data.setdefault(r["optimizer"], {}).setdefault(r["function"], {})[r["seed"]] = r
    return data


def _by_time(record: dict[str, Any], share: float) -> list[float]:
    """Values finished by the time a free optimiser finishes ``share`` of the budget."""
    free = record["free"]
    t = free[max(0, round(share * len(free)) - 1)]
    return [v for v, end in zip(record["values"], record["finished"], strict=True) if end <= t]


def render(out: Path, budget: int, pendings: list[int]) -> str:
    lines: list[str] = []
    for pending in pendings:
        records = _load(out, pending, budget)
        if not records:
            continue
        optimizers = sorted(records, key=lambda o: (not o.startswith(OPTML_PREFIX), o))
        views: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = {
            "evals": {},
            "wall50": {},
            "wall100": {},
        }
        for o in optimizers:
            for fn, seeds in records[o].items():
                for s, r in seeds.items():
                    views["evals"].setdefault(o, {}).setdefault(fn, {})[s] = r["values"]
                    for name, share in (("wall50", 0.5), ("wall100", 1.0)):
                        got = _by_time(r, share) or [float("inf")]
                        views[name].setdefault(o, {}).setdefault(fn, {})[s] = got
        checks = [
            ("evals", budget // 2, f"@{budget // 2} evals"),
            ("evals", budget, f"@{budget} evals"),
            ("wall50", budget, "@wall 50 %"),
            ("wall100", budget, "@wall 100 %"),
        ]
        seeds = sorted({len(v) for o in records for v in records[o].values()})
        lines += [f"#### {pending} trials in flight ({budget} evaluations)", ""]
        lines += [f"Seeds per (optimiser, function): {', '.join(map(str, seeds))}.", ""]
        final = summarise(views["evals"], budget, optimizers, 1, FUNCTIONS)
        lines.append(f"Median regret after {budget} evaluations (best in bold):")
        lines += ["", "| function | " + " | ".join(optimizers) + " |"]
        lines.append("|---|" + "---:|" * len(optimizers))
        for fn in final["functions"]:
            vals = [final["median"][o][fn] for o in optimizers]
            best = min(_key(v) for v in vals)
            cells = [f"**{_fmt(v)}**" if _key(v) == best else _fmt(v) for v in vals]
            lines.append(f"| {fn} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Mean rank over the functions (1 = best), by median regret after a number of "
            "evaluations (in finishing order) and at a simulated time (wall N %: when an "
            "optimiser that costs nothing would have finished N % of the budget):",
            "",
        ]
        lines.append("| optimiser | " + " | ".join(c[2] for c in checks) + " |")
        lines.append("|---|" + "---:|" * len(checks))
        per = [summarise(views[v], at, optimizers, 1, FUNCTIONS) for v, at, _ in checks]
        for o in sorted(optimizers, key=lambda o: final["mean_rank"][o]):
            lines.append(f"| {o} | " + " | ".join(f"{p['mean_rank'][o]:.2f}" for p in per) + " |")
        lines.append("")
        ours = [o for o in optimizers if o.startswith(OPTML_PREFIX)]
        peers = [o for o in optimizers if not o.startswith(OPTML_PREFIX)]
        if ours and peers:
            best = min(ours, key=lambda o: final["mean_rank"][o])
            lines += _paired_table(views["evals"], best, peers, final["functions"], budget)
        asks = {
            o: float(
                np.median(
                    [s for fn in records[o].values() for r in fn.values() for s in r["ask_seconds"]]
                )
            )
            for o in optimizers
        }
        lines += [
            "Median CPU seconds per proposed point: "
            + ", ".join(f"{o} {asks[o]:.4f}" for o in optimizers)
            + ".",
            "",
        ]
    return "\n".join(lines)


# -- cost of a batch of 64 ------------------------------------------------------------------


def cmd_cost(args: argparse.Namespace) -> None:
    from bench_proposal_cost import history
    from functions import _box

    space = _box(5, -5, 5)
    configs, values = history(args.history)
    print(f"CPU seconds to propose {args.batch} points after {args.history} finished trials")
    for name in [canonical(o) for o in args.optimizers]:
        why = available(name)
        if why:
            print(f"skip {name}: {why}")
            continue
        adapter: Any = make_adapter(name, space, seed=0, budget=args.history + 2 * args.batch)
        adapter.add_history(configs, values)
        start = time.process_time()
        got = adapter.ask(args.batch)
        seconds = time.process_time() - start
        print(f"{name:14s} {seconds:8.3f} s ({len(got)} points)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmark (resumable)")
    run.add_argument("--functions", nargs="*", default=FUNCTION_SET, choices=sorted(FUNCTIONS))
    run.add_argument("--optimizers", nargs="*", default=OPTIMIZERS, metavar="NAME")
    run.add_argument("--pending", type=int, nargs="+", default=[16, 64])
    run.add_argument("--seeds", type=int, default=3)
    run.add_argument("--first-seed", type=int, default=0)
    run.add_argument("--budget", type=int, default=128)
    run.add_argument("--spread", type=float, default=0.75, help="sigma of the log durations")
    run.add_argument("--duration", type=float, default=10.0, help="median trial seconds")
    run.add_argument(
        "--free-proposals",
        action="store_true",
        help="do not add proposal time to the clock (runs then repeat exactly; the wall-time "
        "figures then ignore each sampler's cost)",
    )
    run.add_argument(
        "--ahead",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        metavar="SHARE",
        help="propose SHARE (default 1) of the next wave once a wave fills every slot, as the "
        "controller does when a refill is dear next to a trial (use with its own --out)",
    )
    run.add_argument("--jobs", type=int, default=2)
    run.add_argument("--force", action="store_true")
    run.add_argument("--out", type=Path, default=OUT)
    run.set_defaults(fn=cmd_run)
    rep = sub.add_parser("report")
    rep.add_argument("--budget", type=int, default=128)
    rep.add_argument("--pending", type=int, nargs="+", default=[16, 64])
    rep.add_argument("--out", type=Path, default=OUT)
    rep.set_defaults(fn=lambda a: print(render(a.out, a.budget, a.pending)))
    cost = sub.add_parser("cost", help="time a batch of 64 after 500 finished trials")
    cost.add_argument("--optimizers", nargs="*", default=OPTIMIZERS, metavar="NAME")
    cost.add_argument("--history", type=int, default=500)
    cost.add_argument("--batch", type=int, default=64)
    cost.set_defaults(fn=cmd_cost)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
