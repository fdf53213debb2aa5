"""Every corpus script: the exact hyperparameters, a metric, and a rewritten script that runs."""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from optml.detect import detect, rewrite

CORPUS = Path(__file__).parent / "corpus"


def corpus_scripts() -> list[Path]:
    return sorted(CORPUS.glob("*.py"))


def expected(script: Path) -> set[str]:
    """The hyperparameters a script's ``# expect:`` line names (the exact set to find)."""
    match = re.search(r"^# expect: (.*)$", script.read_text(), re.M)
    assert match, f"{script.name} has no '# expect:' line"
    return {name.strip() for name in match.group(1).split(",") if name.strip()}


def missing_packages(script: Path) -> list[str]:
    """Packages a script's ``# needs:`` line names that are not installed here."""
    match = re.search(r"^# needs: (.*)$", script.read_text(), re.M)
    names = [n.strip() for n in match.group(1).split(",")] if match else []
    return [n for n in names if importlib.util.find_spec(n) is None]


def env() -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": "torch"}


SCRIPTS = corpus_scripts()
_RUN = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("tuned", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("RESULT", json.dumps(module.optml_objective(**json.loads(sys.argv[2]))))
"""


def test_the_corpus_covers_each_framework():
    names = [p.name for p in SCRIPTS]
    assert len(names) >= 20
    for prefix in ("sk_", "torch_", "keras_"):
        assert sum(n.startswith(prefix) for n in names) >= 5, prefix


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_detects_exactly_the_expected_hyperparameters(script):
    found = detect(script)
    assert {hp.name for hp in found.hyperparameters} == expected(script)
    assert found.metric is not None
    for hp in found.hyperparameters:
        assert hp.line >= 1 and hp.column >= 1
        # the value shown is the literal at that line:column of the source
        rest = script.read_text().splitlines()[hp.line - 1][hp.column - 1 :]
        token = re.match(r"-?[0-9][0-9_.eE+-]*|'[^']*'|\"[^\"]*\"", rest)
        assert token is not None and ast.literal_eval(token.group()) == hp.value, (hp, rest)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_rewritten_script_compiles_and_keeps_the_rest(script):
    source = script.read_text()
    found = detect(script)
    code = rewrite(found)
    compile(code, str(script), "exec")
    assert script.read_text() == source
    for hp in found.hyperparameters:
        assert f'optml_params["{hp.name}"]' in code
    # comments survive
    for line in source.splitlines():
        if line.strip().startswith("#") and "expect:" not in line:
            assert line.strip() in code


def _run_tuned(script: Path, tmp_path: Path) -> float:
    found = detect(script)
    tuned = tmp_path / f"{script.stem}_optml.py"
    tuned.write_text(rewrite(found))
    values = {hp.name: hp.value for hp in found.hyperparameters}
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, str(tuned), json.dumps(values)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.rsplit("RESULT", 1)[1])
    assert math.isfinite(result)
    return result


# PyTorch's import alone takes seconds: those runs are slow tests.
RUNNABLE = [
    pytest.param(p, marks=pytest.mark.slow) if p.name.startswith("torch_") else p
    for p in SCRIPTS
    if not p.name.startswith("keras_")
]
KERAS = [p for p in SCRIPTS if p.name.startswith("keras_")]


@pytest.mark.parametrize("script", RUNNABLE, ids=lambda p: getattr(p, "stem", None))
def test_rewritten_script_runs_with_the_original_values(script, tmp_path):
    if missing_packages(script):
        pytest.skip(f"needs {', '.join(missing_packages(script))}")
    _run_tuned(script, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("script", KERAS, ids=lambda p: p.stem)
def test_rewritten_keras_script_runs(script, tmp_path):
    if missing_packages(script):
        pytest.skip(f"needs {', '.join(missing_packages(script))}")
    pytest.importorskip("keras")
    _run_tuned(script, tmp_path)
