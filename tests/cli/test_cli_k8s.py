"""`optml run SPEC` with `execution: {backend: kubernetes}`: the real command, through
service.executor_for and the kubeconfig it names, against the loopback API server of
tests/k8s_fake.py (each Job's pod a local process tree), on SQLite."""

from __future__ import annotations

import subprocess

import pytest

pytest.importorskip("kubernetes")

from k8s_fake import FakeKubernetes  # noqa: E402
from optml import TrialState, load_study  # noqa: E402

OBJECTIVE = """
def f(x, trial):
    for step in range(3):
        trial.report(step, x + step)
    if x == 3:
        raise ValueError("x=3 is cursed")
    return (x - 2) ** 2
"""


@pytest.mark.slow
def test_optml_run_on_kubernetes_records_every_trial(cli) -> None:
    cli.write("objectives.py", OBJECTIVE)
    cli.write(
        "k8s.yaml",
        """
        name: on-k8s
        objective: {function: objectives.py:f}
        space: {x: [0, 1, 2, 3, 4]}
        algorithm: grid
        execution:
          backend: kubernetes
          image: registry.example/optml:1
          namespace: tuning
          workers: 2
          retries: 1
          trial_timeout: 120
          resources: {cpu: 1, memory: 1Gi}
          env: {FOO: bar}
        """,
    )
    with FakeKubernetes() as fake:
        kubeconfig = fake.kubeconfig(str(cli.workdir / "kubeconfig"))
        env = {**cli.env(), "KUBECONFIG": kubeconfig}
        result = subprocess.run(
            cli.command("run", "k8s.yaml", "--storage", cli.storage),
            cwd=cli.workdir,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert not fake.jobs, "a Job was left behind"
        namespaces = {job["metadata"]["namespace"] for _, _, job in fake.history}
        created = list(fake.created)
    assert namespaces == {"tuning"}
    trials = {t.params["x"]: t for t in load_study("on-k8s", storage=cli.storage).trials}
    assert sorted(trials) == [0, 1, 2, 3, 4]  # every trial recorded, once
    for x in (0, 1, 2, 4):
        t = trials[x]
        assert t.state is TrialState.COMPLETE and t.value == (x - 2) ** 2, t.error
        assert t.intermediate == {0: x, 1: x + 1, 2: x + 2}
        assert t.attempts == 1 and t.host == "fake-node-1"
    cursed = trials[3]
    assert cursed.state is TrialState.FAILED and "x=3 is cursed" in (cursed.error or "")
    assert cursed.attempts == 2  # retries: 1, by the controller
    assert len(created) == 6  # one Job per attempt
