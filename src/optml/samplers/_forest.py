"""Forest sampler: asynchronous model-based search with a tree-ensemble surrogate (as DeepHyper).

The search starts with a Latin hypercube of ``n_initial`` points. Once a few trials have finished
it fits an ensemble of regression trees (extra-trees by default, or a random forest) to the losses,
takes the spread of the per-tree predictions as the uncertainty, and proposes the point that
minimises the lower confidence bound ``mean - kappa * std`` over a few thousand candidates: uniform
draws plus mutations of the best points so far. Points still being evaluated (pending trials) and
points already chosen for the same batch enter the model with a made-up loss, the "constant liar",
so that asynchronous workers spread out instead of all probing the same place.

Trees split categorical parameters one-hot encoded, which suits spaces with many choices better
than a Gaussian process does.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from optml.errors import SpecError
from optml.samplers._base import Sampler, SearchContext, fill_unique, warp_losses
from optml.space import Categorical, Space

SurrogateKind = Literal["extra_trees", "random_forest"]
Liar = Literal["min", "mean", "max"]

_KINDS = ("extra_trees", "random_forest")
_LIARS = ("min", "mean", "max")


class ForestSurrogate:
    """A tree ensemble that predicts a mean and an uncertainty (the spread of its trees).

    ``X`` is given in the unit cube, one column per parameter, as :meth:`Space.encode` returns it.
    With ``space`` given, the surrogate one-hot encodes every categorical parameter with more than
    two choices itself (a categorical's unit value is its choice index, whose order means
    nothing); without it, every column is used as it is. Either way callers pass the same ``X``.

    >>> import numpy as np
    >>> X = np.linspace(0, 1, 20)[:, None]
    >>> model = ForestSurrogate(n_trees=16).fit(X, (X[:, 0] - 0.3) ** 2, np.random.default_rng(0))
    >>> mean, std = model.predict(np.array([[0.3], [0.9]]))
    >>> bool(mean[0] < mean[1])
    True
    """

    def __init__(
        self,
        space: Space | None = None,
        n_trees: int = 64,
        kind: SurrogateKind = "extra_trees",
        min_samples_leaf: int = 1,
    ) -> None:
        if kind not in _KINDS:
            raise SpecError(f"forest: surrogate {kind!r} is unknown; choose one of {list(_KINDS)}")
        if n_trees < 2:
            raise SpecError(f"forest: n_trees must be >= 2 to estimate a spread, got {n_trees}")
        self.space = space
        self.n_trees = int(n_trees)
        self.kind = kind
        self.min_samples_leaf = int(min_samples_leaf)
        self._model: Any = None
        # (column, number of choices) of the categoricals to one-hot encode.
        self._one_hot: list[tuple[int, int]] = []
        if space is not None:
            self._one_hot = [
                (j, p.size)
                for j, p in enumerate(space)
                if isinstance(p, Categorical) and p.size > 2
            ]

    def _features(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D array of points, got shape {X.shape}")
        if not self._one_hot:
            return X.astype(np.float32)
        drop = [j for j, _ in self._one_hot]
        blocks = [np.delete(X, drop, axis=1)]
        for j, size in self._one_hot:
            index = np.minimum((np.clip(X[:, j], 0.0, 1.0) * size).astype(int), size - 1)
            blocks.append(np.eye(size)[index])
        return np.hstack(blocks).astype(np.float32)

    def fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> ForestSurrogate:
        """Fit the trees to points ``X`` (n, d) and their losses ``y`` (n,); return ``self``."""
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

        y = np.asarray(y, dtype=float)
        features = self._features(X)
        if len(features) != len(y) or len(y) == 0:
            raise ValueError(
                f"fit needs as many losses as points (and some): {len(features)} vs {len(y)}"
            )
        cls = ExtraTreesRegressor if self.kind == "extra_trees" else RandomForestRegressor
        self._model = cls(
            n_estimators=self.n_trees,
            min_samples_leaf=self.min_samples_leaf,
            n_jobs=1,
            random_state=int(rng.integers(2**31 - 1)),
        )
        self._model.fit(features, y)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over the trees of the predicted loss at each row of ``X``."""
        if self._model is None:
            raise RuntimeError("ForestSurrogate.predict called before fit")
        features = self._features(X)
        per_tree = np.stack(
            [tree.predict(features, check_input=False) for tree in self._model.estimators_]
        )
        return per_tree.mean(axis=0), per_tree.std(axis=0)


