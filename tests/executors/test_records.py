"""The executors' records (tasks, events, outcomes): their quick constructors behave as the
dataclass's own would."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from optml.executors import TrialOutcome, TrialReported, TrialStarted, TrialTask

RECORDS = [TrialTask, TrialOutcome, TrialStarted, TrialReported]


@pytest.mark.parametrize("cls", RECORDS)
def test_the_constructor_takes_every_field_in_order_with_its_default(cls) -> None:
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is dataclasses.MISSING:
            assert p.default is inspect.Parameter.empty, f.name


def test_records_get_fresh_defaults_stay_frozen_and_survive_pickling() -> None:
    a, b = TrialOutcome(1, "COMPLETE"), TrialOutcome(number=1, state="COMPLETE")
    assert a == b and a.metrics == {} and a.metrics is not b.metrics
    assert a.intermediate is not b.intermediate and a.duration_s == 0.0 and a.host is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.state = "FAILED"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(a)) == a
    c = dataclasses.replace(a, host="h", metrics={"v": 1.0})
    assert (c.host, c.metrics, c.number) == ("h", {"v": 1.0}, 1)
    task = TrialTask(2, {"x": 1}, "v", timeout=3.0)
    assert (task.attempt, task.timeout, task.data) == (0, 3.0, None)
    assert hash(TrialStarted(1, 0, "h", "r")) == hash(TrialStarted(1, 0, "h", "r"))
    with pytest.raises(TypeError):
        TrialTask(2, {"x": 1})  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        TrialReported(1, 0, 1, 0.5, nonsense=1)  # type: ignore[call-arg]
