"""Tree-structured Parzen estimator (TPE): model-based search from densities of good and bad trials.

How a proposal is made (all in the unit cube of :class:`~optml.space.Space`, where log-scale
parameters are already on a log axis):

1. The completed trials are ranked by loss. The best ``min(ceil(gamma * n), max_good)`` of them
   (at least one) are the *good* ones; the rest, plus every pending trial (the constant liar: a
   point being evaluated right now counts as a bad result, so workers spread out), are *bad*.
   ``gamma`` defaults to 0.2, not Optuna's 0.1: on short budgets the larger good group finds
   better points, and the cap of 25 keeps long runs as sharp as 0.1 would (the comparison is
   in benchmarks/RESULTS.md).
2. A Parzen estimator (a weighted mixture of kernels, one per point, plus one wide *prior*
   component of weight ``prior_weight``) is built for each group: ``l(x)`` from the good points,
   ``g(x)`` from the bad. Floats get Gaussians truncated to [0, 1]; integers the same Gaussian
   integrated over each integer's cell of the unit interval (a discretised kernel; the cells are
   those of ``Int.from_unit``, so log-scale integers have cells that shrink with the value);
   categoricals a kernel that blends the point's choice (weight 1) with the uniform prior (weight
   ``prior_weight``), i.e. by default half the mass on the choice and half spread evenly. The
   prior component is N(0.5, 1) truncated to [0, 1] for numbers and uniform for choices.
3. ``n_candidates`` points are drawn from ``l`` and the one with the largest ``log l - log g``
   that is not a known point is proposed. In a batch it becomes a pending liar for the next.

Bandwidths: every kernel of every dimension gets the distance to its farther neighbour among
the sorted points (the outermost points: to their one neighbour), so kernels are narrow where
points crowd and wide where they are sparse. Widths are clipped to at least
``1 / min(100, m + 1)`` for ``m`` points, so a few points never make a needle and many points
never resolve finer than a hundredth of a range; integer kernels are never narrower than half a
cell. With ``multivariate=True`` the kernels of one point across all dimensions form one
component (a draw takes every coordinate from the same point, and the density is a mixture of
products), so the model keeps correlations between parameters. (A Scott's-rule width shared by
all kernels, ``0.2 * m ** (-1 / (d + 4))``, searches worse: it cannot be narrow where points
crowd and wide where they are sparse at once; benchmarks/RESULTS.md compares the two.)

Cost with long histories: the good group is capped at ``max_good`` (25) and only the
``max_bad`` (256) most recent bad trials (plus the pending ones) are modelled. The bandwidth
floor above means ``g`` cannot resolve more than about a hundred positions per dimension anyway,
so a few hundred points describe it as well as thousands do; the recent ones are those near
where the search now works, which is where candidates from ``l`` are drawn and where ``g`` must
be accurate, and the regions of older points stay covered by the prior component (long runs
find equally good points with or without the cap; benchmarks/RESULTS.md). The kernel work per proposal is then bounded by
``n_candidates * (max_good + max_bad + 1) * d`` whatever the length of the history; what still
grows with it are single passes over the trials (ranking the losses, and the context's own
``completed``/``pending``/``seen_keys``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

from optml.errors import SpecError
from optml.samplers._base import Sampler, SearchContext, fill_unique
from optml.space import Categorical, Float, Int, Space

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
_ZERO_ONE = np.array([0.0, 1.0])[:, None, None]  # the cube's two ends, to broadcast
_PRIOR = np.array([0.5, 1.0])[:, None]  # the prior component's centre and width
_EXP_CAP = 700.0


class TPESampler(Sampler):
    """Tree-structured Parzen estimator search (Bergstra et al. 2011), batch- and async-aware.

    Options:

    - ``n_startup``: completed trials needed before the model is used; until then points come
      from a scrambled Sobol sequence (as the ``sobol`` sampler).
    - ``n_candidates``: points drawn from the good density per proposal.
    - ``gamma``, ``max_good``: the good group is the best ``min(ceil(gamma * n), max_good)`` of
      ``n`` completed trials (at least one).
    - ``max_bad``: only this many of the most recent bad trials are modelled (bounded cost).
    - ``prior_weight``: weight of the prior component, in units of one observed point.
    - ``multivariate``: joint kernels across parameters instead of one density per parameter.

    >>> TPESampler(multivariate=True).to_spec()["multivariate"]
    True
    """

    name = "tpe"

    def __init__(
        self,
        n_startup: int = 10,
        n_candidates: int = 24,
        gamma: float = 0.2,
        max_good: int = 25,
        max_bad: int = 256,
        prior_weight: float = 1.0,
        multivariate: bool = False,
    ) -> None:
        _check_int("n_startup", n_startup, 1)
        _check_int("n_candidates", n_candidates, 1)
        _check_int("max_good", max_good, 1)
        _check_int("max_bad", max_bad, 1)
        if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 < gamma <= 1:
            raise SpecError(f"algorithm 'tpe': gamma must be a number in (0, 1], got {gamma!r}")
        if (
            isinstance(prior_weight, bool)
            or not isinstance(prior_weight, int | float)
            or not 0 < prior_weight < math.inf
        ):
            raise SpecError(
                f"algorithm 'tpe': prior_weight must be a positive number, got {prior_weight!r}"
            )
        if not isinstance(multivariate, bool):
            raise SpecError(
                f"algorithm 'tpe': multivariate must be true or false, got {multivariate!r}"
            )
        self.n_startup = int(n_startup)
        self.n_candidates = int(n_candidates)
        self.gamma = float(gamma)
        self.max_good = int(max_good)
        self.max_bad = int(max_bad)
        self.prior_weight = float(prior_weight)
        self.multivariate = multivariate

    def n_good(self, n_completed: int) -> int:
        """How many of ``n_completed`` trials form the good group."""
        return max(1, min(math.ceil(self.gamma * n_completed), self.max_good))

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        if n <= 0:
            return []
        space = ctx.space
        completed = ctx.completed
        if len(completed) < self.n_startup:
            from optml.samplers._simple import SobolSampler

            return SobolSampler().propose(ctx, n, rng)

        losses = ctx.losses(completed)
        order = losses.argsort(kind="stable")
        n_good = self.n_good(len(completed))
        good = order[:n_good]
        # Trials are in number order, so the largest indices are the most recent.
        rest = order[n_good:]
        rest.sort()
        bad = rest[-self.max_bad :]
        units = ctx.completed_units()
        x_good, x_bad = units[good], units[bad]
        pending = ctx.pending
        if pending:  # constant liar: points being evaluated count as bad ones
            x_bad = np.vstack([x_bad, space.encode_many(pending)])

        dims = self._dims(space)
        good_density = self._good_density(x_good, dims)
        constrained = bool(ctx.param_constraints)
        # Keys of every known trial cost a pass over the whole history; with a continuous
        # parameter a candidate repeats a known point with probability zero, and fill_unique
        # checks again at the end, so only finite spaces (where repeats are likely) need them.
        quick = not dims.finite and not constrained
        seen = ctx.seen_keys() if dims.finite else set()
        # Candidates that break a parameter constraint are passed over here rather than dropped
        # by fill_unique, so the proposal is still the model's best allowed candidate.
        allows = ctx.allows if constrained else None
        proposals: list[dict[str, Any]] = []
        for _ in range(n):
            bad_density = _Parzen.fit(x_bad, dims, self.prior_weight, self.multivariate)
            candidates = good_density.sample(rng, self.n_candidates)
            score = _score(good_density, bad_density, candidates)
            # Candidates in the model's order of preference: with a continuous parameter and no
            # constraint the best one repeats no known point (fill_unique checks all the same).
            ranked: Any = [int(score.argmax())] if quick else (-score).argsort(kind="stable")
            for j in ranked:
                config = space.decode(candidates[j].tolist())
                if not quick:
                    key = space.key(config)
                    if key in seen or (allows is not None and not allows(config)):
                        continue
                    seen.add(key)
                proposals.append(config)
                if len(proposals) < n:  # the next pick sees this one as a bad point
                    x_bad = np.vstack([x_bad, space.encode(config)[None, :]])
                break
            # When every candidate is a known or forbidden point (a small finite space, a tight
            # constraint), fill_unique tops the batch up at random below.
        return fill_unique(ctx, proposals, n, rng)

    def _good_density(self, x_good: np.ndarray, dims: _Dims) -> _Parzen:
        """The good points' density, fitted afresh only when those points changed.

        The good group changes only when a finished trial enters it or the group grows, not
        with every trial that finishes, so the last fit is kept under the points it was fitted
        to (byte for byte): a fresh instance fits the same density from the same points.
        """
        key = (dims, self.prior_weight, self.multivariate, x_good.shape, x_good.tobytes())
        cached = getattr(self, "_good_cache", None)
        if cached is not None and cached[0] == key:
            density: _Parzen = cached[1]
            return density
        density = _Parzen.fit(x_good, dims, self.prior_weight, self.multivariate)
        self._good_cache = (key, density)
        return density

    def _dims(self, space: Space) -> _Dims:
        # Derived from the space alone (no history), so keeping the last one keeps propose pure.
        cached = getattr(self, "_dims_cache", None)
        if cached is None or cached[0] is not space:
            cached = (space, _Dims(space))
            self._dims_cache = cached
        return cached[1]


def _check_int(what: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"algorithm 'tpe': {what} must be an integer >= {minimum}, got {value!r}")


class _Dims:
    """What the estimator needs to know about each parameter, as arrays over the columns."""

    def __init__(self, space: Space) -> None:
        params = space.params
        self.num = np.array(
            [i for i, p in enumerate(params) if not isinstance(p, Categorical)], dtype=int
        )
        self.cat = np.array(
            [i for i, p in enumerate(params) if isinstance(p, Categorical)], dtype=int
        )
        numeric = [params[i] for i in self.num]
        self.n_choices = np.array([params[i].size for i in self.cat], dtype=int)  # type: ignore[union-attr]
        self.n_num, self.n_cat = len(self.num), len(self.cat)
        # Positions 0 .. k - 1 of the numeric and the categorical columns (index helpers).
        self.num_columns = np.arange(self.n_num)
        self.cat_columns = np.arange(self.n_cat)
        # Every column a number: numeric columns are the whole point (no gather needed).
        self.all_numeric = not len(self.cat)
        self.is_int = np.array([isinstance(p, Int) for p in numeric], dtype=bool)
        # Int columns: number of cells, and for log scales the log bounds of the unit interval
        # (the same mapping as Int.to_unit/from_unit).
        self.ints: list[tuple[int, Int]] = [
            (k, p) for k, p in enumerate(numeric) if isinstance(p, Int)
        ]
        self.int_columns = np.array([k for k, _ in self.ints], dtype=int)
        cells = np.array([p.size if isinstance(p, Int) else 0 for p in numeric], dtype=float)
        self.min_sigma = np.where(self.is_int, 0.5 / np.maximum(cells, 1.0), 0.0)
        # Positions, among the numeric columns, of the float ones.
        self.floats = np.flatnonzero(~self.is_int)
        self.all_floats = len(self.floats) == self.n_num
        self.finite = space.is_finite
        assert all(isinstance(p, Float | Int) for p in numeric)

    def int_cells(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper unit-interval bounds of the integer cell each value of ``u`` falls in.

        ``u`` holds the numeric columns, shape (N, n_numeric); only the int columns are filled.
        """
        lower = np.zeros_like(u)
        upper = np.ones_like(u)
        for k, p in self.ints:
            col = u[:, k]
            if p.log:
                lo, hi = p.log_range
                v = np.clip(np.round(np.exp(lo + np.clip(col, 0, 1) * (hi - lo))), p.low, p.high)
                lower[:, k] = np.maximum((np.log(v - 0.5) - lo) / (hi - lo), 0.0)
                upper[:, k] = np.minimum((np.log(v + 0.5) - lo) / (hi - lo), 1.0)
            else:
                index = np.minimum(np.floor(np.clip(col, 0, 1) * p.size), p.size - 1)
                lower[:, k] = index / p.size
                upper[:, k] = (index + 1) / p.size
        return lower, upper


