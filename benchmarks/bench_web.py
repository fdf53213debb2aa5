"""Web dashboard speed: server time for the study page, a page of the trials API and each
chart's data, on a study of 10,000 and of 50,000 trials in SQLite.

Run:  .venv/bin/python benchmarks/bench_web.py [--trials 10000 50000] [--repeat 7] [--optuna]

With ``--optuna`` (needs ``pip install optuna optuna-dashboard``), optuna-dashboard serves an
Optuna study holding the same trials in its own SQLite file, and the same kind of requests are
timed through its WSGI app: the study's data (every trial: its pages draw every chart from it
in the browser) and its parameter importances.

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
    for i, (params, value, begun) in enumerate(trials_data(n, seed)):
        storage.create_trial(
            study.id,
            params,
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


def timed(get, repeat: int) -> tuple[float, float]:
    """Median wall-clock ms and median CPU ms of this process (the fairer figure on a shared,
    loaded machine) of ``repeat`` calls of ``get()``, after a warm-up call."""
    get()
    times, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        get()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return 1000 * statistics.median(times), 1000 * statistics.median(cpus)


def median_ms(client, path: str, repeat: int) -> tuple[float, float]:
    def get() -> None:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])

    return timed(get, repeat)


def bench(n: int, repeat: int) -> dict[str, tuple[float, float]]:
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
    cache = client.app.state.chart_cache
    for chart in CHARTS:
        path = f"{base}/charts/{chart}"

        def uncached(path: str = path) -> None:
            cache.clear()  # what the first viewer after a trial changed waits for
            assert client.get(path).status_code == 200

        out[f"chart: {chart}"] = timed(uncached, repeat)
        out[f"chart: {chart} (kept)"] = median_ms(client, path, repeat)
    return out


def trials_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(n):
        x, k, kind = float(rng.uniform(-5, 5)), int(rng.integers(1, 100)), "abc"[i % 3]
        begun = start + timedelta(seconds=2.5 * (i // 4))
        yield {"x": x, "k": k, "kind": kind}, x * x + k / 100, begun


def bench_optuna_dashboard(n: int, repeat: int) -> dict[str, tuple[float, float]]:
    """optuna-dashboard over an Optuna study of the same ``n`` trials."""
    import io
    from wsgiref.util import setup_testing_defaults

    import optuna
    from optuna_dashboard import wsgi

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="optml-bench-optuna-"))
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder}/optuna.db")
    study = optuna.create_study(study_name=STUDY, storage=storage)
    dists = {
        "x": optuna.distributions.FloatDistribution(-5, 5),
        "k": optuna.distributions.IntDistribution(1, 100),
        "kind": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
    }
    t0 = time.perf_counter()
    batch = []
    for params, value, _ in trials_data(n):
        batch.append(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=value,
                state=optuna.trial.TrialState.COMPLETE,
            )
        )
        if len(batch) == 1000:
            study.add_trials(batch)
            batch = []
    study.add_trials(batch)
    print(f"  filled Optuna with {n} trials in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    app = wsgi(storage)
    study_id = study._study_id

    def get(path: str) -> None:
        environ: dict[str, object] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(environ)
        environ["wsgi.input"] = io.BytesIO()
        status: list[str] = []
        body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), (path, status, body[:200])

    def median(path: str) -> tuple[float, float]:
        return timed(lambda: get(path), repeat)

    return {
        "optuna-dashboard: study data (all trials)": median(f"/api/studies/{study_id}"),
        "optuna-dashboard: param importances": median(f"/api/studies/{study_id}/param_importances"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--optuna", action="store_true", help="also time optuna-dashboard")
    args = ap.parse_args()
    results = {n: bench(n, args.repeat) for n in args.trials}
    if args.optuna:
        for n in args.trials:
            results[n].update(bench_optuna_dashboard(n, args.repeat))
    sizes = list(results)
    print("| request | " + " | ".join(f"{n:,} trials: wall ms (CPU ms)" for n in sizes) + " |")
    print("| --- | " + " | ".join("---:" for _ in sizes) + " |")
    for op in results[sizes[0]]:
        cells = [f"{results[n][op][0]:.1f} ({results[n][op][1]:.1f})" for n in sizes]
        print(f"| {op} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
