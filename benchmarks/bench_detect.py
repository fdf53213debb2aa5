"""Hyperparameter detection: time per script and precision/recall over the test corpus.

Run:  .venv/bin/python benchmarks/bench_detect.py [--repeat 20]

For each script of tests/detect/corpus/ it times ``optml.detect.detect`` (read, parse with
libcst, positions, matching, pruning, metric) as the median of ``--repeat`` runs after one
warm-up run (the first import of libcst and loading of the metadata table are reported apart),
and the rewrite as well. It compares the names found with the script's ``# expect:`` line:
precision = found and expected / found, recall = found and expected / expected, over the whole
corpus (micro-averaged). The serverless auto-tuner paper reports about 5 s per model for its
detection; the goal here is under 100 ms.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "detect" / "corpus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    start = time.perf_counter()
    from optml.detect import detect, rewrite
    from optml.detect._metadata import load_table

    load_table()
    import libcst  # noqa: F401

    first = time.perf_counter() - start

    rows = []
    tp = fp = fn = 0
    for script in sorted(CORPUS.glob("*.py")):
        text = script.read_text()
        match = re.search(r"^# expect: (.*)$", text, re.M)
        assert match is not None, script
        want = {n.strip() for n in match.group(1).split(",") if n.strip()}
        found = detect(script)  # warm-up
        times, rtimes = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            found = detect(script)
            t1 = time.perf_counter()
            rewrite(found)
            t2 = time.perf_counter()
            times.append(t1 - t0)
            rtimes.append(t2 - t1)
        got = {hp.name for hp in found.hyperparameters}
        tp += len(got & want)
        fp += len(got - want)
        fn += len(want - got)
        rows.append(
            (
                script.name,
                len(text.splitlines()),
                len(got),
                statistics.median(times),
                statistics.median(rtimes),
                got == want,
            )
        )

    print(f"first import of optml.detect + libcst + metadata table: {first * 1000:.0f} ms")
    print(f"{'script':30} {'lines':>5} {'hps':>4} {'detect ms':>10} {'rewrite ms':>10}  exact")
    for name, lines, n, t, r, exact in rows:
        print(
            f"{name:30} {lines:5d} {n:4d} {t * 1000:10.1f} {r * 1000:10.1f}  {'yes' if exact else 'NO'}"
        )
    det = [r[3] for r in rows]
    print(
        f"{len(rows)} scripts: detect median {statistics.median(det) * 1000:.1f} ms, "
        f"max {max(det) * 1000:.1f} ms; rewrite median "
        f"{statistics.median([r[4] for r in rows]) * 1000:.1f} ms"
    )
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    print(
        f"precision {precision:.1%} ({tp}/{tp + fp}), recall {recall:.1%} ({tp}/{tp + fn}), "
        f"{sum(r[5] for r in rows)}/{len(rows)} scripts exact"
    )


if __name__ == "__main__":
    main()
