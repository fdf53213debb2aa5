"""The sampler contract: a pure function from a study's history to new configurations."""

from __future__ import annotations

import abc
import functools
import inspect
import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optml.errors import SpecError
from optml.ranking import loss_matrix, violations
from optml.space import Space
from optml.trial import Metric, Trial, TrialState


class TrialMemo:
    """What samplers derive from each trial's parameters (its key and unit point), kept across
    requests by the study that owns it.

    A trial's parameters never change once it exists, so these are computed once per trial
    number instead of once per proposal: without the memo every request pays a pass of Python
    work over the whole history. It serves only contexts over the space it was made for (the
    meta sampler's per-family contexts fall back to computing).
    """

    def __init__(self, space: Space) -> None:
        self.space = space
        self._keys: dict[int, tuple[Any, ...]] = {}
        self._key_set: set[tuple[Any, ...]] = set()  # every value of _keys
        self._keys_below = 0  # every number below this has its key
        # Unit points by trial number (trial numbers are small consecutive integers).
        self._rows = np.zeros((0, len(space)))
        self._known = np.zeros(0, dtype=bool)
        self._known_below = 0  # every number below this has its row

    def key_set(self, trials: Sequence[Trial]) -> AbstractSet[tuple[Any, ...]]:
        """The keys of ``trials`` (trial numbers unique, as in a study), read only.

        A study's whole history in number order (``0 .. n-1``, as :meth:`Study.context` gives
        it) costs only its trials past those already known; the set handed back is then the
        memo's own, which later requests extend: read it before the next one.
        """
        known = self._keys
        n = len(trials)
        whole = n > 0 and trials[0].number == 0 and trials[n - 1].number == n - 1
        fresh = trials[min(self._keys_below, n) :] if whole else trials
        for t in fresh:
            if t.number not in known:
                key = self.space.key(t.params)
                known[t.number] = key
                self._key_set.add(key)
        if whole:
            while self._keys_below in known:
                self._keys_below += 1
        if len(known) == n:  # the memo knows exactly these trials: its set is theirs
            return self._key_set
        return frozenset(known[t.number] for t in trials)

    def units(self, trials: Sequence[Trial], in_number_order: bool = False) -> np.ndarray:
        """The unit points of ``trials`` (trial numbers unique), one row each, a fresh array.

        ``in_number_order`` says the trials are in increasing number order, as
        :attr:`SearchContext.completed` holds them: trials numbered exactly ``0 .. n-1`` (every
        trial of the study finished) are then read as one block, without a pass over them.
        """
        n = len(trials)
        if in_number_order and n and trials[0].number == 0 and trials[n - 1].number == n - 1:
            below = self._known_below
            if n > below:  # some may be new: those numbered from `below` on
                self._reserve(n - 1)
                if n == below + 1:  # one trial finished since: the last one
                    self._rows[below] = self.space.encode_many([trials[below].params])[0]
                    self._known[below] = True
                else:
                    missing = below + (~self._known[below:n]).nonzero()[0]
                    if len(missing):
                        fresh = self.space.encode_many([trials[int(i)].params for i in missing])
                        self._rows[missing] = fresh
                        self._known[missing] = True
                self._advance()
            return self._rows[:n].copy()
        numbers = np.array([t.number for t in trials], dtype=np.int64)
        if not n:
            return np.zeros((0, len(self.space)))
        below = self._known_below
        top = int(numbers.max())
        if top >= below:  # some may be new
            self._reserve(top)
            # Every number below `below` is known: look only at the others.
            maybe = (numbers >= below).nonzero()[0]
            missing = maybe[~self._known[numbers[maybe]]]
            if len(missing):
                fresh = self.space.encode_many([trials[int(i)].params for i in missing])
                self._rows[numbers[missing]] = fresh
                self._known[numbers[missing]] = True
            self._advance()
        return self._rows[numbers]

    def _reserve(self, top: int) -> None:
        """Room for the rows of trial numbers up to ``top``."""
        if top >= len(self._known):
            size = max(top + 1, 2 * len(self._known), 64)
            rows = np.zeros((size, len(self.space)))
            rows[: len(self._rows)] = self._rows
            known = np.zeros(size, dtype=bool)
            known[: len(self._known)] = self._known
            self._rows, self._known = rows, known

    def _advance(self) -> None:
        """Move ``_known_below`` past the numbers now known (each number is passed once)."""
        below, known = self._known_below, self._known
        size = len(known)
        while below < size and known[below]:
            below += 1
        self._known_below = below


