"""The Study API: optimize, ask/tell, warm start, stopping rules, callbacks, restart."""

from __future__ import annotations

import time

import pytest

import optml
from optml import TrialState, create_study, load_study
from optml.errors import OptMLError


def _study(tmp_path, **kw):
    kw.setdefault("space", {"x": {"uniform": [-2, 2]}, "n": [1, 2, 3]})
    kw.setdefault("storage", f"sqlite:///{tmp_path / 'o.db'}")
    kw.setdefault("seed", 0)
    kw.setdefault("sampler", "random")
    return create_study("s", **kw)


def test_optimize_runs_exactly_n_trials_in_parallel_and_records_everything(tmp_path) -> None:
    study = _study(tmp_path)
    study.optimize(lambda x, n: (x - 1) ** 2 + n, n_trials=12, workers=2)
    trials = study.trials
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert all(t.duration_s is not None and t.started_at and t.finished_at for t in trials)
    assert study.best_value == min(t.value for t in trials)
    assert study.state == "COMPLETE"
    assert study.last_run.trials == 12 and study.last_run.workers == 2
    study.optimize(lambda x, n: (x - 1) ** 2 + n, n_trials=3, workers=2)
    assert len(study.trials) == 15


def test_maximize_and_extra_metrics_are_kept(tmp_path) -> None:
    study = _study(tmp_path, metric="acc", direction="maximize")
    study.optimize(
        lambda x, n: {"acc": -abs(x), "loss": abs(x), "n": n}, n_trials=8, executor="serial"
    )
    assert study.best_value == max(t.value for t in study.trials)
    assert set(study.best_trial.metrics) == {"acc", "loss", "n"}


def test_missing_metric_fails_the_trial_with_a_clear_error(tmp_path) -> None:
    study = _study(tmp_path, metric="acc")
    study.optimize(lambda x, n: {"accuracy": 1.0}, n_trials=2, executor="serial")
    assert all(t.state is TrialState.FAILED for t in study.trials)
    assert "the study optimises 'acc'" in study.trials[0].error


def test_enqueued_configurations_run_first_and_added_trials_count(tmp_path) -> None:
    study = _study(tmp_path)
    study.add_trial({"x": 1.0, "n": 1}, 1.0)
    study.enqueue({"x": 0.5, "n": 2})
    study.enqueue({"x": -0.5, "n": 3})
    with pytest.raises(OptMLError, match="x=9 is outside the space"):
        study.enqueue({"x": 9, "n": 1})
    seen = []
    study.optimize(
        lambda x, n: x + n,
        n_trials=3,
        executor="serial",
        callbacks=[lambda s, t: seen.append(t.params)],
    )
    assert seen[:2] == [{"x": 0.5, "n": 2}, {"x": -0.5, "n": 3}]
    assert len(study.trials) == 4 and study.trials[0].value == 1.0


def test_ask_and_tell_by_hand(tmp_path) -> None:
    study = _study(tmp_path)
    trials = study.ask(3)
    assert len(trials) == 3 and all(t.state is TrialState.RUNNING for t in trials)
    assert len({(t.params["x"], t.params["n"]) for t in trials}) == 3
    study.tell(trials[0], 2.0)
    study.tell(trials[1], {"value": 1.0, "other": 5})
    study.tell(trials[2].number, state="FAILED", error="diverged")
    assert study.best_trial.number == trials[1].number
    assert study.trials[2].state is TrialState.FAILED and study.trials[2].error == "diverged"
    with pytest.raises(OptMLError, match="immutable"):
        study.tell(trials[0], 0.0)


def test_target_stops_the_study(tmp_path) -> None:
    study = _study(tmp_path, space={"x": {"int": [0, 1000]}})
    study.optimize(lambda x: float(x), n_trials=500, executor="serial", target=300)
    assert study.best_value <= 300
    assert len(study.trials) < 500


def test_timeout_stops_launching_and_stops_running_trials(tmp_path) -> None:
    study = _study(tmp_path)
    study.optimize(lambda x, n: time.sleep(0.05) or x, timeout=1.0, workers=2)
    assert study.last_run.stop_reason == "timeout"
    assert 2 <= len(study.trials)
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.TIMEOUT}
    for t in study.get_trials([TrialState.TIMEOUT]):
        assert t.error == "stopped: the study's time budget of 1 s ran out"


def test_callback_can_stop_the_study(tmp_path) -> None:
    study = _study(tmp_path)

    def stop_after_three(s, trial):
        if len(s.get_trials([TrialState.COMPLETE])) >= 3:
            s.stop()

    study.optimize(lambda x, n: x, n_trials=50, executor="serial", callbacks=[stop_after_three])
    assert len(study.trials) == 3


