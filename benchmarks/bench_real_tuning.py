"""Tuning scikit-learn classifiers on scikit-learn's bundled data sets, per optimiser, and CASH.

Objective: 3-fold stratified cross-validated accuracy (fixed folds, fixed model seeds), maximised
(optimisers minimise the error 1 - accuracy). Classifiers and their spaces are in
:data:`CLASSIFIERS`; models are kept small (forests of at most 60 trees, MLPs of one hidden
layer of at most 64 units and 40 epochs); even so the full default run takes core-hours (see
benchmarks/README.md).

Two parts:

- ``single``: every optimiser tunes every (classifier, data set) pair for ``--trials`` trials.
- ``cash``: OptML's meta sampler (one model family per classifier, CASH) against random search
  over the union of the four spaces, with the same number of trials; compared in the report with
  the best single-classifier run of the same trial count.

Each run is written to
``benchmarks/_out/tuning/{part}/{optimiser}/{dataset}/{classifier}/seed{k}_n{trials}.json``
as it ends (resumable). Evaluations are cached per process, so optimisers that repeat a point
pay nothing for it.

    python benchmarks/bench_real_tuning.py run --quick
    python benchmarks/bench_real_tuning.py run --seeds 3 --trials 50
    python benchmarks/bench_real_tuning.py report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from adapters import OPTML_PREFIX, available, canonical, make_adapter  # noqa: E402

from optml.space import Categorical, Float, Int, Space  # noqa: E402

OUT = Path(__file__).resolve().parent / "_out" / "tuning"
DATASETS = ["iris", "wine", "breast_cancer", "digits"]

CLASSIFIERS: dict[str, Space] = {
    "svc": Space([Float("C", 1e-2, 1e3, log=True), Float("gamma", 1e-4, 1.0, log=True)]),
    "rf": Space(
        [
            Int("n_estimators", 10, 60),
            Int("max_depth", 2, 16),
            Int("min_samples_leaf", 1, 10),
            Float("max_features", 0.1, 1.0),
        ]
    ),
    "knn": Space(
        [
            Int("n_neighbors", 1, 40),
            Categorical("weights", ("uniform", "distance")),
            Categorical("p", (1, 2)),
        ]
    ),
    "mlp": Space(
        [
            Int("hidden", 8, 64),
            Float("alpha", 1e-6, 1e-1, log=True),
            Float("learning_rate_init", 1e-4, 1e-1, log=True),
            Categorical("activation", ("relu", "tanh")),
        ]
    ),
}
DEFAULT_OPTIMIZERS = [
    "optml-tpe",
    "optml-gp",
    "optml-forest",
    "optuna-tpe",
    "hyperopt-tpe",
    "optml-random",
]


@cache
def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    X, y = loader(return_X_y=True)
    return X.astype(float), y


def _model(clf: str, p: dict[str, Any]) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if clf == "svc":
        return make_pipeline(StandardScaler(), SVC(C=p["C"], gamma=p["gamma"]))
    if clf == "rf":
        return RandomForestClassifier(
            n_estimators=p["n_estimators"],
            max_depth=p["max_depth"],
            min_samples_leaf=p["min_samples_leaf"],
            max_features=p["max_features"],
            random_state=0,
            n_jobs=1,
        )
    if clf == "knn":
        return make_pipeline(
            StandardScaler(),
            KNeighborsClassifier(n_neighbors=p["n_neighbors"], weights=p["weights"], p=p["p"]),
        )
    if clf == "mlp":
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=(p["hidden"],),
                alpha=p["alpha"],
                learning_rate_init=p["learning_rate_init"],
                activation=p["activation"],
                max_iter=40,
                random_state=0,
            ),
        )
    raise KeyError(clf)


_CACHE: dict[tuple[Any, ...], float] = {}


def accuracy(clf: str, dataset: str, params: dict[str, Any]) -> float:
    """3-fold stratified CV accuracy of ``clf`` with ``params`` on ``dataset`` (cached)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    key = (clf, dataset, tuple(sorted((k, repr(v)) for k, v in params.items())))
    if key not in _CACHE:
        X, y = _data(dataset)
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLP convergence warnings at 40 epochs
            _CACHE[key] = float(np.mean(cross_val_score(_model(clf, params), X, y, cv=folds)))
    return _CACHE[key]


