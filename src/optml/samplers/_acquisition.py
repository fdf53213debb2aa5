"""Acquisition helpers for model-based samplers: stable log expected improvement and k-means."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erfcx, log_ndtr, ndtr

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_HALF_PI = 0.5 * math.log(math.pi / 2.0)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
# Below this z the correction term 1 - |z| Φ(z)/φ(z) is lost to rounding; use its asymptote 1/z².
_Z_ASYMPTOTE = -1.0 / math.sqrt(np.finfo(float).eps)


def _log1mexp(t: np.ndarray) -> np.ndarray:
    """log(1 - exp(t)) for t < 0, accurate at both ends (Mächler's two-branch rule)."""
    near = t > -math.log(2.0)
    if near.all():
        return np.log(-np.expm1(t))
    if not near.any():
        return np.log1p(-np.exp(t))
    out = np.empty_like(t)
    out[near] = np.log(-np.expm1(t[near]))
    out[~near] = np.log1p(-np.exp(t[~near]))
    return out


def log_h(z: np.ndarray) -> np.ndarray:
    """log(φ(z) + z Φ(z)), the log of expected improvement of a unit Gaussian over -z.

    The naive formula underflows to log(0) once z < -38 or so, which flattens the acquisition
    landscape far from the incumbent; for z < -1 this uses the erfcx form
    ``φ(z) (1 - |z| sqrt(pi/2) erfcx(|z|/sqrt 2))`` in log space, and its asymptote beyond.
    """
    z = np.asarray(z, dtype=float)
    upper = z > -1.0
    if upper.all():  # the common cases take one branch without masking
        return _log_h_upper(z)
    if not upper.any():
        return _log_h_tail(z)
    out = np.empty_like(z)
    out[upper] = _log_h_upper(z[upper])
    out[~upper] = _log_h_tail(z[~upper])
    return out


def _log_h_upper(z: np.ndarray) -> np.ndarray:
    return np.log(np.exp(-0.5 * z * z - _LOG_SQRT_2PI) + z * ndtr(z))


def _log_h_tail(z: np.ndarray) -> np.ndarray:
    """log h(z) for z <= -1: the erfcx form, and its asymptote beyond ``_Z_ASYMPTOTE``."""
    mid = z > _Z_ASYMPTOTE
    if mid.all():
        return _log_h_mid(z)
    out = np.empty_like(z)
    out[mid] = _log_h_mid(z[mid])
    za = z[~mid]
    out[~mid] = -0.5 * za * za - _LOG_SQRT_2PI - 2.0 * np.log(-za)
    return out


def _log_h_mid(z: np.ndarray) -> np.ndarray:
    t = np.log(erfcx(-z * _INV_SQRT_2) * -z) + _LOG_SQRT_HALF_PI
    return -0.5 * z * z - _LOG_SQRT_2PI + _log1mexp(np.minimum(t, -1e-300))


def log_expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """log E[max(best - f, 0)] for f ~ N(mean, std²): expected improvement when minimising."""
    std = np.maximum(std, 1e-12)
    z = (best - mean) / std
    return np.log(std) + log_h(z)


def log_expected_improvement_grad(
    mean: np.ndarray, std: np.ndarray, best: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """logEI and its partial derivatives with respect to ``mean`` and ``std``.

    d logEI/dz = Φ(z)/h(z), taken as a difference of logs so that it stays finite far out.
    """
    std = np.maximum(std, 1e-12)
    z = (best - mean) / std
    lh = log_h(z)
    ratio = np.exp(log_ndtr(z) - lh)
    d_mean = -ratio / std
    d_std = 1.0 / std - ratio * z / std
    return np.log(std) + lh, d_mean, d_std


def kmeans(
    points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 20
) -> np.ndarray:
    """Cluster labels of ``points`` into ``k`` groups (k-means++ seeding, Lloyd iterations)."""
    m = len(points)
    k = min(k, m)
    if k <= 1:
        return np.zeros(m, dtype=int)
    centres = np.empty((k, points.shape[1]))
    centres[0] = points[rng.integers(m)]
    closest = np.sum((points - centres[0]) ** 2, axis=1)
    for j in range(1, k):
        total = closest.sum()
        if total <= 0.0:
            centres[j:] = points[rng.choice(m, size=k - j, replace=False)]
            break
        centres[j] = points[rng.choice(m, p=closest / total)]
        closest = np.minimum(closest, np.sum((points - centres[j]) ** 2, axis=1))
    labels = np.zeros(m, dtype=int)
    for it in range(iterations):
        dist = np.sum((points[:, None, :] - centres[None, :, :]) ** 2, axis=2)
        new = np.argmin(dist, axis=1)
        if it > 0 and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = points[labels == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    return labels