@dataclass(frozen=True)
class SearchContext:
    """Everything a sampler may look at. Immutable; built afresh by the study for every request.

    ``trials`` holds every trial of the study in any state, in number order; the unfinished ones are ``pending``
    (their points are being evaluated, or queued to be). ``seed`` is the study's seed, for
    samplers that walk a fixed sequence (Sobol); per-call randomness comes from the ``rng``
    handed to :meth:`Sampler.propose`. ``budget`` is the study's trial budget when known.
    ``memo`` (optional, owned by the study) keeps per-trial keys and unit points across requests.
    """

    space: Space
    trials: Sequence[Trial]
    metrics: Sequence[Metric] = (Metric("value"),)
    seed: int = 0
    budget: int | None = None
    constraints: Sequence[Any] = field(default_factory=tuple)
    memo: TrialMemo | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Accept the spec forms (strings, callables, dicts) as well as built constraints.
        if self.constraints:
            from optml.constraints import parse_constraints

            parsed = tuple(parse_constraints(list(self.constraints)))
            object.__setattr__(self, "constraints", parsed)

    @property
    def param_constraints(self) -> list[Any]:
        """The constraints on the parameters (checked before a configuration runs)."""
        if not self.constraints:
            return []
        return [c for c in self.constraints if getattr(c, "kind", None) == "params"]

    def allows(self, config: dict[str, Any]) -> bool:
        """Whether ``config`` meets every parameter constraint (always true without any)."""
        return all(c.allows(config) for c in self.constraints)

    def violations(self, trials: Sequence[Trial] | None = None) -> np.ndarray:
        """Total constraint violation of ``trials`` (default: :attr:`completed`); 0 = feasible."""
        return violations(self.completed if trials is None else trials, self.constraints)

    def feasible(self, trials: Sequence[Trial] | None = None) -> np.ndarray:
        """Boolean mask of ``trials`` (default: :attr:`completed`) that meet every constraint."""
        return self.violations(trials) == 0.0

    @property
    def pending(self) -> list[dict[str, Any]]:
        """Configurations being evaluated or queued (computed once per context; a fresh list)."""
        return list(self._by_state[0])

    @property
    def completed(self) -> list[Trial]:
        """Trials that finished with a usable value of every metric, in trial-number order
        (computed once per context; a fresh list)."""
        return list(self._by_state[1])

    @functools.cached_property
    def _by_state(self) -> tuple[tuple[dict[str, Any], ...], tuple[Trial, ...]]:
        """(pending parameters, completed trials), from one pass over the history."""
        done, running, waiting = TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING
        stale = TrialState.STALE  # to be run again: pending, like a queued trial
        isfinite = math.isfinite
        pending: list[dict[str, Any]] = []
        complete: list[Trial] = []
        for t in self.trials:
            state = t.state
            if state is done:
                if t.value is not None and isfinite(t.value):
                    complete.append(t)
            elif state is running or state is waiting or state is stale:
                pending.append(t.params)
        if len(self.metrics) > 1:  # the primary metric is the trial's value; check the others
            complete = [
                t for t in complete if all(_finite(t.metrics.get(m.name)) for m in self.metrics[1:])
            ]
        return tuple(pending), tuple(complete)

    def losses(self, trials: Sequence[Trial] | None = None) -> np.ndarray:
        """Primary metric of ``trials`` (default: :attr:`completed`) as values to minimise.

        With constraints, an infeasible trial's loss is replaced by one worse than every
        feasible trial's (the worst feasible loss plus a margin that grows with its violation),
        so that every sampler that models these losses steers away from infeasible regions.
        """
        trials = self.completed if trials is None else trials
        metric = self.metrics[0]
        # (None, for a trial without a value, becomes NaN.)
        raw = np.array([t.value for t in trials], dtype=np.float64).reshape(len(trials))
        if metric.direction != "minimize":  # as Metric.loss
            raw = -raw
        raw = tame(raw)
        if not self.constraints or not len(raw):
            return raw
        return penalise(raw, self.violations(trials))

    def loss_matrix(self, trials: Sequence[Trial] | None = None) -> np.ndarray:
        """Every metric of ``trials`` as an (n, k) array of values to minimise (each column
        scaled as :func:`tame` scales it)."""
        matrix = loss_matrix(self.completed if trials is None else trials, self.metrics)
        for j in range(matrix.shape[1]):
            matrix[:, j] = tame(matrix[:, j])
        return matrix

    def seen_keys(self) -> set[tuple[Any, ...]]:
        """Keys (see :meth:`Space.key`) of every configuration already tried or pending.

        Computed once per context (samplers ask more than once per proposal); a fresh copy is
        returned so callers may add to it.
        """
        return set(self._seen_keys)

    @property
    def _seen_keys(self) -> AbstractSet[tuple[Any, ...]]:
        # Kept like a cached_property, without the lock Python 3.11's takes on every read.
        seen: AbstractSet[tuple[Any, ...]] | None = self.__dict__.get("_seen")
        if seen is None:
            if self._memo is not None:
                seen = self._memo.key_set(self.trials)
            else:
                seen = frozenset(self.space.key(t.params) for t in self.trials)
            self.__dict__["_seen"] = seen
        return seen

    def encode(self, trials: Sequence[Trial]) -> np.ndarray:
        """The unit-cube points of ``trials`` (one row each), as ``space.encode_many`` gives."""
        if self._memo is not None:
            return self._memo.units(trials)
        return self.space.encode_many([t.params for t in trials])

    def completed_units(self) -> np.ndarray:
        """``encode(completed)``: the unit-cube points of the completed trials, one row each,
        in trial-number order (a fresh array)."""
        done = self._by_state[1]
        if self._memo is not None:
            return self._memo.units(done, in_number_order=True)
        return self.space.encode_many([t.params for t in done])

    @property
    def _memo(self) -> TrialMemo | None:
        return self.memo if self.memo is not None and self.memo.space is self.space else None


