"""The quality report's numbers: medians, wins, and the seed-by-seed comparison."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bq():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_quality

        yield bench_quality
    finally:
        sys.path.remove(str(BENCH))


def _write(out: Path, optimizer: str, function: str, seed: int, values: list[float]) -> None:
    path = out / "b1_n3" / optimizer / function / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"optimizer": optimizer, "function": function, "seed": seed, "batch": 1}
    path.write_text(json.dumps({**record, "budget": 3, "values": values, "seconds": 0.1}))


def test_seed_by_seed_counts_and_sign_test(bq, tmp_path: Path) -> None:
    fstar = bq.FUNCTIONS["branin"].fstar
    # optml-gp ends lower than the peer on 6 seeds, higher on none, and both solve seed 6.
    for seed in range(7):
        ours = fstar + (0.0 if seed == 6 else 0.1)
        peer = fstar + (0.0 if seed == 6 else 1.0)
        _write(tmp_path, "optml-gp", "branin", seed, [5.0, ours, 9.0])
        _write(tmp_path, "optuna-gp", "branin", seed, [peer, 7.0, 8.0])
    data = bq.load(tmp_path, 1, 3)
    assert sorted(data["optml-gp"]["branin"]) == list(range(7))
    assert bq.paired("branin", data["optml-gp"]["branin"], data["optuna-gp"]["branin"], 3) == (
        6,
        0,
        1,
    )
    # After one evaluation the peer is ahead on every seed.
    assert bq.paired("branin", data["optml-gp"]["branin"], data["optuna-gp"]["branin"], 1) == (
        0,
        7,
        0,
    )
    report = bq.render(tmp_path, 3, [1], 1)
    row = next(line for line in report.splitlines() if line.startswith("| branin | 6-0"))
    assert "†" in row  # 6 of 6 differing seeds: p = 0.03
    # Seeds only one optimiser ran are left out of the comparison.
    _write(tmp_path, "optml-gp", "branin", 7, [0.0, 0.0, fstar])
    data = bq.load(tmp_path, 1, 3)
    assert bq.paired("branin", data["optml-gp"]["branin"], data["optuna-gp"]["branin"], 3)[0] == 6
