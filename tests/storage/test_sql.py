"""What only the SQL storage promises: URLs, SQLite settings, strict JSON, threads."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa

from optml.errors import DuplicateStudyError, MissingDependencyError, StorageError
from optml.samplers._base import Metric
from optml.storage import open_storage
from optml.storage._sql import SQLStorage
from optml.trial import TrialState


def new_study(storage, name="s"):
    return storage.create_study(name, metrics=[Metric("loss")], space={}, sampler={}, seed=0)


def test_open_storage_dispatches_sql_urls(sqlite_url):
    storage = open_storage(sqlite_url)
    assert isinstance(storage, SQLStorage) and storage.url == sqlite_url
    storage.close()


def test_sqlite_pragmas(sqlite_url):
    storage = SQLStorage(sqlite_url)
    with storage._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    storage.close()


def test_relative_sqlite_path_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = SQLStorage("sqlite:///rel.db")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    new_study(storage)  # still the file it named, not a new one in the new directory
    assert (tmp_path / "rel.db").exists()
    assert not (tmp_path / "elsewhere" / "rel.db").exists()
    storage.close()
    monkeypatch.chdir(tmp_path)
    reopened = SQLStorage("sqlite:///rel.db")
    assert reopened.load_study("s").name == "s"
    reopened.close()


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        SQLStorage(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite:::bad", "not a url"])
def test_bad_urls(url):
    with pytest.raises(StorageError):
        open_storage(url) if url != "mysql://u@h/db" else SQLStorage(url)


def test_missing_postgres_driver_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name == "psycopg":
            raise ImportError("no psycopg")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(MissingDependencyError, match=r"optml\[postgres\]"):
        SQLStorage("postgresql://u@127.0.0.1:1/db")


def test_unreachable_postgres_is_a_storage_error():
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError, match="cannot open storage postgresql://u:\\*\\*\\*@"):
        SQLStorage("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2")


def test_in_memory_sqlite_is_shared_by_threads():
    storage = SQLStorage("sqlite://")
    study = new_study(storage)
    threads = [
        threading.Thread(target=lambda: [storage.create_trial(study.id, {}) for _ in range(10)])
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [t.number for t in storage.get_trials(study.id)] == list(range(30))


def test_threads_share_one_file(sqlite_url):
    storage = SQLStorage(sqlite_url)
    study = new_study(storage)
    claimed: list[int] = []
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(15):
                storage.create_trial(study.id, {})
                trial = storage.claim_trial(study.id, worker=threading.current_thread().name)
                if trial is not None:
                    claimed.append(trial.number)
                    storage.update_trial(
                        study.id, trial.number, state=TrialState.COMPLETE, value=1.0
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [t.number for t in storage.get_trials(study.id)] == list(range(60))
    assert len(claimed) == len(set(claimed))
    storage.close()


def test_json_columns_hold_strict_json(sqlite_url):
    storage = SQLStorage(sqlite_url)
    study = new_study(storage)
    storage.create_trial(
        study.id,
        {"x": np.float64(0.5), "n": np.int64(3), "v": np.array([1, 2])},
        state=TrialState.COMPLETE,
        value=np.float32(math.nan),
        metrics={"loss": math.nan, "other": -math.inf},
        intermediate={np.int64(2): np.float64(math.inf)},
    )
    got = storage.get_trial(study.id, 0)
    assert got.params == {"x": 0.5, "n": 3, "v": [1, 2]}
    assert type(got.params["n"]) is int
    assert math.isnan(got.value) and got.intermediate == {2: math.inf}

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in stored JSON"))

    with storage._engine.connect() as conn:
        row = conn.execute(sa.text("SELECT params, metrics, intermediate, value FROM trials")).one()
    assert strict(row.metrics) == {"loss": {"$float": "nan"}, "other": {"$float": "-inf"}}
    strict(row.params), strict(row.intermediate)
    assert row.value is None
    storage.close()


def test_unserialisable_values_name_the_field(sqlite_url):
    storage = SQLStorage(sqlite_url)
    study = new_study(storage)
    with pytest.raises(StorageError, match="params cannot be stored as JSON"):
        storage.create_trial(study.id, {"f": object()})
    with pytest.raises(StorageError, match="user_attrs"):
        storage.set_study_attrs(study.id, {"f": object()})
    assert storage.create_trial(study.id, {}).number == 0
    storage.close()


def test_naive_datetimes_are_taken_as_utc(sqlite_url):
    storage = SQLStorage(sqlite_url)
    study = new_study(storage)
    t = storage.create_trial(study.id, {}, started_at=datetime(2024, 3, 1, 12, 0))
    assert t.started_at == datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert storage.get_trial(study.id, 0).started_at == t.started_at
    storage.close()


def test_bad_study_input(sqlite_url):
    storage = SQLStorage(sqlite_url)
    with pytest.raises(StorageError, match="255"):
        storage.create_study("x" * 300, metrics=[Metric("m")], space={}, sampler={}, seed=0)
    with pytest.raises(StorageError, match="metric"):
        storage.create_study("x", metrics=[], space={}, sampler={}, seed=0)
    study = new_study(storage)
    with pytest.raises(StorageError, match="RUNNING"):
        storage.set_study_state(study.id, "BOGUS")
    storage.close()


def test_repr_hides_password():
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError) as info:
        SQLStorage("postgresql://u:hunter2@127.0.0.1:1/db?connect_timeout=2")
    assert "hunter2" not in str(info.value)


def test_another_process_closing_the_file_keeps_the_write_ahead_log_of_a_live_writer(tmp_path):
    """Each write checks the file's header; reading it through a descriptor opened and closed
    there dropped every POSIX lock this process held on the file, so a reader in another process
    that then closed took itself for the last user and deleted the WAL under this writer, whose
    later writes no other process could see."""
    import subprocess
    import sys

    from optml.samplers._base import Metric

    path = tmp_path / "live.db"
    storage = SQLStorage(f"sqlite:///{path}")
    study = storage.create_study("s", metrics=[Metric("loss")], space={}, sampler={}, seed=0)
    storage.create_trial(study.id, {"x": 1})

    def count_elsewhere() -> int:
        code = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "print(c.execute('SELECT COUNT(*) FROM trials').fetchone()[0]); c.close()"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert count_elsewhere() == 1  # a reader comes and goes
    assert (tmp_path / "live.db-wal").exists()
    storage.create_trial(study.id, {"x": 2})
    assert count_elsewhere() == 2
    storage.close()


def _open_new_file_at(path: str, start: float, results) -> None:
    while time.time() < start:
        pass
    try:
        storage = open_storage(f"sqlite:///{path}")
        try:
            storage.create_study(
                "race",
                metrics=[Metric("value")],
                space={"x": [1, 2]},
                sampler={"name": "grid"},
                seed=0,
            )
        except DuplicateStudyError:
            pass
        storage.list_studies()
        storage.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_processes_opening_a_new_sqlite_file_at_once_all_get_in(tmp_path) -> None:
    """Controllers started together on a new file: the first creates it and switches it to WAL
    while the others open it; none may fail with 'database is locked' (the old code failed this
    test about every other run)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(30):
        results = ctx.Queue()
        start = time.time() + 0.3
        procs = [
            ctx.Process(
                target=_open_new_file_at,
                args=(str(tmp_path / f"r{round_}.db"), start + delay, results),
            )
            for delay in (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
        outcomes += [results.get(timeout=5) for _ in procs]
    assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"]


class _Statements:
    """Counts the statements a storage sends (one per execute or executemany: a round trip
    each) and the transactions it commits."""

    def __init__(self, storage: SQLStorage) -> None:
        self.sent = self.commits = 0
        sa.event.listen(storage._engine, "before_cursor_execute", self._sent)
        sa.event.listen(storage._engine, "commit", self._committed)

    def _sent(self, *args: object) -> None:
        self.sent += 1

    def _committed(self, *args: object) -> None:
        self.commits += 1

    def take(self) -> tuple[int, int]:
        out = (self.sent, self.commits)
        self.sent = self.commits = 0
        return out


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.infra)])
def test_a_batch_of_finished_trials_costs_one_transaction_and_a_few_statements(kind, request):
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url")
    storage = SQLStorage(url)
    study = new_study(storage)
    n = 32
    storage.reserve_trials(study.id, [({"x": i}, None) for i in range(2 * n)], worker="w")
    count = _Statements(storage)

    def finished(i: int) -> dict:
        return {"state": TrialState.COMPLETE, "value": float(i), "metrics": {"loss": float(i)}}

    for i in range(n):
        storage.update_trial(study.id, i, owner="w", **finished(i))
    one_by_one = count.take()
    written = storage.update_trials(study.id, {i: finished(i) for i in range(n, 2 * n)}, owner="w")
    together = count.take()
    assert all(t is not None and t.state is TrialState.COMPLETE for t in written.values())
    assert one_by_one[1] == n and together[1] == 1
    # One by one: at least two statements a trial; together: a handful for the whole batch.
    assert one_by_one[0] >= 2 * n
    assert together[0] <= 5, together
    storage.close()
