"""``algorithm: auto``: choose a sampler from the shape of the space, the budget and the metrics.

The rules, first match wins (``d`` = number of parameters; an unknown budget counts as 100):

1. A meta (CASH) space, built by ``meta_space``: **meta**, the only sampler that models each
   model family on its own.
2. Several metrics: **nsga2**. The single-objective samplers optimise the first metric only;
   NSGA-II searches for the whole Pareto front.
3. A finite space no larger than the budget (or, with no budget, of at most 100 points): **grid**.
   Every point gets tried, so no model can do better, and the result is exhaustive.
4. More than 12 parameters, at least three quarters of them numeric (floats, or integers with more
   than 10 values), and a budget of at least 200: **cmaes**. A GP's candidate search thins out
   in high dimension, while CMA-ES adapts a full covariance at O(d²) per proposal and needs a
   population's worth of trials per generation, which a large budget affords.
5. At least half of the parameters categorical: **forest** up to 300 trials, **tpe** beyond.
   Trees split on choices directly where a GP has to embed them in a continuous kernel; TPE
   models each choice by counting, which costs nothing however long the study runs.
6. A budget above 300: **tpe**. A GP's fit is cubic in the number of trials; past a few hundred
   trials TPE's linear cost wins and its handicap in sample efficiency matters less.
7. Otherwise: **gp** — the most sample-efficient choice for short budgets in low to moderate
   dimension.

**Hand-over.** A GP chosen by these rules is watched while the study runs: a proposal's CPU
time is measured (per configuration, the median of the last three calls) against the trials'
own duration (the median ``duration_s`` of the last twenty that finished) and the number of
trials in flight. To keep ``k`` slots busy with trials of ``D`` seconds the controller must
propose ``k`` configurations every ``D`` seconds; when that costs more than a quarter of ``D``
(``seconds per configuration x k > D / 4``: cheap objectives, many pending trials) the GP's cost
would dominate the study, and ``auto`` hands over for good: to **cmaes** on a mostly numeric
space (its proposals cost O(d²) and a whole population is proposed at once), else to **tpe**
(linear in the history, a millisecond or so). Both read the same history, so the trials run so
far keep counting. Without durations (ask/tell without timing) nothing is handed over. A study
loaded back starts with the GP again and hands over as soon as its measurements say so.

If the chosen sampler's module is not installed, the next in a fallback chain is used (for
example gp → forest → tpe → random) and the reason says so. The choice is made once, when the
space is first known; :meth:`AutoSampler.to_spec` returns the concrete sampler's spec, so a
study rebuilt from storage runs the same algorithm.
"""

from __future__ import annotations

import importlib
import math
import statistics
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from optml.errors import SpecError
from optml.samplers._base import Sampler, SearchContext
from optml.samplers._simple import MAX_GRID
from optml.space import Categorical, Float, Int, Space, parse_space

UNKNOWN_BUDGET = 100
_GRID_WITHOUT_BUDGET = 100
_FALLBACKS: dict[str, list[str]] = {
    "gp": ["gp", "forest", "tpe", "random"],
    "forest": ["forest", "tpe", "gp", "random"],
    "tpe": ["tpe", "forest", "gp", "random"],
    "cmaes": ["cmaes", "tpe", "gp", "random"],
    "nsga2": ["nsga2", "random"],
    "grid": ["grid"],
    "meta": ["meta"],
}


