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

The SVC tasks above saturate (every optimiser reaches the same accuracy). ``hard`` runs three
harder tasks (:data:`HARD_TASKS`), every optimiser on each with the same seeds, and
``hard-report`` gives the best cross-validated accuracy after 30, 60 and 100 trials:

- ``hgb``: HistGradientBoosting with 7 hyperparameters on a generated binary problem
  (``make_classification``: 360 samples, 20 features, 6 informative, 3 clusters per class, 3 %
  of labels flipped), 5-15 boosting iterations, 16 bins, no early stopping;
- ``mlp``: an MLP (1-2 hidden layers, 6 hyperparameters) on 360 of the 1,797 digits, 8
  epochs;
- ``cash``: a choice among five families (HistGradientBoosting, MLP, SVC, k-NN, logistic
  regression) with their own hyperparameters on the ``hgb`` data. OptML's ``meta`` sampler
  (what ``auto`` picks for such a space), Optuna's TPE asking the family first and then only
  that family's parameters (define-by-run), and random search over the families.

    python benchmarks/bench_real_tuning.py hard --seeds 5 --trials 100 --jobs 2
    python benchmarks/bench_real_tuning.py hard-report
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
from adapters import OPTML_PREFIX, _clean, available, canonical, make_adapter  # noqa: E402

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


# -- harder tasks ---------------------------------------------------------------------------

HARD_TASKS = ("hgb", "mlp", "cash")
HARD_OPTIMIZERS = {
    "hgb": ["optml-gp", "optuna-tpe", "optml-random"],
    "mlp": ["optml-gp", "optuna-tpe", "optml-random"],
    "cash": ["optml-meta", "optuna-tpe", "optml-random"],
}
HARD_CHECKPOINTS = (30, 60, 100)

_HGB_SPACE = {
    "learning_rate": {"loguniform": [0.01, 1.0]},
    "max_iter": {"int": [5, 15]},
    "max_leaf_nodes": {"int": [4, 32], "log": True},
    "max_depth": {"int": [2, 8]},
    "min_samples_leaf": {"int": [2, 60], "log": True},
    "l2_regularization": {"loguniform": [1e-6, 10.0]},
    "max_features": {"uniform": [0.2, 1.0]},
}
_MLP_SPACE = {
    "hidden": {"int": [8, 64], "log": True},
    "layers": [1, 2],
    "alpha": {"loguniform": [1e-6, 1e-1]},
    "learning_rate_init": {"loguniform": [1e-4, 1e-1]},
    "batch_size": {"int": [16, 128], "log": True},
    "activation": ["relu", "tanh"],
}
_CASH_FAMILIES = {
    "hgb": {
        "learning_rate": {"loguniform": [0.01, 1.0]},
        "max_iter": {"int": [5, 15]},
        "max_leaf_nodes": {"int": [4, 32], "log": True},
        "min_samples_leaf": {"int": [2, 60], "log": True},
    },
    "mlp": {
        "hidden": {"int": [8, 64], "log": True},
        "alpha": {"loguniform": [1e-6, 1e-1]},
        "learning_rate_init": {"loguniform": [1e-4, 1e-1]},
    },
    "svc": {"C": {"loguniform": [1e-2, 1e3]}, "gamma": {"loguniform": [1e-4, 1.0]}},
    "knn": {"n_neighbors": {"int": [1, 50]}, "weights": ["uniform", "distance"]},
    "logreg": {"C": {"loguniform": [1e-4, 1e2]}},
}


def hard_space(task: str) -> Space:
    from optml.space import MetaSpace, parse_space

    if task == "cash":
        return MetaSpace(_CASH_FAMILIES)
    return parse_space(_HGB_SPACE if task == "hgb" else _MLP_SPACE)


