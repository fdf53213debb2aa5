"""CMA-ES sampler: covariance matrix adaptation for continuous spaces with many dimensions.

The evolution strategy runs in the unit cube over the float and integer parameters (integers are
searched as reals and rounded when decoded). Its state is never stored: each call rebuilds it by
replaying the finished trials, taken in trial-number order and grouped into generations of
``popsize``, through the rank-mu / rank-one update with negative weights for the worse half
("active" CMA); the finished trials after the last full generation and the pending ones are
members of the generation under way. The same trials therefore always give the same state, and
a restarted study proposes what the original would have.

Replay costs O(popsize * d^2 + d^3) per generation, O(n * d^2) for n trials when d is below the
population size: a few milliseconds per hundred trials at d = 10, fine up to a few thousand
trials. A one-entry cache resumes from the last replay when the trial history only grew, so a study
asking again and again does not replay from the start each time; it changes no result.

Integer parameters keep a margin (CMA-ES with margin): however small the step size, each
neighbouring value of the mean's is drawn with a small probability, so that an integer cannot
freeze on a value. Categorical parameters are not part of the Gaussian: each is drawn on its own
from the frequency of its choices among the best quarter of the finished trials (plus one
pseudo-count per choice).

When the distribution has converged (step size below ``tol_x`` of the cube, flat losses, or a
degenerate covariance) the search restarts from a random point: with twice the population
(IPOP), or, with BIPOP, alternately with a doubled population and with a small population and
step size; the restart point and sizes are drawn from the study's seed so that replay finds
them again.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from optml.errors import SpecError
from optml.samplers._base import Sampler, SearchContext, fill_unique
from optml.space import Categorical, Int, Space

_MAX_POPSIZE = 1024
_RESTARTS = ("ipop", "bipop", "none")


@dataclass(frozen=True)
class _Weights:
    """The strategy parameters that depend only on the dimension and the population size.

    The recombination weights are those of Hansen's tutorial (2016): the better half of each
    generation pulls the mean and the covariance toward itself, and the worse half pushes the
    covariance away from itself ("active" CMA, negative weights), which learns ill-conditioned
    and rotated shapes in fewer generations.
    """

    dim: int
    popsize: int
    mu: int
    weights: np.ndarray  # popsize entries, best first; the last popsize - mu negative
    mu_eff: float
    c_sigma: float
    d_sigma: float
    c_c: float
    c_1: float
    c_mu: float
    chi_n: float

    @classmethod
    def make(cls, dim: int, popsize: int) -> _Weights:
        mu = popsize // 2
        raw = math.log((popsize + 1) / 2) - np.log(np.arange(1, popsize + 1))
        positive, negative = raw[:mu], raw[mu:]
        mu_eff = float(positive.sum() ** 2 / np.sum(positive**2))
        c_sigma = (mu_eff + 2) / (dim + mu_eff + 5)
        d_sigma = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (dim + 1)) - 1) + c_sigma
        c_c = (4 + mu_eff / dim) / (dim + 4 + 2 * mu_eff / dim)
        c_1 = 2 / ((dim + 1.3) ** 2 + mu_eff)
        c_mu = min(1 - c_1 - 1e-8, 2 * (mu_eff - 2 + 1 / mu_eff) / ((dim + 2) ** 2 + mu_eff))
        weights = np.zeros(popsize)
        weights[:mu] = positive / positive.sum()
        if c_mu > 0 and negative.size and np.any(negative < 0):
            mu_eff_minus = float(negative.sum() ** 2 / np.sum(negative**2))
            alpha = min(
                1 + c_1 / c_mu,
                1 + 2 * mu_eff_minus / (mu_eff + 2),
                (1 - c_1 - c_mu) / (dim * c_mu),
            )
            weights[mu:] = alpha * negative / -negative.sum()
        chi_n = math.sqrt(dim) * (1 - 1 / (4 * dim) + 1 / (21 * dim**2))
        return cls(dim, popsize, mu, weights, mu_eff, c_sigma, d_sigma, c_c, c_1, c_mu, chi_n)


class _Lattice:
    """Where the integer dimensions of the searched (numeric) parameters change value.

    An integer parameter owns a cell of the unit interval per value (its encoding); a sample
    decodes to the value whose cell it falls in. Floats have no cells.
    """

    def __init__(self, params: list[Any]) -> None:
        self.dims = np.array([j for j, p in enumerate(params) if isinstance(p, Int)], dtype=int)
        self.params = [params[j] for j in self.dims]

    def __bool__(self) -> bool:
        return bool(len(self.dims))

    def cells(self, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper edges of the cell holding ``mean`` in each integer dimension
        (-inf / inf where there is no further value)."""
        lows, highs = np.full(len(self.dims), -np.inf), np.full(len(self.dims), np.inf)
        for i, (j, p) in enumerate(zip(self.dims, self.params, strict=True)):
            v = p.from_unit(float(mean[j]))
            if p.log:
                lo, hi = p.log_range
                if v > p.low:
                    lows[i] = (math.log(v - 0.5) - lo) / (hi - lo)
                if v < p.high:
                    highs[i] = (math.log(v + 0.5) - lo) / (hi - lo)
            else:
                index = (v - p.low) // p.step
                if index > 0:
                    lows[i] = index / p.size
                if index < p.size - 1:
                    highs[i] = (index + 1) / p.size
        return lows, highs


