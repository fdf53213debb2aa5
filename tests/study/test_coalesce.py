"""A dear refill waits for a burst of finishing trials to end, and loses none of them."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from optml import create_study
from optml.executors import LocalExecutor
from optml.samplers import SearchContext
from optml.samplers._simple import RandomSampler
from optml.trial import TrialState


class _SlowCounting(RandomSampler):
    """Random search whose every call costs a fixed 0.2 s, as a model fit does; records how
    many configurations each call asked for. Proposes ``lag`` 0..3 in turn, so that the trials
    of one refill finish 10 ms apart, in a burst."""

    learns = True  # as a model-based sampler: one call for all the free slots

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        self.asked.append(n)
        time.sleep(0.2)
        return [
            {"x": float(v), "lag": i % 4}
            for i, v in enumerate(super().propose(ctx, n, rng), start=len(ctx.trials))
            for v in [v["x"]]
        ]


def _staggered(x: float, lag: int) -> float:
    time.sleep(0.4 + 0.01 * lag)
    return x


@pytest.mark.slow
def test_a_dear_refill_gathers_a_burst_of_finished_trials_and_loses_none() -> None:
    sampler = _SlowCounting()
    study = create_study(
        name="coalesce",
        storage="memory://",
        space={"x": {"uniform": [0.0, 1.0]}, "lag": {"int": [0, 3]}},
        sampler=sampler,
    )
    study.optimize(_staggered, n_trials=16, executor=LocalExecutor(workers=4), show_progress=False)
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(16))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.params["x"] for t in trials}) == 16
    assert sum(sampler.asked) == 16
    # Without the wait each burst takes two calls or more (its first outcome alone, then the
    # rest that finished during that call); at least one burst comes back as one refill.
    assert max(sampler.asked[1:]) == 4, sampler.asked