class ForestSampler(Sampler):
    """Model-based search with a tree-ensemble surrogate and a lower-confidence-bound acquisition.

    Options:

    - ``n_initial`` (10): trials drawn from a Latin hypercube (seeded by the study's seed, continued
      by trial count) before the model takes over.
    - ``kappa`` (1.96): weight of the uncertainty in ``mean - kappa * std``; larger explores more.
    - ``liar`` ("mean"): the loss assumed for pending points and for points already chosen in the
      batch: the best ("min"), average ("mean") or worst ("max") loss observed. DeepHyper lies
      with the best value ("cl_max" on its maximised objective). Here the default is the mean:
      extra-trees interpolate their training points, so an optimistic lie makes the whole cell
      around a pending point look as good as the best trial and draws the rest of the batch
      next to it, while a pessimistic one pushes the batch away from promising regions (the
      comparison of the three lies is in benchmarks/RESULTS.md).
    - ``surrogate`` ("extra_trees" or "random_forest"), ``n_trees`` (64): the ensemble.
    - ``n_candidates`` (2000): points scored per proposal, half uniform, half mutations of the
      best trials.

    Cost per proposed point: one fit of ``n_trees`` trees on the trials so far (n_jobs=1) and one
    vectorised prediction over the candidates; a batch of ``n`` refits ``n`` times. Nearly all of
    it is scikit-learn's fit, which grows with the number of trials (timings in
    benchmarks/RESULTS.md).
    """

    name = "forest"

    def __init__(
        self,
        n_initial: int = 10,
        kappa: float = 1.96,
        liar: Liar = "mean",
        surrogate: SurrogateKind = "extra_trees",
        n_trees: int = 64,
        n_candidates: int = 2000,
    ) -> None:
        if isinstance(n_initial, bool) or not isinstance(n_initial, int) or n_initial < 0:
            raise SpecError(f"forest: n_initial must be an integer >= 0, got {n_initial!r}")
        if isinstance(kappa, bool) or not isinstance(kappa, int | float) or not kappa >= 0:
            raise SpecError(f"forest: kappa must be a number >= 0, got {kappa!r}")
        if liar not in _LIARS:
            raise SpecError(f"forest: liar {liar!r} is unknown; choose one of {list(_LIARS)}")
        if surrogate not in _KINDS:
            raise SpecError(
                f"forest: surrogate {surrogate!r} is unknown; choose one of {list(_KINDS)}"
            )
        if isinstance(n_trees, bool) or not isinstance(n_trees, int) or n_trees < 2:
            raise SpecError(f"forest: n_trees must be an integer >= 2, got {n_trees!r}")
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 10:
            raise SpecError(f"forest: n_candidates must be an integer >= 10, got {n_candidates!r}")
        self.n_initial = n_initial
        self.kappa = float(kappa)
        self.liar = liar
        self.surrogate = surrogate
        self.n_trees = n_trees
        self.n_candidates = n_candidates

    # -- proposing ------------------------------------------------------------------------
    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        if n <= 0:
            return []
        space = ctx.space
        seen = ctx.seen_keys()
        out: list[dict[str, Any]] = []
        chosen_units: list[np.ndarray] = []

        start = len(ctx.trials)
        n_design = max(0, min(n, self.n_initial - start))
        if n_design:
            design = self._design(ctx)
            for index in range(start, start + n_design):
                config = space.decode(design[index])
                key = space.key(config)
                if key not in seen:
                    seen.add(key)
                    out.append(config)
                    chosen_units.append(space.encode(config))

        completed = ctx.completed
        # Two finished trials are the least a model can learn a direction from; until then the
        # remaining slots are filled at random below.
        if len(completed) >= 2:
            X = ctx.encode(completed)
            # Trees split on raw values would spend themselves on a heavy upper tail.
            y = warp_losses(ctx.losses(completed))
            pending = [p for p in ctx.pending if _complete(space, p)]
            lie = float({"min": np.min(y), "mean": np.mean(y), "max": np.max(y)}[self.liar])
            lied = [space.encode(p) for p in pending] + chosen_units
            best = X[np.argsort(y, kind="stable")[: min(5, len(y))]]
            while len(out) < n:
                X_fit = np.vstack([X, *lied]) if lied else X
                y_fit = np.concatenate([y, np.full(len(lied), lie)])
                model = ForestSurrogate(space, self.n_trees, self.surrogate).fit(X_fit, y_fit, rng)
                found = self._best_candidate(space, model, best, seen, rng)
                if found is None:
                    break
                seen.add(space.key(found))
                out.append(found)
                lied.append(space.encode(found))
        if len(out) == n and not ctx.param_constraints:  # unique already: skip a second pass
            return out
        return fill_unique(ctx, out, n, rng)

    def _design(self, ctx: SearchContext) -> np.ndarray:
        from scipy.stats import qmc

        engine = qmc.LatinHypercube(len(ctx.space), rng=np.random.default_rng([ctx.seed, 7]))
        return engine.random(max(self.n_initial, 1))

    def _best_candidate(
        self,
        space: Space,
        model: ForestSurrogate,
        best: np.ndarray,
        seen: set[tuple[Any, ...]],
        rng: np.random.Generator,
    ) -> dict[str, Any] | None:
        candidates = space.snap(_candidates(space, best, self.n_candidates, rng))
        mean, std = model.predict(candidates)
        score = mean - self.kappa * std
        # Most top-ranked candidates are new points; decoding only until one is found keeps the
        # per-point Python work small.
        for i in np.argsort(score, kind="stable"):
            config = space.decode(candidates[i])
            if space.key(config) not in seen:
                return config
        return None


def _complete(space: Space, params: dict[str, Any]) -> bool:
    return all(name in params for name in space.names)


def _candidates(space: Space, best: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform points, plus mutations of the ``best`` points at step sizes from 0.01 to 0.3."""
    d = len(space)
    n_local = count // 2 if len(best) else 0
    uniform = rng.random((count - n_local, d))
    if not n_local:
        return uniform
    parents = best[rng.integers(len(best), size=n_local)]
    scale = np.exp(rng.uniform(math.log(0.01), math.log(0.3), size=(n_local, 1)))
    # Change a few coordinates at a time: in many dimensions, moving all at once is a random
    # jump, while one to three moves keep the child close to a good parent.
    change = rng.random((n_local, d)) < min(1.0, 2.0 / d)
    change[np.arange(n_local), rng.integers(d, size=n_local)] = True
    step = rng.normal(size=(n_local, d)) * scale
    categorical = np.array([isinstance(p, Categorical) for p in space])
    local = parents + np.where(change & ~categorical, step, 0.0)
    # A categorical that mutates jumps to a uniformly drawn choice: its index order means nothing.
    redraw = change & categorical
    local = np.where(redraw, rng.random((n_local, d)), local)
    return np.vstack([uniform, np.clip(local, 0.0, 1.0)])
