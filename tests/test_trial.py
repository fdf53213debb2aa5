"""The trial record: its written-out constructor stays in step with its fields."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from optml.trial import Trial, TrialState


def test_the_constructor_takes_every_field_in_order_with_its_default() -> None:
    params = list(inspect.signature(Trial.__init__).parameters.values())[1:]
    fields = dataclasses.fields(Trial)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default is None, f.name  # None stands for a fresh one
        else:
            assert p.default is inspect.Parameter.empty, f.name


def test_a_trial_gets_fresh_dicts_and_stays_immutable() -> None:
    a = Trial(number=0, state=TrialState.RUNNING, params={"x": 1})
    b = Trial(0, TrialState.RUNNING, {"x": 1})
    assert a == b and a.metrics == {} and a.metrics is not b.metrics
    assert a.user_attrs is not b.user_attrs and a.intermediate is not b.intermediate
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.value = 1.0  # type: ignore[misc]
    c = dataclasses.replace(a, value=2.0, study="s")
    assert c.value == 2.0 and c == a.with_changes(value=2.0)  # study is not compared
    with pytest.raises(TypeError):
        a.with_changes(nonsense=1)
