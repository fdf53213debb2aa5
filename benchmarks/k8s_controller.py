"""Kubernetes executor overhead against the loopback API server (tests/k8s_fake.py), which runs
in a child process so that only the controller's CPU is counted here.

    .venv/bin/python benchmarks/k8s_controller.py [--jobs 1000]

Prints: time from ``submit`` to the Job object existing on the server (median, p95), and the
controller's CPU time per trial with ``--jobs`` Jobs in flight at once (created, watched, logs
read, deleted)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = f"""
import sys, time
sys.path.insert(0, {os.path.join(HERE, "..", "tests")!r})
from k8s_fake import FakeKubernetes
fake = FakeKubernetes()
fake.instant_after = float(sys.argv[1])
with fake:
    print(fake.port, flush=True)
    sys.stdin.read()
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()
    import kubernetes

    from optml.executors import KubernetesExecutor, TrialOutcome, TrialTask
    from optml.objectives import CommandObjective

    def server(after: float) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(after)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        return proc, f"http://127.0.0.1:{proc.stdout.readline().strip()}"

    def client(host: str) -> object:
        config = kubernetes.client.Configuration(host=host)
        config.connection_pool_maxsize = 4
        return kubernetes.client.ApiClient(config)

    objective = CommandObjective("true")
    # 1. submit -> Job object on the server: submit returns once the API server stored it.
    proc, host = server(3600.0)
    try:
        ex = KubernetesExecutor(
            args.latency_samples, study="bench-latency", api_client=client(host)
        )
        ex.start(objective)
        times = []
        for n in range(args.latency_samples):
            t0 = time.perf_counter()
            ex.submit(TrialTask(n, {}, "loss"))
            times.append(time.perf_counter() - t0)
        ex.shutdown(kill=False)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=30)
    times.sort()
    median, p95 = times[len(times) // 2], times[int(len(times) * 0.95)]
    print(f"submit -> Job on the API server: median {median * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms")

    # 2. controller CPU per trial with --jobs Jobs in flight (each completes 5 s after creation).
    proc, host = server(5.0)
    try:
        ex = KubernetesExecutor(args.jobs, study="bench-cpu", api_client=client(host))
        ex.start(objective)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for n in range(args.jobs):
            ex.submit(TrialTask(n, {}, "loss"))
        in_flight = ex.running()
        done = 0
        while done < args.jobs:
            done += sum(isinstance(e, TrialOutcome) for e in ex.events(timeout=30))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        ex.shutdown(kill=True)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=30)
    print(
        f"{args.jobs} Jobs ({in_flight} in flight at once): controller CPU {cpu:.2f} s, "
        f"{cpu / args.jobs * 1e3:.2f} ms per trial; wall {wall:.1f} s"
    )


if __name__ == "__main__":
    main()