def test_never_ending_search_needs_a_budget(tmp_path) -> None:
    with pytest.raises(OptMLError, match="give n_trials or timeout"):
        _study(tmp_path).optimize(lambda x, n: x)


def test_grid_ends_by_itself(tmp_path) -> None:
    study = _study(tmp_path, space={"a": [1, 2], "b": ["u", "v"]}, sampler="grid")
    study.optimize(lambda a, b: a, workers=2)
    assert sorted((t.params["a"], t.params["b"]) for t in study.trials) == [
        (1, "u"),
        (1, "v"),
        (2, "u"),
        (2, "v"),
    ]


@pytest.mark.parametrize("sampler", ["random", "sobol", "lhs", "tpe", "gp", "forest", "cmaes"])
def test_reloaded_study_proposes_what_the_original_would_have(tmp_path, sampler) -> None:
    """A controller that crashed and restarts continues the same study: same proposals."""
    kw = {"sampler": sampler, "space": {"x": {"uniform": [-2, 2]}, "y": {"uniform": [0, 1]}}}
    a = _study(tmp_path, storage=f"sqlite:///{tmp_path / 'a.db'}", **kw)
    b = _study(tmp_path, storage=f"sqlite:///{tmp_path / 'b.db'}", **kw)
    for study in (a, b):
        study.optimize(lambda x, y: (x - 0.5) ** 2 + y, n_trials=12, executor="serial")
    b = load_study("s", storage=f"sqlite:///{tmp_path / 'b.db'}")  # as after a crash
    assert [t.params for t in a.ask(2)] == [t.params for t in b.ask(2)]


def test_logs_of_a_trial_are_kept(tmp_path) -> None:
    study = _study(tmp_path)

    def noisy(x, n):
        print(f"epoch 1 loss {x:.3f}")
        import sys

        print("warning: slow", file=sys.stderr)
        return x

    study.optimize(noisy, n_trials=2, workers=1)
    logs = study.trials[0].logs
    assert "epoch 1 loss" in logs and "warning: slow" in logs


def test_intermediate_values_are_recorded(tmp_path) -> None:
    study = _study(tmp_path)

    def objective(x, n, trial):
        for step in range(3):
            trial.report(step, x + step)
        return x

    study.optimize(objective, n_trials=1, workers=1)
    assert study.trials[0].intermediate == {
        0: pytest.approx(study.trials[0].params["x"]),
        1: pytest.approx(study.trials[0].params["x"] + 1),
        2: pytest.approx(study.trials[0].params["x"] + 2),
    }


def test_table_export_is_pandas_free(tmp_path) -> None:
    study = _study(tmp_path)
    study.optimize(lambda x, n: {"value": x, "aux": n}, n_trials=3, executor="serial")
    rows = study.trials_table()
    assert set(rows[0]) >= {"number", "state", "params.x", "params.n", "value", "metrics.aux"}
    assert study.export("csv").count("\n") == 4


def test_public_surface_is_exact() -> None:
    assert sorted(optml.__all__) == sorted(
        [
            "Categorical",
            "Float",
            "Int",
            "Metric",
            "OptMLError",
            "Space",
            "Study",
            "Trial",
            "TrialState",
            "__version__",
            "create_study",
            "load_study",
            "report",
        ]
    )


def test_import_optml_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, optml; heavy = [m for m in ('sqlalchemy', 'sklearn', 'scipy', 'rich', "
        "'typer', 'pydantic', 'psutil', 'libcst', 'dask', 'distributed', 'fastapi', 'uvicorn', "
        "'plotly', 'torch', 'keras') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ctrl_c_between_claiming_and_submitting_leaves_no_trial_running(
    tmp_path, monkeypatch
) -> None:
    """Ctrl-C can land after trials are written RUNNING and before the executor has them; they
    go back to the queue all the same (the race an end-to-end Ctrl-C test hit under load)."""
    from optml._controller import Controller

    study = _study(tmp_path)
    study.optimize(lambda x, n: x, n_trials=3, executor="serial")

    def interrupted(self, number, params, attempt):
        raise KeyboardInterrupt

    # The first step after the trials are claimed: making their tasks for the executor.
    monkeypatch.setattr(Controller, "_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(lambda x, n: x, n_trials=2, workers=2)
    reloaded = load_study(study.name, storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert not reloaded.get_trials([TrialState.RUNNING])
    waiting = reloaded.get_trials([TrialState.WAITING])
    assert len(waiting) == 2 and all(t.user_attrs.get("interrupted") for t in waiting)
    assert len(reloaded.get_trials([TrialState.COMPLETE])) == 3  # finished trials kept