# Losses beyond this magnitude are scaled down before a sampler sees them (see tame).
_LOSS_LIMIT = 2.0**256


def tame(losses: np.ndarray) -> np.ndarray:
    """``losses`` scaled by a power of two when their magnitude passes 2**256, else unchanged.

    An objective may return 1e308: a model that takes differences, squares or sums of such
    losses overflows to inf and NaN. Scaling by a power of two is exact and keeps the order
    (only values far below the largest may round to zero), and losses of any sane size are
    left exactly as they are.
    """
    if not len(losses) or abs(losses).max() <= _LOSS_LIMIT:  # all finite and of sane size
        return losses
    finite = np.abs(losses[np.isfinite(losses)])
    if not finite.size:
        return losses
    top = float(finite.max())
    if top <= _LOSS_LIMIT:
        return losses
    return losses * 2.0 ** -math.ceil(math.log2(top / _LOSS_LIMIT))


WARPS = ("none", "log", "power")


def warp_losses(y: np.ndarray, kind: str = "log") -> np.ndarray:
    """A monotone transform of losses before a surrogate model sees them.

    Losses with a heavy upper tail (a few diverged runs, Rosenbrock-like valleys) otherwise
    dominate a model fitted to raw values and flatten it near the optimum. Every transform keeps
    the order of the trials, so the best trial and any improvement over it stay meaningful.

    - ``"log"``: ``log1p(r)`` with ``r = (y - min) / (median - min)``.
    - ``"power"``: the Box-Cox transform of ``1 + r`` with its exponent fitted by maximum
      likelihood and kept in [0, 1]: ``log1p(r)`` at 0, ``r`` itself at 1. Losses without a
      heavy tail are left nearly linear (a log would needlessly bend a smooth bowl), heavy
      tails get the log. The idea of fitting the output transform is HEBO's.
    - ``"none"`` leaves the losses as they are.
    """
    if kind == "none" or len(y) < 3:
        return y
    low = float(np.min(y))
    scale = float(np.median(y)) - low
    if not scale > 0:
        scale = float(np.max(y)) - low
    if not scale > 0:
        return y
    with np.errstate(over="ignore"):
        r = (y - low) / scale
    if not np.all(np.isfinite(r)):  # a tiny median spread under a huge range: use the range
        r = (y - low) / (float(np.max(y)) - low)
    if kind == "log":
        return np.log1p(r)
    log_x = np.log1p(r)
    lam = _boxcox_exponent(log_x)
    return log_x if lam == 0.0 else np.expm1(lam * log_x) / lam


