"""CMA-ES sampler: covariance matrix adaptation for continuous spaces with many dimensions.

The evolution strategy runs in the unit cube over the float and integer parameters (integers are
searched as reals and rounded when decoded). Its state is never stored: each call rebuilds it by
replaying the finished trials, taken in trial-number order and grouped into generations of
``popsize``, through the standard rank-mu / rank-one update; the finished trials after the last
full generation and the pending ones are members of the generation under way. The same trials
therefore always give the same state, and a restarted study proposes what the original would have.

Replay costs O(popsize * d^2 + d^3) per generation, O(n * d^2) for n trials when d is below the
population size: a few milliseconds per hundred trials at d = 10, fine up to a few thousand
trials. A one-entry cache resumes from the last replay when the trial history only grew, so a study
asking again and again does not replay from the start each time; it changes no result.

Categorical parameters are not part of the Gaussian: each is drawn on its own from the frequency
of its choices among the best quarter of the finished trials (plus one pseudo-count per choice).

When the distribution has converged (step size below ``tol_x`` of the cube, flat losses, or a
degenerate covariance) the search restarts from a random point with twice the population (IPOP),
the restart point drawn from the study's seed so that replay finds it again.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from optml.errors import SpecError
from optml.samplers._base import Sampler, SearchContext, fill_unique
from optml.space import Categorical, Space

_MAX_POPSIZE = 1024


@dataclass(frozen=True)
class _Weights:
    """The strategy parameters that depend only on the dimension and the population size."""

    dim: int
    popsize: int
    mu: int
    weights: np.ndarray
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
        raw = math.log((popsize + 1) / 2) - np.log(np.arange(1, mu + 1))
        weights = raw / raw.sum()
        mu_eff = 1.0 / float(np.sum(weights**2))
        c_sigma = (mu_eff + 2) / (dim + mu_eff + 5)
        d_sigma = 1 + 2 * max(0.0, math.sqrt((mu_eff - 1) / (dim + 1)) - 1) + c_sigma
        c_c = (4 + mu_eff / dim) / (dim + 4 + 2 * mu_eff / dim)
        c_1 = 2 / ((dim + 1.3) ** 2 + mu_eff)
        c_mu = min(1 - c_1, 2 * (mu_eff - 2 + 1 / mu_eff) / ((dim + 2) ** 2 + mu_eff))
        chi_n = math.sqrt(dim) * (1 - 1 / (4 * dim) + 1 / (21 * dim**2))
        return cls(dim, popsize, mu, weights, mu_eff, c_sigma, d_sigma, c_c, c_1, c_mu, chi_n)


@dataclass
class _State:
    """One run of the strategy: mean, step size, covariance (and its eigenbasis), paths."""

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

    def tell(self, points: np.ndarray, losses: np.ndarray) -> None:
        """Update from one generation: ``points`` (popsize, d) in the cube and their losses."""
        w = self.w
        steps = (points - self.mean) / self.sigma
        # The points were not necessarily drawn from the current distribution (asynchronous
        # workers, earlier generations' stragglers, other samplers' trials). Hansen's rule for
        # injected solutions bounds their Mahalanobis length so that none can blow up the update.
        length = np.linalg.norm(self._inv_sqrt(steps), axis=1)
        bound = math.sqrt(w.dim) + 2 * w.dim / (w.dim + 2)
        steps *= np.minimum(1.0, bound / np.maximum(length, 1e-300))[:, None]

        order = np.argsort(losses, kind="stable")[: w.mu]
        elite = steps[order]
        step_w = w.weights @ elite
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
        rank_mu = (elite * w.weights[:, None]).T @ elite
        self.cov = (
            (1 + w.c_1 * delta - w.c_1 - w.c_mu) * self.cov
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

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` points from N(mean, sigma^2 C), redrawn (then clipped) to stay in the cube."""
        dim = self.w.dim
        out = np.empty((count, dim))
        for i in range(count):
            for _ in range(20):
                z = rng.standard_normal(dim)
                x = self.mean + self.sigma * (self.basis @ (self.scales * z))
                if np.all((x >= 0.0) & (x <= 1.0)):
                    break
            out[i] = np.clip(x, 0.0, 1.0)
        return out


class CMAESSampler(Sampler):
    """CMA-ES over the numeric parameters, rebuilt from the trials on every call.

    Options: ``popsize`` (default 4 + 3 ln d), ``sigma0`` (0.25, the initial step size as a
    fraction of each range), ``restart`` ("ipop": restart with a doubled population when the run
    has converged; "none" keeps going), ``tol_x`` (1e-6: the step size, in the unit cube, taken
    as converged). Best for spaces of many continuous parameters and budgets of hundreds to
    thousands of trials; for small budgets a model-based sampler (tpe, gp, forest) does better.

    >>> CMAESSampler(popsize=12).to_spec()
    {'name': 'cmaes', 'popsize': 12, 'sigma0': 0.25, 'restart': 'ipop', 'tol_x': 1e-06}
    """

    name = "cmaes"

    def __init__(
        self,
        popsize: int | None = None,
        sigma0: float = 0.25,
        restart: str = "ipop",
        tol_x: float = 1e-6,
    ) -> None:
        if popsize is not None and (
            isinstance(popsize, bool) or not isinstance(popsize, int) or popsize < 2
        ):
            raise SpecError(f"cmaes: popsize must be an integer >= 2 (or null), got {popsize!r}")
        if isinstance(sigma0, bool) or not isinstance(sigma0, int | float) or not 0 < sigma0 <= 1:
            raise SpecError(f"cmaes: sigma0 must be a number in (0, 1], got {sigma0!r}")
        if restart not in ("ipop", "none"):
            raise SpecError(f"cmaes: restart must be 'ipop' or 'none', got {restart!r}")
        if isinstance(tol_x, bool) or not isinstance(tol_x, int | float) or not tol_x >= 0:
            raise SpecError(f"cmaes: tol_x must be a number >= 0, got {tol_x!r}")
        self.popsize = popsize
        self.sigma0 = float(sigma0)
        self.restart = restart
        self.tol_x = float(tol_x)
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
                batch[:, numeric] = state.sample(rng, need)
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

    def replay(self, space: Space, points: np.ndarray, losses: np.ndarray, seed: int) -> _State:
        """The state after the finished trials ``points`` (numeric dims only) and ``losses``."""
        dim = points.shape[1]
        popsize = self.popsize or 4 + int(3 * math.log(dim))
        setup = (repr(space.to_dict()), seed, dim, popsize, self.sigma0, self.restart, self.tol_x)

        state: _State | None = None
        done = 0
        with self._cache_lock:
            cached = self._cache
        if cached is not None and cached[0] == setup and cached[1] <= len(losses):
            if _digest(points[: cached[1]], losses[: cached[1]]) == cached[2]:
                done, state = cached[1], cached[3].copy()
        if state is None:
            state = _State.start(dim, popsize, np.full(dim, 0.5), self.sigma0, 0)

        while len(losses) - done >= state.w.popsize:
            size = state.w.popsize
            gen_points, gen_losses = points[done : done + size], losses[done : done + size]
            done += size
            state.tell(gen_points, gen_losses)
            if self.restart == "ipop" and state.converged(gen_losses, self.tol_x):
                restarts = state.restarts + 1
                start_rng = np.random.default_rng([seed, 2417, restarts])
                state = _State.start(
                    dim,
                    min(2 * size, _MAX_POPSIZE),
                    np.asarray(start_rng.random(dim)),
                    self.sigma0,
                    restarts,
                )

        with self._cache_lock:
            self._cache = (setup, done, _digest(points[:done], losses[:done]), state.copy())
        return state


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
