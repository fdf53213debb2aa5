"""The GP's large batches: the later picks fantasised in the candidates' caches alone (the same
points as through the posterior, at a cost bounded in the trials pending), and hyperparameters
refitted no more often than the trials in flight turn over."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optml.samplers import SearchContext
from optml.samplers._gp import (
    GPSampler,
    _Candidates,
    _Posterior,
    refit_step,
    refit_stride,
)
from optml.space import Categorical, Float, Int, Space
from optml.trial import Trial, TrialState

MIXED = Space([Float("x", 0.0, 1.0), Int("k", 1, 20), Categorical("c", ["a", "b", "c"])])
PLANE = Space([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])


def _loss(c: dict) -> float:
    return math.sin(5 * c["x"]) + (c.get("y", c.get("k", 0) / 20) - 0.4) ** 2


def _context(space: Space, finished: int, pending: int, seed: int = 0) -> SearchContext:
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(finished + pending):
        config = space.decode(rng.random(len(space)))
        if i < finished:
            trials.append(Trial(i, TrialState.COMPLETE, config, value=_loss(config)))
        else:
            trials.append(Trial(i, TrialState.RUNNING, config))
    return SearchContext(space=space, trials=trials, seed=seed)


def test_a_fantasy_in_the_candidates_caches_equals_one_through_the_posterior() -> None:
    rng = np.random.default_rng(1)
    X, F = rng.random((30, 2)), rng.random((200, 2))
    y = np.sin(4 * X[:, 0]) + X[:, 1]
    ls = np.array([0.3, 0.5])
    for liar in (None, -1.5):
        post = _Posterior(X, y, ls, 1.2, 1e-3)
        through, cheap = _Candidates(post, F.copy()), _Candidates(post, F.copy(), spare_rows=1)
        i = 17
        value = float(through.mean[i]) if liar is None else liar
        post.add(F[i], value)
        through.observe(post, post.L[-1, :-1], float(post.L[-1, -1]))
        fresh = _Posterior(X, y, ls, 1.2, 1e-3)
        assert cheap.fantasise(fresh, i, liar) == pytest.approx(value)
        np.testing.assert_allclose(cheap.mean, through.mean, atol=1e-9)
        np.testing.assert_allclose(cheap.var, through.var, atol=1e-9)
        np.testing.assert_allclose(cheap.V, through.V, atol=1e-9)


@pytest.mark.parametrize("space", [PLANE, MIXED], ids=["plane", "mixed"])
def test_a_large_batch_is_distinct_reproducible_and_new(space: Space) -> None:
    ctx = _context(space, 150, 40)
    first = GPSampler().propose(ctx, 80, np.random.default_rng(5))
    again = GPSampler().propose(ctx, 80, np.random.default_rng(5))
    assert first == again
    keys = [space.key(c) for c in first]
    assert len(first) == 80 and len(set(keys)) == 80
    assert not set(keys) & ctx.seen_keys()


def test_the_later_picks_of_a_batch_leave_the_posterior_alone(monkeypatch) -> None:
    """Picks past the sixteenth refine nothing: their fantasies cost O(rows x candidates) in
    the candidates' caches, not an O(rows²) update of the posterior each; and the pending
    trials enter the posterior capped at max_pending, whatever their number."""
    added: list[int] = []
    blocks: list[int] = []
    real_add, real_add_many = _Posterior.add, _Posterior.add_many

    def add(self, x, value):
        added.append(1)
        return real_add(self, x, value)

    def add_many(self, X, values=None):
        blocks.append(len(X))
        return real_add_many(self, X, values)

    monkeypatch.setattr(_Posterior, "add", add)
    monkeypatch.setattr(_Posterior, "add_many", add_many)
    picks = GPSampler(max_pending=32).propose(
        _context(PLANE, 120, 300), 100, np.random.default_rng(0)
    )
    assert len(picks) == 100
    assert len(added) == 15  # the posterior holds the fantasies that the refined picks read
    assert blocks == [32]


def test_hyperparameters_are_refitted_as_often_as_the_trials_in_flight_turn_over() -> None:
    assert refit_stride(0) == refit_stride(1) == 1
    assert [refit_stride(n) for n in (64, 100, 255, 256)] == [64, 64, 128, 256]
    # With one trial in flight the schedule is the sequential one: every 5 % past 100.
    assert all(refit_step(n, stride=1) == refit_step(n) for n in range(0, 2000, 7))
    steps = sorted({refit_step(n, stride=256) for n in range(100, 2101)})
    assert steps[:3] == [100, 356, 612] and np.all(np.diff(steps) >= 256)
    assert len(steps) < len({refit_step(n) for n in range(100, 2101)}) / 4


def test_a_sampler_with_many_in_flight_fits_once_per_turnover() -> None:
    sampler = GPSampler()
    ctx = _context(PLANE, 400, 200)
    steps: set[int] = set()
    for done in range(300, 401, 20):  # 200 pending and 56 asked for: 256 in flight
        sub = SearchContext(space=PLANE, trials=ctx.trials[:done] + ctx.trials[400:], seed=0)
        sampler.propose(sub, 56, np.random.default_rng(done))
        steps |= {key[1] for key in sampler._theta_cache}
    assert steps == {100, 356}  # sequentially: a fit for each of 300, 320, ... 400