# Box-Cox exponents tried by the "power" warp: [0, 1] in steps of 0.02 (finer is not needed
# for a warp, and one vectorised pass costs well under a millisecond).
_BOXCOX_GRID = np.linspace(0.0, 1.0, 51)


def _boxcox_exponent(log_x: np.ndarray) -> float:
    """The Box-Cox exponent in [0, 1] of largest profile likelihood for data ``exp(log_x)``.

    The log-likelihood of exponent λ, up to constants, is ``-n/2 log var(y_λ) + (λ - 1) Σ log x``
    with ``y_λ = (x^λ - 1) / λ`` (``log x`` at 0).
    """
    lams = _BOXCOX_GRID[1:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        ys = np.vstack([log_x[None, :], np.expm1(lams * log_x[None, :]) / lams])
        variance = ys.var(axis=1)
        llf = -0.5 * len(log_x) * np.log(variance) + (_BOXCOX_GRID - 1.0) * float(log_x.sum())
    llf[~np.isfinite(llf)] = -np.inf
    return float(_BOXCOX_GRID[int(np.argmax(llf))])


def penalise(losses: np.ndarray, violations: np.ndarray) -> np.ndarray:
    """Losses with every infeasible entry (violation > 0) moved behind all feasible ones.

    An infeasible loss becomes ``worst + spread * (0.1 + v)``, where ``worst`` and ``spread`` are
    the largest loss and the range of the feasible losses (of all losses when none is
    feasible) and ``v`` in (0, 1] is its violation relative to the largest: infeasible trials
    rank among themselves by how far they miss, and always below every feasible one.
    """
    losses = np.asarray(losses, dtype=float)
    violations = np.asarray(violations, dtype=float)
    bad = violations > 0
    if not bad.any():
        return losses
    good = ~bad
    reference = losses[good] if good.any() else losses
    reference = reference[np.isfinite(reference)]
    worst = float(reference.max()) if reference.size else 0.0
    spread = float(np.ptp(reference)) if reference.size else 0.0
    if spread <= 0:
        spread = max(abs(worst), 1.0)
    v = violations[bad].copy()
    finite = np.isfinite(v)
    top = float(v[finite].max()) if finite.any() else 1.0
    v[~finite] = 2.0 * top  # an unreported metric: farther than any measured miss
    out = losses.copy()
    out[bad] = worst + spread * (0.1 + v / (2.0 * top if (~finite).any() else top))
    return out


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(value)
    except TypeError:
        return False


class Sampler(abc.ABC):
    """Proposes configurations to evaluate.

    Contract:

    - ``propose`` is a pure function of the context, ``n`` and ``rng``: a sampler keeps no state
      between calls that could not be rebuilt from storage, so a study reloaded after a crash
      proposes what the original would have.
    - It returns at most ``n`` configurations, each valid in ``ctx.space``, none equal to
      another in the batch or (for finite spaces where it can be avoided) to a pending one.
    - Returning fewer than ``n`` (or none) means the sampler has nothing more to offer, and the
      study stops asking once nothing is running (a finished grid).
    - :meth:`remaining` says how many configurations it can still offer (None: it never runs
      out), so that callers need not know which sampler it is.
    - The pending trials are points being evaluated right now: model-based samplers must take
      them into account (constant liar or similar) so that asynchronous workers do not all
      explore the same place.
    - The constructor takes only plain options and keeps each under its own name (an attribute
      of the same name): :meth:`to_spec` reads them back by the constructor's signature, and
      :meth:`from_spec` builds the sampler again from them, so the study can be rebuilt from
      storage. :meth:`check_space` refuses a space the sampler cannot search, before a study
      is written.
    """

    name: str = "sampler"
    # False only for a sampler whose proposals depend on no trial's result and whose one-point
    # proposals from one context differ by their random stream alone (random search; not
    # Sobol, which continues from the number of trials): a batch is then proposed point by
    # point, and the controller may reserve trials ahead of free workers.
    learns: bool = True

    @abc.abstractmethod
    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        """Return up to ``n`` new configurations."""

    @classmethod
    def from_spec(cls, options: Mapping[str, Any], **context: Any) -> Sampler:
        """Build from the options of :meth:`to_spec`; ``context`` holds what the study knows
        (``space``, ``budget``, ``n_metrics``), and a given ``space`` is checked."""
        options = dict(options)
        accepted = _option_names(cls)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise SpecError(
                f"algorithm {cls.name!r}: unknown option(s) {unknown}; it takes "
                f"{accepted or 'no options'}"
            )
        try:
            sampler = cls(**options)
        except TypeError as exc:
            raise SpecError(f"algorithm {cls.name!r}: bad options {options}: {exc}") from None
        space = context.get("space")
        if isinstance(space, Space):
            sampler.check_space(space)
        return sampler

    def to_spec(self) -> dict[str, Any]:
        """The sampler's name and options, enough to build it again with :func:`make_sampler`.

        Every constructor option that is set (not None), read from the attribute of its name.
        """
        spec: dict[str, Any] = {"name": self.name}
        for option in _option_names(type(self)):
            value = getattr(self, option)
            if value is not None:
                spec[option] = value
        return spec

    def check_space(self, space: Space) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~optml.errors.SpaceError` if this sampler cannot search ``space``."""

    def remaining(self, ctx: SearchContext) -> int | None:
        """How many more configurations this sampler can propose; None when it never runs out.

        By default: None on a space with a continuous parameter, else the points of the finite
        space that are neither tried nor pending (and meet the parameter constraints).
        """
        return unseen_points(ctx)

    def describe(self) -> str:
        return self.name

    def __repr__(self) -> str:
        options = {k: v for k, v in self.to_spec().items() if k != "name"}
        inner = ", ".join(f"{k}={v!r}" for k, v in options.items())
        return f"{type(self).__name__}({inner})"


def _option_names(cls: type) -> list[str]:
    """The keyword options of ``cls``'s constructor."""
    parameters = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc]
    return [
        p.name
        for p in list(parameters)[1:]  # not self
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


# Up to this many points, a finite space under parameter constraints is walked to count exactly
# the points that remain; beyond, every untried point counts.
_COUNT_EXACTLY = 100_000


def unseen_points(ctx: SearchContext, space: Space | None = None) -> int | None:
    """Points of ``space`` (default: the context's) that no trial has yet and that meet the
    parameter constraints; None if the space is not finite."""
    space = ctx.space if space is None else space
    if not space.is_finite:
        return None
    seen = ctx._seen_keys if space is ctx.space else {space.key(t.params) for t in ctx.trials}
    size = space.grid_size
    if ctx.param_constraints and size <= _COUNT_EXACTLY:
        return sum(1 for c in space.grid() if space.key(c) not in seen and ctx.allows(c))
    return max(0, size - len(seen))


def fill_unique(
    ctx: SearchContext,
    proposals: list[dict[str, Any]],
    n: int,
    rng: np.random.Generator,
    tries: int = 50,
) -> list[dict[str, Any]]:
    """Drop duplicates (within the batch and against every known trial) and top up at random.

    Shared by every sampler so that none proposes the same point twice. In a finite space that
    is exhausted, fewer than ``n`` points come back. With parameter constraints
    (``ctx.constraints``), proposals that break one are dropped too and replaced by random
    draws that meet them (rejection sampling); if the constraints leave (almost) nothing, fewer
    than ``n`` points come back.
    """
    known = ctx._seen_keys  # read only: the batch's own keys go to `seen`
    seen: set[tuple[Any, ...]] = set()
    constrained = bool(ctx.param_constraints)
    allows = ctx.allows if constrained else None
    out: list[dict[str, Any]] = []
    for config in proposals:
        if len(out) == n:
            return out
        key = ctx.space.key(config)
        if key not in known and key not in seen and (allows is None or allows(config)):
            seen.add(key)
            out.append(config)
    if len(out) == n:
        return out
    seen |= known  # topping up: one set to check against
    for _ in range(tries):
        if len(out) == n:
            break
        # Under constraints draw more per round: most draws may be refused.
        draws = n - len(out) if not constrained else max(4 * (n - len(out)), 32)
        for config in ctx.space.sample(rng, draws):
            key = ctx.space.key(config)
            if key not in seen and (allows is None or allows(config)):
                seen.add(key)
                out.append(config)
                if len(out) == n:
                    break
    if len(out) < n and ctx.space.is_finite and ctx.space.grid_size <= 100_000:
        rest = [
            c
            for c in ctx.space.grid()
            if ctx.space.key(c) not in seen and (allows is None or allows(c))
        ]
        for i in rng.permutation(len(rest))[: n - len(out)]:
            out.append(rest[i])
    return out
