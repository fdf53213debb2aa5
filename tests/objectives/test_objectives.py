"""Objectives: callables, model modules and command lines, run through the real executors."""

from __future__ import annotations

import sys
import textwrap

import psutil
import pytest

from optml import TrialState, create_study
from optml.errors import ObjectiveError
from optml.executors import TrialTask, make_executor, run_trial
from optml.objectives import (
    CommandObjective,
    FunctionObjective,
    ModuleObjective,
    TrialContext,
    normalize_result,
)

PY = sys.executable


def _run(objective, params, timeout=None):
    return run_trial(objective, TrialTask(0, params, "loss", timeout=timeout))


def test_command_reads_the_last_json_object_on_stdout(tmp_path) -> None:
    (tmp_path / "train.py").write_text(
        "import json, sys\nprint('epoch 1')\nprint(json.dumps({'loss': float(sys.argv[1]) * 2}))\n"
        "print('done')\n"
    )
    out = _run(CommandObjective(f"{PY} train.py {{x}}", cwd=str(tmp_path)), {"x": 1.5})
    assert out.state == "COMPLETE", out.error
    assert out.metrics == {"loss": 3.0}


def test_command_result_file_wins_and_params_reach_the_environment(tmp_path) -> None:
    script = tmp_path / "train.sh"
    script.write_text(
        'echo "{\\"loss\\": 99}"\necho "{\\"loss\\": $1, \\"n\\": $OPTML_TRIAL_NUMBER}" > "$OPTML_RESULT_FILE"\n'
    )
    out = _run(CommandObjective("bash train.sh {lr}", cwd=str(tmp_path)), {"lr": 0.25})
    assert out.metrics == {"loss": 0.25, "n": 0.0}


def test_command_bare_number_and_shell_quoting() -> None:
    out = _run(
        CommandObjective(f'{PY} -c "import sys; print(len(sys.argv[1]))" {{name}}'),
        {"name": "a b; rm -rf /"},
    )
    assert out.state == "COMPLETE" and out.metrics == {"loss": 13.0}


def test_command_failure_reports_status_and_stderr() -> None:
    out = _run(CommandObjective(f"{PY} -c \"import sys; sys.exit('out of memory')\""), {})
    assert out.state == "FAILED"
    assert "exited with status 1" in out.error and "out of memory" in out.error


def test_command_without_result_says_how_to_report_one() -> None:
    out = _run(CommandObjective("echo hello"), {})
    assert out.state == "FAILED" and "OPTML_RESULT_FILE" in out.error


def test_command_unknown_placeholder() -> None:
    with pytest.raises(ObjectiveError, match=r"uses \{lr\}, which is not a parameter"):
        CommandObjective("train --lr {lr}").render({"rate": 1})


