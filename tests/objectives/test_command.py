"""Command objectives: arguments without a shell, the opt-in shell, output, checks, clean-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optml.errors import ObjectiveError, SpecError
from optml.executors import TrialTask, run_trial
from optml.objectives import CommandObjective
from optml.spec import parse_spec
from proc_helpers import DAEMONIZING_SCRIPT, gone, kill

PY = sys.executable

# Writes the arguments it was given to argv.json and reports a result.
ARGV_SCRIPT = f"""#!{PY}
import json, sys
with open("argv.json", "w") as f:
    json.dump(sys.argv[1:], f)
print(json.dumps({{"loss": 0.5}}))
"""

NASTY = [
    "$(touch pwned)",
    "`touch pwned`",
    "hello world",
    "it works",
    "a\"b'c\\d",
    "; touch pwned #",
    "line one\nline two",
    "",
]


@pytest.fixture
def argv_script(tmp_path: Path) -> Path:
    script = tmp_path / "argv.py"
    script.write_text(ARGV_SCRIPT)
    script.chmod(0o755)
    return tmp_path


def _run(objective, params, timeout=None):
    return run_trial(objective, TrialTask(0, params, "loss", timeout=timeout))


@pytest.mark.parametrize("value", NASTY)
def test_a_value_is_exactly_one_argument_whatever_it_holds(argv_script, value) -> None:
    cmd = './argv.py "{v}" \'{v}\' {v} --opt={v} "x {v} y" {data}'
    out = _run(CommandObjective(cmd, cwd=str(argv_script), data="my data.csv"), {"v": value})
    assert out.state == "COMPLETE", out.error
    argv = json.loads((argv_script / "argv.json").read_text())
    assert argv == [value, value, value, f"--opt={value}", f"x {value} y", "my data.csv"]
    assert not (argv_script / "pwned").exists()


def test_numbers_keep_their_full_precision(argv_script) -> None:
    _run(CommandObjective("./argv.py {lr} {n}", cwd=str(argv_script)), {"lr": 0.1, "n": 3})
    assert json.loads((argv_script / "argv.json").read_text()) == ["0.1", "3"]


def test_shell_opt_in_quotes_each_value(argv_script) -> None:
    cmd = "./argv.py {v} {w} > out.txt && tail -n 1 out.txt"
    out = _run(
        CommandObjective(cmd, cwd=str(argv_script), shell=True),
        {"v": "$(touch pwned)", "w": "it works"},
    )
    assert out.state == "COMPLETE", out.error
    assert json.loads((argv_script / "argv.json").read_text()) == ["$(touch pwned)", "it works"]
    assert not (argv_script / "pwned").exists()


@pytest.mark.parametrize(
    "template",
    ['./echo.sh "{v}"', "./echo.sh '{v}'", "./echo.sh \\{v}", "./echo.sh $'{v}'", "echo `{v}`"],
)
def test_shell_refuses_a_placeholder_where_quoting_would_be_undone(template) -> None:
    with pytest.raises(ObjectiveError, match=r"placeholder \{v\} is inside quotes"):
        CommandObjective(template, shell=True)
    spec = {"name": "s", "objective": {"command": template, "shell": True}, "space": {"v": [1]}}
    with pytest.raises(SpecError, match=r"objective: command .*placeholder \{v\}"):
        parse_spec(spec)


def test_shell_accepts_quotes_elsewhere_and_a_plain_spec_accepts_quoted_placeholders() -> None:
    CommandObjective("python -c 'print(1)' {v} | tee \"log file\"", shell=True)
    spec = {"name": "s", "objective": {"command": './echo.sh "{v}"'}, "space": {"v": [1]}}
    assert parse_spec(spec).objective.shell is False


def test_bad_templates_are_refused_when_built() -> None:
    with pytest.raises(ObjectiveError, match="No closing quotation"):
        CommandObjective("./run.sh 'unclosed {v}")
    with pytest.raises(ObjectiveError, match="literal braces"):
        CommandObjective("./run.sh {v")
    with pytest.raises(SpecError, match="shell: true applies to a command objective only"):
        parse_spec({"name": "s", "objective": {"function": "m:f", "shell": True}, "space": {}})


def test_non_utf8_output_does_not_fail_the_trial() -> None:
    code = "import sys; sys.stdout.buffer.write(b'\\xff\\xfe caf\\xe9\\n0.25\\n')"
    out = _run(CommandObjective(f'{PY} -c "{code}"'), {})
    assert out.state == "COMPLETE", out.error
    assert out.metrics == {"loss": 0.25}
    code = "import sys; sys.stderr.buffer.write(b'bad \\xff byte'); sys.exit(3)"
    out = _run(CommandObjective(f'{PY} -c "{code}"'), {})
    assert out.state == "FAILED" and "status 3" in out.error and "bad \ufffd byte" in out.error


@pytest.mark.slow
def test_a_huge_output_takes_bounded_memory(tmp_path) -> None:
    size = 200_000_000
    program = f"""
