"""Gaussian-process Bayesian optimisation: a Matérn-5/2 GP surrogate and the ``gp`` sampler.

Two public pieces:

- :class:`GaussianProcess`, a small reusable regressor on ``[0, 1]^d`` (``fit(X, y, rng)``,
  ``predict(X) -> (mean, std)``), written on numpy/scipy so that any sampler can use it.
- :class:`GPSampler`, Bayesian optimisation with log expected improvement, valid-point
  acquisition for mixed spaces, and batch/asynchronous proposals (kriging believer / constant
  liar, or Mango-style clustering of the best acquisition candidates).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.linalg.lapack import dtrtri

from optml.errors import SpecError
from optml.samplers._acquisition import (
    kmeans,
    log_expected_improvement,
    log_expected_improvement_grad,
)
from optml.samplers._base import WARPS, Sampler, SearchContext, fill_unique, warp_losses
from optml.samplers._lbfgsb import minimize_box
from optml.space import Categorical, Int, Space

_SQRT5 = math.sqrt(5.0)
_LOG_2PI = math.log(2.0 * math.pi)
_JITTER = 1e-9

# Hyperparameter bounds, in the standardised-output, unit-cube-input world the GP works in.
_LENGTHSCALE_BOUNDS = (1e-2, 1e2)
_SIGNAL_BOUNDS = (5e-2, 2e1)
_NOISE_BOUNDS = (1e-6, 1.0)
# Noise variance of the second start of the hyperparameter climb (standardised outputs).
_NOISY_START = 0.1
# Past this many rows the hyperparameters are first climbed on a subset of this size.
_STAGE_POINTS = 64
# The prior mean's quantile of the data by default, below and from _HIGH_DIMS input dimensions.
_MEAN_QUANTILE = 0.75
_HIGH_DIMS = 10
_HIGH_DIM_MEAN_QUANTILE = 1.0


# ---------------------------------------------------------------------------------------------
# The surrogate
# ---------------------------------------------------------------------------------------------
_BLAS_CONTROLLER: Any = None


def _one_blas_thread() -> Any:
    """A context that runs BLAS on one thread: our matrices (<= a few hundred rows) gain nothing
    from threads, and on a busy machine spinning BLAS threads cost 10x or more."""
    global _BLAS_CONTROLLER
    try:
        if _BLAS_CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER = ThreadpoolController()
        return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")
    except Exception:  # threadpoolctl missing or confused by an unusual BLAS: run as is
        return contextlib.nullcontext()


def _matern52(r2: np.ndarray, signal: float) -> np.ndarray:
    r = np.sqrt(r2)
    return signal * (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * np.exp(-_SQRT5 * r)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


class _Posterior:
    """The GP posterior for fixed hyperparameters, in standardised units; grows one point at a time.

    Inputs are kept divided by the length scales so that kernels are plain squared distances.
    ``w = L⁻¹ y`` lets the mean be written ``Vᵀ w`` with ``V = L⁻¹ k(X, x)``, which makes adding a
    (fantasy) observation a rank-one update of every cached prediction.
    """

    def __init__(
        self, X: np.ndarray, y: np.ndarray, lengthscales: np.ndarray, signal: float, noise: float
    ) -> None:
        self.lengthscales = lengthscales
        self.signal = signal
        self.noise = noise
        self.Xs = X / lengthscales
        self.y = y.copy()
        n = len(y)
        K = _matern52(_sq_dist(self.Xs, self.Xs), signal)
        K[np.diag_indices(n)] += noise + _JITTER
        self.L = _cholesky(K)
        # The explicit inverse factor turns every solve below into a matrix product, and it
        # grows by one row per added point as cheaply as L does.
        self.L_inv = _tri_inverse(self.L)
        self.w = self.L_inv @ y
        self._alpha: np.ndarray | None = None

    @property
    def alpha(self) -> np.ndarray:
        """K⁻¹ y, kept until the next :meth:`add`."""
        if self._alpha is None:
            self._alpha = self.L_inv.T @ self.w
        return self._alpha

    def mean_at_data(self) -> np.ndarray:
        """The latent mean at the training inputs: (K + σ²I) α = y gives K α = y - σ² α."""
        return self.y - (self.noise + _JITTER) * self.alpha

    def cross(self, X: np.ndarray) -> np.ndarray:
        """k(X_train, X) of shape (n, m)."""
        return _matern52(_sq_dist(self.Xs, X / self.lengthscales), self.signal)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, variance (of the latent function) and V = L⁻¹ k(X_train, X)."""
        if len(self.y) == 0:
            m = len(X)
            return np.zeros(m), np.full(m, self.signal), np.zeros((0, m))
        V = self.L_inv @ self.cross(X)
        mean = V.T @ self.w
        var = np.maximum(self.signal - np.sum(V * V, axis=0), 1e-12)
        return mean, var, V

    def add(self, x: np.ndarray, value: float) -> tuple[np.ndarray, float]:
        """Condition on one more observation; return (l, d) of the new Cholesky row [lᵀ, d]."""
        k = self.cross(x[None, :])[:, 0]
        row = self.L_inv @ k
        d = math.sqrt(max(self.signal + self.noise + _JITTER - float(row @ row), 1e-10))
        n = len(self.y)
        L = np.zeros((n + 1, n + 1))
        L[:n, :n] = self.L
        L[n, :n] = row
        L[n, n] = d
        self.L = L
        L_inv = np.zeros((n + 1, n + 1))
        L_inv[:n, :n] = self.L_inv
        L_inv[n, :n] = -(row @ self.L_inv) / d
        L_inv[n, n] = 1.0 / d
        self.L_inv = L_inv
        self.w = np.append(self.w, (value - float(row @ self.w)) / d)
        self._alpha = None
        self.y = np.append(self.y, value)
        self.Xs = np.vstack([self.Xs, x / self.lengthscales])
        return row, d

    def add_many(self, X: np.ndarray, values: np.ndarray | None = None) -> None:
        """Condition on several observations at once (a block update of the Cholesky factor).

        ``values=None`` is the kriging believer: each point observed at the posterior mean,
        which leaves the mean everywhere unchanged (only the variance shrinks), so the new
        entries of ``w`` are zero. The result equals that of :meth:`add` point by point, at
        O(n² k + k³) instead of k reallocations of the n² factors.
        """
        k = len(X)
        if k == 0:
            return
        n = len(self.y)
        Xs = X / self.lengthscales
        R = self.L_inv @ self.cross(X)  # (n, k)
        S = _matern52(_sq_dist(Xs, Xs), self.signal) - R.T @ R
        S[np.diag_indices(k)] += self.noise + _JITTER
        C = _cholesky(S)
        C_inv = _tri_inverse(C)
        L = np.zeros((n + k, n + k))
        L[:n, :n] = self.L
        L[n:, :n] = R.T
        L[n:, n:] = C
        L_inv = np.zeros((n + k, n + k))
        L_inv[:n, :n] = self.L_inv
        L_inv[n:, :n] = -C_inv @ (R.T @ self.L_inv)
        L_inv[n:, n:] = C_inv
        mean = R.T @ self.w
        if values is None:
            values = mean
            tail = np.zeros(k)
        else:
            tail = C_inv @ (np.asarray(values, dtype=float) - mean)
        self.L, self.L_inv = L, L_inv
        self.w = np.concatenate([self.w, tail])
        self.y = np.concatenate([self.y, values])
        self.Xs = np.vstack([self.Xs, Xs])
        self._alpha = None

    def predict_with_grad(
        self, X: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Mean, std and their gradients with respect to X (shape (m, D) each)."""
        m = len(X)
        if len(self.y) == 0:
            return (
                np.zeros(m),
                np.full(m, math.sqrt(self.signal)),
                np.zeros(X.shape),
                np.zeros(X.shape),
            )
        Xq = X / self.lengthscales
        diff = Xq[:, None, :] - self.Xs[None, :, :]  # (m, n, D), in scaled units
        r2 = np.sum(diff * diff, axis=2)
        s5r = np.sqrt(r2)
        s5r *= _SQRT5
        e = np.exp(-s5r)
        s5r += 1.0  # now 1 + √5 r
        k = self.signal * (s5r + (5.0 / 3.0) * r2) * e  # (m, n)
        # dk/dx_j = -5/3 s² e (1 + √5 r) (x_j - X_ij) / ℓ_j²
        dk = ((-(5.0 / 3.0) * self.signal) * e * s5r)[:, :, None] * diff
        dk /= self.lengthscales
        V = self.L_inv @ k.T  # (n, m)
        alpha = self.alpha
        mean = k @ alpha
        var = np.maximum(self.signal - np.sum(V * V, axis=0), 1e-12)
        std = np.sqrt(var)
        kinv_k = self.L_inv.T @ V  # (n, m)
        d_mean = np.einsum("mnd,n->md", dk, alpha)
        d_var = -2.0 * np.einsum("mnd,nm->md", dk, kinv_k)
        d_std = d_var / (2.0 * std[:, None])
        return mean, std, d_mean, d_std


def _cholesky(K: np.ndarray) -> np.ndarray:
    jitter = 0.0
    for _ in range(6):
        try:
            return (
                np.linalg.cholesky(K + jitter * np.eye(len(K))) if jitter else np.linalg.cholesky(K)
            )
        except np.linalg.LinAlgError:
            jitter = 1e-8 if jitter == 0.0 else jitter * 10.0
    raise np.linalg.LinAlgError("kernel matrix is not positive definite even with jitter")


def _tri_inverse(L: np.ndarray) -> np.ndarray:
    """Inverse of a lower-triangular matrix (LAPACK trtri: ~4x faster than a solve against I)."""
    if len(L) == 0:
        return np.zeros((0, 0))
    inv, info = dtrtri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"triangular inverse failed (info={info})")
    return inv  # trtri leaves the (zero) upper triangle of numpy's Cholesky factor as it was


def _neg_log_posterior(
    theta: np.ndarray, dsq: np.ndarray, y: np.ndarray, prior_mean: np.ndarray, prior_sd: np.ndarray
) -> tuple[float, np.ndarray]:
    """-(log marginal likelihood + log prior) and its gradient in θ = (log ℓ, log s², log σ²).

    ``dsq`` holds the squared coordinate differences by dimension, shape (d, n²).
    """
    n = len(y)
    dims = dsq.shape[0]
    inv_ls2 = np.exp(-2.0 * theta[:dims])
    signal = math.exp(theta[dims])
    noise = math.exp(theta[dims + 1]) + _JITTER
    sr = np.sqrt(inv_ls2 @ dsq).reshape(n, n)
    sr *= _SQRT5
    e = np.exp(-sr)
    # K = s² (1 + √5 r + 5/3 r²) e^{-√5 r} + σ² I, written with sr = √5 r.
    K = sr * sr
    K *= 1.0 / 3.0
    K += sr
    K += 1.0
    K *= e
    K *= signal
    K.flat[:: n + 1] += noise
    try:
        L = np.linalg.cholesky(K)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    log_det_half = float(np.log(L.diagonal()).sum())
    L_inv = _tri_inverse(L)
    K_inv = L_inv.T @ L_inv
    alpha = K_inv @ y
    y_alpha = float(y @ alpha)
    alpha2 = float(alpha @ alpha)
    trace_inv = float(K_inv.trace())
    lml = -0.5 * y_alpha - log_det_half - 0.5 * n * _LOG_2PI
    # dL/dθ = ½ tr(W dK/dθ) with W = ααᵀ - K⁻¹. For the length scales,
    # dK/dlog ℓ_j = 5/3 s² (1 + √5 r) e^{-√5 r} Δ_j² / ℓ_j².
    W = np.multiply.outer(alpha, alpha)
    W -= K_inv
    sr += 1.0
    sr *= e
    W *= sr
    grad = np.empty_like(theta)
    grad[:dims] = (0.5 * (5.0 / 3.0) * signal) * (dsq @ W.ravel()) * inv_ls2
    # tr(W (K - σ² I)) = yᵀα - σ²|α|² - n + σ² tr(K⁻¹): no second pass over n² entries.
    grad[dims] = 0.5 * (y_alpha - noise * alpha2 - n + noise * trace_inv)
    grad[dims + 1] = 0.5 * (alpha2 - trace_inv) * (noise - _JITTER)
    z = (theta - prior_mean) / prior_sd
    log_prior = -0.5 * float(z @ z)
    grad_prior = -z / prior_sd
    return -(lml + log_prior), -(grad + grad_prior)


def _bounds(dims: int) -> np.ndarray:
    return np.log(
        np.array([_LENGTHSCALE_BOUNDS] * dims + [_SIGNAL_BOUNDS, _NOISE_BOUNDS], dtype=float)
    )


def _map_estimate(
    X: np.ndarray,
    ys: np.ndarray,
    prior_mean: np.ndarray,
    prior_sd: np.ndarray,
    starts: Sequence[np.ndarray],
    climbs: int,
    maxiter: int,
) -> tuple[np.ndarray, float]:
    """Run L-BFGS-B from the ``climbs`` best of ``starts``; return the best θ and its value."""
    n, dims = X.shape
    dsq = ((X.T[:, :, None] - X.T[:, None, :]) ** 2).reshape(dims, n * n)
    bounds = _bounds(dims)
    args = (dsq, ys, prior_mean, prior_sd)
    points = [np.clip(s, bounds[:, 0], bounds[:, 1]) for s in starts]
    if len(points) > climbs:
        values = [_neg_log_posterior(p, *args)[0] for p in points]
        points = [points[i] for i in np.argsort(values, kind="stable")[:climbs]]
    best_theta, best_value = points[0], math.inf
    for start in points:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            theta, value = minimize_box(
                lambda t: _neg_log_posterior(t, *args), start, bounds[:, 0], bounds[:, 1],
                maxiter, ftol=1e-7,
            )  # fmt: skip
        if np.isfinite(value) and value < best_value:
            best_theta, best_value = theta, value
    return best_theta, best_value


class GaussianProcess:
    """Gaussian-process regression on ``[0, 1]^d`` with a Matérn-5/2 ARD kernel.

    Outputs are standardised; the length scales (one per input dimension), signal variance and
    noise variance are fitted by maximising the log marginal likelihood plus weak log-normal
    priors, with L-BFGS-B and analytic gradients. Starts: the prior medians, the same with a
    noise variance of 0.1 (the noisy regime), and ``n_restarts`` draws from the priors (with
    ``rng``), screened by their likelihood; L-BFGS-B climbs from the
    best one (the best two with at most 40 rows). Past 64 rows the climb runs on a 64-row subset
    and a short polish on all rows. Bounds: length scales in [0.01, 100], signal variance in
    [0.05, 20], noise variance in [1e-6, 1] (relative to standardised outputs). ``predict``
    returns the latent function's mean and standard deviation (noise excluded) in ``y``'s units;
    BLAS runs single-threaded inside ``fit`` (small matrices, often a busy machine).

    The prior mean is constant at the ``mean_quantile`` quantile of ``y``, not at its mean: far
    from the data the model expects a value worse than most seen so far, and only its
    uncertainty can make such a place look promising. With the mean as prior, a minimiser's
    acquisition favours the unexplored corners and faces of the cube, where the posterior falls
    back to the average with its full spread, over the surroundings of good points (boundary
    over-exploration; benchmarks/RESULTS.md shows it on Rastrigin-3). The default
    (``mean_quantile=None``) is 0.75 below 10 input columns and the largest value (1.0) from
    10: there almost every point of the cube is far from the data, and at the upper quartile
    expected improvement still sent late proposals to corners of the cube (every coordinate on
    a bound; benchmarks/RESULTS.md, the GP in high dimensions).

    Long histories: with more than ``max_points`` observations the GP is fitted *and
    conditioned* on a subset of ``max_points`` rows: the best quarter (lowest ``y``), the most
    recent quarter (the last rows, so pass rows in time order) and a random draw of the rest.
    This keeps a fit at O(max_points³) whatever the history length.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((20, 2)); y = np.sin(6 * X[:, 0]) + X[:, 1]
    >>> mean, std = GaussianProcess().fit(X, y, rng).predict(X[:3])
    >>> bool(np.allclose(mean, y[:3], atol=0.05))
    True
    """

    def __init__(
        self,
        n_restarts: int = 2,
        max_points: int = 256,
        maxiter: int = 60,
        mean_quantile: float | None = None,
    ) -> None:
        if (
            n_restarts < 0
            or max_points < 4
            or maxiter < 1
            or (mean_quantile is not None and not 0.0 <= mean_quantile <= 1.0)
        ):
            raise ValueError(
                "GaussianProcess: need n_restarts >= 0, max_points >= 4, maxiter >= 1 and "
                "mean_quantile in [0, 1] or None"
            )
        self.mean_quantile = mean_quantile
        self.n_restarts = n_restarts
        self.max_points = max_points
        self.maxiter = maxiter
        self.y_mean = 0.0
        self.y_std = 1.0
        self.lengthscales: np.ndarray | None = None
        self.signal_variance = 1.0
        self.noise_variance = 1e-2
        self.log_marginal_likelihood = float("nan")
        self.X_train: np.ndarray | None = None
        self._post: _Posterior | None = None

    # -- fitting ------------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        rng: np.random.Generator | None = None,
        hyperparameters: np.ndarray | None = None,
    ) -> GaussianProcess:
        """Fit hyperparameters and condition on (X, y); rows with a non-finite y are dropped.

        ``hyperparameters`` (the :attr:`hyperparameters` of an earlier fit, same dimension)
        skips the fit: the GP is only conditioned on (X, y), at the cost of one factorisation.
        """
        with _one_blas_thread():
            return self._fit(X, y, rng, hyperparameters)

    @property
    def hyperparameters(self) -> np.ndarray:
        """θ = (log length scales, log signal variance, log noise variance) of the last fit."""
        if self.lengthscales is None:
            raise RuntimeError("GaussianProcess.hyperparameters read before fit")
        return np.concatenate(
            [
                np.log(self.lengthscales),
                [math.log(self.signal_variance), math.log(self.noise_variance)],
            ]
        )

    def _fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        rng: np.random.Generator | None,
        hyperparameters: np.ndarray | None = None,
    ) -> GaussianProcess:
        y = np.asarray(y, dtype=float).ravel()
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X.reshape(len(y), -1)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"GaussianProcess.fit: X has shape {X.shape}, y has {len(y)} rows")
        rng = rng if rng is not None else np.random.default_rng(0)
        keep = np.isfinite(y) & np.all(np.isfinite(X), axis=1)
        X, y = X[keep], y[keep]
        if len(y) > self.max_points:
            rows = _subset(y, self.max_points, rng)
            X, y = X[rows], y[rows]
        dims = X.shape[1]
        # The prior mean: an upper quantile of the data rather than their mean (see the class
        # docstring); the scale is their spread about the mean.
        quantile = self.mean_quantile
        if quantile is None:
            quantile = _HIGH_DIM_MEAN_QUANTILE if dims >= _HIGH_DIMS else _MEAN_QUANTILE
        self.y_mean = float(np.quantile(y, quantile)) if len(y) else 0.0
        spread = float(np.std(y)) if len(y) > 1 else 0.0
        self.y_std = spread if spread > 1e-12 else 1.0
        ys = (y - self.y_mean) / self.y_std
        prior_mean, prior_sd = _priors(dims)
        theta = prior_mean.copy()
        if hyperparameters is not None:
            theta = np.asarray(hyperparameters, dtype=float)
            if theta.shape != prior_mean.shape:
                raise ValueError(
                    f"GaussianProcess.fit: hyperparameters for {len(theta) - 2} dimensions, "
                    f"data in {dims}"
                )
        elif len(y) >= 2:
            theta = self._optimise(X, ys, prior_mean, prior_sd, rng)
        self.lengthscales = np.exp(theta[:dims])
        self.signal_variance = float(np.exp(theta[dims]))
        self.noise_variance = float(np.exp(theta[dims + 1]))
        self.X_train = X
        self._post = _Posterior(X, ys, self.lengthscales, self.signal_variance, self.noise_variance)
        return self

    def _optimise(
        self,
        X: np.ndarray,
        ys: np.ndarray,
        prior_mean: np.ndarray,
        prior_sd: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """MAP hyperparameters: screen the starts, climb from the best, polish on all rows.

        Every start costs one likelihood evaluation; L-BFGS-B then runs from the best one (two
        when there are few points, where the likelihood is most multimodal). Past
        ``_STAGE_POINTS`` rows the climb runs on a random subset (best rows included) and only a
        short polish runs on every row, so that most of the O(n³) evaluations are small ones.
        """
        n = len(ys)
        # Two regimes, one start each: the prior's (near-exact data) and a noisy one. Started
        # only near the first, the climb stays there on noisy data and explains the noise with
        # short length scales; the screening below keeps whichever fits better.
        noisy = prior_mean.copy()
        noisy[-1] = math.log(_NOISY_START)
        starts = [prior_mean, noisy]
        for _ in range(self.n_restarts):
            starts.append(prior_mean + prior_sd * rng.standard_normal(len(prior_mean)))
        if n > _STAGE_POINTS:
            order = np.argsort(ys, kind="stable")
            rest = rng.choice(order[8:], size=_STAGE_POINTS - 8, replace=False)
            rows = np.concatenate([order[:8], rest])
            sub = (X[rows], ys[rows])
            theta, _ = _map_estimate(*sub, prior_mean, prior_sd, starts, 1, self.maxiter)
            theta, value = _map_estimate(X, ys, prior_mean, prior_sd, [theta], 1, 10)
        else:
            climbs = 2 if n <= 40 else 1
            theta, value = _map_estimate(X, ys, prior_mean, prior_sd, starts, climbs, self.maxiter)
        self.log_marginal_likelihood = -value
        return theta

    # -- prediction ---------------------------------------------------------------------------
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent function, in the units of ``y``."""
        post = self._require_fit()
        X = np.asarray(X, dtype=float).reshape(-1, len(post.lengthscales))
        mean, var, _ = post.predict(X)
        return self.y_mean + self.y_std * mean, self.y_std * np.sqrt(var)

    def condition(self, X: np.ndarray, y: np.ndarray) -> GaussianProcess:
        """A copy also conditioned on (X, y), with the same hyperparameters (no refit)."""
        post = self._require_fit()
        y = np.asarray(y, dtype=float).ravel()
        X = np.asarray(X, dtype=float).reshape(len(y), -1)
        other = GaussianProcess(self.n_restarts, self.max_points, self.maxiter, self.mean_quantile)
        other.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_post"})
        new = _Posterior(
            np.zeros((0, X.shape[1])), np.zeros(0), post.lengthscales, post.signal, post.noise
        )
        new.Xs, new.y, new.w = post.Xs.copy(), post.y.copy(), post.w.copy()
        new.L, new.L_inv = post.L.copy(), post.L_inv.copy()
        for x, value in zip(X, (y - self.y_mean) / self.y_std, strict=True):
            new.add(x, float(value))
        other._post = new
        other.X_train = np.vstack([self.X_train, X]) if self.X_train is not None else X
        return other

    def _require_fit(self) -> _Posterior:
        if self._post is None:
            raise RuntimeError("GaussianProcess.predict called before fit")
        return self._post


def _priors(dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-normal priors: length scales grow gently with dimension (as in Hvarfner et al. 2024);
    the noise variance is centred low (1e-5 of the output variance), so that a deterministic
    objective is interpolated (its last digits matter near the optimum), and is broad (a factor
    e³ ≈ 20 per standard deviation), so that an objective with real noise (cross-validation)
    has it learnt: 0.1 costs 3 nats of prior, a few noisy points pay for that."""
    mean = np.concatenate(
        [
            np.full(dims, math.log(0.4) + 0.5 * math.log(max(dims, 1))),
            [0.0, math.log(1e-5)],
        ]
    )
    sd = np.concatenate([np.full(dims, 1.5), [1.0, 3.0]])
    return mean, sd


def _subset(y: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices kept for a long history: the best, the most recent, and a random rest."""
    n = len(y)
    quarter = size // 4
    chosen = np.zeros(n, dtype=bool)
    chosen[np.argsort(y, kind="stable")[:quarter]] = True
    chosen[n - quarter :] = True
    rest = np.flatnonzero(~chosen)
    chosen[rng.choice(rest, size=size - int(chosen.sum()), replace=False)] = True
    return np.flatnonzero(chosen)


# ---------------------------------------------------------------------------------------------
# Feature encoding of a mixed space
# ---------------------------------------------------------------------------------------------
class _Encoder:
    """Maps configurations to GP features: floats and ints as unit values, categoricals one-hot.

    ``Space.encode`` gives one unit dimension per parameter (a categorical becomes its index
    cell); the GP would then see an arbitrary order among choices, so it gets one-hot columns.
    Every candidate passes through :meth:`from_unit` (integers rounded, one choice picked), so the
    acquisition is only evaluated at points that decode to a real configuration.
    """

    def __init__(self, space: Space) -> None:
        self.space = space
        self.params = space.params
        self.slices: list[slice] = []
        start = 0
        for p in self.params:
            width = p.size if isinstance(p, Categorical) else 1
            self.slices.append(slice(start, start + width))
            start += width
        self.dim = start
        self.numeric = np.array(
            [
                s.start
                for p, s in zip(self.params, self.slices, strict=True)
                if not isinstance(p, Categorical)
            ],
            dtype=int,
        )

    def from_unit(self, U: np.ndarray) -> np.ndarray:
        """Unit-cube points (m, len(space)) -> valid feature rows (m, dim)."""
        U = self.space.snap(U)  # integers rounded, choices on their cell centres
        F = np.zeros((len(U), self.dim))
        for j, (p, s) in enumerate(zip(self.params, self.slices, strict=True)):
            if isinstance(p, Categorical):
                index = np.minimum((U[:, j] * p.size).astype(int), p.size - 1)
                F[np.arange(len(U)), s.start + index] = 1.0
            else:
                F[:, s.start] = U[:, j]
        return F

    def to_unit(self, F: np.ndarray) -> np.ndarray:
        U = np.empty((len(F), len(self.params)))
        for j, (p, s) in enumerate(zip(self.params, self.slices, strict=True)):
            if isinstance(p, Categorical):
                U[:, j] = (np.argmax(F[:, s], axis=1) + 0.5) / p.size
            else:
                U[:, j] = F[:, s.start]
        return U

    def snap(self, F: np.ndarray) -> np.ndarray:
        return self.from_unit(self.to_unit(F))

    def box(self, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit-space bounds (one per parameter) -> bounds of the numeric feature columns."""
        rows = [j for j, p in enumerate(self.params) if not isinstance(p, Categorical)]
        return low[rows], high[rows]

    def from_configs(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not configs:
            return np.zeros((0, self.dim))
        return self.from_unit(self.space.encode_many(configs))

    def to_config(self, f: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p, s in zip(self.params, self.slices, strict=True):
            if isinstance(p, Categorical):
                out[p.name] = p.choices[int(np.argmax(f[s]))]
            else:
                out[p.name] = p.from_unit(float(f[s.start]))
        return out

    def neighbours(self, u: np.ndarray) -> np.ndarray:
        """Unit points one discrete step away from ``u``: ±1 on an integer, any other choice."""
        rows = []
        for j, p in enumerate(self.params):
            if isinstance(p, Categorical):
                current = min(int(u[j] * p.size), p.size - 1)
                for c in range(p.size):
                    if c != current:
                        row = u.copy()
                        row[j] = (c + 0.5) / p.size
                        rows.append(row)
            elif isinstance(p, Int):
                value = p.from_unit(float(u[j]))
                for step in (-p.step, p.step):
                    if p.low <= value + step <= p.high:
                        row = u.copy()
                        row[j] = p.to_unit(value + step)
                        rows.append(row)
        return np.array(rows).reshape(-1, len(self.params))


# ---------------------------------------------------------------------------------------------
# The sampler
# ---------------------------------------------------------------------------------------------
class _Candidates:
    """Candidate feature rows with cached posterior predictions, updated as fantasies arrive.

    ``V = L⁻¹ k(X_train, F)`` is kept in a buffer with spare rows and columns, so that a
    fantasy (one row) or a few refined candidates (columns) cost no copy of it; products with
    it run over whole buffer rows (contiguous; the spare columns are zeros). ``sep`` is each
    candidate's least squared distance, in length scales, to the points being evaluated or
    picked (:meth:`take`), kept up to date one point at a time.
    """

    def __init__(
        self,
        post: _Posterior,
        F: np.ndarray,
        box: tuple[np.ndarray, np.ndarray] | None = None,
        spare_rows: int = 0,
    ) -> None:
        self.F = F
        self.lengthscales = post.lengthscales
        self.Fs = F / post.lengthscales
        self.mean, self.var, V = post.predict(F)
        self._rows, self._cols = V.shape
        self._V = np.zeros((self._rows + spare_rows, self._cols + 64))
        self._V[: self._rows, : self._cols] = V
        self._taken: list[np.ndarray] = []
        self.sep = np.full(len(F), np.inf)
        self.tried = np.zeros(len(F), dtype=bool)
        # Bounds (feature space) that refinement keeps to: a trust region, or the unit cube.
        self.box = box

    @property
    def V(self) -> np.ndarray:
        return self._V[: self._rows, : self._cols]

    def _times_V(self, row: np.ndarray) -> np.ndarray:
        """``row @ V``, over whole rows of the buffer."""
        return (row @ self._V[: self._rows])[: self._cols]

    def extend(self, post: _Posterior, F: np.ndarray) -> None:
        mean, var, V = post.predict(F)
        Fs = F / self.lengthscales
        cols = self._cols + len(F)
        if cols > self._V.shape[1]:
            have = self._V.shape[1]
            grown = np.zeros((len(self._V), max(cols, have + have // 2)))
            grown[: self._rows, : self._cols] = self.V
            self._V = grown
        self._V[: self._rows, self._cols : cols] = V
        self._cols = cols
        self.F = np.vstack([self.F, F])
        self.Fs = np.vstack([self.Fs, Fs])
        self.mean = np.concatenate([self.mean, mean])
        self.var = np.concatenate([self.var, var])
        sep = np.full(len(F), np.inf)
        if self._taken:
            sep = _sq_dist(Fs, np.asarray(self._taken)).min(axis=1)
        self.sep = np.concatenate([self.sep, sep])
        self.tried = np.concatenate([self.tried, np.zeros(len(F), dtype=bool)])

    def take(self, f: np.ndarray) -> None:
        """A point now being evaluated (or picked): update every candidate's distance to it."""
        fs = f / self.lengthscales
        self._taken.append(fs)
        np.minimum(self.sep, _sq_dist(self.Fs, fs[None, :])[:, 0], out=self.sep)

    def _append_row(self, row: np.ndarray, w: float) -> None:
        if self._rows == len(self._V):
            self._V = np.vstack([self._V, np.zeros((max(16, self._rows // 2), self._V.shape[1]))])
        self._V[self._rows, : self._cols] = row
        self._rows += 1
        self.mean += row * w
        np.maximum(self.var - row * row, 1e-12, out=self.var)

    def observe(self, post: _Posterior, chol_row: np.ndarray, d: float) -> None:
        """Rank-one update after ``post.add`` appended the row [lᵀ, d] to its Cholesky factor."""
        k_new = _matern52(_sq_dist(post.Xs[-1:], self.Fs), post.signal)[0]
        self._append_row((k_new - self._times_V(chol_row)) / d, float(post.w[-1]))

    def fantasise(self, post: _Posterior, i: int, liar_value: float | None) -> float:
        """Observe candidate ``i`` at ``liar_value`` (None: its posterior mean, the kriging
        believer) in these caches only, the posterior left as it is; returns the value.

        The same rank-one update as ``post.add`` followed by :meth:`observe`: candidate ``i``'s
        column of ``V`` is the new Cholesky row, and its cached mean is ``lᵀ w``. It costs one
        product with ``V`` (O(rows x candidates)) and no O(rows²) work on the posterior, so a
        batch's later picks, which no longer refine against the posterior, stay cheap.
        """
        row = self._V[: self._rows, i].copy()
        d = math.sqrt(max(post.signal + post.noise + _JITTER - float(row @ row), 1e-10))
        mean = float(self.mean[i])
        value = mean if liar_value is None else liar_value
        k_new = _matern52(_sq_dist(self.Fs[i : i + 1], self.Fs), post.signal)[0]
        self._append_row((k_new - self._times_V(row)) / d, (value - mean) / d)
        return value


def _int_option(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise SpecError(f"algorithm gp: {name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise SpecError(f"algorithm gp: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _unseen_by_score(
    enc: _Encoder, cands: _Candidates, score: np.ndarray, seen: set[Any]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, configuration) of the candidates not yet tried, best ``score`` first.

    Lazy: callers take the first one or the first few, and decoding stops there. A candidate
    found tried is marked in ``cands.tried`` and ranked last from then on (``seen`` only grows
    within a call), so a batch's later picks do not decode the earlier ones again.
    """
    tried = cands.tried
    for i in np.argsort(-np.where(tried, np.nan, score), kind="stable"):
        config = enc.to_config(cands.F[i])
        if tried[i] or enc.space.key(config) in seen:
            tried[i] = True
            continue
        yield int(i), config


# Numeric parameters from which trust_region="auto" searches a trust region (TuRBO's regime).
_TRUST_REGION_DIMS = 10
_TR_START, _TR_MIN, _TR_MAX = 0.8, 0.5**7, 1.6


def _replay_trust_region(losses: np.ndarray, start: int, dims: int) -> tuple[float, int]:
    """The trust region's length after ``losses`` (in trial order; the first ``start`` are the
    initial design) and the index from which its current run (since the last restart) began."""
    length, restart = _TR_START, 0
    fail_tol = max(4, dims)
    best = float(np.nanmin(losses[:start])) if start and len(losses) else math.inf
    successes = failures = 0
    for i in range(min(start, len(losses)), len(losses)):
        value = float(losses[i])
        if value < best - 1e-3 * abs(best):
            successes, failures = successes + 1, 0
        else:
            successes, failures = 0, failures + 1
        best = min(best, value)
        if successes == 3:
            length, successes = min(2.0 * length, _TR_MAX), 0
        elif failures == fail_tol:
            length, failures = length / 2.0, 0
        if length < _TR_MIN:
            length, restart, best = _TR_START, i + 1, math.inf
            successes = failures = 0
    return length, restart


def refit_step(completed: int, every_until: int = 100, stride: int = 1) -> int:
    """The number of completed trials the GP's hyperparameters are fitted on, given
    ``completed``: ``completed`` itself up to ``every_until``, then the largest step of a
    sequence from ``every_until`` growing by 5 % or by ``stride`` a step, whichever is more (at
    least 1), that is at most ``completed``.

    >>> [refit_step(n) for n in (50, 100, 104, 105, 1000)]
    [50, 100, 100, 105, 963]
    >>> [refit_step(n, stride=256) for n in (355, 356, 1000)]
    [100, 356, 868]
    """
    if completed <= every_until:
        return completed
    step = every_until
    while True:
        nxt = max(step + max(stride, 1), math.ceil(step * 1.05))
        if nxt > completed:
            return step
        step = nxt


def refit_stride(in_flight: int) -> int:
    """The least growth of the history between two hyperparameter fits, given the trials in
    flight once a call's batch is out (pending plus asked for): that number rounded down to a
    power of two (1 with none), so that the steps stay put while it wobbles.

    With ``p`` trials in flight every proposal is made without ``p`` outcomes; refitting more
    often than ``p`` trials finish buys little, and with hundreds in flight a fit per 5 % of
    the history is one fit per handful of proposals.

    >>> [refit_stride(n) for n in (0, 1, 2, 3, 255, 256, 300)]
    [1, 1, 2, 2, 128, 256, 256]
    """
    return 1 << max(in_flight, 1).bit_length() - 1


# Minimum distance, in length scales, between points of one batch (and pending points).
_MIN_SEPARATION = 0.1


def _refine_starts(pick: int) -> int:
    """L-BFGS-B starts for the ``pick``-th point of a batch (from 0).

    Past the first few picks one start suffices, and past sixteen the candidate pool alone:
    the fantasies push later picks away from the acquisition's peaks into exploration, where
    refining gains little, and refining is most of a pick's cost.
    """
    return 4 if pick < 4 else 1 if pick < 16 else 0


class GPSampler(Sampler):
    """Bayesian optimisation with a Gaussian process and log expected improvement.

    - Below ``n_startup`` completed trials (default ``min(10, max(5, 2 * len(space)))``) it walks
      a scrambled Sobol sequence.
    - Then it fits :class:`GaussianProcess` (Matérn-5/2, ARD) to the losses of the completed
      trials (floats and integers as unit values, categoricals one-hot) and maximises log expected
      improvement over ``n_candidates`` valid points (Sobol, uniform and perturbations of the
      best trials), refines the best few with L-BFGS-B on the numeric dimensions and discrete
      one-step moves, and rounds every candidate to a real configuration before scoring it.
      Improvement is measured from the best posterior mean at a completed trial (the plug-in
      incumbent), and the GP's prior mean is the upper quartile of the losses (their largest
      value from 10 feature columns; see :class:`GaussianProcess`): both keep the
      search from preferring unexplored corners once the fit treats part of the losses as
      noise.
    - Pending trials and the earlier picks of a batch are handled by fantasies (hyperparameters
      kept, posterior updated): ``liar="mean"`` (kriging believer, the default), ``"best"`` or
      ``"worst"`` (constant liars). ``batch_strategy="cluster"`` instead picks the best point of
      each of ``n`` k-means clusters of the top candidates, as Mango does.
    - Losses are warped before the fit (``warp``, default ``"power"``: a Box-Cox transform fitted
      to them, between the raw values and their log; see :func:`warp_losses`).
    - With several metrics each call scalarises them with random augmented-Chebyshev weights
      (ParEGO), so successive proposals spread along the Pareto front.
    - Long histories: the GP uses at most ``max_fit_points`` trials (best, recent and random; see
      :class:`GaussianProcess`), so a proposal costs about the same after 300 trials as after
      3000. Failed trials are never re-proposed but do not inform the model.
    - Cost bounded in the history and the pending trials: the hyperparameters are fitted once
      per refit step (every completed count up to ``refit_every_until``, then every 5 %; see
      :func:`refit_step`; with many trials in flight, no more often than they turn over, see
      :func:`refit_stride`) and only the GP's conditioning is redone per call; the pending
      trials are fantasised in one block update, at most the ``max_pending`` most recent of
      them (default 64); past the fourth pick of a batch one refinement start is used, past
      the sixteenth none, and those later picks are fantasised in the candidates' cached
      predictions only (the same points, at O(rows x candidates) a pick), so a batch of
      hundreds for as many free slots costs a fraction of a second.
    - ``trust_region="auto"`` (from 10 numeric parameters) or ``"on"`` searches the acquisition
      in a TuRBO-style trust region around the best trial: a box weighted by the length scales,
      grown after successes, shrunk after failures, restarted when it collapses (see
      :meth:`_trust_region`), with candidates that move only about 20 coordinates of the centre
      each. Off by default: on this project's 10-/20-dimensional suite at 150 evaluations it
      did not beat the global search (benchmarks/RESULTS.md); TuRBO's gains are reported for
      budgets of thousands.
    """

    name = "gp"

    def __init__(
        self,
        n_startup: int | None = None,
        batch_strategy: str = "liar",
        liar: str = "mean",
        n_candidates: int = 1024,
        max_fit_points: int = 256,
        n_restarts: int = 2,
        warp: str = "power",
        max_pending: int = 64,
        refit_every_until: int = 100,
        trust_region: str = "off",
    ) -> None:
        if trust_region not in ("auto", "on", "off"):
            raise SpecError(
                f"algorithm gp: trust_region {trust_region!r} is unknown; use 'auto', 'on' or 'off'"
            )
        self.trust_region = trust_region
        if warp not in WARPS:
            raise SpecError(f"algorithm gp: warp {warp!r} is unknown; use one of {list(WARPS)}")
        self.warp = warp
        if n_startup is not None:
            n_startup = _int_option("n_startup", n_startup, 1)
        if batch_strategy not in ("liar", "cluster"):
            raise SpecError(
                f"algorithm gp: batch_strategy {batch_strategy!r} is unknown; "
                "use 'liar' or 'cluster'"
            )
        if liar not in ("mean", "best", "worst"):
            raise SpecError(
                f"algorithm gp: liar {liar!r} is unknown; use 'mean', 'best' or 'worst'"
            )
        n_candidates = _int_option("n_candidates", n_candidates, 16)
        max_fit_points = _int_option("max_fit_points", max_fit_points, 8)
        n_restarts = _int_option("n_restarts", n_restarts, 0)
        self.n_startup = None if n_startup is None else int(n_startup)
        self.batch_strategy = batch_strategy
        self.liar = liar
        self.n_candidates = int(n_candidates)
        self.max_fit_points = int(max_fit_points)
        self.n_restarts = int(n_restarts)
        self.max_pending = _int_option("max_pending", max_pending, 0)
        self.refit_every_until = _int_option("refit_every_until", refit_every_until, 1)
        # Fitted hyperparameters by refit step (see _hyperparameters): a cache of what the
        # history determines, so the sampler stays a pure function of it.
        self._theta_cache: dict[tuple[Any, ...], np.ndarray] = {}

    def startup_trials(self, space: Space) -> int:
        if self.n_startup is not None:
            return self.n_startup
        return min(10, max(5, 2 * len(space)))

    # -- proposing ----------------------------------------------------------------------------
    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        if n <= 0:
            return []
        done = ctx.completed
        if len(done) < self.startup_trials(ctx.space):
            return self._startup(ctx, n, rng)
        with _one_blas_thread():
            return self._propose_with_model(ctx, done, n, rng)

    def _propose_with_model(
        self, ctx: SearchContext, done: list[Any], n: int, rng: np.random.Generator
    ) -> list[dict[str, Any]]:
        enc = _Encoder(ctx.space)
        X = enc.from_unit(ctx.encode(done))
        y = warp_losses(self._scalarised_losses(ctx, done, rng), self.warp)
        theta = self._hyperparameters(ctx, enc, done, X, y, rng, len(ctx.pending) + n)
        gp = GaussianProcess(self.n_restarts, self.max_fit_points).fit(X, y, rng, theta)
        post = gp._require_fit()
        best = self._incumbent(post)
        liar_value = {"best": best, "worst": float(np.max(post.y))}.get(self.liar)

        # Fantasise the pending points so that parallel workers spread out: all at once, and
        # only the most recent max_pending of them (older ones are mostly far from where the
        # model now looks; fill_unique still keeps every pending point from being re-proposed).
        pending = enc.from_configs(ctx.pending[-self.max_pending :] if self.max_pending else [])
        if len(pending):
            values = None if liar_value is None else np.full(len(pending), liar_value)
            if values is None:
                best = min(best, float(np.min(post.predict(pending)[0])))
            post.add_many(pending, values)

        seen = ctx.seen_keys()
        top_units = ctx.encode([done[i] for i in np.argsort(y, kind="stable")[:5]])
        region = self._trust_region(ctx, enc, done, gp)
        liars = n if self.batch_strategy == "liar" else 0
        if region is None:
            F = self._candidate_features(enc, top_units, rng)
            cands = _Candidates(post, F, spare_rows=liars)
        else:
            centre, low, high = region
            F = self._region_features(enc, centre, low, high, rng)
            cands = _Candidates(post, F, enc.box(low, high), spare_rows=liars)

        if self.batch_strategy == "cluster":
            return fill_unique(
                ctx, self._pick_clustered(enc, post, cands, best, seen, n, rng), n, rng
            )
        for f in pending:
            cands.take(f)
        picks = []
        for i in range(n):
            found = self._pick_one(enc, post, cands, best, seen, _refine_starts(i))
            if found is None:
                break
            c, config = found
            f = cands.F[c]
            picks.append(config)
            seen.add(ctx.space.key(config))
            cands.tried[c] = True
            if _refine_starts(i + 1):
                # The next pick refines against the posterior: it must hold this fantasy.
                best = self._fantasise(post, f, liar_value, best)
                cands.observe(post, *self._last_row(post))
            else:
                # Nothing reads the posterior again: the candidates' caches alone take the
                # fantasy, at O(rows x candidates) a pick instead of O(rows²) more.
                best = min(best, cands.fantasise(post, c, liar_value))
            cands.take(f)
        return fill_unique(ctx, picks, n, rng)

    def _hyperparameters(
        self,
        ctx: SearchContext,
        enc: _Encoder,
        done: list[Any],
        X: np.ndarray,
        y: np.ndarray,
        rng: np.random.Generator,
        in_flight: int = 1,
    ) -> np.ndarray | None:
        """The GP's hyperparameters for this call, fitted at most once per refit step.

        They are those of a fit on the first ``T`` completed trials (in trial-number order),
        ``T = refit_step(len(done), stride=refit_stride(in_flight))``, with a random state
        drawn from the study's seed and ``T``: a pure function of the history (and, in a
        parallel study, of how many trials are in flight), so a restarted sequential study
        finds the same ones. Up to ``refit_every_until`` completed trials ``T`` is their
        number (a fresh fit per count); beyond, it grows by 5 % a step, or by the trials in
        flight when more, so at 1,000 trials a fit is shared by about 50 proposals instead of
        being repeated for each. With several metrics (a fresh scalarisation every call)
        nothing is kept: None means fit here. In a parallel study the fit of a step is kept
        even if a lower-numbered trial finishes later within it.
        """
        if len(ctx.metrics) > 1:
            return None
        step = refit_step(len(done), self.refit_every_until, refit_stride(in_flight))
        # The first trial identifies the history; within a step a parallel study may finish a
        # lower-numbered trial late, and the step's fit is kept rather than redone for that.
        first = done[0]
        key = (ctx.seed, step, tuple(p.name for p in enc.params), first.number, first.value)
        theta = self._theta_cache.get(key)
        if theta is None:
            fit_rng = np.random.default_rng([ctx.seed, step, 0x6770])
            if step < len(done):
                Xf = X[:step]
                yf = warp_losses(ctx.losses(done[:step]), self.warp)
            else:
                Xf, yf = X, y
            gp = GaussianProcess(self.n_restarts, self.max_fit_points).fit(Xf, yf, fit_rng)
            theta = gp.hyperparameters
            if len(self._theta_cache) >= 4:
                self._theta_cache.pop(next(iter(self._theta_cache)))
            self._theta_cache[key] = theta
        return theta

    def _trust_region(
        self, ctx: SearchContext, enc: _Encoder, done: list[Any], gp: GaussianProcess
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(centre, low, high) in unit space of this call's trust region, or None (global).

        TuRBO's rule, replayed over the completed trials in number order so that it is a
        function of the history: the region starts at 0.8 of the cube (in length-scale
        weighted units), doubles after 3 improvements in a row, halves after max(4, d)
        proposals without one, and on falling below 0.5^7 restarts at 0.8 around the best
        trial found since (the old basin stays in the GP, which steers away from it).
        """
        numeric = [j for j, p in enumerate(enc.params) if not isinstance(p, Categorical)]
        if self.trust_region == "off" or not numeric:
            return None
        if self.trust_region == "auto" and len(numeric) < _TRUST_REGION_DIMS:
            return None
        losses = ctx.losses(done)
        start = self.startup_trials(ctx.space)
        length, restart = _replay_trust_region(losses, start, len(numeric))
        recent = losses[restart:]
        if not len(recent) or not np.any(np.isfinite(recent)):
            return None  # a fresh restart: look everywhere until it has a point of its own
        centre = ctx.encode([done[restart + int(np.nanargmin(recent))]])[0]
        assert gp.lengthscales is not None
        weights = np.ones(len(enc.params))
        ls = np.array([gp.lengthscales[enc.slices[j].start] for j in numeric])
        weights[numeric] = ls / math.exp(float(np.mean(np.log(ls))))
        half = 0.5 * length * weights
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
        return centre, low, high

    def _region_features(
        self,
        enc: _Encoder,
        centre: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Candidates in the trust region: Sobol points of the box, each changing only a
        random subset of about 20 coordinates of the centre (TuRBO's perturbation mask: in
        high dimension a candidate that moves every coordinate is almost never better)."""
        from scipy.stats import qmc

        dims = len(enc.params)
        m = 1 << max(4, int(math.log2(self.n_candidates)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sobol = qmc.Sobol(dims, scramble=True, rng=rng).random(m)
        points = low + (high - low) * sobol
        mask = rng.random((m, dims)) < min(1.0, 20.0 / dims)
        none = ~mask.any(axis=1)
        mask[none, rng.integers(dims, size=int(none.sum()))] = True
        U = np.where(mask, points, centre)
        return np.unique(enc.from_unit(np.vstack([centre[None, :], U])), axis=0)

    def _startup(
        self, ctx: SearchContext, n: int, rng: np.random.Generator
    ) -> list[dict[str, Any]]:
        from scipy.stats import qmc

        engine = qmc.Sobol(len(ctx.space), scramble=True, rng=np.random.default_rng(ctx.seed))
        if ctx.trials:
            engine.fast_forward(len(ctx.trials))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one continued sequence, not a balanced 2^m block
            points = [ctx.space.decode(u) for u in engine.random(n)]
        return fill_unique(ctx, points, n, rng)

    def _scalarised_losses(
        self, ctx: SearchContext, done: list[Any], rng: np.random.Generator
    ) -> np.ndarray:
        if len(ctx.metrics) < 2:
            return ctx.losses(done)
        # ParEGO: normalise each metric to [0, 1], then an augmented Chebyshev norm with weights
        # drawn afresh each call, so that the front is covered over successive proposals.
        matrix = ctx.loss_matrix(done)
        low, high = matrix.min(axis=0), matrix.max(axis=0)
        scaled = (matrix - low) / np.where(high > low, high - low, 1.0)
        weights = rng.dirichlet(np.ones(matrix.shape[1]))
        weighted = scaled * weights
        return np.max(weighted, axis=1) + 0.05 * np.sum(weighted, axis=1)

    @staticmethod
    def _incumbent(post: _Posterior) -> float:
        """The value improvement is measured from: the best posterior mean at an observed point.

        With exact data that is the best loss. With noise (or ripples the fit treats as noise)
        the best loss is partly luck, and measuring from it makes every place near the data
        look hopeless next to the unexplored edges of the space (the plug-in incumbent).
        """
        return float(np.min(post.mean_at_data()))

    def _fantasise(
        self, post: _Posterior, x: np.ndarray, liar_value: float | None, best: float
    ) -> float:
        if liar_value is None:  # kriging believer: the posterior mean is the fantasy
            value = float(post.predict(x[None, :])[0][0])
        else:
            value = liar_value
        post.add(x, value)
        return min(best, value)

    @staticmethod
    def _last_row(post: _Posterior) -> tuple[np.ndarray, float]:
        return post.L[-1, :-1], float(post.L[-1, -1])

    def _candidate_features(
        self, enc: _Encoder, top_units: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        from scipy.stats import qmc

        dims = len(enc.params)
        n_sobol = 1 << max(4, int(math.log2(self.n_candidates // 2)))
        n_local = self.n_candidates // 4
        n_random = max(self.n_candidates - n_sobol - n_local, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sobol = qmc.Sobol(dims, scramble=True, rng=rng).random(n_sobol)
        parts = [sobol, rng.random((n_random, dims))]
        if len(top_units):
            # Perturb the best trials at a few scales; categoricals re-drawn now and then.
            centre = top_units[rng.integers(len(top_units), size=n_local)]
            scale = rng.choice([0.01, 0.05, 0.15], size=(n_local, 1))
            local = centre + scale * rng.standard_normal((n_local, dims))
            for j, p in enumerate(enc.params):
                if isinstance(p, Categorical):
                    flip = rng.random(n_local) < 1.0 / max(dims, 2)
                    local[flip, j] = rng.random(int(flip.sum()))
                    local[~flip, j] = centre[~flip, j]
            parts.append(local)
        F = enc.from_unit(np.vstack(parts))
        return np.unique(F, axis=0)

    def _acquisition(self, cands: _Candidates, best: float) -> np.ndarray:
        return log_expected_improvement(cands.mean, np.sqrt(cands.var), best)

    def _pick_one(
        self,
        enc: _Encoder,
        post: _Posterior,
        cands: _Candidates,
        best: float,
        seen: set[Any],
        starts: int = 4,
    ) -> tuple[int, dict[str, Any]] | None:
        """(index in ``cands``, configuration) of the best unseen candidate, or None."""
        if starts:
            self._improve(enc, post, cands, best, seen, starts)
        acq = self._acquisition(cands, best)
        # A point within a tenth of a length scale of one being evaluated (or fantasised) is
        # ~99% correlated with it: it would tell almost nothing new. Kriging-believer fantasies
        # otherwise let EI creep along the mean's slope in tiny steps.
        acq = np.where(cands.sep < _MIN_SEPARATION**2, -np.inf, acq)
        for i, config in _unseen_by_score(enc, cands, acq, seen):
            return i, config
        return None

    def _pick_clustered(
        self,
        enc: _Encoder,
        post: _Posterior,
        cands: _Candidates,
        best: float,
        seen: set[Any],
        n: int,
        rng: np.random.Generator,
    ) -> list[dict[str, Any]]:
        self._improve(enc, post, cands, best, seen)
        acq = self._acquisition(cands, best)
        top = list(itertools.islice(_unseen_by_score(enc, cands, acq, seen), max(8 * n, 32)))
        pool = [i for i, _ in top]
        configs = [config for _, config in top]
        if not pool:
            return []
        labels = kmeans(cands.F[pool], n, rng)
        picks = []
        for label in range(int(labels.max()) + 1):
            members = np.flatnonzero(labels == label)
            if len(members):
                picks.append(
                    configs[int(members[0])]
                )  # pool is sorted: first is the cluster's best
        return picks

    def _improve(
        self,
        enc: _Encoder,
        post: _Posterior,
        cands: _Candidates,
        best: float,
        seen: set[Any],
        n_starts: int = 4,
    ) -> None:
        """Add locally refined versions of the best unseen candidates to the pool."""
        acq = self._acquisition(cands, best)
        unseen = _unseen_by_score(enc, cands, acq, seen)
        starts = [i for i, _ in itertools.islice(unseen, n_starts)]
        if not starts:
            return
        F0 = cands.F[starts]
        new = [enc.snap(self._refine(enc, post, F0, best, cands.box))]
        # Discrete one-step moves (integers ±1, other choices) around the best start.
        neighbours = enc.neighbours(enc.to_unit(F0[:1])[0])
        if len(neighbours):
            new.append(enc.from_unit(neighbours))
        cands.extend(post, np.unique(np.vstack(new), axis=0))

    def _refine(
        self,
        enc: _Encoder,
        post: _Posterior,
        F0: np.ndarray,
        best: float,
        box: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Joint L-BFGS-B ascent of logEI over the numeric columns of several starts (inside
        ``box``, feature-space bounds of the numeric columns, when given)."""
        cols = enc.numeric
        if len(cols) == 0:
            return F0
        m = len(F0)
        if box is None:
            lower, upper = np.zeros(m * len(cols)), np.ones(m * len(cols))
        else:
            lower, upper = np.tile(box[0], m), np.tile(box[1], m)
            F0 = F0.copy()
            F0[:, cols] = np.clip(F0[:, cols], box[0], box[1])

        def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
            F = F0.copy()
            F[:, cols] = flat.reshape(m, len(cols))
            mean, std, d_mean, d_std = post.predict_with_grad(F)
            value, g_mean, g_std = log_expected_improvement_grad(mean, std, best)
            grad = g_mean[:, None] * d_mean + g_std[:, None] * d_std
            return -float(np.sum(value)), -grad[:, cols].ravel()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            flat, _ = minimize_box(objective, F0[:, cols].ravel(), lower, upper, 30)
        F = F0.copy()
        F[:, cols] = flat.reshape(m, len(cols))
        return F
