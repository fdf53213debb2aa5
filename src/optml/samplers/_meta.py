"""Meta-tuner for CASH (combined algorithm selection and hyperparameter search), after Mango.

A meta study searches several model families at once (an SVM, a random forest, KNN, ...), each
with its own search space. Its space is a :class:`MetaSpace`; a configuration is the family's
name under ``"model"`` plus that family's parameters only::

    {"model": "svm", "C": 3.2, "gamma": 0.01}
    {"model": "knn", "n_neighbors": 7, "weights": "distance"}

Parameter names. A family's parameters keep their own names, so an objective reads
``params["C"]``. Two families may share a name when they define it identically (it is then one
parameter of the union space). When they define it differently, each family's copy is prefixed
with the family's name: ``"rf.max_depth"`` and ``"gbm.max_depth"``.
:meth:`MetaSpace.split` always gives back ``(family, params under their own names)``, so an
objective that wants the plain names calls ``family, params = space.split(config)``.

:class:`MetaSampler` keeps one surrogate per family (a Gaussian process by default, or a tree
ensemble) and chooses the family of each proposal epsilon-greedily: with probability epsilon a
random family, otherwise the family whose acquisition optimum is best. Epsilon starts at 1.0 and
shrinks by 0.9 per trial (counted from the study's trials, so the sampler stays pure) down to
0.1. The losses of all families are standardised together before the surrogates are fitted, so
their predictions are on one scale and the acquisition optima can be compared across families.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from optml.errors import SpaceError, SpecError
from optml.samplers._base import Sampler, SearchContext, fill_unique, warp_losses
from optml.space import Categorical, Space, parse_space

MODEL_KEY = "model"
_META_TYPE = "meta"


def _parse_family(name: str, spec: Any, where: str) -> Space:
    """A family's space from YAML/Python forms or from :meth:`Space.to_dict` (stored) form."""
    if isinstance(spec, Space):
        return spec
    if (
        isinstance(spec, Mapping)
        and spec
        and all(isinstance(v, Mapping) and "type" in v for v in spec.values())
    ):
        return Space.from_dict(spec)
    return parse_space(spec, where=where)


def parse_subspaces(spec: Any, where: str = "space") -> dict[str, Space]:
    """Read the families of a meta study.

    Accepted: a dict ``{family: space}`` or a list ``[{model: family, space: {...}}, ...]``
    (the study spec's form), where each space is anything :func:`parse_space` reads.
    """
    if isinstance(spec, MetaSpace):
        return spec.families
    families: dict[str, Space] = {}
    if isinstance(spec, Mapping):
        items = [(name, value, f"{where}.{name}") for name, value in spec.items()]
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        items = []
        for i, entry in enumerate(spec):
            if not isinstance(entry, Mapping) or set(entry) != {MODEL_KEY, "space"}:
                raise SpecError(
                    f"{where}[{i}]: each model family is {{model: NAME, space: {{...}}}}, "
                    f"got {entry!r}"
                )
            items.append((entry[MODEL_KEY], entry["space"], f"{where}[{i}].space"))
    else:
        raise SpecError(
            f"{where}: the families of a meta study are a dict {{family: space}} or a list "
            f"[{{model: family, space: {{...}}}}], got {type(spec).__name__}"
        )
    for name, value, here in items:
        if not isinstance(name, str) or not name:
            raise SpecError(f"{here}: a model family needs a non-empty name, got {name!r}")
        if name in families:
            raise SpecError(f"{where}: the model family {name!r} is given twice")
        families[name] = _parse_family(name, value, here)
    if not families:
        raise SpecError(f"{where}: a meta study needs at least one model family")
    return families


