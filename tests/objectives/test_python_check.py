"""Python objectives are checked before the first trial, without running the user's code."""

from __future__ import annotations

import textwrap

import pytest

from optml import create_study
from optml.errors import ObjectiveError
from optml.objectives import FunctionObjective, ModuleObjective

# Every user module below writes this marker when it is executed: check() must never run it.
SIDE_EFFECT = "open({marker!r}, 'a').write('imported')\n"

PROTOCOL_MODULE = """
def generate_data(path=None):
    return [1.0]
def initialization(**hp):
    return hp
def train(model, data):
    return model
def test_error(model, data):
    return 0.0
"""


def _write(path, body: str, marker) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SIDE_EFFECT.format(marker=str(marker)) + textwrap.dedent(body))
    return str(path)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "executed"
    yield path
    assert not path.exists(), "check() executed the user's module"


def test_a_missing_file_is_reported(tmp_path) -> None:
    with pytest.raises(ObjectiveError, match=r"objective.function .*no such file .*missing.py"):
        FunctionObjective(f"{tmp_path / 'missing.py'}:f").check()
    with pytest.raises(ObjectiveError, match=r"objective.module .*no such file"):
        ModuleObjective(str(tmp_path / "missing.py")).check()


def test_a_module_that_cannot_be_found_is_reported(tmp_path, monkeypatch, marker) -> None:
    _write(tmp_path / "pkg" / "__init__.py", "", marker)
    _write(tmp_path / "pkg" / "mod.py", "def f(x):\n    return x\n", marker)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ObjectiveError, match="no module named 'optml_no_such_module'"):
        FunctionObjective("optml_no_such_module:f").check()
    with pytest.raises(ObjectiveError, match="no module named 'pkg.missing'"):
        FunctionObjective("pkg.missing:f").check()
    with pytest.raises(ObjectiveError, match="no module named 'pkg.missing'"):
        ModuleObjective("pkg.missing").check()
    FunctionObjective("pkg.mod:f").check()  # found, and pkg/__init__.py was not run


def test_a_missing_function_is_reported_from_the_source(tmp_path, monkeypatch, marker) -> None:
    path = _write(tmp_path / "obj.py", "def f(x):\n    return x\n", marker)
    FunctionObjective(f"{path}:f").check()
    with pytest.raises(ObjectiveError, match=r"obj.py' defines no 'g'"):
        FunctionObjective(f"{path}:g").check()
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ObjectiveError, match=r"obj.py' defines no 'g'"):
        FunctionObjective("obj:g").check()


def test_names_bound_in_every_static_way_are_found(tmp_path, marker) -> None:
    path = _write(
        tmp_path / "obj.py",
        """
        import math as m
        from os.path import join
        a, (b, c) = 1, (2, 3)
        if m.pi > 3:
            d = lambda x: x
        try:
            pass
        except ValueError as e:
            pass
        with open(__file__) as w:
            pass
        for k in []:
            pass
        class K:
            inner = 1
        def setup():
            global late
            late = K
        """,
        marker,
    )
    for name in ("m", "join", "a", "b", "c", "d", "w", "k", "K", "setup", "late"):
        FunctionObjective(f"{path}:{name}").check()
    with pytest.raises(ObjectiveError, match="defines no 'inner'"):
        FunctionObjective(f"{path}:inner").check()


@pytest.mark.parametrize(
    "body",
    [
        "globals()['g'] = len\n",
        "from os.path import *\n",
        "def __getattr__(name):\n    return len\n",
        "import sys\nsetattr(sys.modules[__name__], 'g', len)\n",
        "exec('g = len')\n",
    ],
)
def test_names_bound_dynamically_are_left_to_the_worker(tmp_path, marker, body) -> None:
    path = _write(tmp_path / "obj.py", body, marker)
    FunctionObjective(f"{path}:g").check()


def test_a_syntax_error_is_reported(tmp_path, marker) -> None:
    path = _write(tmp_path / "obj.py", "def f(x:\n    return x\n", marker)
    with pytest.raises(ObjectiveError, match="syntax error at line 2"):
        FunctionObjective(f"{path}:f").check()


def test_a_model_module_lacking_protocol_functions_is_reported(tmp_path, marker) -> None:
    half = _write(tmp_path / "half.py", "def generate_data():\n    return None\n", marker)
    with pytest.raises(ObjectiveError, match="defines no 'initialization', 'train', 'test_error'"):
        ModuleObjective(half).check()
    ModuleObjective(_write(tmp_path / "full.py", PROTOCOL_MODULE, marker)).check()


@pytest.mark.parametrize("name", ["optml.models.ann", "optml.models.lms"])
def test_the_bundled_model_modules_pass(name) -> None:
    ModuleObjective(name).check()


def test_optimize_reports_a_missing_objective_once_before_any_trial(tmp_path) -> None:
    study = create_study(space={"x": [1, 2]}, storage="memory://", seed=0)
    with pytest.raises(ObjectiveError, match="no such file"):
        study.optimize(f"{tmp_path / 'gone.py'}:f", n_trials=3, executor="serial")
    assert study.trials == []
