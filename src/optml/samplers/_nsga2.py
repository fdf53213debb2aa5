"""NSGA-II: an evolutionary sampler for several objectives at once (it also works for one).

The population is rebuilt from the trials on every call, so the sampler keeps no state:

1. While fewer than ``population_size`` trials exist (running ones count), propose random
   configurations: that is the first generation.
2. Afterwards, the parents are the best ``population_size`` finished trials by elitist NSGA-II
   survival over the whole history: non-dominated sorting (constrained dominance when the
   study has metric constraints: feasible first, then by violation), ties in the last front
   broken by crowding distance.
3. Each child comes from two binary tournaments (lower front wins, then larger crowding),
   simulated binary crossover (SBX) and polynomial mutation in the unit cube; categorical
   parameters take each value from either parent (uniform crossover) and are reset at random
   with the mutation probability.

Running trials are left to :func:`fill_unique`, which keeps a batch away from them and from
every point already tried.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optml.errors import SpecError
from optml.pareto import crowding_distance, non_dominated_sort
from optml.samplers._base import Sampler, SearchContext, fill_unique
from optml.space import Categorical


class NSGA2Sampler(Sampler):
    """Non-dominated sorting genetic algorithm II (Deb et al., 2002), pure and asynchronous.

    Options: ``population_size`` (default ``clip(2 * dims + 4, 8, 40)``, at most a fifth of the
    budget when the budget is known, and at least 8), ``crossover_prob`` (0.9),
    ``eta_crossover`` (SBX distribution index, 5), ``eta_mutation`` (5) and ``mutation_prob``
    per parameter (default ``1 / dims``).

    The defaults are smaller than the textbook ones (population 100, indices 15 and 20) because
    tuning budgets are short: a small population gets through more generations, and wider
    offspring distributions explore more of the front, within a hundred trials (the comparison
    is in benchmarks/RESULTS.md).
    """

    name = "nsga2"

    def __init__(
        self,
        population_size: int | None = None,
        crossover_prob: float = 0.9,
        eta_crossover: float = 5.0,
        eta_mutation: float = 5.0,
        mutation_prob: float | None = None,
    ) -> None:
        if population_size is not None and (
            not isinstance(population_size, int) or population_size < 2
        ):
            raise SpecError(
                f"nsga2: population_size must be an integer >= 2, got {population_size!r}"
            )
        for label, value in (("crossover_prob", crossover_prob), ("mutation_prob", mutation_prob)):
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise SpecError(f"nsga2: {label} must be in [0, 1], got {value!r}")
        for label, value in (("eta_crossover", eta_crossover), ("eta_mutation", eta_mutation)):
            if not float(value) >= 0.0:
                raise SpecError(f"nsga2: {label} must be >= 0, got {value!r}")
        self.population_size = population_size
        self.crossover_prob = float(crossover_prob)
        self.eta_crossover = float(eta_crossover)
        self.eta_mutation = float(eta_mutation)
        self.mutation_prob = None if mutation_prob is None else float(mutation_prob)

    def population(self, ctx: SearchContext) -> int:
        if self.population_size is not None:
            return self.population_size
        size = int(np.clip(2 * len(ctx.space) + 4, 8, 40))
        if ctx.budget:
            size = min(size, ctx.budget // 5)
        return max(size, 8)

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        size = self.population(ctx)
        done = ctx.completed
        if len(ctx.trials) < size or len(done) < 2:
            return fill_unique(ctx, ctx.space.sample(rng, n), n, rng)
        parents, rank, crowd = self._survivors(ctx, done, size)
        X = ctx.encode(parents)
        categorical = np.array([isinstance(p, Categorical) for p in ctx.space])
        children: list[dict[str, Any]] = []
        # A few spare children: some may repeat a known point and be dropped by fill_unique.
        while len(children) < n + 2:
            a = self._tournament(rank, crowd, rng)
            b = self._tournament(rank, crowd, rng)
            for child in self._mate(X[a], X[b], categorical, rng):
                children.append(ctx.space.decode(child))
        return fill_unique(ctx, children, n, rng)

    # -- selection ------------------------------------------------------------------------
    def _survivors(
        self, ctx: SearchContext, done: list[Any], size: int
    ) -> tuple[list[Any], np.ndarray, np.ndarray]:
        losses = ctx.loss_matrix(done)
        violations = ctx.violations(done)
        fronts = non_dominated_sort(losses, violations if np.any(violations > 0) else None)
        chosen: list[int] = []
        ranks: list[int] = []
        crowds: list[float] = []
        for r, front in enumerate(fronts):
            distance = crowding_distance(losses[front])
            if len(chosen) + len(front) > size:
                order = np.argsort(-distance, kind="stable")[: size - len(chosen)]
                front, distance = front[order], distance[order]
            chosen += front.tolist()
            ranks += [r] * len(front)
            crowds += distance.tolist()
            if len(chosen) >= size:
                break
        return [done[i] for i in chosen], np.array(ranks), np.array(crowds)

    @staticmethod
    def _tournament(rank: np.ndarray, crowd: np.ndarray, rng: np.random.Generator) -> int:
        i, j = rng.integers(len(rank), size=2)
        if rank[i] != rank[j]:
            return int(i if rank[i] < rank[j] else j)
        if crowd[i] != crowd[j]:
            return int(i if crowd[i] > crowd[j] else j)
        return int(i if rng.random() < 0.5 else j)

    # -- variation ------------------------------------------------------------------------
    def _mate(
        self, x1: np.ndarray, x2: np.ndarray, categorical: np.ndarray, rng: np.random.Generator
    ) -> list[np.ndarray]:
        c1, c2 = x1.copy(), x2.copy()
        d = len(x1)
        if rng.random() < self.crossover_prob:
            for i in range(d):
                if categorical[i]:
                    if rng.random() < 0.5:
                        c1[i], c2[i] = x2[i], x1[i]
                elif rng.random() < 0.5:
                    c1[i], c2[i] = _sbx(x1[i], x2[i], self.eta_crossover, rng)
        p_mut = self.mutation_prob if self.mutation_prob is not None else 1.0 / d
        for child in (c1, c2):
            for i in range(d):
                if rng.random() < p_mut:
                    if categorical[i]:
                        child[i] = rng.random()
                    else:
                        child[i] = _polynomial_mutation(child[i], self.eta_mutation, rng)
        return [np.clip(c1, 0.0, 1.0), np.clip(c2, 0.0, 1.0)]


def _sbx(a: float, b: float, eta: float, rng: np.random.Generator) -> tuple[float, float]:
    """Bounded simulated binary crossover of two values in [0, 1] (Deb and Agrawal)."""
    if abs(a - b) < 1e-14:
        return a, b
    y1, y2 = (a, b) if a < b else (b, a)
    u = rng.random()
    children = []
    for distance_to_bound, sign in ((y1, -1.0), (1.0 - y2, 1.0)):
        beta = 1.0 + 2.0 * distance_to_bound / (y2 - y1)
        alpha = 2.0 - beta ** -(eta + 1.0)
        if u <= 1.0 / alpha:
            beta_q = (u * alpha) ** (1.0 / (eta + 1.0))
        else:
            beta_q = (1.0 / (2.0 - u * alpha)) ** (1.0 / (eta + 1.0))
        children.append(0.5 * ((y1 + y2) + sign * beta_q * (y2 - y1)))
    c1, c2 = (min(max(c, 0.0), 1.0) for c in children)
    return (c1, c2) if rng.random() < 0.5 else (c2, c1)


def _polynomial_mutation(y: float, eta: float, rng: np.random.Generator) -> float:
    """Bounded polynomial mutation of a value in [0, 1] (Deb and Goyal)."""
    u = rng.random()
    power = 1.0 / (eta + 1.0)
    if u < 0.5:
        xy = 1.0 - y
        value = 2.0 * u + (1.0 - 2.0 * u) * xy ** (eta + 1.0)
        delta = value**power - 1.0
    else:
        xy = y
        value = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * xy ** (eta + 1.0)
        delta = 1.0 - value**power
    return min(max(y + delta, 0.0), 1.0)
