"""The `optml` command's front door: user text printed as text, clear one-line errors for bad
specs, URLs and paths, nothing written for a spec that fails, a database that vanishes noticed."""

from __future__ import annotations

import os
import pty
import select
import sqlite3
import subprocess
import time

import pytest

from optml import load_study
from optml.errors import StudyNotFoundError
from optml.storage import open_storage
from optml.trial import TrialState

OBJECTIVES = """
import time

def marked(x):
    if x == "a[/]":
        raise ValueError("bad [/] x")
    return 1.0

def fails(x):
    raise ValueError(f"always broken [/i] for {x}")

def slow(a):
    time.sleep(0.2)
    return float(a)

def good(x):
    return float(x)
"""


@pytest.fixture
def objectives(cli):
    cli.write("objectives.py", OBJECTIVES)
    return cli


def one_error_line(result) -> str:
    """The single line a failed command printed; fails unless it printed exactly one."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def study_names(db) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "studies" not in tables:
            return []
        return [r[0] for r in con.execute("SELECT name FROM studies")]


# -- 1. user text is never read as markup ---------------------------------------------------
def test_markup_in_names_values_and_errors_is_printed_as_text(objectives) -> None:
    cli = objectives
    cli.write(
        "markup.yaml",
        """
        name: plain
        objective: {function: objectives.py:marked}
        space: {x: ["a[/]", "b[bold]"]}
        algorithm: grid
        execution: {workers: 1}
        """,
    )
    for name in ("a[bold]z", "[i]x"):
        result = cli.run("run", "markup.yaml", "--name", name, "--storage", cli.storage)
        assert result.returncode == 0, result.stderr
        assert name in result.stdout and "a[/]" in result.stdout
        assert "bad [/] x" in result.stdout
        shown = cli.run("show", name, "--storage", cli.storage)
        assert shown.returncode == 0, shown.stderr
        assert name in shown.stdout and "b[bold]" in shown.stdout and "bad [/] x" in shown.stdout
    listing = cli.run("studies", "--storage", cli.storage)
    assert listing.returncode == 0, listing.stderr
    assert "a[bold]z" in listing.stdout and "[i]x" in listing.stdout
    (cli.workdir / "d[").mkdir()
    exported = cli.run("export", "[i]x", "-o", "d[/b].json", "--storage", cli.storage)
    assert exported.returncode == 0 and "d[/b].json" in exported.stderr


# -- 2. control characters in study names ---------------------------------------------------
@pytest.mark.parametrize("name", ["two\nlines", "bell\x07", "esc\x1b[31mred", "tab\there"])
def test_control_characters_in_a_study_name_are_refused(objectives, name) -> None:
    cli = objectives
    cli.write(
        "ok.yaml",
        """
        name: fine
        objective: {function: objectives.py:good}
        space: {x: [1]}
        algorithm: grid
        """,
    )
    line = one_error_line(cli.run("run", "ok.yaml", "--name", name, "--storage", cli.storage))
    assert "control character" in line
    assert not cli.db.exists(), "a refused name must write nothing"


def test_control_characters_in_the_spec_name_are_refused(objectives) -> None:
    cli = objectives
    cli.write(
        "bad.yaml",
        'name: "two\\nlines"\nobjective: {function: objectives.py:good}\nspace: {x: [1]}\n',
    )
    line = one_error_line(cli.run("run", "bad.yaml", "--storage", cli.storage))
    assert "bad.yaml: name:" in line and "control character" in line


# -- 3. spec and grid files -----------------------------------------------------------------
def test_spec_that_is_not_utf8_names_the_file_and_offset(objectives) -> None:
    cli = objectives
    text = b"name: s\nobjective: {function: objectives.py:good}\nspace: {x: [1, \xff]}\n"
    (cli.workdir / "latin.yaml").write_bytes(text)
    line = one_error_line(cli.run("run", "latin.yaml", "--storage", cli.storage))
    offset = text.index(b"\xff")
    assert "latin.yaml:3:" in line and f"offset {offset}" in line
    assert "UTF-8" in line


def test_grid_file_that_is_not_utf8_names_the_file_and_offset(objectives) -> None:
    cli = objectives
    (cli.workdir / "grid.txt").write_bytes(b"# x\n1\n\xfe2\n")
    cli.write("g.yaml", "name: g\nobjective: {function: objectives.py:good}\ngrid_file: grid.txt\n")
    line = one_error_line(cli.run("run", "g.yaml", "--storage", cli.storage))
    assert "grid.txt:3:" in line and "offset 6" in line and "UTF-8" in line


def test_yaml_alias_bomb_is_refused_quickly(objectives) -> None:
    cli = objectives
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "name: s\nobjective: {function: objectives.py:good}\n" + "\n".join(levels)
    cli.write("bomb.yaml", text + "\nspace: {x: *i}\n")
    assert len(text) < 1000
    result = cli.run("run", "bomb.yaml", "--storage", cli.storage, timeout=60)
    line = one_error_line(result)
    assert result.returncode == 2 and "bomb.yaml" in line and "alias" in line


def test_duplicate_yaml_key_is_an_error_naming_key_and_line(objectives) -> None:
    cli = objectives
    cli.write(
        "dup.yaml",
        "name: s\nobjective: {function: objectives.py:good}\nspace: {x: [1, 2], x: [3, 4]}\n",
    )
    line = one_error_line(cli.run("run", "dup.yaml", "--storage", cli.storage))
    assert "dup.yaml:3:" in line and "duplicate key 'x'" in line


# -- 4. storage URLs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite://bad.db", "three slashes"),
        ("sqlite:///", "names no file"),
        ("postgresql+asyncpg://u:secret@localhost/db", "synchronous driver"),
        ("notadb", "not understood"),
    ],
)
def test_bad_storage_url_is_one_line_naming_it(objectives, url, words) -> None:
    cli = objectives
    cli.write(
        "ok.yaml",
        "name: ok\nobjective: {function: objectives.py:good}\nspace: {x: [1]}\nalgorithm: grid\n",
    )
    result = cli.run("run", "ok.yaml", "--storage", url)
    line = one_error_line(result)
    assert result.returncode == 2 and words in line, line
    assert "secret" not in line
    assert not list(cli.workdir.glob("*.db")), "nothing may be created"


def test_a_file_that_is_not_a_database_is_one_line_and_left_alone(objectives) -> None:
    cli = objectives
    cli.write(
        "ok.yaml",
        "name: ok\nobjective: {function: objectives.py:good}\nspace: {x: [1]}\nalgorithm: grid\n",
    )
    notes = cli.workdir / "notes.db"
    notes.write_bytes(b"my notes, not a database\n" * 200)
    before = notes.read_bytes()
    for args in (["run", "ok.yaml"], ["studies"], ["show", "ok"]):
        line = one_error_line(cli.run(*args, "--storage", f"sqlite:///{notes}"))
        assert str(notes) in line and "not a SQLite database" in line, line
    assert notes.read_bytes() == before


# -- 5. a spec that fails leaves no study behind --------------------------------------------
@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("execution: {backend: slurm}", "backend"),
        ("seed: -5", "seed"),
        ("seed: 18446744073709551617", "seed"),
        ("space: {x: {uniform: [0, 1]}}", "x"),
        ("space: {x: {int: [0, 1000000000000000]}}", "x"),
        ("objective: {function: missing.py:good}", "missing.py"),
    ],
)
def test_invalid_spec_leaves_the_name_free_for_the_fixed_one(objectives, bad, words) -> None:
    cli = objectives
    fields = {
        "name": "same",
        "objective": "{function: objectives.py:good}",
        "space": "{x: [1, 2]}",
        "algorithm": "grid",
    }
    key, _, value = bad.partition(": ")
    broken = {**fields, key: value}
    cli.write("broken.yaml", "".join(f"{k}: {v}\n" for k, v in broken.items()))
    result = cli.run("run", "broken.yaml", "--storage", cli.storage, timeout=60)
    line = one_error_line(result)
    assert result.returncode == 2 and words in line, line
    assert "same" not in study_names(cli.db), "a failed spec wrote its study"
    cli.write("fixed.yaml", "".join(f"{k}: {v}\n" for k, v in fields.items()))
    fixed = cli.run("run", "fixed.yaml", "--storage", cli.storage)
    assert fixed.returncode == 0, fixed.stderr
    assert len(load_study("same", storage=cli.storage).trials) == 2


# -- 6. the database vanishing mid-run ------------------------------------------------------
SLOW = """
    name: slow
    objective: {function: objectives.py:slow}
    space: {a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]}
    algorithm: grid
    execution: {workers: 2}
