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

If the chosen sampler's module is not installed, the next in a fallback chain is used (for
example gp → forest → tpe → random) and the reason says so. The choice is made once, when the
space is first known; :meth:`AutoSampler.to_spec` returns the concrete sampler's spec, so a
study rebuilt from storage runs the same algorithm.
"""

from __future__ import annotations

import importlib
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

    def __init__(self) -> None:
        self.choice: str | None = None
        self.reason: str | None = None
        self.sampler: Sampler | None = None

    @classmethod
    def from_spec(cls, options: Mapping[str, Any], **context: Any) -> AutoSampler:
        sampler = super().from_spec(options)  # refuses options: it takes none
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
        return sampler.propose(ctx, n, rng)

    def remaining(self, ctx: SearchContext) -> int | None:
        return self.decide(ctx.space, ctx.budget, len(ctx.metrics)).remaining(ctx)

    def to_spec(self) -> dict[str, Any]:
        """The concrete sampler's spec once chosen (so a restart rebuilds the same one)."""
        return self.sampler.to_spec() if self.sampler is not None else {"name": self.name}

    def describe(self) -> str:
        if self.choice is None:
            return "auto (not chosen yet)"
        return f"auto: {self.choice} ({self.reason})"

    def __repr__(self) -> str:
        return f"AutoSampler(choice={self.choice!r})"
