"""Meta-tuner for CASH (combined algorithm selection and hyperparameter search), after Mango.

A meta study searches several model families at once (an SVM, a random forest, KNN, ...), each
with its own search space. Its space is a :class:`~optml.space.MetaSpace` (see
:mod:`optml.space._conditional` for configurations and parameter names).

:class:`MetaSampler` keeps one surrogate per family (a Gaussian process by default, or a tree
ensemble) and chooses the family of each proposal epsilon-greedily: with probability epsilon a
random family, otherwise the family whose acquisition optimum is best. Epsilon starts at 1.0 and
shrinks by 0.9 per trial (counted from the study's trials, so the sampler stays pure) down to
0.1. The losses of all families are standardised together before the surrogates are fitted, so
their predictions are on one scale and the acquisition optima can be compared across families.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from optml.errors import SpecError
from optml.samplers._base import Sampler, SearchContext, fill_unique, unseen_points, warp_losses
from optml.space import Space
from optml.space._conditional import (
    MODEL_KEY,
    MetaSpace,
    is_meta_dict,
    meta_space,
    parse_subspaces,
)

# Re-exported: the conditional space moved to optml.space, where earlier code looked here.
__all__ = ["MODEL_KEY", "MetaSampler", "MetaSpace", "is_meta_dict", "meta_space", "parse_subspaces"]


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
        # The families in their stored form, as to_spec records them.
        self.subspaces = (
            None if self.space is None else {n: f.to_dict() for n, f in self.space.families.items()}
        )
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
        sampler = super().from_spec(options, **context)
        assert isinstance(sampler, MetaSampler)
        return sampler

    def check_space(self, space: Space) -> None:
        if self.space is None and not isinstance(space, MetaSpace):
            self._meta_space_missing()

    def remaining(self, ctx: SearchContext) -> int | None:
        return unseen_points(ctx, self._meta_space(ctx))

    def epsilon_at(self, iteration: int) -> float:
        """The exploration probability of the proposal made after ``iteration`` trials."""
        return max(self.min_epsilon, self.epsilon * self.decay**iteration)

    def _meta_space(self, ctx: SearchContext) -> MetaSpace:
        if self.space is not None:
            return self.space
        if isinstance(ctx.space, MetaSpace):
            return ctx.space
        self._meta_space_missing()

    @staticmethod
    def _meta_space_missing() -> NoReturn:
        raise SpecError(
            "algorithm 'meta' needs model families: give subspaces ({family: space}) or a study "
            "space built with optml.space.meta_space"
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