"""


def _wait_for_a_completed_trial(cli, proc) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with sqlite3.connect(cli.db) as con:
                if con.execute("SELECT COUNT(*) FROM trials WHERE state='COMPLETE'").fetchone()[0]:
                    return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError("the run did not progress")


@pytest.mark.parametrize("how", ["deleted", "replaced", "overwritten"])
def test_database_vanishing_mid_run_stops_it_with_an_error(objectives, how) -> None:
    cli = objectives
    cli.write("slow.yaml", SLOW)
    proc = cli.start("run", "slow.yaml", "--storage", cli.storage, "--quiet")
    try:
        _wait_for_a_completed_trial(cli, proc)
        if how == "deleted":
            for suffix in ("", "-wal", "-shm"):
                cli.db.with_name(cli.db.name + suffix).unlink(missing_ok=True)
        elif how == "replaced":
            other = cli.workdir / "other.db"
            other.write_bytes(b"")
            os.replace(other, cli.db)
        else:
            with open(cli.db, "r+b") as f:
                f.write(b"garbage, not SQLite" * 100)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode not in (0, None), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and str(cli.db) in lines[0] and how in lines[0], err


# -- 7. export, show and studies ------------------------------------------------------------
def _study_with_trials(cli, n: int, params: int = 1) -> None:
    from optml import create_study

    space = {f"parameter_number_{i}": {"uniform": [0, 1]} for i in range(params)}
    study = create_study("many", space=space, storage=cli.storage, seed=0, sampler="random")
    for i in range(n):
        study.storage.create_trial(
            study.id,
            {name: 0.5 for name in space},
            state=TrialState.COMPLETE,
            value=float(i) if i != 7 else -1.0,
            duration_s=0.1,
        )
    study.storage.close()


def test_export_to_a_missing_directory_or_a_directory_is_one_line(cli) -> None:
    _study_with_trials(cli, 3)
    line = one_error_line(cli.run("export", "many", "-o", "no/such/dir/x.csv", "-s", cli.storage))
    assert "no/such/dir" in line and "does not exist" in line
    (cli.workdir / "folder").mkdir()
    line = one_error_line(cli.run("export", "many", "-o", "folder", "-s", cli.storage))
    assert "folder" in line and "is a directory" in line


def _run_in_terminal(cli, *args: str, columns: int = 200) -> str:
    """Run the CLI with a pseudo-terminal as its stdout, as a user at a terminal would."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        cli.command(*args),
        cwd=cli.workdir,
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**cli.env(), "COLUMNS": str(columns), "TERM": "dumb"},
    )
    os.close(follower)
    chunks = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=10)
    finally:
        os.close(leader)
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 0, err
    return b"".join(chunks).decode()