@dataclass
class _State:
    """One run of the strategy: mean, step size, covariance (and its eigenbasis), paths.

    Besides the run itself it carries what the restart strategy needs: how many evaluations
    the runs with a large (IPOP-style) and a small (local, BIPOP) population have used, and
    the largest population so far.
    """

    w: _Weights
    mean: np.ndarray
    sigma: float
    cov: np.ndarray
    basis: np.ndarray  # eigenvectors of cov (columns)
    scales: np.ndarray  # square roots of the eigenvalues
    p_sigma: np.ndarray
    p_c: np.ndarray
    generation: int = 0
    restarts: int = 0
    best_history: tuple[float, ...] = ()
    large: bool = True  # a run of the large-population regime (always, without BIPOP)
    large_popsize: int = 0
    large_evals: int = 0
    small_evals: int = 0

    @classmethod
    def start(cls, dim: int, popsize: int, mean: np.ndarray, sigma: float, restarts: int) -> _State:
        return cls(
            w=_Weights.make(dim, popsize),
            mean=mean.astype(float),
            sigma=float(sigma),
            cov=np.eye(dim),
            basis=np.eye(dim),
            scales=np.ones(dim),
            p_sigma=np.zeros(dim),
            p_c=np.zeros(dim),
            restarts=restarts,
            large_popsize=popsize,
        )

    def copy(self) -> _State:
        return replace(
            self,
            mean=self.mean.copy(),
            cov=self.cov.copy(),
            basis=self.basis.copy(),
            scales=self.scales.copy(),
            p_sigma=self.p_sigma.copy(),
            p_c=self.p_c.copy(),
        )

    def _inv_sqrt(self, v: np.ndarray) -> np.ndarray:
        """C^{-1/2} applied to the rows of ``v``."""
        return ((v @ self.basis) / self.scales) @ self.basis.T

    def margin_scale(self, lattice: _Lattice, margin: float) -> np.ndarray:
        """Per dimension, the factor (>= 1; 1 for floats) that widens the samples of each
        integer dimension so that each neighbouring value of the mean's is drawn with
        probability at least ``margin / 2``: CMA-ES with margin (Hamano et al., 2022).

        Without it an integer dimension whose neighbours lost a few generations in a row gets
        a step size far below its cell, every sample decodes to the same value, selection sees
        no difference, and that dimension never moves again.
        """
        scale = np.ones(self.w.dim)
        if not lattice or margin <= 0:
            return scale
        dims = lattice.dims
        lows, highs = lattice.cells(self.mean)
        mean = self.mean[dims]
        spread = self.sigma * np.sqrt(np.maximum(np.diag(self.cov)[dims], 1e-300))
        far = np.fmax(
            np.where(np.isfinite(lows), mean - lows, np.nan),
            np.where(np.isfinite(highs), highs - mean, np.nan),
        )
        z = _normal_quantile(1 - margin / 2)
        need = np.where(np.isnan(far), 1.0, far / (z * spread))
        scale[dims] = np.maximum(1.0, need)
        return scale

    def tell(self, points: np.ndarray, losses: np.ndarray, widen: np.ndarray | None = None) -> None:
        """Update from one generation: ``points`` (popsize, d) in the cube and their losses;
        ``widen``: the margin scale the generation was drawn with (undone here)."""
        w = self.w
        steps = (points - self.mean) / self.sigma
        if widen is not None:
            steps /= widen
        # The points were not necessarily drawn from the current distribution (asynchronous
        # workers, earlier generations' stragglers, other samplers' trials, integers decoded to
        # their value). Hansen's rule for injected solutions bounds their Mahalanobis length so
        # that none can blow up the update.
        length = np.linalg.norm(self._inv_sqrt(steps), axis=1)
        bound = math.sqrt(w.dim) + 2 * w.dim / (w.dim + 2)
        steps *= np.minimum(1.0, bound / np.maximum(length, 1e-300))[:, None]

        ranked = steps[np.argsort(losses, kind="stable")]
        step_w = w.weights[: w.mu] @ ranked[: w.mu]
        self.mean = self.mean + self.sigma * step_w

        self.p_sigma = (1 - w.c_sigma) * self.p_sigma + math.sqrt(
            w.c_sigma * (2 - w.c_sigma) * w.mu_eff
        ) * self._inv_sqrt(step_w[None, :])[0]
        norm_ps = float(np.linalg.norm(self.p_sigma))
        threshold = (1.4 + 2 / (w.dim + 1)) * w.chi_n
        correction = math.sqrt(1 - (1 - w.c_sigma) ** (2 * (self.generation + 1)))
        h_sigma = 1.0 if norm_ps / correction < threshold else 0.0
        self.p_c = (1 - w.c_c) * self.p_c + h_sigma * math.sqrt(
            w.c_c * (2 - w.c_c) * w.mu_eff
        ) * step_w
        delta = (1 - h_sigma) * w.c_c * (2 - w.c_c)
        # Negative weights act on directions rescaled to the dimension's expected length, so
        # that a long unlucky step cannot shrink the covariance too much.
        weights = w.weights.copy()
        bad = weights < 0
        if bad.any():
            lengths = np.sum(self._inv_sqrt(ranked[bad]) ** 2, axis=1)
            weights[bad] *= w.dim / np.maximum(lengths, 1e-300)
        rank_mu = (ranked * weights[:, None]).T @ ranked
        self.cov = (
            (1 + w.c_1 * delta - w.c_1 - w.c_mu * float(w.weights.sum())) * self.cov
            + w.c_1 * np.outer(self.p_c, self.p_c)
            + w.c_mu * rank_mu
        )
        self.cov = (self.cov + self.cov.T) / 2
        self.sigma *= math.exp(min(1.0, (w.c_sigma / w.d_sigma) * (norm_ps / w.chi_n - 1)))
        self.generation += 1
        keep = 10 + 30 * w.dim // w.popsize
        self.best_history = (self.best_history + (float(np.min(losses)),))[-keep:]

        eigenvalues, self.basis = np.linalg.eigh(self.cov)
        self.scales = np.sqrt(np.maximum(eigenvalues, 1e-300))

    def converged(self, losses: np.ndarray, tol_x: float) -> bool:
        """Whether the run has nothing more to find: tiny steps, flat losses, or a degenerate C."""
        if not (np.all(np.isfinite(self.cov)) and math.isfinite(self.sigma)):
            return True
        if self.sigma * float(np.sqrt(np.max(np.diag(self.cov)))) < tol_x:
            return True
        if float(self.scales.max() / self.scales.min()) ** 2 > 1e14:
            return True
        history = self.best_history
        if len(history) >= 10 + 30 * self.w.dim // self.w.popsize:
            spread = max(max(history) - min(history), float(np.ptp(losses)))
            if spread <= 1e-12 * max(1.0, abs(min(history))):
                return True
        return False

    def sample(
        self, rng: np.random.Generator, count: int, widen: np.ndarray | None = None
    ) -> np.ndarray:
        """``count`` points from N(mean, sigma^2 C), each dimension's deviation multiplied by
        ``widen``; redrawn (then clipped) to keep the float dimensions in the cube."""
        dim = self.w.dim
        check = np.ones(dim, dtype=bool) if widen is None else widen == 1.0
        out = np.empty((count, dim))
        for i in range(count):
            for _ in range(20):
                z = rng.standard_normal(dim)
                step = self.sigma * (self.basis @ (self.scales * z))
                x = self.mean + (step if widen is None else widen * step)
                if np.all((x[check] >= 0.0) & (x[check] <= 1.0)):
                    break
            out[i] = np.clip(x, 0.0, 1.0)
        return out