def test_command_timeout_kills_its_process_tree(tmp_path) -> None:
    pidfile = tmp_path / "pid"
    cmd = f"{PY} -c \"import subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); open('{pidfile}','w').write(str(p.pid)); time.sleep(60)\""
    out = _run(CommandObjective(cmd), {}, timeout=1.5)
    assert out.state == "TIMEOUT"
    pid = int(pidfile.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_model_module_protocol(tmp_path) -> None:
    module = tmp_path / "model.py"
    module.write_text(
        textwrap.dedent("""
        CALLS = []
        def generate_data(path=None):
            CALLS.append(path)
            return [1.0, 2.0, 3.0]
        def initialization(scale, offset=0.0):
            return {"scale": scale, "offset": offset}
        def train(model, data):
            model["fit"] = sum(data) * model["scale"] + model["offset"]
            return model
        def test_error(model, data):
            return abs(model["fit"] - 6.0)
        def metrics(model, data):
            return {"calls": len(CALLS)}
    """)
    )
    obj = ModuleObjective(str(module), data="data.csv")
    first = _run(obj, {"scale": 2.0})
    second = _run(obj, {"scale": 1.0})
    assert first.metrics == {"test_error": 6.0, "calls": 1.0}
    assert second.metrics == {"test_error": 0.0, "calls": 1.0}, (
        "generate_data runs once per process"
    )


def test_model_module_missing_functions(tmp_path) -> None:
    module = tmp_path / "half.py"
    module.write_text("def generate_data():\n    return None\n")
    out = _run(ModuleObjective(str(module)), {})
    assert out.state == "FAILED"
    assert "lacks ['initialization', 'train', 'test_error']" in out.error


def test_function_by_name_from_a_file(tmp_path) -> None:
    (tmp_path / "obj.py").write_text(
        "def f(a, data=None):\n    return {'loss': a, 'd': len(data)}\n"
    )
    out = run_trial(
        FunctionObjective(f"{tmp_path / 'obj.py'}:f"), TrialTask(0, {"a": 2.0}, "loss", data="abc")
    )
    assert out.metrics == {"loss": 2.0, "d": 3.0}
    bad = _run(FunctionObjective(f"{tmp_path / 'obj.py'}:g"), {"a": 1})
    assert bad.state == "FAILED" and "has no 'g'" in bad.error


def test_function_taking_one_dict() -> None:
    out = _run(FunctionObjective(lambda config: config["a"] + config["b"]), {"a": 1, "b": 2})
    assert out.metrics == {"loss": 3.0}


@pytest.mark.parametrize("value", [None, True, "0.1", [1.0], {"loss": "high"}])
def test_unusable_results_are_rejected(value) -> None:
    with pytest.raises(ObjectiveError):
        normalize_result(value, "loss")


def test_numpy_results_are_accepted() -> None:
    import numpy as np

    assert normalize_result(np.float32(0.5), "loss") == {"loss": 0.5}
    assert normalize_result({"loss": np.float64(1.0)}, "loss") == {"loss": 1.0}


def test_worker_that_dies_is_reported_and_replaced() -> None:
    import os

    def die(x):
        if x == 1:
            os._exit(3)
        return float(x)

    ex = make_executor("local", workers=1)
    ex.start(FunctionObjective(die))
    outcomes = []
    try:
        for x in (1, 2):
            ex.submit(TrialTask(x, {"x": x}, "value"))
            while ex.running():
                outcomes += ex.wait(1)
    finally:
        ex.shutdown()
    assert (
        outcomes[0].state == "FAILED" and "exited unexpectedly with status 3" in outcomes[0].error
    )
    assert outcomes[1].state == "COMPLETE"


def test_serial_executor_enforces_the_time_limit(tmp_path) -> None:
    import time

    study = create_study(space={"x": [1, 2]}, storage="memory://", sampler="grid")
    study.optimize(lambda x: time.sleep(30 * (x == 2)) or x, executor="serial", trial_timeout=0.5)
    states = {t.params["x"]: t.state for t in study.trials}
    assert states == {1: TrialState.COMPLETE, 2: TrialState.TIMEOUT}


def test_trial_context_report() -> None:
    ctx = TrialContext(number=0, params={})
    ctx.report(1, 0.5)
    assert ctx.intermediate == {1: 0.5}


def test_a_function_objective_keeps_calling_each_set_of_parameters_its_own_way() -> None:
    """How to call the function is kept per set of parameter names, not once for all."""

    def f(a, b=0, trial=None, data=None):
        return a + b + (trial.number if trial else 0) + (len(data) if data else 0)

    objective = FunctionObjective(f, data="xy")
    one = run_trial(objective, TrialTask(3, {"a": 1.0}, "loss", data="xy"))
    two = run_trial(objective, TrialTask(4, {"a": 1.0, "b": 2.0}, "loss", data="xyz"))
    assert one.metrics == {"loss": 6.0} and two.metrics == {"loss": 10.0}
    wrong = run_trial(objective, TrialTask(5, {"a": 1.0, "c": 1.0}, "loss"))
    again = run_trial(objective, TrialTask(6, {"a": 1.0, "c": 1.0}, "loss"))
    assert wrong.state == again.state == "FAILED"
    assert "does not accept" in wrong.error and "does not accept" in again.error
    whole = FunctionObjective(lambda config, trial: config["a"] * 10 + trial.number)
    assert run_trial(whole, TrialTask(2, {"a": 1.0}, "loss")).metrics == {"loss": 12.0}
    assert run_trial(whole, TrialTask(3, {"a": 2.0}, "loss")).metrics == {"loss": 23.0}


@pytest.mark.parametrize("value", [0.25, -1.0, float("inf"), 3, 2**70])
def test_a_number_becomes_the_primary_metric_as_a_float(value) -> None:
    out = normalize_result(value, "loss")
    assert out == {"loss": float(value)} and type(out["loss"]) is float
