"""Shared by the wave-ahead tests and the controllers they start: a learning sampler whose
refills cost a fixed time, and an objective that logs every run of a trial."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from optml._process import controller_id
from optml.samplers import SearchContext
from optml.samplers._simple import RandomSampler
from optml.samplers._tpe import TPESampler
from optml.trial import TrialState


def own_pending(ctx: SearchContext) -> int:
    """Trials of this controller that are RUNNING (started, or reserved ahead) as it proposes."""
    me = controller_id()
    return sum(t.state is TrialState.RUNNING and t.worker == me for t in ctx.trials)


class SlowLearner(RandomSampler):
    """Random points, but taken for a sampler that learns (one call for all free slots, as a
    model-based sampler), and every call costs ``cost`` seconds, as a model fit does. Records,
    per call, how many points it was asked for and how many of its controller's trials were
    running or reserved then."""

    learns = True

    def __init__(self, cost: float = 0.05) -> None:
        super().__init__()
        self.cost = cost
        self.calls: list[tuple[int, int]] = []

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        self.calls.append((n, own_pending(ctx)))
        time.sleep(self.cost)
        return super().propose(ctx, n, rng)


class RecordingTPE(TPESampler):
    """TPE as it is, recording what :class:`SlowLearner` records."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []

    def propose(self, ctx: SearchContext, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
        self.calls.append((n, own_pending(ctx)))
        return super().propose(ctx, n, rng)


def sleeper(log: Path, seconds: float):
    """An objective that sleeps ``seconds`` and appends its point to ``log`` (a closure: it
    travels to Dask workers by value)."""
    path = str(log)

    def objective(x: float) -> float:
        time.sleep(seconds)
        with open(path, "a") as f:
            f.write(f"{x!r}\n")
        return x

    return objective


def runs(log: Path) -> list[float]:
    """Every point the objective ran, once per run."""
    return [float(line) for line in log.read_text().split()] if log.exists() else []
