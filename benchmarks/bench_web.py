"""Web dashboard speed: server time for the study page, a page of the trials API and each
chart's data, on a study of 10,000 and of 50,000 trials in SQLite.

Run:  .venv/bin/python benchmarks/bench_web.py [--trials 10000 50000] [--repeat 7]

Each request goes through the whole app in this process (FastAPI's TestClient: routing,
storage, aggregation, JSON), so the time is what the server spends, without a network. The
figure is the median of ``--repeat`` requests after one warm-up request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from optml.trial import TrialState  # noqa: E402

STUDY = "web-bench"
CHARTS = ("history", "bars", "parallel", "slice", "contour", "importance", "timeline")


def fill(url: str, n: int, seed: int = 0) -> None:
    """A finished study of ``n`` trials: 3 parameters, a value, start and end on 4 workers."""
    import optml

    study = optml.create_study(
        STUDY,
        space={"x": {"uniform": [-5, 5]}, "k": {"int": [1, 100]}, "kind": ["a", "b", "c"]},
        metric="loss",
        sampler="random",
        storage=url,
    )
    storage = study.storage
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(n):
        x, k, kind = float(rng.uniform(-5, 5)), int(rng.integers(1, 100)), "abc"[i % 3]
        begun = start + timedelta(seconds=2.5 * (i // 4))
        value = x * x + k / 100
        storage.create_trial(
            study.id,
            {"x": x, "k": k, "kind": kind},
            state=TrialState.COMPLETE,
            value=value,
            metrics={"loss": value},
            attempts=1,
            started_at=begun,
            finished_at=begun + timedelta(seconds=2.4),
            duration_s=2.4,
            worker=f"w{i % 4}",
            host="bench",
            runner=str(i % 4),
        )
    storage.close()


def median_ms(client, path: str, repeat: int) -> float:
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200
    return 1000 * statistics.median(times)


def bench(n: int, repeat: int) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from optml.server import create_app

    folder = Path(tempfile.mkdtemp(prefix="optml-bench-web-"))
    url = f"sqlite:///{folder}/web.db"
    t0 = time.perf_counter()
    fill(url, n)
    print(f"  filled {n} trials in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    client = TestClient(create_app(url, folder / "files", token="bench"))
    base = f"/api/studies/{STUDY}"
    out = {
        "study page (HTML)": median_ms(client, f"/studies/{STUDY}", repeat),
        "trials API, page 1 by number": median_ms(client, f"{base}/trials?limit=50", repeat),
        "trials API, page 100 by value": median_ms(
            client, f"{base}/trials?limit=50&offset=4950&sort=value&order=desc", repeat
        ),
        "studies list (HTML)": median_ms(client, "/", repeat),
    }
    for chart in CHARTS:
        out[f"chart: {chart}"] = median_ms(client, f"{base}/charts/{chart}", repeat)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    results = {n: bench(n, args.repeat) for n in args.trials}
    sizes = list(results)
    print("| request | " + " | ".join(f"{n:,} trials (ms)" for n in sizes) + " |")
    print("| --- | " + " | ".join("---:" for _ in sizes) + " |")
    for op in results[sizes[0]]:
        print(f"| {op} | " + " | ".join(f"{results[n][op]:.1f}" for n in sizes) + " |")


if __name__ == "__main__":
    main()