def _cash_space() -> Any:
    from optml.samplers._meta import MetaSpace

    return MetaSpace(dict(CLASSIFIERS))


def run_one(task: dict[str, Any]) -> str:
    path = Path(task["path"])
    part, opt, ds, clf, seed, trials = (
        task[k] for k in ("part", "optimizer", "dataset", "classifier", "seed", "trials")
    )
    start = time.perf_counter()
    try:
        if part == "single":
            space = CLASSIFIERS[clf]
            adapter = make_adapter(opt, space, seed, trials)

            def objective(p: dict[str, Any]) -> float:
                return 1.0 - accuracy(clf, ds, p)
        else:
            space = _cash_space()
            adapter = make_adapter(opt, space, seed, trials)
            chosen: list[str] = []

            def objective(p: dict[str, Any]) -> float:
                family, own = space.split(p)
                chosen.append(family)
                return 1.0 - accuracy(family, ds, own)

        errors = adapter.run(objective, trials, 1)
    except Exception as exc:
        return f"FAILED {task}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    seconds = time.perf_counter() - start
    record = {
        **{k: v for k, v in task.items() if k != "path"},
        "accuracies": [1.0 - e for e in errors],
        "seconds": seconds,
        "best": 1.0 - min(errors),
    }
    if part == "cash":
        record["families"] = chosen
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    best = record["best"]
    return f"{part:6s} {opt:14s} {ds:13s} {clf:4s} seed {seed} best {best:.4f} ({seconds:.1f}s)"


def cmd_run(args: argparse.Namespace) -> None:
    datasets = args.datasets or (["iris", "wine"] if args.quick else DATASETS)
    classifiers = args.classifiers or list(CLASSIFIERS)
    optimizers = [canonical(o) for o in (args.optimizers or DEFAULT_OPTIMIZERS)]
    seeds = range(1 if args.quick else args.seeds)
    trials = 15 if args.quick else args.trials
    tasks = []
    parts = args.parts
    for seed in seeds:
        for ds in datasets:
            if "single" in parts:
                for clf in classifiers:
                    for o in optimizers:
                        tasks.append(("single", o, ds, clf, seed))
            if "cash" in parts:
                for o in ("optml-meta", "optml-random"):
                    tasks.append(("cash", o, ds, "cash", seed))
    todo = []
    skipped: set[str] = set()
    for part, o, ds, clf, seed in tasks:
        why = available(o) if o != "optml-meta" else available("meta")
        if why:
            skipped.add(f"{o}: {why}")
            continue
        path = args.out / part / o / ds / clf / f"seed{seed}_n{trials}.json"
        if path.exists() and not args.force:
            continue
        todo.append(
            {
                "part": part,
                "optimizer": o,
                "dataset": ds,
                "classifier": clf,
                "seed": seed,
                "trials": trials,
                "path": str(path),
            }
        )
    for s in sorted(skipped):
        print("skip", s, flush=True)
    print(f"{len(todo)} runs to do", flush=True)
    for task in todo:
        print(run_one(task), flush=True)


# -- report ---------------------------------------------------------------------------------


def _load(out: Path, part: str, trials: int) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    data: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for path in sorted((out / part).glob(f"*/*/*/seed*_n{trials}.json")):
        r = json.loads(path.read_text())
        data.setdefault((r["optimizer"], r["dataset"], r["classifier"]), []).append(r)
    return data