import resource, sys
from optml.executors import TrialTask, run_trial
from optml.objectives import CommandObjective
cmd = 'sh -c "head -c {size} /dev/zero; echo; echo 0.5"'
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = run_trial(CommandObjective(cmd), TrialTask(0, {{}}, "loss"))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(out.state, out.metrics.get("loss"), after - before, file=sys.stderr)
"""
    result = subprocess.run(
        [PY, "-c", program],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    state, value, growth_kib = result.stderr.split()[-3:]
    assert (state, value) == ("COMPLETE", "0.5"), result.stderr
    # Peak memory (ru_maxrss, KiB on Linux) grew by far less than the output's size.
    assert int(growth_kib) * 1024 < size / 10, f"peak RSS grew {growth_kib} KiB for {size} bytes"


def test_check_finds_a_missing_cwd_or_program(tmp_path) -> None:
    with pytest.raises(ObjectiveError, match=r"objective.cwd '.*nowhere' does not exist"):
        CommandObjective("echo 1", cwd=str(tmp_path / "nowhere")).check()
    (tmp_path / "file").write_text("")
    with pytest.raises(ObjectiveError, match="is not a directory"):
        CommandObjective("echo 1", cwd=str(tmp_path / "file")).check()
    with pytest.raises(ObjectiveError, match=r"program './train.sh' does not exist"):
        CommandObjective("./train.sh {x}", cwd=str(tmp_path)).check()
    with pytest.raises(ObjectiveError, match=r"program 'no-such-program-x' is not on PATH"):
        CommandObjective("no-such-program-x {x}", cwd=str(tmp_path)).check()
    with pytest.raises(ObjectiveError, match="not executable"):
        CommandObjective("./file", cwd=str(tmp_path)).check()
    script = tmp_path / "train.sh"
    script.write_text("#!/bin/sh\necho 1\n")
    script.chmod(0o755)
    CommandObjective("./train.sh {x}", cwd=str(tmp_path)).check()
    CommandObjective(f"{PY} train.py", cwd=str(tmp_path)).check()
    CommandObjective("anything | goes", cwd=str(tmp_path), shell=True).check()


@pytest.mark.parametrize("mode", ["hang", "finish"])
def test_a_detached_daemon_ends_with_its_trial(tmp_path, mode) -> None:
    script = tmp_path / "daemon.py"
    script.write_text(f"#!{PY}\n" + DAEMONIZING_SCRIPT)
    script.chmod(0o755)
    pid = None
    try:
        timeout = 2.0 if mode == "hang" else None
        out = _run(
            CommandObjective("./daemon.py {mode}", cwd=str(tmp_path)), {"mode": mode}, timeout
        )
        assert out.state == ("TIMEOUT" if mode == "hang" else "COMPLETE"), out.error
        pid = int((tmp_path / "daemon.pid").read_text())
        assert gone(pid, within=5), "the daemon the trial started still runs"
    finally:
        if pid is None and (tmp_path / "daemon.pid").exists():
            pid = int((tmp_path / "daemon.pid").read_text())
        kill([pid] if pid else [])


def test_the_caller_stays_no_subreaper() -> None:
    from optml._process import is_subreaper

    before = is_subreaper()
    _run(CommandObjective("echo 1"), {})
    assert is_subreaper() == before
