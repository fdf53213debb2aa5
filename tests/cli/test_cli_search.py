"""Specs that use the model-based parts: a CASH study across model families, constraints,
several metrics, and the `auto` algorithm saying what it picked."""

from __future__ import annotations

from optml import load_study
from optml.trial import TrialState

OBJECTIVE = """
def two_families(model, **p):
    if model == "lin":
        return (p["a"] - 1) ** 2
    return 0.5 + (p["b"] - 3) ** 2 / 10

def two_metrics(x, y):
    return {"error": (x - 1) ** 2 + y, "cost": x + y}
"""


def test_cash_spec_with_constraint(cli) -> None:
    cli.write("obj.py", OBJECTIVE)
    cli.write(
        "cash.yaml",
        """
        name: cash
        objective: {function: obj.py:two_families}
        space:
          - model: lin
            space: {a: {uniform: [-3, 3]}}
          - model: quad
            space: {b: {int: [0, 10]}}
        constraints: ["a is None or a > -2"]
        budget: {trials: 12}
        seed: 3
        execution: {workers: 2}
    """,
    )
    result = cli.run("run", "cash.yaml", "--storage", cli.storage)
    assert result.returncode == 0, result.stderr
    assert "meta" in result.stdout, "auto must say what it picked"
    trials = load_study("cash", storage=cli.storage).trials
    assert len(trials) == 12 and all(t.state is TrialState.COMPLETE for t in trials)
    families = {t.params["model"] for t in trials}
    assert families == {"lin", "quad"}
    for t in trials:
        expected = {"model", "a"} if t.params["model"] == "lin" else {"model", "b"}
        assert set(t.params) == expected
        if t.params["model"] == "lin":
            assert t.params["a"] > -2, "a constrained configuration was proposed"


def test_two_metrics_keep_a_pareto_front(cli) -> None:
    cli.write("obj.py", OBJECTIVE)
    cli.write(
        "mo.yaml",
        """
        name: mo
        objective: {function: obj.py:two_metrics}
        metric:
          - {name: error, direction: minimize}
          - {name: cost, direction: minimize}
        space:
          x: {uniform: [0, 2]}
          y: {uniform: [0, 1]}
        budget: {trials: 16}
        seed: 1
    """,
    )
    result = cli.run("run", "mo.yaml", "--storage", cli.storage)
    assert result.returncode == 0, result.stderr
    assert "nsga2" in result.stdout
    study = load_study("mo", storage=cli.storage)
    front = study.best_trials
    assert front
    done = study.get_trials([TrialState.COMPLETE])
    for f in front:  # nothing in the study dominates a front member
        for t in done:
            assert not (
                t.metrics["error"] <= f.metrics["error"]
                and t.metrics["cost"] <= f.metrics["cost"]
                and (
                    t.metrics["error"] < f.metrics["error"] or t.metrics["cost"] < f.metrics["cost"]
                )
            )


def test_bad_constraint_is_a_one_line_error(cli) -> None:
    cli.write("obj.py", OBJECTIVE)
    cli.write(
        "bad.yaml",
        """
        name: bad
        objective: {function: obj.py:two_metrics}
        space: {x: {uniform: [0, 2]}, y: {uniform: [0, 1]}}
        constraints: ["x + z < 1"]
        budget: {trials: 4}
    """,
    )
    result = cli.run("run", "bad.yaml", "--storage", cli.storage)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "constraints[0]" in lines[0] and "'z'" in lines[0], result.stderr
