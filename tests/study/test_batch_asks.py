"""The controller asks the sampler once for every free slot, not once per slot."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from optml import create_study
from optml.executors import LocalExecutor
from optml.samplers import SearchContext
from optml.samplers._simple import RandomSampler


class _CountingRandom(RandomSampler):
    """Random search that records how many configurations each call asked for, taken for a
    sampler that learns from results (a blind one is asked point by point, each from its
    trial's own stream: see test_reserve_ahead.py)."""

    learns = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        self.asked.append(n)
        return super().propose(ctx, n, rng)


def _nap(x: float) -> float:
    time.sleep(0.3)
    return x


def test_free_slots_are_filled_by_one_batch_request() -> None:
    sampler = _CountingRandom()
    study = create_study(
        name="batch", storage="memory://", space={"x": {"uniform": [0.0, 1.0]}}, sampler=sampler
    )
    study.optimize(_nap, n_trials=8, executor=LocalExecutor(workers=4), show_progress=False)
    assert len(study.trials) == 8
    assert sampler.asked[0] == 4  # the four idle workers, in one call
    assert sum(sampler.asked) == 8 and len(sampler.asked) < 8
