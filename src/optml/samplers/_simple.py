"""Samplers that need no model: grid, random, and quasi-random (Sobol, Latin hypercube)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optml.errors import SpaceError
from optml.samplers._base import Sampler, SearchContext, fill_unique, unseen_points
from optml.space import Space

# The most points a grid over a space may have: each is a trial, and a grid is walked in order.
MAX_GRID = 10_000_000


class GridSampler(Sampler):
    """Every point of a finite space (or of an explicit list of ``points``), each once.

    Points come in grid order (the last parameter varies fastest) until trials have finished;
    from then on the next ``lookahead`` points are taken longest-first, each point's duration
    predicted by the nearest finished trial. Parallel workers then end together instead of one
    of them finishing a long trial alone at the end (longest-processing-time-first scheduling).
    The order depends only on what is in storage, so a restarted study continues the same way.
    When all points have been proposed it returns nothing and the study ends.
    """

    name = "grid"

    lookahead = 64

    def __init__(self, points: Sequence[Mapping[str, Any]] | None = None) -> None:
        self.points = [dict(p) for p in points] if points is not None else None

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        seen = ctx.seen_keys()
        window = max(n, self.lookahead)
        ahead: list[dict[str, Any]] = []
        for i, point in enumerate(self.points if self.points is not None else ctx.space.grid()):
            if self.points is not None:
                point = ctx.space.validate(point, where=f"grid point {i + 1}")
            key = ctx.space.key(point)
            if key in seen or not ctx.allows(point):
                continue
            seen.add(key)
            ahead.append(point)
            if len(ahead) == window:
                break
        return _longest_first(ctx, ahead)[:n]

    def check_space(self, space: Space) -> None:
        """A grid over the space itself needs a finite space of at most :data:`MAX_GRID` points."""
        if self.points is not None:
            return
        size = space.grid_size  # raises, naming the continuous parameters, on a non-finite space
        if size > MAX_GRID:
            axes = ", ".join(f"{p.name} {p.size:,}" for p in space)  # type: ignore[union-attr]
            raise SpaceError(
                f"grid search over {size:,} points ({axes}) is refused: a grid may have at most "
                f"{MAX_GRID:,}; give fewer values (a larger step) or choose another algorithm "
                "(random, sobol, tpe, ...)"
            )

    def remaining(self, ctx: SearchContext) -> int | None:
        if self.points is None:
            return unseen_points(ctx)
        seen = ctx.seen_keys()
        left = 0
        for point in self.points:
            key = ctx.space.key(point)
            if key not in seen and ctx.allows(point):
                seen.add(key)
                left += 1
        return left


def _longest_first(ctx: SearchContext, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``points`` ordered by the duration of their nearest finished trial, longest first."""
    timed = [t for t in ctx.trials if t.state.is_finished and t.duration_s is not None]
    if len(points) < 2 or not timed:
        return points
    done = ctx.encode(timed)
    todo = ctx.space.encode_many(points)
    nearest = ((todo[:, None, :] - done[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
    predicted = np.array([timed[j].duration_s for j in nearest])
    order = np.argsort(-predicted, kind="stable")  # ties keep grid order
    return [points[i] for i in order]


class RandomSampler(Sampler):
    """Independent uniform (log-uniform on log scales) draws; never repeats a point."""

    name = "random"
    learns = False

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        return fill_unique(ctx, ctx.space.sample(rng, n), n, rng)


class SobolSampler(Sampler):
    """A scrambled Sobol sequence, continued across calls from the number of trials so far."""

    name = "sobol"

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        from scipy.stats import qmc

        engine = qmc.Sobol(len(ctx.space), scramble=True, rng=np.random.default_rng(ctx.seed))
        if ctx.trials:
            engine.fast_forward(len(ctx.trials))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance warnings: we continue one sequence on purpose
            points = [ctx.space.decode(u) for u in engine.random(n)]
        return fill_unique(ctx, points, n, rng)


class LatinHypercubeSampler(Sampler):
    """Latin hypercube designs of ``block`` points (default: the study's budget, else 64)."""

    name = "lhs"

    def __init__(self, block: int | None = None) -> None:
        if block is not None and block < 1:
            raise SpaceError(f"lhs: block must be >= 1, got {block}")
        self.block = block

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        from scipy.stats import qmc

        block = self.block or ctx.budget or 64
        start = len(ctx.trials)
        points: list[dict[str, Any]] = []
        designs: dict[int, np.ndarray] = {}
        for index in range(start, start + n):
            b = index // block
            if b not in designs:
                designs[b] = qmc.LatinHypercube(
                    len(ctx.space), rng=np.random.default_rng([ctx.seed, b])
                ).random(block)
            points.append(ctx.space.decode(designs[b][index % block]))
        return fill_unique(ctx, points, n, rng)