class MetaSpace(Space):
    """The union of several model families' spaces with a ``"model"`` choice among them.

    As a :class:`Space` it lists ``"model"`` and every family parameter under its flat name (see
    the module docstring), so displays and storage see one list. Its methods are conditional:
    :meth:`validate` wants ``"model"`` and exactly that family's parameters, :meth:`sample`,
    :meth:`decode` and :meth:`grid` produce such configurations, and :meth:`encode` puts the
    parameters of the other families at 0.5.

    >>> space = MetaSpace({"svm": {"C": {"loguniform": [0.1, 10]}}, "knn": {"k": [1, 3, 5]}})
    >>> space.validate({"model": "knn", "k": 3})
    {'model': 'knn', 'k': 3}
    >>> space.split({"model": "svm", "C": 1.0})
    ('svm', {'C': 1.0})
    """

    def __init__(self, families: Any) -> None:
        self._families = parse_subspaces(families)
        definitions: dict[str, set[str]] = {}
        for family in self._families.values():
            for p in family:
                definitions.setdefault(p.name, set()).add(repr(p.to_dict()))
        self._flat: dict[str, dict[str, str]] = {}
        params: list[Any] = [Categorical(MODEL_KEY, tuple(self._families))]
        added: set[str] = set()
        for fname, family in self._families.items():
            if MODEL_KEY in family:
                raise SpaceError(
                    f"space.{fname}: a family may not have a parameter named {MODEL_KEY!r}; "
                    "that name holds the family's name"
                )
            mapping: dict[str, str] = {}
            for p in family:
                flat = p.name if len(definitions[p.name]) == 1 else f"{fname}.{p.name}"
                mapping[p.name] = flat
                if flat not in added:
                    added.add(flat)
                    params.append(dataclasses.replace(p, name=flat))
            self._flat[fname] = mapping
        super().__init__(params)
        self._index = {name: i for i, name in enumerate(self.names)}

    # -- families -------------------------------------------------------------------------
    @property
    def families(self) -> dict[str, Space]:
        """Each family's own space, parameters under their own names."""
        return dict(self._families)

    def flat_names(self, family: str) -> dict[str, str]:
        """A family's parameter names mapped to their names in trial params."""
        return dict(self._flat[family])

    def join(self, family: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Trial params from a family's name and its parameters under their own names."""
        mapping = self._flat[family]
        return {MODEL_KEY: family, **{mapping[k]: v for k, v in params.items()}}

    def split(self, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(family, its parameters under their own names)`` of trial params."""
        family = config.get(MODEL_KEY)
        if not isinstance(family, str) or family not in self._families:
            raise SpaceError(
                f"configuration: {MODEL_KEY}={family!r} is not one of the model families "
                f"{list(self._families)}"
            )
        mapping = self._flat[family]
        return family, {own: config[flat] for own, flat in mapping.items() if flat in config}

    # -- checking -------------------------------------------------------------------------
    def validate(self, config: Mapping[str, Any], where: str = "configuration") -> dict[str, Any]:
        family = config.get(MODEL_KEY)
        if not isinstance(family, str) or family not in self._families:
            raise SpaceError(
                f"{where}: {MODEL_KEY}={family!r} is not one of the model families "
                f"{list(self._families)}"
            )
        mapping = self._flat[family]
        expected = set(mapping.values())
        given = set(config) - {MODEL_KEY}
        if given != expected:
            parts = []
            if expected - given:
                parts.append(f"missing {sorted(expected - given)}")
            if given - expected:
                parts.append(f"unknown {sorted(given - expected)}")
            raise SpaceError(
                f"{where}: {', '.join(parts)}; the family {family!r} has {sorted(expected)}"
            )
        own = {o: config[f] for o, f in mapping.items()}
        checked = self._families[family].validate(own, where=f"{where} ({MODEL_KEY} {family!r})")
        return self.join(family, checked)

    # -- unit cube ------------------------------------------------------------------------
    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        return np.array(
            [p.to_unit(config[p.name]) if p.name in config else 0.5 for p in self], dtype=float
        )

    def encode_many(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not configs:
            return np.empty((0, len(self)))
        return np.array([self.encode(c) for c in configs], dtype=float)

    def decode(self, point: Sequence[float] | np.ndarray) -> dict[str, Any]:
        if len(point) != len(self):
            raise ValueError(f"point has {len(point)} dimensions, the space {len(self)}")
        family = str(self[MODEL_KEY].from_unit(point[0]))
        return {
            MODEL_KEY: family,
            **{f: self[f].from_unit(point[self._index[f]]) for f in self._flat[family].values()},
        }

    def sample(self, rng: np.random.Generator, n: int = 1) -> list[dict[str, Any]]:
        """A family drawn uniformly, then a uniform point of its space, ``n`` times."""
        names = list(self._families)
        out = []
        for i in rng.integers(len(names), size=n):
            family = names[int(i)]
            out.append(self.join(family, self._families[family].sample(rng, 1)[0]))
        return out

    # -- grids ----------------------------------------------------------------------------
    @property
    def is_finite(self) -> bool:
        return all(f.is_finite for f in self._families.values())

    @property
    def grid_size(self) -> int:
        return sum(f.grid_size for f in self._families.values())

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every point of every family, family after family."""
        for name, family in self._families.items():
            for config in family.grid():
                yield self.join(name, config)

    # -- storage --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"model": {"type": "meta", "families": {name: family.to_dict()}}}``."""
        return {
            MODEL_KEY: {
                "type": _META_TYPE,
                "families": {n: f.to_dict() for n, f in self._families.items()},
            }
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaSpace:
        if not is_meta_dict(data):
            raise SpaceError(f"not a stored meta space: {dict(data)!r}")
        return cls(dict(data[MODEL_KEY]["families"]))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={f!r}" for n, f in self._families.items())
        return f"MetaSpace({inner})"


def is_meta_dict(data: Any) -> bool:
    """Whether ``data`` is the stored form (:meth:`MetaSpace.to_dict`) of a meta space."""
    if not isinstance(data, Mapping) or set(data) != {MODEL_KEY}:
        return False
    entry = data[MODEL_KEY]
    return isinstance(entry, Mapping) and entry.get("type") == _META_TYPE


def meta_space(subspaces: Any) -> MetaSpace:
    """The space of a meta study from ``{family: space}`` or ``[{model: family, space: ...}]``."""
    return MetaSpace(subspaces)


# -- surrogates ---------------------------------------------------------------------------


def _make_surrogate(kind: str, space: Space) -> Any:
    """A fresh surrogate with ``fit(X, y, rng)`` and ``predict(X) -> (mean, std)``."""
    if kind == "forest":
        from optml.samplers._forest import ForestSurrogate

        # A smaller forest than the forest sampler's: a meta study fits one per family.
        return ForestSurrogate(space=space, n_trees=32)
    from optml.samplers._gp import GaussianProcess

    return GaussianProcess()


# -- the sampler --------------------------------------------------------------------------

_SURROGATES = ("gp", "forest")


class MetaSampler(Sampler):
    """Epsilon-greedy choice among model families, each searched with its own surrogate.

    Options:

    - ``subspaces``: the families, ``{family: space}`` or ``[{model: family, space: ...}]``
      (YAML forms allowed). Without it the study's space must be a :class:`MetaSpace`.
    - ``surrogate`` ("gp" or "forest"): the model of each family's losses.
    - ``epsilon`` (1.0), ``decay`` (0.9), ``min_epsilon`` (0.1): the probability of choosing a
      random family for the proposal made after ``t`` trials is
      ``max(min_epsilon, epsilon * decay ** t)``.
    - ``n_initial`` (2): each family first gets this many random points.
    - ``kappa`` (1.0): the acquisition is the lower confidence bound ``mean - kappa * std`` of
      the jointly standardised loss; the family with the lowest optimum is exploited.
    - ``n_candidates`` (300): candidates scored per family and proposal (uniform draws plus
      perturbations of the family's best points).

    Pending trials and points already chosen for the batch enter their family's surrogate with
    the family's mean loss (a constant liar), so a batch spreads out. The proposal loop counts
    each proposal as one iteration: in a batch of 4 the epsilon of the 4th is ``decay**3`` times
    the first's.
    """

    name = "meta"

    def __init__(
        self,
        subspaces: Any = None,
        surrogate: str = "gp",
        epsilon: float = 1.0,
        decay: float = 0.9,
        min_epsilon: float = 0.1,
        n_initial: int = 2,
        kappa: float = 1.0,
        n_candidates: int = 300,
    ) -> None:
        if surrogate not in _SURROGATES:
            raise SpecError(
                f"meta: surrogate {surrogate!r} is unknown; choose one of {list(_SURROGATES)}"
            )
        for label, value, ok in (
            ("epsilon", epsilon, 0.0 <= epsilon <= 1.0),
            ("decay", decay, 0.0 < decay <= 1.0),
            ("min_epsilon", min_epsilon, 0.0 <= min_epsilon <= 1.0),
            ("kappa", kappa, kappa >= 0.0),
        ):
            if not ok:
                raise SpecError(f"meta: {label}={value!r} is out of range")
        if not isinstance(n_initial, int) or n_initial < 1:
            raise SpecError(f"meta: n_initial must be an integer >= 1, got {n_initial!r}")
        if not isinstance(n_candidates, int) or n_candidates < 10:
            raise SpecError(f"meta: n_candidates must be an integer >= 10, got {n_candidates!r}")
        self.space: MetaSpace | None = None if subspaces is None else MetaSpace(subspaces)
        self.surrogate = surrogate
        self.epsilon = float(epsilon)
        self.decay = float(decay)
        self.min_epsilon = float(min_epsilon)
        self.n_initial = n_initial
        self.kappa = float(kappa)
        self.n_candidates = n_candidates

    @classmethod
    def from_spec(cls, options: Mapping[str, Any], **context: Any) -> MetaSampler:
        """Build from ``{"subspaces": ..., **options}``; without subspaces, a meta ``space``
        given as context (``make_sampler("meta", space=meta_space(...))``) is used."""
        options = dict(options)
        if options.get("subspaces") is None and isinstance(context.get("space"), MetaSpace):
            options["subspaces"] = context["space"]
        try:
            return cls(**options)
        except TypeError as exc:
            raise SpecError(f"algorithm 'meta': bad options {sorted(options)}: {exc}") from None

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name}
        if self.space is not None:
            spec["subspaces"] = {n: f.to_dict() for n, f in self.space.families.items()}
        spec.update(
            surrogate=self.surrogate,
            epsilon=self.epsilon,
            decay=self.decay,
            min_epsilon=self.min_epsilon,
            n_initial=self.n_initial,
            kappa=self.kappa,
            n_candidates=self.n_candidates,
        )
        return spec

    def epsilon_at(self, iteration: int) -> float:
        """The exploration probability of the proposal made after ``iteration`` trials."""
        return max(self.min_epsilon, self.epsilon * self.decay**iteration)

    def _meta_space(self, ctx: SearchContext) -> MetaSpace:
        if self.space is not None:
            return self.space
        if isinstance(ctx.space, MetaSpace):
            return ctx.space
        raise SpecError(
            "algorithm 'meta' needs model families: give subspaces ({family: space}) or a study "
            "space built with optml.samplers._meta.meta_space"
        )

    # -- proposing ------------------------------------------------------------------------
    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        if n <= 0:
            return []
        space = self._meta_space(ctx)
        if ctx.space != space:
            ctx = dataclasses.replace(ctx, space=space)
        families = space.families
        names = list(families)

        done = [t for t in ctx.completed if t.params.get(MODEL_KEY) in families]
        losses = ctx.losses(done)
        finite = np.isfinite(losses)
        done = [t for t, ok in zip(done, finite, strict=True) if ok]
        losses = warp_losses(losses[finite])
        # One scale for every family, so that the surrogates' optima are comparable.
        center = float(np.mean(losses)) if len(losses) else 0.0
        scale = float(np.std(losses)) if len(losses) > 1 else 1.0
        z = (losses - center) / (scale if scale > 0 else 1.0)

        observed: dict[str, tuple[list[np.ndarray], list[float]]] = {f: ([], []) for f in names}
        for t, value in zip(done, z, strict=True):
            family, own = space.split(t.params)
            observed[family][0].append(families[family].encode(own))
            observed[family][1].append(float(value))
        lied: dict[str, list[np.ndarray]] = {f: [] for f in names}
        for params in ctx.pending:
            if params.get(MODEL_KEY) in families:
                family, own = space.split(params)
                if set(own) == set(families[family].names):
                    lied[family].append(families[family].encode(own))

        seen = ctx.seen_keys()
        counts = {f: 0 for f in names}
        for t in ctx.trials:
            if t.params.get(MODEL_KEY) in counts:
                counts[t.params[MODEL_KEY]] += 1
        models: dict[str, Any] = {}
        out: list[dict[str, Any]] = []
        start = len(ctx.trials)
        for j in range(n):
            available = [
                f
                for f in names
                if not (families[f].is_finite and counts[f] >= families[f].grid_size)
            ]
            if not available:
                break
            sizes = {f: len(observed[f][1]) + len(lied[f]) for f in available}
            starving = [f for f in available if sizes[f] < self.n_initial]
            config: dict[str, Any] | None = None
            if starving:
                # Every family gets a few random points before any is judged.
                fewest = min(sizes[f] for f in starving)
                family = _pick([f for f in starving if sizes[f] == fewest], rng)
            else:
                scores: dict[str, tuple[float, dict[str, Any] | None]] = {}
                explore = rng.random() < self.epsilon_at(start + j)
                candidates = [_pick(available, rng)] if explore else available
                for f in candidates:
                    scores[f] = self._best_point(
                        ctx, space, f, observed[f], lied[f], models, seen, rng
                    )
                family = min(candidates, key=lambda f: scores[f][0])
                if not np.isfinite(scores[family][0]):
                    family = _pick(candidates, rng)  # no family can be modelled yet
                config = scores[family][1]
            if config is None:
                config = self._random_point(ctx, space, family, seen, rng)
            if config is None:
                counts[family] = (
                    families[family].grid_size if families[family].is_finite else counts[family]
                )
                continue
            seen.add(space.key(config))
            counts[family] += 1
            out.append(config)
            _, own = space.split(config)
            x = families[family].encode(own)
            lied[family].append(x)
            model = models.get(family)
            if model is not None and hasattr(model, "condition") and observed[family][1]:
                # A GP takes the new lie without refitting its hyperparameters.
                models[family] = model.condition(
                    x[None, :], np.array([np.mean(observed[family][1])])
                )
            else:
                models.pop(family, None)  # its data changed: refit before scoring it again
        return fill_unique(ctx, out, n, rng)

    def _random_point(
        self,
        ctx: SearchContext,
        space: MetaSpace,
        family: str,
        seen: set[Any],
        rng: np.random.Generator,
    ) -> dict[str, Any] | None:
        fspace = space.families[family]
        for _ in range(50):
            config = space.join(family, fspace.sample(rng, 1)[0])
            if space.key(config) not in seen and ctx.allows(config):
                return config
        return None

    def _best_point(
        self,
        ctx: SearchContext,
        space: MetaSpace,
        family: str,
        observed: tuple[list[np.ndarray], list[float]],
        lied: list[np.ndarray],
        models: dict[str, Any],
        seen: set[Any],
        rng: np.random.Generator,
    ) -> tuple[float, dict[str, Any] | None]:
        """The family's acquisition optimum: (lower confidence bound, configuration)."""
        X_obs, y_obs = observed
        if len(y_obs) < 2:
            # Nothing to model (its trials failed, or are still running): never exploited.
            return np.inf, None
        fspace = space.families[family]
        y = np.array(y_obs)
        if family not in models:
            X = np.array(X_obs + lied)
            y_fit = np.concatenate([y, np.full(len(lied), float(np.mean(y)))])
            models[family] = _make_surrogate(self.surrogate, fspace).fit(X, y_fit, rng)
        model = models[family]

        d = len(fspace)
        uniform = rng.random((self.n_candidates, d))
        best = np.array(X_obs)[np.argsort(y, kind="stable")[:3]]
        local = best[rng.integers(len(best), size=self.n_candidates // 2)]
        local = np.clip(local + rng.normal(0.0, 0.08, local.shape), 0.0, 1.0)
        # Score the points that would actually run: integers and choices snapped to their values.
        U = fspace.snap(np.vstack([uniform, local]))
        mean, std = model.predict(U)
        score = np.asarray(mean, dtype=float) - self.kappa * np.asarray(std, dtype=float)
        for i in np.argsort(score, kind="stable"):
            config = space.join(family, fspace.decode(U[i]))
            if space.key(config) in seen or not ctx.allows(config):
                continue
            return float(score[i]), config
        return np.inf, None


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


__all__ = [
    "MODEL_KEY",
    "MetaSampler",
    "MetaSpace",
    "is_meta_dict",
    "meta_space",
    "parse_subspaces",
]
