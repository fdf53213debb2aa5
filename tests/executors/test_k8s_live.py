"""Opt-in: the Kubernetes executor against a real cluster, run only when KUBECONFIG is set.

OPTML_K8S_IMAGE names an image with python (and, for the Python trial, optml installed);
OPTML_K8S_NAMESPACE the namespace (default: default). Nothing here ran against a live
cluster in this project's CI (no cluster can run on its machines)."""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("kubernetes")

pytestmark = [
    pytest.mark.infra,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG is not set: no Kubernetes cluster to run Jobs on",
    ),
]


def test_a_command_trial_runs_as_a_job_on_the_cluster():
    from optml.executors import KubernetesExecutor, TrialOutcome, TrialTask
    from optml.objectives import CommandObjective

    ex = KubernetesExecutor(
        1,
        study=f"optml-live-{os.getpid()}",
        image=os.environ.get("OPTML_K8S_IMAGE", "python:3.12-slim"),
        namespace=os.environ.get("OPTML_K8S_NAMESPACE", "default"),
    )
    ex.start(CommandObjective("python -c 'print({x} * 2)'"))
    try:
        ex.submit(TrialTask(0, {"x": 21}, "loss", timeout=300))
        outcomes, end = [], time.monotonic() + 600
        while not outcomes and time.monotonic() < end:
            outcomes = [e for e in ex.events(timeout=5) if isinstance(e, TrialOutcome)]
        assert outcomes and outcomes[0].state == "COMPLETE", outcomes
        assert outcomes[0].metrics == {"loss": 42.0}
    finally:
        ex.shutdown(kill=True)