@cache
def _hard_data(task: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    if task == "mlp":
        X, y = datasets.load_digits(return_X_y=True)
        keep = np.random.default_rng(0).permutation(len(X))[:360]
        return X[keep].astype(float), y[keep]
    X, y = datasets.make_classification(
        n_samples=360,
        n_features=20,
        n_informative=6,
        n_redundant=4,
        n_clusters_per_class=3,
        flip_y=0.03,
        random_state=0,
    )
    return X, y


def _hard_model(family: str, p: dict[str, Any]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if family == "hgb":
        return HistGradientBoostingClassifier(
            **p, max_bins=16, early_stopping=False, random_state=0
        )
    if family == "mlp":
        p = dict(p)
        sizes = (p.pop("hidden"),) * p.pop("layers", 1)
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=sizes, max_iter=8, random_state=0, **p),
        )
    if family == "svc":
        return make_pipeline(StandardScaler(), SVC(**p))
    if family == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(**p))
    if family == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(**p, max_iter=200))
    raise KeyError(family)


def hard_accuracy(task: str, config: dict[str, Any]) -> float:
    """3-fold stratified CV accuracy of one configuration of ``task`` (cached per process)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    key = ("hard", task, tuple(sorted((k, repr(v)) for k, v in config.items())))
    if key not in _CACHE:
        space = hard_space(task)
        family, params = space.split(config) if task == "cash" else (task, dict(config))  # type: ignore[attr-defined]
        X, y = _hard_data("hgb" if task == "cash" else task)
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MLP convergence warnings at 8 epochs
            scores = cross_val_score(_hard_model(family, params), X, y, cv=folds)
        _CACHE[key] = float(np.mean(scores))
    return _CACHE[key]


class _OptunaCash:
    """Optuna's TPE on the CASH space the way Optuna users write it: define-by-run, the family
    first, then only that family's parameters."""

    def __init__(self, space: Any, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.space = space
        self.study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        self.families = space.families

    def run(self, objective: Any, budget: int, batch: int) -> list[float]:
        values = []
        for _ in range(budget):
            trial = self.study.ask()
            family = trial.suggest_categorical("model", list(self.families))
            params = {
                p.name: _suggest(trial, f"{family}.{p.name}", p) for p in self.families[family]
            }
            own = _clean(self.families[family], params)
            y = float(objective(self.space.join(family, own)))
            self.study.tell(trial, y)
            values.append(y)
        return values


def _suggest(trial: Any, name: str, p: Any) -> Any:
    if isinstance(p, Float):
        return trial.suggest_float(name, p.low, p.high, log=p.log)
    if isinstance(p, Int):
        return trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
    return trial.suggest_categorical(name, list(p.choices))


def run_hard(task_: dict[str, Any]) -> str:
    task, opt, seed, trials = (task_[k] for k in ("task", "optimizer", "seed", "trials"))
    path = Path(task_["path"])
    start = time.perf_counter()
    try:
        space = hard_space(task)
        adapter: Any = (
            _OptunaCash(space, seed)
            if task == "cash" and opt == "optuna-tpe"
            else make_adapter(opt, space, seed, trials)
        )
        errors = adapter.run(lambda c: 1.0 - hard_accuracy(task, c), trials, 1)
    except Exception as exc:
        return f"FAILED {task_}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    seconds = time.perf_counter() - start
    record = {
        **{k: v for k, v in task_.items() if k != "path"},
        "accuracies": [1.0 - e for e in errors],
        "seconds": seconds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return f"{task:5s} {opt:13s} seed {seed} best {1 - min(errors):.4f} ({seconds:.1f}s)"


def cmd_hard(args: argparse.Namespace) -> None:
    todo = []
    for seed in range(args.seeds):
        for task in args.tasks:
            for opt in args.optimizers or HARD_OPTIMIZERS[task]:
                why = available(opt)
                if why:
                    print(f"skip {opt}: {why}", flush=True)
                    continue
                path = args.out / "hard" / task / opt / f"seed{seed}_n{args.trials}.json"
                if path.exists() and not args.force:
                    continue
                todo.append(
                    {"task": task, "optimizer": opt, "seed": seed, "trials": args.trials}
                    | {"path": str(path)}
                )
    print(f"{len(todo)} runs to do", flush=True)
    if args.jobs > 1:
        from multiprocessing import Pool

        with Pool(args.jobs) as pool:
            for line in pool.imap_unordered(run_hard, todo):
                print(line, flush=True)
    else:
        for t in todo:
            print(run_hard(t), flush=True)


def render_hard(out: Path, trials: int) -> str:
    from scipy.stats import rankdata

    lines: list[str] = []
    for task in HARD_TASKS:
        runs: dict[str, dict[int, list[float]]] = {}
        for path in sorted((out / "hard" / task).glob(f"*/seed*_n{trials}.json")):
            r = json.loads(path.read_text())
            runs.setdefault(r["optimizer"], {})[r["seed"]] = r["accuracies"]
        if not runs:
            continue
        seeds = sorted(set.intersection(*(set(v) for v in runs.values())))
        optimizers = sorted(runs, key=lambda o: (not o.startswith(OPTML_PREFIX), o))
        checks = [c for c in HARD_CHECKPOINTS if c < trials] + [trials]
        lines += [
            f"**{task}** ({len(seeds)} seeds: mean best 3-fold CV accuracy after "
            f"{' / '.join(map(str, checks))} trials, its standard error after {checks[-1]}, "
            f"mean rank over seeds after {checks[-1]}, mean wall seconds per run):",
            "",
            "| optimiser | " + " | ".join(f"@{c}" for c in checks) + " | s.e. | rank | s |",
            "|---|" + "---:|" * (len(checks) + 3),
        ]
        best = {o: {c: [max(runs[o][s][:c]) for s in seeds] for c in checks} for o in optimizers}
        ranks = np.array(
            [
                rankdata([-round(best[o][checks[-1]][i], 6) for o in optimizers])
                for i in range(len(seeds))
            ]
        )
        secs = {
            o: np.mean(
                [
                    json.loads(p.read_text())["seconds"]
                    for p in (out / "hard" / task / o).glob(f"seed*_n{trials}.json")
                ]
            )
            for o in optimizers
        }
        top = {c: max(round(float(np.mean(best[o][c])), 4) for o in optimizers) for c in checks}
        for j, o in enumerate(optimizers):
            cells = []
            for c in checks:
                m = round(float(np.mean(best[o][c])), 4)
                cells.append(f"**{m:.4f}**" if m == top[c] else f"{m:.4f}")
            se = (
                float(np.std(best[o][checks[-1]], ddof=1) / np.sqrt(len(seeds)))
                if len(seeds) > 1
                else 0.0
            )
            lines.append(
                f"| {o} | "
                + " | ".join(cells)
                + f" | {se:.4f} | {ranks[:, j].mean():.2f} | {secs[o]:.0f} |"
            )
        lines.append("")
    return "\n".join(lines) if lines else "(no hard tuning runs yet)"


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
    hard = sub.add_parser("hard", help="the harder tasks: hgb, mlp, cash")
    hard.add_argument("--tasks", nargs="*", choices=HARD_TASKS, default=list(HARD_TASKS))
    hard.add_argument(
        "--optimizers", nargs="*", metavar="NAME", help=f"default per task: {HARD_OPTIMIZERS}"
    )
    hard.add_argument("--seeds", type=int, default=5)
    hard.add_argument("--trials", type=int, default=100)
    hard.add_argument("--jobs", type=int, default=1)
    hard.add_argument("--force", action="store_true")
    hard.add_argument("--out", type=Path, default=OUT)
    hard.set_defaults(fn=cmd_hard)
    hrep = sub.add_parser("hard-report")
    hrep.add_argument("--trials", type=int, default=100)
    hrep.add_argument("--out", type=Path, default=OUT)
    hrep.set_defaults(fn=lambda a: print(render_hard(a.out, a.trials)))
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
