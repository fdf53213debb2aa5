"""The parallel-load benchmark's simulated cluster: slots kept full, trials told as they finish."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bpq():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_parallel_quality

        yield bench_parallel_quality
    finally:
        sys.path.remove(str(BENCH))


class _Recorder:
    """An optimiser that proposes numbered points and records what it is told, in order."""

    label = "recorder"

    def __init__(self) -> None:
        self.asked = 0
        self.told: list[int] = []
        self.in_flight: list[int] = []
        self.most_in_flight = 0

    def ask(self, n: int) -> list[dict[str, Any]]:
        out = [{"x": self.asked + i} for i in range(n)]
        self.asked += n
        self.in_flight += [c["x"] for c in out]
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        return out

    def tell(self, configs: list[dict[str, Any]], values: list[float]) -> None:
        for c in configs:
            self.in_flight.remove(c["x"])
            self.told.append(c["x"])


def test_trials_are_told_as_they_finish_not_as_proposed(bpq) -> None:
    lengths = bpq.durations(0, 40, 0.75)
    rec = _Recorder()
    result = bpq.simulate(rec, lambda c: float(c["x"]), 40, 16, lengths, 1.0)
    assert rec.asked == 40 and sorted(rec.told) == list(range(40))
    assert rec.most_in_flight == 16  # the first batch fills every slot, refills keep them full
    assert rec.told != sorted(rec.told)  # finishing order is not proposal order
    assert result["finished"] == sorted(result["finished"])
    assert result["values"] == [float(x) for x in rec.told]
    # With no proposal cost the clock is exactly the free schedule.
    free = bpq.free_times(lengths, 40, 16, 1.0)
    np.testing.assert_allclose(result["finished"], free, atol=1e-2)


def test_a_run_without_proposal_time_repeats_exactly(bpq) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from adapters import make_adapter
        from functions import get_function
    finally:
        sys.path.remove(str(BENCH))
    f = get_function("branin")
    lengths = bpq.durations(1, 30, 0.75)
    runs = [
        bpq.simulate(
            make_adapter("optml-tpe", f.space, 1, 30), f, 30, 8, lengths, 1.0, charge=False
        )
        for _ in range(2)
    ]
    assert runs[0]["values"] == runs[1]["values"]
    assert runs[0]["finished"] == bpq.free_times(lengths, 30, 8, 1.0)


def test_durations_are_the_same_for_every_optimiser_and_seeded(bpq) -> None:
    a, b = bpq.durations(3, 50, 0.75), bpq.durations(3, 50, 0.75)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, bpq.durations(4, 50, 0.75))


def test_optuna_adapter_tells_pending_trials_in_any_order() -> None:
    pytest.importorskip("optuna")
    sys.path.insert(0, str(BENCH))
    try:
        from adapters import make_adapter
    finally:
        sys.path.remove(str(BENCH))
    from optml.space import Float, Space

    space = Space([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])
    adapter: Any = make_adapter("optuna-tpe-cl", space, 0, 20)
    configs = adapter.ask(4)
    adapter.tell([configs[2]], [2.0])
    adapter.tell([configs[0], configs[3]], [0.0, 3.0])
    done = {t.number: t.value for t in adapter.study.trials if t.value is not None}
    assert done == {2: 2.0, 0: 0.0, 3: 3.0}
    assert len(adapter.pending) == 1