def _table_numbers(text: str) -> list[int]:
    numbers = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│") if c.strip()]
        if cells and cells[0].isdigit():
            numbers.append(int(cells[0]))
    return numbers


def test_show_on_a_terminal_shows_the_last_trials_and_the_best(cli) -> None:
    _study_with_trials(cli, 200)
    text = _run_in_terminal(cli, "show", "many", "--storage", cli.storage)
    numbers = _table_numbers(text)
    assert numbers == [7, *range(150, 200)], numbers
    assert "149 earlier trial(s) not shown" in text and "--all" in text
    assert _table_numbers(_run_in_terminal(cli, "show", "many", "--all", "-s", cli.storage)) == (
        list(range(200))
    )
    limited = _run_in_terminal(cli, "show", "many", "--limit", "5", "-s", cli.storage)
    assert _table_numbers(limited) == [7, 195, 196, 197, 198, 199]
    # Piped into a file or another program: every trial.
    piped = cli.run("show", "many", "--storage", cli.storage)
    assert _table_numbers(piped.stdout) == list(range(200))


def test_show_rejects_a_negative_limit(cli) -> None:
    _study_with_trials(cli, 3)
    line = one_error_line(cli.run("show", "many", "--limit", "-1", "--storage", cli.storage))
    assert "--limit" in line


def test_show_keeps_the_trial_number_visible_on_80_columns(cli) -> None:
    _study_with_trials(cli, 12, params=9)
    result = subprocess.run(
        cli.command("show", "many", "--storage", cli.storage),
        cwd=cli.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**cli.env(), "COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert _table_numbers(result.stdout) == list(range(12))
    assert "Not shown for want of width" in result.stdout


def test_studies_lists_in_one_statement_without_reading_trials(cli) -> None:
    import sqlalchemy as sa

    _study_with_trials(cli, 300)
    storage = open_storage(cli.storage)
    statements: list[str] = []
    sa.event.listen(storage._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    (summary,) = storage.list_studies()
    storage.close()
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 1, queries
    assert "trials.params" not in queries[0] and "trials.error" not in queries[0]
    assert summary.counts == {"COMPLETE": 300} and summary.best_value == -1.0


# -- 8. runs that cannot succeed ------------------------------------------------------------
def test_a_run_in_which_no_trial_completed_exits_non_zero(objectives) -> None:
    cli = objectives
    cli.write(
        "fails.yaml",
        "name: f\nobjective: {function: objectives.py:fails}\nspace: {x: [1, 2]}\n"
        "algorithm: grid\nexecution: {workers: 1}\n",
    )
    result = cli.run("run", "fails.yaml", "--storage", cli.storage)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert "no trial" in line and "always broken [/i]" in line
    assert "★ best" not in result.stdout
    again = cli.run("run", "fails.yaml", "--storage", cli.storage)
    assert again.returncode == 0, "nothing ran this time: not a failed run"
    assert all(t.state is TrialState.FAILED for t in load_study("f", storage=cli.storage).trials)


def test_loading_a_study_from_a_missing_file_does_not_create_it(cli) -> None:
    with pytest.raises(StudyNotFoundError, match=str(cli.db)):
        load_study("x", storage=cli.storage)
    assert not cli.db.exists()
