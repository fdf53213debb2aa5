"""Kubernetes Jobs built for trials: valid batch/v1 (checked strictly against the API's schemas,
offline), carrying the spec's settings; `optml trial run` runs one task and prints its outcome."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

pytest.importorskip("kubernetes")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from optml.cli import main as cli_main  # noqa: E402
from optml.errors import SpecError  # noqa: E402
from optml.executors import TrialTask, make_executor  # noqa: E402
from optml.executors._k8s import (  # noqa: E402
    JobSettings,
    build_job,
    container_args,
    job_name,
    study_label,
    to_dict,
)
from optml.executors._runtime import dump_objective  # noqa: E402
from optml.objectives import CommandObjective, FunctionObjective  # noqa: E402
from optml.spec import parse_spec  # noqa: E402
from optml.trial_run import OUTCOME_KEY, encode_task, last_outcome, outcome_from_json  # noqa: E402

K8S_VERSION = "1.33.0"


def _validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _quadratic(params, trial):
    print("noise the trial printed")
    trial.report(1, params["x"] + 1)
    return {"loss": (params["x"] - 2) ** 2}


SETTINGS = JobSettings(
    study="My study/#1",
    image="registry.example/optml:1",
    namespace="tuning",
    cpu="2",
    memory="4Gi",
    gpu=1,
    service_account="tuner",
    env={"FOO": "bar"},
)


def test_command_job_is_valid_and_carries_the_settings():
    objective = CommandObjective("python train.py --lr {lr}")
    task = TrialTask(7, {"lr": 0.1}, "loss", attempt=1, timeout=90.5)
    command, env = container_args(objective, task)
    doc = to_dict(build_job(SETTINGS, task, command, env))
    _validate(doc)
    assert doc["apiVersion"] == "batch/v1" and doc["kind"] == "Job"
    meta, spec = doc["metadata"], doc["spec"]
    assert meta["namespace"] == "tuning"
    assert meta["labels"]["optml.io/trial"] == "7" and meta["labels"]["optml.io/attempt"] == "1"
    assert meta["labels"]["optml.io/study"] == study_label("My study/#1")
    assert meta["annotations"]["optml.io/study-name"] == "My study/#1"
    assert meta["name"] == job_name("My study/#1", 7, 1)
    assert spec["backoffLimit"] == 0  # retries are the controller's: one Job per attempt
    assert spec["activeDeadlineSeconds"] == 91  # whole seconds, never less than asked
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "tuner"
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/optml:1"
    assert container["command"] == ["python", "train.py", "--lr", "0.1"]
    want = {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert container["resources"] == {"requests": want, "limits": want}
    env_map = {e["name"]: e["value"] for e in container["env"]}
    assert env_map["FOO"] == "bar" and json.loads(env_map["OPTML_PARAMS"]) == {"lr": 0.1}


def test_python_job_runs_the_entry_point_and_is_valid():
    task = TrialTask(0, {"x": 1.5}, "loss")
    command, env = container_args(FunctionObjective(_quadratic), task)
    doc = to_dict(build_job(JobSettings(study="s", image="img"), task, command, env))
    _validate(doc)
    assert command == ["python", "-m", "optml.trial_run"]
    assert "activeDeadlineSeconds" not in doc["spec"]  # no trial_timeout: no deadline
    assert (
        "resources" not in doc["spec"]["template"]["spec"]["containers"][0]
        or not (doc["spec"]["template"]["spec"]["containers"][0]["resources"])
    )


def test_a_command_naming_paths_checks_them_in_the_pod_first():
    objective = CommandObjective("python train.py --data {data}", data="/data/x.csv", cwd="/work")
    task = TrialTask(0, {}, "loss")
    command, env = container_args(objective, task)
    doc = to_dict(build_job(SETTINGS, task, command, env))
    _validate(doc)
    assert command[:2] == ["/bin/sh", "-c"]
    script = command[2]
    assert script.index("[ -e /work ]") < script.index("cd /work") < script.index("/data/x.csv")
    assert script.splitlines()[-1] == "exec python train.py --data /data/x.csv"


def test_invalid_manifest_is_caught_by_the_validator():
    """The check can fail: a Job the API would refuse (unknown field) does not pass."""
    task = TrialTask(0, {"x": 1.0}, "loss")
    command, env = container_args(CommandObjective("echo {x}"), task)
    doc = to_dict(build_job(SETTINGS, task, command, env))
    doc["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(doc)


@pytest.mark.parametrize("study", ["a", "x" * 200, "Ünïcode study", "--weird--", "UPPER_case.name"])
def test_names_and_labels_fit_kubernetes_rules(study):
    import re

    name, label = job_name(study, 12345, 3), study_label(study)
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert len(label) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", label)
    assert job_name(study, 1, 0) != job_name(study + "!", 1, 0)


def _spec(**execution):
    return {
        "name": "k8s study",
        "objective": {"command": "python -c 'print({x})'"},
        "space": {"x": {"uniform": [0, 1]}},
        "algorithm": "random",
        "execution": {"backend": "kubernetes", "image": "python:3.12", **execution},
    }


def test_spec_errors_name_the_field():
    with pytest.raises(SpecError, match="image"):
        parse_spec({**_spec(), "execution": {"backend": "kubernetes"}})
    with pytest.raises(SpecError, match="resources.gpu"):
        parse_spec(_spec(resources={"gpu": 0}))
    with pytest.raises(SpecError, match="resources.disk"):
        parse_spec(_spec(resources={"disk": "1Gi"}))
    with pytest.raises(SpecError, match="image applies to backend kubernetes"):
        parse_spec({**_spec(), "execution": {"backend": "local", "image": "x"}})
    with pytest.raises(SpecError, match="execution.image applies to backend kubernetes"):
        make_executor("local", 1, image="x")


def test_render_prints_valid_manifests(tmp_path, capsys):
    spec = _spec(
        namespace="optml",
        trial_timeout=60,
        retries=2,
        resources={"cpu": 2, "memory": "4Gi", "gpu": 1},
        service_account="tuner",
        env={"FOO": "bar"},
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["k8s", "render", str(path), "--trials", "3"])
    assert exit_info.value.code == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert len(docs) == 3
    for doc in docs:
        _validate(doc)
        # retries: 2 is the controller's; Kubernetes does not retry on top of it.
        assert doc["spec"]["backoffLimit"] == 0 and doc["spec"]["activeDeadlineSeconds"] == 60
        res = doc["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert res == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert len({d["metadata"]["name"] for d in docs}) == 3


def test_render_shows_the_files_a_python_trial_ships(tmp_path, capsys):
    from optml.trial_run import from_env, shipment

    module = tmp_path / "obj.py"
    module.write_text("def f(x):\n    return x\n")
    spec = {**_spec(), "objective": {"function": f"{module}:f"}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["k8s", "render", str(path)])
    assert exit_info.value.code == 0
    (doc,) = yaml.safe_load_all(capsys.readouterr().out)
    _validate(doc)
    env = {e["name"]: e["value"] for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
    files, named = shipment(from_env("OPTML_TASK", env))
    assert files == {str(module): module.read_bytes()}
    assert named == [("function", str(module))]


def test_render_refuses_another_backend(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**_spec(), "execution": {"backend": "local"}}))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["k8s", "render", str(path)])
    assert exit_info.value.code == 2
    assert "needs kubernetes" in capsys.readouterr().err


def _run_entry(env_extra, args=()):
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "optml.trial_run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_trial_run_entry_point_runs_a_python_task(tmp_path):
    task = TrialTask(4, {"x": 5.0}, "loss", attempt=2)
    payload = base64.b64encode(dump_objective(FunctionObjective(_quadratic))).decode()
    proc = _run_entry({"OPTML_TASK": encode_task(task), "OPTML_OBJECTIVE": payload})
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    outcome = outcome_from_json(json.loads(last)[OUTCOME_KEY])
    assert outcome.state == "COMPLETE" and outcome.metrics == {"loss": 9.0}
    assert outcome.number == 4 and outcome.attempt == 2
    assert outcome.intermediate == {1: 6.0}
    assert "noise the trial printed" in (outcome.logs or "")
    # The same from a task file, through the hidden CLI command.
    file = tmp_path / "task.json"
    file.write_text(json.dumps({"task": json.loads(encode_task(task)), "objective": payload}))
    proc = subprocess.run(
        [sys.executable, "-m", "optml.cli", "trial", "run", "--task", str(file)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert last_outcome(proc.stdout)["metrics"] == {"loss": 9.0}


def _fails(params):
    raise ValueError("bad x")


def test_trial_run_reports_a_failing_trial_as_its_outcome():
    task = TrialTask(1, {"x": 1.0}, "loss")
    payload = base64.b64encode(dump_objective(FunctionObjective(_fails))).decode()
    proc = _run_entry({"OPTML_TASK": encode_task(task), "OPTML_OBJECTIVE": payload})
    assert proc.returncode == 0
    outcome = last_outcome(proc.stdout)
    assert outcome["state"] == "FAILED" and "bad x" in outcome["error"]


def test_trial_run_without_a_task_says_so():
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTML_")}
    proc = subprocess.run(
        [sys.executable, "-m", "optml.trial_run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "OPTML_TASK" in proc.stderr
    assert textwrap.dedent(proc.stdout) == ""