class _Parzen:
    """A weighted mixture of kernels in the unit cube; the last component is the prior.

    ``weights``: (m + 1,) mixture weights summing to 1; ``mu``/``sigma``: (m + 1, n_numeric)
    centres and widths; ``low``: the normal CDF of each numeric kernel at 0, ``mass``: its
    mass inside [0, 1] (the truncation; sampling draws between ``low`` and ``low + mass``);
    ``choice``: (m + 1, n_categorical) choice index of each component, -1 for the uniform
    prior; ``smooth``: share of a categorical kernel's mass spread evenly over the choices.

    The mixture never changes once fitted; what sampling and the float density derive from it
    alone is worked out on first use and kept (a proposal evaluates the good density several
    times, and the sampler keeps the last good density while its points stay the same).
    """

    __slots__ = (
        "dims",
        "weights",
        "table",
        "choice",
        "smooth",
        "multivariate",
        "_cumulative",
        "_float_terms",
        "_int_terms",
        "_tables",
    )

    def __init__(
        self,
        dims: _Dims,
        weights: np.ndarray,
        table: np.ndarray,
        choice: np.ndarray,
        smooth: float,
        multivariate: bool,
    ) -> None:
        self.dims = dims
        self.weights = weights
        # mu, sigma, low, high and mass side by side, (5, m + 1, n_numeric): one gather takes
        # them all for the chosen components of a sample.
        self.table = table
        self.choice = choice
        self.smooth = smooth
        self.multivariate = multivariate
        self._cumulative: tuple[np.ndarray, float] | None = None
        self._float_terms: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._int_terms: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._tables: list[np.ndarray] | None = None

    @property
    def mu(self) -> np.ndarray:
        return self.table[0]

    @property
    def sigma(self) -> np.ndarray:
        return self.table[1]

    @property
    def mass(self) -> np.ndarray:
        return self.table[4]

    @classmethod
    def fit(
        cls, points: np.ndarray, dims: _Dims, prior_weight: float, multivariate: bool
    ) -> _Parzen:
        m = len(points)
        floor = 1.0 / min(100.0, m + 1.0)
        x = points if dims.all_numeric else points[:, dims.num]
        table = np.empty((5, m + 1, dims.n_num))
        mu, sigma = table[0], table[1]
        mu[:m] = x
        # The last component is the prior: centred, as wide as the cube.
        table[:2, m] = _PRIOR
        if m:
            _neighbour_widths(x, sigma)
            # Clipped to [max(floor, min_sigma), 1] (np.clip costs more on arrays this small).
            least = np.maximum(floor, dims.min_sigma) if dims.ints else floor
            widths = sigma[:m]
            np.maximum(widths, least, out=widths)
            np.minimum(widths, 1.0, out=widths)
        # The normal CDF of each kernel at 0 and at 1, both from one pass. Every centre lies in
        # [0, 1] and every width is at most 1, so each kernel keeps at least a third of its
        # mass inside the cube: no tail care needed here.
        ends = table[2:4]
        np.subtract(_ZERO_ONE, mu, ends)
        np.divide(ends, sigma, ends)
        ndtr(ends, ends)
        np.subtract(table[3], table[2], table[4])
        if dims.n_cat:
            choice = np.minimum(
                np.floor(points[:, dims.cat] * dims.n_choices), dims.n_choices - 1
            ).astype(int)
            choice = np.vstack([choice, np.full((1, dims.n_cat), -1)])
        else:
            choice = np.empty((m + 1, 0), dtype=int)
        # A categorical kernel is the point's choice (weight 1) blended with the prior (weight
        # prior_weight): with less spread, TPE locked onto the first choice that did well.
        smooth = prior_weight / (1.0 + prior_weight)
        # Weights: 1 per point, prior_weight for the prior, normalised.
        weights = np.full(m + 1, 1.0 / (m + prior_weight))
        weights[m] = prior_weight / (m + prior_weight)
        return cls(dims, weights, table, choice, smooth, multivariate)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` points of the unit cube drawn from the mixture."""
        dims = self.dims
        n_num, n_cat = dims.n_num, dims.n_cat
        width = n_num + n_cat
        picks = n * (1 if self.multivariate else width)
        # Every uniform number this sample needs, from one call, in the order the steps below
        # use them: the mixture components, the truncated normals, then for each choice a
        # uniform pick and whether the kernel spreads.
        r = rng.random(picks + n * n_num + 2 * n * n_cat)
        # Mixture components: one per point (multivariate) or per point and column. Searched
        # among every boundary but the last, so that a draw at the very top (rounding) still
        # picks the last component.
        if self._cumulative is None:
            cumulative = self.weights.cumsum()
            self._cumulative = (cumulative[:-1], float(cumulative[-1]))
        inner, total = self._cumulative
        chosen = inner.searchsorted(r[:picks].reshape(n, -1) * total, side="right")
        if self.multivariate:
            chosen = np.broadcast_to(chosen, (n, width))
        out = None if dims.all_numeric else np.empty((n, width))
        if n_num:
            # Each draw's component's centre, width, low end and mass, column by column.
            picked = self.table[
                :, chosen if dims.all_numeric else chosen[:, :n_num], dims.num_columns
            ]
            mu, sigma, low, mass = picked[0], picked[1], picked[2], picked[4]
            # Inverse-CDF draws of the truncated normal; well conditioned since every centre
            # lies inside [0, 1]. (np.clip costs more than maximum + minimum on arrays this
            # small.)
            u = r[picks : picks + n * n_num].reshape(n, n_num) * mass
            u += low
            np.maximum(u, 1e-300, out=u)
            np.minimum(u, 1.0 - 1e-16, out=u)
            ndtri(u, out=u)
            u *= sigma
            u += mu
            np.maximum(u, 0.0, out=u)
            np.minimum(u, 1.0, out=u)
            if out is None:  # numbers only
                return u
            out[:, dims.num] = u
        assert out is not None
        if n_cat:
            comp = chosen[:, n_num:]
            choice = self.choice[comp, dims.cat_columns]
            rest = r[picks + n * n_num :].reshape(2, n, n_cat)
            uniform = np.floor(rest[0] * dims.n_choices).astype(int)
            spread = (choice < 0) | (rest[1] < self.smooth)
            index = np.where(spread, uniform, choice)
            out[:, dims.cat] = (index + 0.5) / dims.n_choices
        return out

    def log_pdf(self, u: np.ndarray) -> np.ndarray:
        """Log density (mass for integers and choices) of each row of ``u``, shape (N,)."""
        dims = self.dims
        if not self.multivariate:
            return self._log_pdf_independent(u)
        parts = []
        if len(dims.num):
            x = u[:, dims.num][:, None, :]
            mu, sigma = self.mu[None], self.sigma[None]
            z = (x - mu) / sigma
            log_p = -0.5 * z * z - np.log(sigma) - _LOG_SQRT_2PI
            if dims.ints:
                lower, upper = dims.int_cells(u[:, dims.num])
                k = [i for i, _ in dims.ints]
                log_p[:, :, k] = _log_ndtr_diff(
                    (lower[:, None, k] - mu[:, :, k]) / sigma[:, :, k],
                    (upper[:, None, k] - mu[:, :, k]) / sigma[:, :, k],
                )
            parts.append(log_p - np.log(self.mass)[None])
        if len(dims.cat):
            index = np.minimum(np.floor(u[:, dims.cat] * dims.n_choices), dims.n_choices - 1)
            hit = index[:, None, :] == self.choice[None]
            even = 1.0 / dims.n_choices
            prob = np.where(hit, 1.0 - self.smooth, 0.0) + self.smooth * even
            prob = np.where(self.choice[None] < 0, even, prob)
            parts.append(np.log(prob))
        log_p = np.concatenate(parts, axis=2)  # (N, m, d)
        return _logsumexp(np.log(self.weights)[None] + log_p.sum(axis=2), axis=1)

    def _log_pdf_independent(self, u: np.ndarray) -> np.ndarray:
        """:meth:`log_pdf` with one density per column: the sum over columns of the log of
        each column's mixture, each mixture summed in linear space.

        Safe without a log-sum-exp shift: the prior component gives every float of the cube a
        density of at least ``w_prior * 0.24 / mass``, every integer cell and every choice a
        share of the prior's mass, so no column's sum underflows; no kernel is narrower than
        0.01 of the cube (half a cell for integers), so none overflows.
        """
        return _log_pdfs_independent((self,), u)[0]

    def _ints_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The integer columns' centres and widths, (n_int, 1, m + 1) each, and each kernel's
        weight over its mass inside [0, 1], (n_int, m + 1, 1)."""
        terms = self._int_terms
        if terms is None:
            k = self.dims.int_columns
            scale = self.weights[:, None] / self.mass[:, k]
            terms = self._int_terms = (
                self.mu[:, k].T[:, None, :],
                self.sigma[:, k].T[:, None, :],
                np.ascontiguousarray(scale.T)[:, :, None],
            )
        return terms

    def _choice_table(self) -> list[np.ndarray]:
        """Per categorical column, the mixture's probability of each choice."""
        tables = self._tables
        if tables is not None:
            return tables
        dims = self.dims
        w = self.weights
        kept = self.smooth * float(w[:-1].sum()) + float(w[-1])  # spread evenly by every component
        tables = []
        for j, size in enumerate(dims.n_choices):
            size = int(size)
            own = np.bincount(self.choice[:-1, j], weights=w[:-1], minlength=size)
            tables.append((1.0 - self.smooth) * own + kept / size)
        self._tables = tables
        return tables

    def _floats_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What :func:`_log_floats` needs of the float columns' kernels, shaped for it:
        ``a = 1 / (sigma sqrt 2)`` (d, 1, m), ``mu * a`` (d, 1, m) and each kernel's weight
        over its normalising constant (d, m, 1)."""
        terms = self._float_terms
        if terms is None:
            mu, sigma, mass = self.mu, self.sigma, self.mass
            if not self.dims.all_floats:
                f = self.dims.floats
                mu, sigma, mass = mu[:, f], sigma[:, f], mass[:, f]
            a = _SQRT_HALF / sigma.T  # (d, m)
            scale = (self.weights[:, None] / (_SQRT_2PI * mass)) / sigma
            terms = self._float_terms = (a[:, None, :], (mu.T * a)[:, None, :], scale.T[:, :, None])
        return terms


def _score(good: _Parzen, bad: _Parzen, u: np.ndarray) -> np.ndarray:
    """``log l(u) - log g(u)`` for each row of ``u``: how much likelier among the good points."""
    if good.multivariate:
        return good.log_pdf(u) - bad.log_pdf(u)
    log_good, log_bad = _log_pdfs_independent((good, bad), u)
    return log_good - log_bad


def _log_pdfs_independent(densities: tuple[_Parzen, ...], u: np.ndarray) -> list[np.ndarray]:
    """:meth:`_Parzen.log_pdf` of each of ``densities`` (independent, over the same columns)
    at the rows of ``u``, worked out together: what depends on ``u`` alone is computed once,
    and the float columns of every density go through one array of kernel terms."""
    dims = densities[0].dims
    x = u if dims.all_numeric else u[:, dims.num]
    if dims.n_num and len(dims.floats):
        totals = _log_floats(densities, x if dims.all_floats else x[:, dims.floats])
    else:
        totals = [np.zeros(len(u)) for _ in densities]
    if dims.ints:
        lower, upper = dims.int_cells(x)
        k = dims.int_columns
        lower, upper = lower[:, k].T[:, :, None], upper[:, k].T[:, :, None]  # (n_int, N, 1)
        for density, total in zip(densities, totals, strict=True):
            mu, sigma, scale = density._ints_terms()
            a = (lower - mu) / sigma  # (n_int, N, m + 1)
            b = (upper - mu) / sigma
            # A cell's mass, Phi(b) - Phi(a), from the tail both ends lie in (when a > 0 as
            # Phi(-a) - Phi(-b)), so that a kernel far from the cell keeps its few digits.
            flip = np.where(a > 0, -1.0, 1.0)
            mass = flip * (ndtr(flip * b) - ndtr(flip * a))
            logs = np.log(mass @ scale)
            for j in range(len(k)):
                total += logs[j, :, 0]
    if dims.n_cat:
        index = np.minimum(np.floor(u[:, dims.cat] * dims.n_choices), dims.n_choices - 1)
        index = index.astype(int).T
        for density, total in zip(densities, totals, strict=True):
            for j, table in enumerate(density._choice_table()):
                total += np.log(table[index[j]])
    return totals


def _log_floats(densities: tuple[_Parzen, ...], u: np.ndarray) -> list[np.ndarray]:
    """For each density, the sum over the float columns of the log of each column's mixture
    density at ``u`` (N, d): those columns of the candidates."""
    # exp(-z^2 / 2) with z = (u - mu) / sigma, as exp(-(u a - mu a)^2), a = 1 / (sigma
    # sqrt 2): a few passes over a (columns x candidates x kernels) array that holds the
    # kernels of every density, then one batched matrix product per density sums the kernels
    # of each column.
    terms = [density._floats_terms() for density in densities]
    if len(terms) == 1:
        a, mu_a = terms[0][0], terms[0][1]
    else:
        a = np.concatenate([t[0] for t in terms], axis=2)
        mu_a = np.concatenate([t[1] for t in terms], axis=2)
    z = np.multiply(u.T[:, :, None], a, order="C")  # (d, N, m)
    z -= mu_a
    np.square(z, out=z)
    # exp underflows past 708 and numpy's exp is several times slower on such inputs (a
    # kernel tens of widths away from a candidate is common); exp(-700) ~ 1e-304 adds
    # nothing to a sum that the prior keeps above 1e-6, so capping changes no result.
    np.minimum(z, _EXP_CAP, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    out = []
    start = 0
    for _, _, scale in terms:
        stop = start + scale.shape[1]
        part = z if len(terms) == 1 else z[:, :, start:stop]
        out.append(np.log(part @ scale)[:, :, 0].sum(axis=0))
        start = stop
    return out


def _neighbour_widths(x: np.ndarray, out: np.ndarray) -> None:
    """Write into the first ``len(x)`` rows of ``out``, per point and column of ``x``: the
    distance to the farther of its two sorted neighbours.

    The outermost points measure only to their inner neighbour: counting the bound as a
    neighbour gave them kernels as wide as the gap to the edge, which the prior already covers
    (and search got measurably worse).
    """
    m, d = x.shape
    if m < 2:
        np.maximum(x, 1.0 - x, out=out[:m])  # one point: as far as the farther bound
        return
    order = x.argsort(axis=0, kind="stable")
    columns = _columns(d)
    ordered = x[order, columns]
    # Row i of `gaps` is the gap on the left of sorted point i, row i + 1 the one on its right;
    # the outermost points see their one gap on both sides.
    gaps = np.empty((m + 1, d))
    np.subtract(ordered[1:], ordered[:-1], gaps[1:m])
    gaps[0] = gaps[1]
    gaps[m] = gaps[m - 1]
    out[order, columns] = np.maximum(gaps[:m], gaps[1:])


_COLUMNS: dict[int, np.ndarray] = {}


def _columns(d: int) -> np.ndarray:
    """``np.arange(d)``, made once per ``d``."""
    columns = _COLUMNS.get(d)
    if columns is None:
        columns = _COLUMNS[d] = np.arange(d)
    return columns


def _log_ndtr_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for a < b, accurate far into either tail."""
    a, b = np.broadcast_arrays(a, b)
    right = a > 0  # both in the right tail: use the survival function, Phi(-a) - Phi(-b)
    hi = np.where(right, log_ndtr(-a), log_ndtr(b))
    lo = np.where(right, log_ndtr(-b), log_ndtr(a))
    with np.errstate(divide="ignore"):
        return hi + np.log(-np.expm1(np.minimum(lo - hi, 0.0)))


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    # (Capped as in _Parzen._log_floats: exp is slow where it underflows; the largest term is
    # 1, so terms below exp(-700) change no sum.)
    shifted = np.maximum(a - top, -_EXP_CAP)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(shifted), axis=axis)) + np.squeeze(top, axis=axis)


__all__ = ["TPESampler"]