def choose_algorithm(
    space: Space, budget: int | None = None, n_metrics: int = 1
) -> tuple[str, str]:
    """The sampler ``auto`` picks for this study, and why (see the module docstring).

    >>> from optml.space import Float
    >>> choose_algorithm(Space([Float("x", 0, 1), Float("y", 0, 1)]), budget=50)
    ('gp', 'a short budget (50 trials) in 2 dimensions: a GP is the most sample-efficient')
    """
    from optml.space import MetaSpace

    if isinstance(space, MetaSpace):
        return "meta", f"the space chooses among {len(space.families)} model families (CASH)"
    if n_metrics > 1:
        return "nsga2", f"{n_metrics} metrics: NSGA-II searches for the Pareto front"
    d = len(space)
    known = budget is not None
    trials = int(budget) if budget is not None else UNKNOWN_BUDGET
    # (A grid beyond MAX_GRID points is refused by the grid sampler, whatever the budget.)
    if space.is_finite and space.grid_size <= MAX_GRID:
        size = space.grid_size
        if known and size <= trials:
            return (
                "grid",
                f"the space has {size} points and the budget {trials} trials covers them all",
            )
        if not known and size <= _GRID_WITHOUT_BUDGET:
            return "grid", f"the space has only {size} points and no budget was given: try them all"
    categorical = sum(isinstance(p, Categorical) for p in space)
    numeric = sum(isinstance(p, Float) or (isinstance(p, Int) and p.size > 10) for p in space)
    if d > 12 and numeric >= 0.75 * d and trials >= 200:
        return "cmaes", (
            f"{d} mostly numeric parameters and {trials} trials: CMA-ES scales to high dimension "
            "and large budgets"
        )
    if categorical >= 0.5 * d:
        if trials <= 300:
            return "forest", (
                f"{categorical} of {d} parameters are categorical: a tree ensemble splits on "
                "choices directly"
            )
        return "tpe", (
            f"{categorical} of {d} parameters are categorical and the budget is long ({trials} "
            "trials): TPE models choices by counting, at linear cost"
        )
    if trials > 300:
        return (
            "tpe",
            f"a long budget ({trials} trials): a GP's cubic cost would dominate; TPE scales",
        )
    return "gp", (
        f"a short budget ({trials} trials{'' if known else ', assumed'}) in {d} dimensions: "
        "a GP is the most sample-efficient"
    )


# Above this share of a trial's duration spent proposing for the slots in flight, hand over.
HAND_OVER_SHARE = 0.25
# Calls measured (the median taken) before a hand-over is considered, and trials timed.
_MEASURED_CALLS = 3
_TIMED_TRIALS = 20


def _mostly_numeric(space: Space) -> bool:
    numeric = sum(isinstance(p, Float) or (isinstance(p, Int) and p.size > 10) for p in space)
    return len(space) >= 2 and numeric >= 0.75 * len(space)


def hand_over(
    space: Space, seconds_per_config: float, trial_seconds: float | None, in_flight: int
) -> tuple[str, str] | None:
    """Whether a running GP should hand over, and to what and why (see the module docstring).

    ``seconds_per_config`` is the GP's measured CPU time per configuration, ``trial_seconds``
    the trials' typical duration (None: unknown, never hand over) and ``in_flight`` the trials
    to keep running at once.

    >>> from optml.space import Float
    >>> hand_over(Space([Float("x", 0, 1), Float("y", 0, 1)]), 0.03, 10.0, 4) is None
    True
    >>> hand_over(Space([Float("x", 0, 1), Float("y", 0, 1)]), 0.03, 0.05, 4)[0]
    'cmaes'
    """
    if trial_seconds is None or not seconds_per_config > 0 or not math.isfinite(trial_seconds):
        return None
    slots = max(int(in_flight), 1)
    share = seconds_per_config * slots / max(trial_seconds, 1e-6)
    if share <= HAND_OVER_SHARE:
        return None
    target = "cmaes" if _mostly_numeric(space) else "tpe"
    return target, (
        f"handed over from gp: it took {1000 * seconds_per_config:.1f} ms a configuration, and "
        f"{slots} trial(s) in flight of {trial_seconds:.3g} s each would spend {share:.0%} of "
        f"their time waiting for proposals (over {HAND_OVER_SHARE:.0%}); {target} proposes at "
        "a fraction of that cost"
    )


def _typical_duration(ctx: SearchContext) -> float | None:
    """The median duration of the last trials that finished with one, or None."""
    durations: list[float] = []
    for t in reversed(ctx.completed):
        if t.duration_s is not None and math.isfinite(t.duration_s):
            durations.append(t.duration_s)
            if len(durations) == _TIMED_TRIALS:
                break
    return statistics.median(durations) if durations else None


def _importable(name: str) -> bool:
    from optml.samplers import _REGISTRY

    target = _REGISTRY.get(name)
    if target is None:
        return False
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        return False
    return hasattr(module, class_name)