def render(out: Path, trials: int) -> str:
    single = _load(out, "single", trials)
    cash = _load(out, "cash", trials)
    lines: list[str] = []
    if single:
        optimizers = sorted(
            {k[0] for k in single}, key=lambda o: (not o.startswith(OPTML_PREFIX), o)
        )
        pairs = sorted({(k[1], k[2]) for k in single}, key=lambda p: (DATASETS.index(p[0]), p[1]))
        pairs = [p for p in pairs if all((o, *p) in single for o in optimizers)]
        lines += [
            f"Mean best 3-fold CV accuracy after {trials} trials (mean over seeds; best in bold):",
            "",
        ]
        lines.append("| data set | classifier | " + " | ".join(optimizers) + " |")
        lines.append("|---|---|" + "---:|" * len(optimizers))
        ranks: dict[str, list[float]] = {o: [] for o in optimizers}
        from scipy.stats import rankdata

        for ds, clf in pairs:
            means = [float(np.mean([r["best"] for r in single[(o, ds, clf)]])) for o in optimizers]
            top = max(round(m, 4) for m in means)
            cells = [f"**{m:.4f}**" if round(m, 4) == top else f"{m:.4f}" for m in means]
            lines.append(f"| {ds} | {clf} | " + " | ".join(cells) + " |")
            for o, r in zip(optimizers, rankdata([-round(m, 4) for m in means]), strict=True):
                ranks[o].append(float(r))
        lines.append("")
        seeds = {o: sorted({len(single[(o, *p)]) for p in pairs}) for o in optimizers}
        lines += [
            "Mean rank over the (data set, classifier) pairs (1 = best): "
            + ", ".join(
                f"{o} {np.mean(ranks[o]):.2f}"
                for o in sorted(optimizers, key=lambda o: np.mean(ranks[o]))
            )
            + f". Seeds: {', '.join(f'{o} {seeds[o]}' for o in optimizers)}.",
            "",
        ]
    if cash:
        lines += [
            f"CASH, {trials} trials over all four classifiers, against the best "
            f"single-classifier run of {trials} trials (mean best accuracy over seeds):",
            "",
        ]
        singles = sorted({k[0] for k in single})
        lines.append(
            "| data set | optml-meta (CASH) | random over the union | best single "
            "classifier (optimiser) | families tried by meta (last seed) |"
        )
        lines.append("|---|---:|---:|---|---|")
        for ds in DATASETS:
            meta = cash.get(("optml-meta", ds, "cash"))
            rnd = cash.get(("optml-random", ds, "cash"))
            if not meta and not rnd:
                continue
            best_single = max(
                (
                    (float(np.mean([r["best"] for r in single[(o, ds, clf)]])), clf, o)
                    for o in singles
                    for clf in CLASSIFIERS
                    if (o, ds, clf) in single
                ),
                default=None,
            )
            m = f"{np.mean([r['best'] for r in meta]):.4f}" if meta else "-"
            r_ = f"{np.mean([r['best'] for r in rnd]):.4f}" if rnd else "-"
            b = f"{best_single[0]:.4f} ({best_single[1]}, {best_single[2]})" if best_single else "-"
            fam = ""
            if meta:
                counts: dict[str, int] = {}
                for f in meta[-1]["families"]:
                    counts[f] = counts.get(f, 0) + 1
                fam = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            lines.append(f"| {ds} | {m} | {r_} | {b} | {fam} |")
        lines.append("")
    secs = {}
    for key, runs in {**single, **cash}.items():
        secs.setdefault(key[0], []).extend(r["seconds"] for r in runs)
    if secs:
        lines += [
            "Mean wall seconds per run (objective included; shared machine): "
            + ", ".join(f"{o} {np.mean(v):.1f}" for o, v in sorted(secs.items()))
            + ".",
            "",
        ]
    return "\n".join(lines) if lines else "(no tuning runs yet)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--datasets", nargs="*", choices=DATASETS)
    run.add_argument("--classifiers", nargs="*", choices=list(CLASSIFIERS))
    run.add_argument(
        "--optimizers", nargs="*", metavar="NAME", help=f"default: {' '.join(DEFAULT_OPTIMIZERS)}"
    )
    run.add_argument("--parts", nargs="+", choices=["single", "cash"], default=["single", "cash"])
    run.add_argument("--seeds", type=int, default=3)
    run.add_argument("--trials", type=int, default=50)
    run.add_argument("--quick", action="store_true", help="iris and wine, 1 seed, 15 trials")
    run.add_argument("--force", action="store_true")
    run.add_argument("--out", type=Path, default=OUT)
    run.set_defaults(fn=cmd_run)
    rep = sub.add_parser("report")
    rep.add_argument("--trials", type=int, default=50)
    rep.add_argument("--out", type=Path, default=OUT)
    rep.set_defaults(fn=lambda a: print(render(a.out, a.trials)))
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
