"""What the Python API refuses: foreign or unasked trials, unrankable results, bad arguments."""

from __future__ import annotations

import math

import pytest

import optml
from optml import TrialState, create_study, load_study
from optml.errors import OptMLError, SpaceError, SpecError, StudyNotFoundError

SPACE = {"x": {"uniform": [-2, 2]}}


def _study(tmp_path, name="s", **kw):
    kw.setdefault("space", SPACE)
    kw.setdefault("storage", f"sqlite:///{tmp_path / 'o.db'}")
    kw.setdefault("seed", 0)
    kw.setdefault("sampler", "random")
    return create_study(name, **kw)


# -- tell ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shared_storage", [True, False])
def test_tell_refuses_another_studys_trial(tmp_path, shared_storage) -> None:
    shared = f"sqlite:///{tmp_path / 'o.db'}"
    c = _study(tmp_path, "C", storage=shared if shared_storage else "memory://")
    d = _study(tmp_path, "D", storage=shared if shared_storage else "memory://")
    mine = d.ask()
    theirs = c.ask()
    assert theirs.number == mine.number == 0
    with pytest.raises(OptMLError, match="trial 0 belongs to study 'C', not to 'D'"):
        d.tell(theirs, 0.123)
    assert d.trials[0].state is TrialState.RUNNING and d.trials[0].value is None
    assert c.trials[0].state is TrialState.RUNNING
    c.tell(theirs, 0.5)
    assert c.best_value == 0.5