def _normal_quantile(q: float) -> float:
    return NormalDist().inv_cdf(q)


class CMAESSampler(Sampler):
    """CMA-ES over the numeric parameters, rebuilt from the trials on every call.

    Options: ``popsize`` (default 4 + 3 ln d), ``sigma0`` (1/6, the initial step size as a
    fraction of each range), ``restart`` (what to do when a run has converged: "ipop" restarts
    with a doubled population, "bipop" alternates those with runs of a small population and
    step size that search locally, Hansen 2009; "none" keeps going), ``tol_x`` (1e-4: the step
    size, in the unit cube, taken as converged; finer than hyperparameters need, and coarse
    enough that a run stuck in a local optimum restarts within a few thousand trials),
    ``margin`` (the least probability, per integer parameter, of drawing a value other than the
    mean's; default 1 / (d * popsize), 0 turns it off). Best for spaces of many continuous
    parameters and budgets of hundreds to thousands of trials; for small budgets a model-based
    sampler (tpe, gp, forest) does better.

    >>> CMAESSampler(popsize=12, sigma0=0.2).to_spec()
    {'name': 'cmaes', 'popsize': 12, 'sigma0': 0.2, 'restart': 'ipop', 'tol_x': 0.0001}
    """

    name = "cmaes"

    def __init__(
        self,
        popsize: int | None = None,
        sigma0: float = 1 / 6,
        restart: str = "ipop",
        tol_x: float = 1e-4,
        margin: float | None = None,
    ) -> None:
        if popsize is not None and (
            isinstance(popsize, bool) or not isinstance(popsize, int) or popsize < 2
        ):
            raise SpecError(f"cmaes: popsize must be an integer >= 2 (or null), got {popsize!r}")
        if isinstance(sigma0, bool) or not isinstance(sigma0, int | float) or not 0 < sigma0 <= 1:
            raise SpecError(f"cmaes: sigma0 must be a number in (0, 1], got {sigma0!r}")
        if restart not in _RESTARTS:
            raise SpecError(
                f"cmaes: restart must be one of {', '.join(map(repr, _RESTARTS))}, got {restart!r}"
            )
        if isinstance(tol_x, bool) or not isinstance(tol_x, int | float) or not tol_x >= 0:
            raise SpecError(f"cmaes: tol_x must be a number >= 0, got {tol_x!r}")
        if margin is not None and (
            isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin < 1
        ):
            raise SpecError(f"cmaes: margin must be a number in [0, 1) (or null), got {margin!r}")
        self.popsize = popsize
        self.sigma0 = float(sigma0)
        self.restart = restart
        self.tol_x = float(tol_x)
        self.margin = None if margin is None else float(margin)
        self._cache_lock = threading.Lock()
        # (fingerprint of the setup, trials replayed, digest of their data, state after them)
        self._cache: tuple[tuple[Any, ...], int, bytes, _State] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The cache and its lock are a speed-up only: a pickled sampler starts without them.
        state = dict(self.__dict__)
        state["_cache"] = None
        del state["_cache_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache_lock = threading.Lock()

    # -- proposing ------------------------------------------------------------------------
    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        if n <= 0:
            return []
        space = ctx.space
        numeric = [j for j, p in enumerate(space) if not isinstance(p, Categorical)]
        categorical = [j for j, p in enumerate(space) if isinstance(p, Categorical)]
        completed = ctx.completed
        units = ctx.encode(completed)
        losses = ctx.losses(completed)

        state = self.replay(space, units[:, numeric], losses, ctx.seed) if numeric else None
        widen = self._widen(space, state) if state is not None else None
        choice_probs = _choice_probabilities(space, categorical, units, losses)

        seen = ctx.seen_keys()
        out: list[dict[str, Any]] = []
        # Integer dimensions and a converged distribution can decode to points already tried;
        # draw again a bounded number of times, then let fill_unique top up at random.
        for _ in range(10):
            need = n - len(out)
            if need == 0:
                break
            batch = np.empty((need, len(space)))
            if state is not None:
                batch[:, numeric] = state.sample(rng, need, widen)
            for j, probs in zip(categorical, choice_probs, strict=True):
                index = rng.choice(len(probs), size=need, p=probs)
                batch[:, j] = (index + 0.5) / len(probs)
            for point in batch:
                config = space.decode(point)
                key = space.key(config)
                if key not in seen:
                    seen.add(key)
                    out.append(config)
        if len(out) == n and not ctx.param_constraints:  # unique already: skip a second pass
            return out
        return fill_unique(ctx, out, n, rng)

    def _lattice(self, space: Space) -> _Lattice:
        return _Lattice([p for p in space if not isinstance(p, Categorical)])

    def _widen(self, space: Space, state: _State, lattice: _Lattice | None = None) -> np.ndarray:
        """The margin scale of ``state`` (see :meth:`_State.margin_scale`)."""
        lattice = lattice if lattice is not None else self._lattice(space)
        margin = self.margin if self.margin is not None else 1 / (state.w.dim * state.w.popsize)
        return state.margin_scale(lattice, margin)

    def replay(self, space: Space, points: np.ndarray, losses: np.ndarray, seed: int) -> _State:
        """The state after the finished trials ``points`` (numeric dims only) and ``losses``."""
        dim = points.shape[1]
        default_popsize = self.popsize or 4 + int(3 * math.log(dim))
        setup = (
            repr(space.to_dict()),
            seed,
            dim,
            default_popsize,
            self.sigma0,
            self.restart,
            self.tol_x,
            self.margin,
        )
        lattice = self._lattice(space)

        state: _State | None = None
        done = 0
        with self._cache_lock:
            cached = self._cache
        if cached is not None and cached[0] == setup and cached[1] <= len(losses):
            if _digest(points[: cached[1]], losses[: cached[1]]) == cached[2]:
                done, state = cached[1], cached[3].copy()
        if state is None:
            state = _State.start(dim, default_popsize, np.full(dim, 0.5), self.sigma0, 0)

        while len(losses) - done >= state.w.popsize:
            size = state.w.popsize
            gen_points, gen_losses = points[done : done + size], losses[done : done + size]
            done += size
            widen = self._widen(space, state, lattice) if lattice else None
            state.tell(gen_points, gen_losses, widen)
            if lattice:  # an integer's mean beyond the cube would need an ever wider margin
                state.mean[lattice.dims] = np.clip(state.mean[lattice.dims], 0.0, 1.0)
            if self.restart != "none" and state.converged(gen_losses, self.tol_x):
                state = self._restarted(state, default_popsize, seed)

        with self._cache_lock:
            self._cache = (setup, done, _digest(points[:done], losses[:done]), state.copy())
        return state

    def _restarted(self, old: _State, default_popsize: int, seed: int) -> _State:
        """The next run after ``old`` converged, from a random point of the cube.

        IPOP: every run has twice the population of the one before. BIPOP: a run of the large
        regime (twice the largest population so far, step size ``sigma0``) whenever those runs
        have used no more evaluations than the small ones, else a small run: a population
        between the default and half the largest, and a step size between ``sigma0 / 100`` and
        ``sigma0``, both drawn at random, for a local search somewhere new.
        """
        dim = old.w.dim
        restarts = old.restarts + 1
        used = old.generation * old.w.popsize
        large_evals = old.large_evals + (used if old.large else 0)
        small_evals = old.small_evals + (0 if old.large else used)
        rng = np.random.default_rng([seed, 2417, restarts])
        mean = np.asarray(rng.random(dim))
        large = self.restart == "ipop" or large_evals <= small_evals
        largest = old.large_popsize
        if large:
            largest = min(2 * largest, _MAX_POPSIZE)
            popsize, sigma = largest, self.sigma0
        else:
            ratio = 0.5 * largest / default_popsize
            popsize = max(default_popsize, int(default_popsize * ratio ** (rng.random() ** 2)))
            sigma = self.sigma0 * 10 ** (-2 * rng.random())
        state = _State.start(dim, popsize, mean, sigma, restarts)
        return replace(
            state,
            large=large,
            large_popsize=largest,
            large_evals=large_evals,
            small_evals=small_evals,
        )


def _digest(points: np.ndarray, losses: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(points, dtype=float).tobytes())
    h.update(np.ascontiguousarray(losses, dtype=float).tobytes())
    return h.digest()


def _choice_probabilities(
    space: Space, categorical: list[int], units: np.ndarray, losses: np.ndarray
) -> list[np.ndarray]:
    """Per categorical: choice frequencies among the best quarter of the trials, plus one each."""
    params = space.params
    top = np.argsort(losses, kind="stable")[: max(1, len(losses) // 4)]
    out = []
    for j in categorical:
        size = params[j].size  # type: ignore[union-attr]
        counts = np.ones(size)
        if len(top):
            index = np.minimum((units[top, j] * size).astype(int), size - 1)
            counts += np.bincount(index, minlength=size)
        out.append(counts / counts.sum())
    return out
