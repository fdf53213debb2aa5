"""One ask/tell interface over OptML's samplers and the peer libraries, for the benchmarks.

Every adapter is built for one run (space, seed, budget) and answers ``ask(n)`` with ``n``
configurations in OptML's own parameter names and types, and ``tell(configs, values)`` with their
values (to minimise). ``run(objective, budget, batch)`` drives the usual loop: ask ``batch``
points, evaluate them all, tell them all. Mango is a closed loop (its Tuner calls the objective),
so its adapter overrides ``run``; its ``propose_time`` measures one proposal for the cost bench.

Peers run with their defaults, except where stated in ``describe()``.
"""

from __future__ import annotations

import os

# Two cores shared by several processes: keep every BLAS / torch pool to one thread.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import logging  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from optml.space import Categorical, Float, Int, Space  # noqa: E402

Objective = Callable[[dict[str, Any]], float]

OPTML_PREFIX = "optml-"


class Adapter:
    """Ask/tell over one optimiser for one run."""

    label = "adapter"

    def __init__(self, space: Space, seed: int, budget: int) -> None:
        self.space = space
        self.seed = seed
        self.budget = budget

    def ask(self, n: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def tell(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        raise NotImplementedError

    def run(self, objective: Objective, budget: int, batch: int) -> list[float]:
        """Evaluate ``budget`` points in steps of ``batch``; return the values in order."""
        values: list[float] = []
        while len(values) < budget:
            configs = self.ask(min(batch, budget - len(values)))
            if not configs:
                break
            ys = [float(objective(c)) for c in configs]
            self.tell(configs, ys)
            values.extend(ys)
        return values[:budget]


def _clean(space: Space, config: dict[str, Any]) -> dict[str, Any]:
    """Cast a peer's proposal (numpy scalars, rounding drift) into OptML's types and bounds."""
    out: dict[str, Any] = {}
    for p in space:
        v = config[p.name]
        if isinstance(p, Float):
            out[p.name] = min(max(float(v), p.low), p.high)
        elif isinstance(p, Int):
            out[p.name] = int(min(max(round(float(v)), p.low), p.high))
        else:
            v = v.item() if hasattr(v, "item") else v
            out[p.name] = p.choices[p.index(v)]
    return out


# -- OptML ------------------------------------------------------------------------------------


class OptMLAdapter(Adapter):
    """An OptML sampler driven through its contract, with Trial records made here."""

    def __init__(self, space: Space, seed: int, budget: int, sampler: str | dict[str, Any]) -> None:
        super().__init__(space, seed, budget)
        from optml.samplers import Metric, TrialMemo, make_sampler

        self.sampler = make_sampler(sampler)
        self.memo = TrialMemo(space)  # as a Study keeps one across requests
        self.metric = Metric("value")
        self.trials: list[Any] = []
        self.label = OPTML_PREFIX + (sampler if isinstance(sampler, str) else sampler["name"])

    def ask(self, n: int) -> list[dict[str, Any]]:
        from optml.samplers import SearchContext
        from optml.trial import Trial, TrialState

        ctx = SearchContext(
            self.space, tuple(self.trials), (self.metric,), self.seed, self.budget, memo=self.memo
        )
        rng = np.random.default_rng([self.seed, len(self.trials)])
        configs = self.sampler.propose(ctx, n, rng)
        for c in configs:
            self.trials.append(Trial(len(self.trials), TrialState.RUNNING, dict(c)))
        return [dict(c) for c in configs]

    def tell(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        from optml.trial import TrialState

        keys = {self.space.key(c): v for c, v in zip(configs, values, strict=True)}
        for i, t in enumerate(self.trials):
            if t.state is TrialState.RUNNING and self.space.key(t.params) in keys:
                v = keys.pop(self.space.key(t.params))
                self.trials[i] = t.with_changes(
                    state=TrialState.COMPLETE, value=float(v), metrics={"value": float(v)}
                )

    def add_history(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        from optml.trial import Trial, TrialState

        for c, v in zip(configs, values, strict=True):
            self.trials.append(
                Trial(
                    len(self.trials),
                    TrialState.COMPLETE,
                    dict(c),
                    value=float(v),
                    metrics={"value": float(v)},
                )
            )


# -- Optuna -----------------------------------------------------------------------------------


class OptunaAdapter(Adapter):
    """Optuna's ask/tell with a fixed search space (define-and-run)."""

    def __init__(self, space: Space, seed: int, budget: int, kind: str) -> None:
        super().__init__(space, seed, budget)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        if kind == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed)
        elif kind == "gp":
            sampler = optuna.samplers.GPSampler(seed=seed)
        else:
            raise ValueError(kind)
        self.label = f"optuna-{kind}"
        self.study = optuna.create_study(sampler=sampler, direction="minimize")
        self.dists = {p.name: _optuna_dist(p) for p in space}
        self.pending: list[Any] = []

    def ask(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            trial = self.study.ask(self.dists)
            self.pending.append(trial)
            out.append(_clean(self.space, trial.params))
        return out

    def tell(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        for trial, v in zip(self.pending, values, strict=True):
            self.study.tell(trial, float(v))
        self.pending = []

    def add_history(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        import optuna

        self.study.add_trials(
            [
                optuna.trial.create_trial(params=dict(c), distributions=self.dists, value=float(v))
                for c, v in zip(configs, values, strict=True)
            ]
        )


def _optuna_dist(p: Any) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(p, Float):
        return FloatDistribution(p.low, p.high, log=p.log)
    if isinstance(p, Int):
        return IntDistribution(p.low, p.high, log=p.log, step=p.step)
    return CategoricalDistribution(list(p.choices))


# -- Hyperopt ---------------------------------------------------------------------------------


class HyperoptAdapter(Adapter):
    """Hyperopt's TPE, driven the way ``fmin`` drives it (suggest, insert, evaluate, refresh).

    A batch of ``n`` is ``n`` suggest calls, the earlier ones inserted as unfinished trials.
    """

    label = "hyperopt-tpe"

    def __init__(self, space: Space, seed: int, budget: int) -> None:
        super().__init__(space, seed, budget)
        from hyperopt import Domain, Trials

        logging.getLogger("hyperopt").setLevel(logging.ERROR)
        self.hp_space = {p.name: _hyperopt_dist(p) for p in space}
        self.domain = Domain(lambda _: 0.0, self.hp_space)
        self.trials = Trials()
        self.rng = np.random.default_rng(seed)
        self.pending: list[Any] = []

    def ask(self, n: int) -> list[dict[str, Any]]:
        from hyperopt import tpe

        # One id per call: past its startup, hyperopt's TPE answers one point per call whatever
        # the number of ids, and counts the inserted, unfinished ones as infinitely bad (as
        # fmin does with a queue).
        docs = []
        for _ in range(n):
            ids = self.trials.new_trial_ids(1)
            self.trials.refresh()
            new = tpe.suggest(ids, self.domain, self.trials, int(self.rng.integers(2**31 - 1)))
            self.trials.insert_trial_docs(new)
            self.trials.refresh()
            docs.extend(new)
        self.pending = [doc["tid"] for doc in docs]
        return [self._config(doc) for doc in docs]

    def _config(self, doc: dict[str, Any]) -> dict[str, Any]:
        from hyperopt import space_eval

        vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
        return _clean(self.space, space_eval(self.hp_space, vals))

    def tell(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        from hyperopt import JOB_STATE_DONE, STATUS_OK

        by_id = dict(zip(self.pending, values, strict=True))
        for doc in self.trials._dynamic_trials:
            if doc["tid"] in by_id:
                doc["state"] = JOB_STATE_DONE
                doc["result"] = {"loss": float(by_id[doc["tid"]]), "status": STATUS_OK}
        self.trials.refresh()
        self.pending = []

    def add_history(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        # Insert finished trials by asking random search for the ids and overwriting the values,
        # so that the documents have exactly the shape hyperopt's TPE reads.
        from hyperopt import JOB_STATE_DONE, STATUS_OK, rand

        ids = self.trials.new_trial_ids(len(configs))
        self.trials.refresh()
        docs = rand.suggest(ids, self.domain, self.trials, 0)
        for doc, c, v in zip(docs, configs, values, strict=True):
            for p in self.space:
                value = c[p.name]
                if isinstance(p, Categorical):
                    value = p.index(value)
                doc["misc"]["vals"][p.name] = [value]
            doc["state"] = JOB_STATE_DONE
            doc["result"] = {"loss": float(v), "status": STATUS_OK}
        self.trials.insert_trial_docs(docs)
        self.trials.refresh()


def _hyperopt_dist(p: Any) -> Any:
    from hyperopt import hp

    if isinstance(p, Float):
        if p.log:
            return hp.loguniform(p.name, math.log(p.low), math.log(p.high))
        return hp.uniform(p.name, p.low, p.high)
    if isinstance(p, Int):
        if p.log:
            return hp.qloguniform(p.name, math.log(p.low), math.log(p.high + 0.5), 1)
        return hp.uniformint(p.name, p.low, p.high)
    return hp.choice(p.name, list(p.choices))


# -- scikit-optimize ----------------------------------------------------------------------------


class SkoptAdapter(Adapter):
    """scikit-optimize's ``Optimizer`` (what ``gp_minimize`` runs) with a GP, ask/tell.

    Batches use ``ask(n_points=n)`` (its constant-liar ``cl_min`` strategy).
    """

    label = "skopt-gp"

    def __init__(self, space: Space, seed: int, budget: int) -> None:
        super().__init__(space, seed, budget)
        from skopt import Optimizer

        warnings.filterwarnings("ignore", module="skopt")
        self.opt = Optimizer(
            [_skopt_dim(p) for p in space],
            base_estimator="GP",
            n_initial_points=10,
            random_state=seed,
        )
        self.names = space.names

    def ask(self, n: int) -> list[dict[str, Any]]:
        xs = [self.opt.ask()] if n == 1 else self.opt.ask(n_points=n)
        return [_clean(self.space, dict(zip(self.names, x, strict=True))) for x in xs]

    def tell(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        xs = [[c[n] for n in self.names] for c in configs]
        self.opt.tell(xs, [float(v) for v in values])

    def add_history(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> None:
        self.tell(configs, values)


def _skopt_dim(p: Any) -> Any:
    from skopt.space import Categorical as SkCat
    from skopt.space import Integer, Real

    if isinstance(p, Float):
        return Real(p.low, p.high, prior="log-uniform" if p.log else "uniform", name=p.name)
    if isinstance(p, Int):
        return Integer(p.low, p.high, prior="log-uniform" if p.log else "uniform", name=p.name)
    return SkCat(list(p.choices), name=p.name)


# -- Mango ------------------------------------------------------------------------------------


class MangoAdapter(Adapter):
    """Mango's Tuner (GP, UCB, 'clustering' batches) with its serial / custom(n) scheduler.

    Mango runs its own loop, so ``run`` hands it the objective. ``initial_random`` is Mango's
    default 2 sequentially and one batch (``batch``) in batch mode.
    """

    label = "mango-gp"

    def __init__(
        self, space: Space, seed: int, budget: int, domain_size: int | None = None
    ) -> None:
        super().__init__(space, seed, budget)
        self.param_dict = {p.name: _mango_dist(p) for p in space}
        # Mango scores every proposal on ``domain_size`` random points (by default 50 per unit of
        # each real range, between 50,000 and 500,000): None keeps that default.
        self.domain_size = domain_size

    def _seed(self) -> None:
        # Mango draws from the global `random` and numpy generators.
        random.seed(self.seed)
        np.random.seed(self.seed)

    def run(self, objective: Objective, budget: int, batch: int) -> list[float]:
        from mango import Tuner, scheduler

        values: list[float] = []

        def evaluate(**params: Any) -> float:
            y = float(objective(self._from_mango(params)))
            values.append(y)
            return y

        if batch == 1:
            fn = scheduler.serial(evaluate)
            initial = 2
        else:
            fn = scheduler.custom(n_jobs=batch)(
                lambda batch_params: [evaluate(**p) for p in batch_params]
            )
            initial = batch
        conf = {
            "initial_random": initial,
            "num_iteration": math.ceil((budget - initial) / batch),
            "log_progress": False,
            **self._conf(),
        }
        self._seed()
        Tuner(self.param_dict, fn, conf).minimize()
        return values[:budget]

    def _conf(self) -> dict[str, Any]:
        return {} if self.domain_size is None else {"domain_size": self.domain_size}

    def _from_mango(self, params: dict[str, Any]) -> dict[str, Any]:
        out = dict(params)
        for p in self.space:
            if isinstance(p, Float) and p.log:
                out[p.name] = math.exp(float(params[p.name]))
        return _clean(self.space, out)

    def propose_time(self, configs: Sequence[dict[str, Any]], values: Sequence[float]) -> float:
        """Seconds from Tuner start to its first model-based proposal given this history."""
        from mango import Tuner, scheduler

        history = []
        for c, v in zip(configs, values, strict=True):
            m = dict(c)
            for p in self.space:
                if isinstance(p, Float) and p.log:
                    m[p.name] = math.log(m[p.name])
            history.append((m, float(v)))
        stamp: list[float] = []

        @scheduler.serial
        def first(**params: Any) -> float:
            stamp.append(time.perf_counter())
            return 0.0

        # exploration=0: go straight to the GP (Mango otherwise starts with random draws).
        conf = {
            "initial_custom": history,
            "num_iteration": 1,
            "exploration": 0.0,
            "log_progress": False,
            **self._conf(),
        }
        self._seed()
        start = time.perf_counter()
        Tuner(self.param_dict, first, conf).minimize()
        return stamp[0] - start


def _mango_dist(p: Any) -> Any:
    from scipy.stats import uniform

    if isinstance(p, Float):
        if p.log:  # Mango's GP works on the raw value: search the log and map back.
            return uniform(math.log(p.low), math.log(p.high) - math.log(p.low))
        return uniform(p.low, p.high - p.low)
    if isinstance(p, Int):
        return range(p.low, p.high + 1, p.step)
    return list(p.choices)


# -- registry -----------------------------------------------------------------------------------

PEERS = ["optuna-tpe", "optuna-gp", "hyperopt-tpe", "mango-gp", "skopt-gp"]
OPTML = ["random", "sobol", "tpe", "gp", "forest", "cmaes"]
# OptML samplers with options, by the name the benchmarks know them by.
OPTML_VARIANTS: dict[str, dict[str, Any]] = {
    "tpe-mv": {"name": "tpe", "multivariate": True},
    # The GP with its TuRBO-style trust region from 10 dimensions (off by default).
    "gp-tr": {"name": "gp", "trust_region": "auto"},
}


def _optml_spec(name: str) -> str | dict[str, Any]:
    sampler = name[len(OPTML_PREFIX) :] if name.startswith(OPTML_PREFIX) else name
    return OPTML_VARIANTS.get(sampler, sampler)


def make_adapter(name: str, space: Space, seed: int, budget: int, **options: Any) -> Adapter:
    """``name``: a peer from :data:`PEERS`, or an OptML sampler name (``optml-`` prefix optional).

    ``options``: ``mango_domain_size`` (see :class:`MangoAdapter`).
    """
    if name == "optuna-tpe":
        return OptunaAdapter(space, seed, budget, "tpe")
    if name == "optuna-gp":
        return OptunaAdapter(space, seed, budget, "gp")
    if name == "hyperopt-tpe":
        return HyperoptAdapter(space, seed, budget)
    if name == "mango-gp":
        return MangoAdapter(space, seed, budget, options.get("mango_domain_size"))
    if name == "skopt-gp":
        return SkoptAdapter(space, seed, budget)
    return OptMLAdapter(space, seed, budget, _optml_spec(name))


def canonical(name: str) -> str:
    return name if name in PEERS or name.startswith(OPTML_PREFIX) else OPTML_PREFIX + name


def available(name: str) -> str | None:
    """None if ``name`` can run here, else why not."""
    import importlib.util

    need = {
        "optuna-tpe": ["optuna"],
        "optuna-gp": ["optuna", "torch"],
        "hyperopt-tpe": ["hyperopt"],
        "mango-gp": ["mango"],
        "skopt-gp": ["skopt"],
    }
    for module in need.get(name, []):
        if importlib.util.find_spec(module) is None:
            return f"module {module!r} is not installed"
    if name not in PEERS:
        from optml.samplers import make_sampler

        try:
            make_sampler(_optml_spec(name))
        except Exception as exc:  # a sampler still being written
            return f"{type(exc).__name__}: {exc}"
    return None