class AutoSampler(Sampler):
    """Picks a concrete sampler by :func:`choose_algorithm` and delegates to it.

    After the choice, :attr:`choice` names the algorithm, :attr:`reason` says why and
    :attr:`sampler` is the sampler itself. Built with the study's context
    (``make_sampler("auto", space=..., budget=..., n_metrics=...)``) it chooses at once;
    otherwise at the first :meth:`propose`, from the search context.
    """

    name = "auto"

    def __init__(self, chosen: str | None = None) -> None:
        if chosen is not None and chosen not in _FALLBACKS:
            raise SpecError(
                f"algorithm 'auto': chosen {chosen!r} is unknown; use one of {sorted(_FALLBACKS)}"
            )
        # A choice stored with the study (a GP that may still hand over): kept, not re-made.
        self.chosen = chosen
        self.choice: str | None = None
        self.reason: str | None = None
        self.sampler: Sampler | None = None
        self.handed_over = False
        self._costs: list[float] = []  # CPU seconds per configuration of the GP's last calls

    @classmethod
    def from_spec(cls, options: Mapping[str, Any], **context: Any) -> AutoSampler:
        sampler = super().from_spec(options)  # refuses unknown options
        assert isinstance(sampler, AutoSampler)
        space = context.get("space")
        if space is not None:
            if not isinstance(space, Space):
                space = parse_space(space)
            n_metrics = context.get("n_metrics")
            if n_metrics is None:
                n_metrics = len(context.get("metrics") or ()) or 1
            sampler.decide(space, context.get("budget"), int(n_metrics))
        return sampler

    def decide(self, space: Space, budget: int | None = None, n_metrics: int = 1) -> Sampler:
        """Choose (once) and build the concrete sampler."""
        if self.sampler is not None:
            return self.sampler
        from optml.samplers import make_sampler

        if self.chosen is not None:
            choice, reason = self.chosen, "chosen when the study was created"
        else:
            choice, reason = choose_algorithm(space, budget, n_metrics)
        chain = _FALLBACKS.get(choice, [choice])
        for candidate in chain:
            if _importable(candidate):
                if candidate != choice:
                    reason = f"{reason}; {choice!r} is not available, so {candidate!r} instead"
                choice = candidate
                break
        else:
            raise SpecError(f"algorithm 'auto': chose {choice!r}, which cannot be imported")
        self.sampler = make_sampler(choice, space=space, budget=budget, n_metrics=n_metrics)
        self.choice, self.reason = choice, reason
        return self.sampler

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        sampler = self.decide(ctx.space, ctx.budget, len(ctx.metrics))
        if self.choice != "gp" or self.handed_over:
            return sampler.propose(ctx, n, rng)
        start = time.thread_time()
        configs = sampler.propose(ctx, n, rng)
        if configs:
            self._costs = [
                *self._costs[-(_MEASURED_CALLS - 1) :],
                (time.thread_time() - start) / len(configs),
            ]
        if len(self._costs) == _MEASURED_CALLS:
            verdict = hand_over(
                ctx.space,
                statistics.median(self._costs),
                _typical_duration(ctx),
                len(ctx.pending) + n,
            )
            if verdict is not None:
                self._hand_over(ctx, *verdict)
        return configs

    def _hand_over(self, ctx: SearchContext, target: str, reason: str) -> None:
        from optml.samplers import make_sampler

        for candidate in _FALLBACKS.get(target, [target]):
            if candidate != "gp" and _importable(candidate):
                self.sampler = make_sampler(
                    candidate, space=ctx.space, budget=ctx.budget, n_metrics=len(ctx.metrics)
                )
                self.choice, self.reason, self.handed_over = candidate, reason, True
                return

    def remaining(self, ctx: SearchContext) -> int | None:
        return self.decide(ctx.space, ctx.budget, len(ctx.metrics)).remaining(ctx)

    def to_spec(self) -> dict[str, Any]:
        """The concrete sampler's spec once chosen (so a restart rebuilds the same one); for a
        GP, ``auto`` with that choice, so that a restarted study can still hand over."""
        if self.sampler is None:
            return {"name": self.name}
        if self.choice == "gp" or self.handed_over:
            return {"name": self.name, "chosen": "gp"}
        return self.sampler.to_spec()

    def describe(self) -> str:
        if self.choice is None:
            return "auto (not chosen yet)"
        return f"auto: {self.choice} ({self.reason})"

    def __repr__(self) -> str:
        return f"AutoSampler(choice={self.choice!r})"