def test_a_trial_can_be_told_through_another_handle_on_the_same_study(tmp_path) -> None:
    asker = _study(tmp_path)
    teller = load_study("s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    trial = asker.ask()
    assert teller.tell(trial, 1.0).state is TrialState.COMPLETE
    assert teller.trials[0] == asker.trials[0], "equality ignores which handle read the trial"


def test_the_study_mark_stays_out_of_equality_and_export(tmp_path) -> None:
    study = _study(tmp_path)
    told = study.tell(study.ask(), 1.0)
    assert told.study == "s"
    raw = study.storage.get_trial(study.id, 0)
    assert raw.study is None and raw == told
    assert "study" not in told.to_dict()
    assert '"study"' not in study.export("json")


def test_tell_refuses_a_trial_that_was_never_handed_out(tmp_path) -> None:
    study = _study(tmp_path)
    queued = study.enqueue({"x": 0.5})
    with pytest.raises(OptMLError, match="trial 0 of study 's' is WAITING"):
        study.tell(queued, 1.0)
    with pytest.raises(OptMLError, match="study 's' has no trial 7"):
        study.tell(7, 1.0)
    with pytest.raises(OptMLError, match="study 's' has no trial -1"):
        study.tell(-1, 1.0)
    assert study.trials[0].state is TrialState.WAITING
    assert study.ask().number == 0, "the queued trial is still handed out first"


def test_tell_refuses_a_finished_trial_with_a_clear_message(tmp_path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(OptMLError, match="trial 0 of study 's' is already COMPLETE"):
        study.tell(trial, 0.0)
    assert study.best_value == 1.0


@pytest.mark.parametrize("state", ["RUNNING", "WAITING", TrialState.RUNNING])
def test_tell_refuses_a_state_that_is_not_finished(tmp_path, state) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    with pytest.raises(OptMLError, match="not a finished state; use one of COMPLETE, FAILED"):
        study.tell(trial, 1.0, state=state)
    assert study.trials[0].state is TrialState.RUNNING


@pytest.mark.parametrize("method", ["tell", "add_trial"])
def test_an_unknown_state_is_a_clear_error(tmp_path, method) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    call = (
        (lambda: study.tell(trial, 1.0, state="bogus"))
        if method == "tell"
        else (lambda: study.add_trial({"x": 0.0}, 1.0, state="bogus"))
    )
    with pytest.raises(
        OptMLError, match=f"{method}: state 'bogus' is not one of COMPLETE, FAILED, PRUNED, TIMEOUT"
    ):
        call()
    assert len(study.trials) == 1


def test_tell_accepts_a_state_in_any_case(tmp_path) -> None:
    study = _study(tmp_path)
    assert study.tell(study.ask(), state="failed").state is TrialState.FAILED


@pytest.mark.parametrize("number", [1.5, 0.0, "0", True, False, None])
def test_tell_refuses_a_trial_number_that_is_not_an_int(tmp_path, number) -> None:
    study = _study(tmp_path)
    study.ask()
    with pytest.raises(OptMLError, match="tell: expected a Trial or a trial number"):
        study.tell(number, 1.0)
    assert study.trials[0].state is TrialState.RUNNING


def test_tell_accepts_a_numpy_integer(tmp_path) -> None:
    import numpy as np

    study = _study(tmp_path)
    study.ask()
    assert study.tell(np.int64(0), 1.0).state is TrialState.COMPLETE


# -- results that cannot be ranked ---------------------------------------------------------
@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_non_finite_result_fails_the_trial_in_optimize(tmp_path, bad) -> None:
    study = _study(tmp_path, space={"x": [0, 1, 2]}, sampler="grid")
    study.optimize(lambda x: bad if x == 1 else float(x), executor="serial")
    by_x = {t.params["x"]: t for t in study.trials}
    assert by_x[1].state is TrialState.FAILED and by_x[1].value is None
    assert "an optimised metric must be a finite number" in by_x[1].error
    assert study.best_trial.params == {"x": 0}


def test_a_non_finite_result_fails_the_trial_in_worker_processes(tmp_path) -> None:
    study = _study(tmp_path, space={"x": [0, 1]}, sampler="grid")
    study.optimize(lambda x: -math.inf if x else 3.0, workers=2)
    by_x = {t.params["x"]: t for t in study.trials}
    assert by_x[1].state is TrialState.FAILED and "-inf for 'value'" in by_x[1].error
    assert study.best_value == 3.0


def test_every_optimised_metric_must_be_finite(tmp_path) -> None:
    study = _study(tmp_path, metric=["loss", "cost"])
    study.optimize(
        lambda x: {"loss": x, "cost": math.inf, "other": math.inf}, n_trials=2, executor="serial"
    )
    assert all(t.state is TrialState.FAILED for t in study.trials)
    assert "inf for 'cost'" in study.trials[0].error
    trial = study.ask()
    assert study.tell(trial, {"loss": 1.0, "cost": -math.inf}).state is TrialState.FAILED
    kept = study.tell(study.ask(), {"loss": 1.0, "cost": 2.0, "other": math.inf})
    assert kept.state is TrialState.COMPLETE, "a metric the study does not optimise may be inf"


@pytest.mark.parametrize("bad", [math.inf, -math.inf])
def test_a_non_finite_result_fails_the_trial_in_tell_and_add_trial(tmp_path, bad) -> None:
    study = _study(tmp_path)
    told = study.tell(study.ask(), bad)
    added = study.add_trial({"x": 0.0}, bad)
    for trial in (told, added):
        assert trial.state is TrialState.FAILED and trial.value is None
        assert f"returned {bad!r} for 'value'" in trial.error
        assert trial.metrics == {"value": bad}
    study.add_trial({"x": 1.0}, 5.0)
    assert study.best_value == 5.0


def test_a_non_finite_value_of_another_finished_state_keeps_that_state(tmp_path) -> None:
    study = _study(tmp_path)
    pruned = study.tell(study.ask(), math.inf, state="PRUNED", error="stopped early")
    assert pruned.state is TrialState.PRUNED and pruned.value is None
    assert pruned.error == "stopped early"


# -- arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("trial_timeout", -1),
        ("trial_timeout", 0),
        ("trial_timeout", math.nan),
        ("trial_timeout", math.inf),
        ("trial_timeout", "5"),
        ("timeout", -1),
        ("timeout", math.nan),
        ("n_trials", True),
        ("n_trials", 2.5),
        ("n_trials", -1),
        ("workers", 0),
        ("workers", -2),
        ("workers", 1.5),
        ("retries", -1),
    ],
)
def test_optimize_refuses_bad_arguments_by_name(tmp_path, argument, value) -> None:
    study = _study(tmp_path)
    kwargs = {"n_trials": 2, "executor": "serial", argument: value}
    with pytest.raises(OptMLError, match=f"^{argument} must be a "):
        study.optimize(lambda x: x, **kwargs)
    assert study.trials == []


@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_ask_refuses_a_bad_count(tmp_path, n) -> None:
    with pytest.raises(OptMLError, match="ask: n must be a whole number"):
        _study(tmp_path).ask(n)


@pytest.mark.parametrize("seed", [-5, 2**63, 2**64, 2**70, 1.5, "3", True])
def test_create_study_refuses_a_bad_seed_before_writing_anything(tmp_path, seed) -> None:
    with pytest.raises(SpecError, match=r"seed must be an integer in \[0, 2\*\*63\)"):
        _study(tmp_path, seed=seed)
    with pytest.raises(StudyNotFoundError):
        load_study("s", storage=f"sqlite:///{tmp_path / 'o.db'}")


def test_the_largest_seed_is_stored_and_used(tmp_path) -> None:
    study = _study(tmp_path, seed=2**63 - 1)
    study.optimize(lambda x: x, n_trials=2, executor="serial")
    assert load_study("s", storage=f"sqlite:///{tmp_path / 'o.db'}").seed == 2**63 - 1


def test_a_space_key_must_match_its_parameters_name(tmp_path) -> None:
    with pytest.raises(SpaceError, match="the key 'y' holds a parameter named 'x'"):
        _study(tmp_path, space={"y": optml.Float("x", 0, 1)})
    study = _study(tmp_path, space={"x": optml.Float("x", 0, 1)})
    assert list(study.space.names) == ["x"]
