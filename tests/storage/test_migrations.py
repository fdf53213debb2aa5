"""Schema versions: new databases, old databases upgraded with their data, newer ones refused."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from optml.errors import StorageError
from optml.storage import _migrations, _sql
from optml.storage._sql import SCHEMA_VERSION, SQLStorage
from optml.trial import TrialState

# Version 1 exactly as a release of OptML wrote it, in plain SQL, frozen: it must keep opening.
V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE studies (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(255) NOT NULL UNIQUE,
    state VARCHAR(16) NOT NULL,
    metrics TEXT NOT NULL,
    space TEXT NOT NULL,
    sampler TEXT NOT NULL,
    seed BIGINT NOT NULL,
    spec TEXT NOT NULL,
    user_attrs TEXT NOT NULL,
    created_at DATETIME,
    next_trial_number INTEGER NOT NULL
);
CREATE TABLE trials (
    id INTEGER NOT NULL PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    state VARCHAR(16) NOT NULL,
    params TEXT NOT NULL,
    value FLOAT,
    value_is_nan BOOLEAN NOT NULL,
    metrics TEXT NOT NULL,
    intermediate TEXT NOT NULL,
    error TEXT,
    logs TEXT,
    attempts INTEGER NOT NULL,
    started_at DATETIME,
    finished_at DATETIME,
    duration_s FLOAT,
    worker VARCHAR(255),
    user_attrs TEXT NOT NULL,
    CONSTRAINT uq_trials_study_number UNIQUE (study_id, number)
);
CREATE INDEX ix_trials_study_state_value ON trials (study_id, state, value, number);
INSERT INTO schema_version VALUES (1);
INSERT INTO studies VALUES (1, 'old', 'COMPLETE', '[{"name":"acc","direction":"maximize"}]',
    '{"x":{"type":"float"}}', '{"name":"random"}', 3, '{}', '{"who":"me"}',
    '2023-06-01 10:00:00.000000', 3);
INSERT INTO trials VALUES
    (1, 1, 0, 'COMPLETE', '{"x":0.1}', 0.7, 0, '{"acc":0.7}', '{"1":0.5}', NULL, NULL, 1,
     '2023-06-01 10:00:01.000000', '2023-06-01 10:00:02.500000', 1.5, 'w0', '{}'),
    (2, 1, 1, 'COMPLETE', '{"x":0.2}', NULL, 1, '{"acc":{"$float":"nan"}}', '{}', NULL, NULL,
     1, NULL, NULL, NULL, NULL, '{}'),
    (3, 1, 2, 'FAILED', '{"x":0.3}', NULL, 0, '{}', '{}', 'boom', 'log', 2, NULL, NULL, NULL,
     NULL, '{}');
"""


def make_v1(path) -> str:
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def version_of(path) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT version FROM schema_version").fetchone()[0]
    finally:
        conn.close()


def check_v1_data(storage: SQLStorage) -> None:
    study = storage.load_study("old")
    assert study.metrics[0].direction == "maximize" and study.user_attrs == {"who": "me"}
    assert study.created_at is not None and study.created_at.isoformat().endswith("+00:00")
    trials = storage.get_trials(study.id)
    assert [(t.number, t.state) for t in trials] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.COMPLETE),
        (2, TrialState.FAILED),
    ]
    assert trials[0].intermediate == {1: 0.5} and trials[0].duration_s == 1.5
    assert trials[1].value != trials[1].value  # NaN
    assert trials[2].error == "boom" and trials[2].attempts == 2
    assert storage.get_best_trial(study.id).number == 0
    # Numbering goes on where it stopped.
    assert storage.create_trial(study.id, {"x": 0.4}).number == 3


def test_new_database_gets_the_current_schema(tmp_path):
    from optml.samplers._base import Metric

    path = tmp_path / "new.db"
    storage = SQLStorage(f"sqlite:///{path}")
    # The file is created by the first write, not by opening.
    storage.create_study("s", metrics=[Metric("value")], space={}, sampler={}, seed=0)
    storage.close()
    assert version_of(path) == SCHEMA_VERSION == len(_migrations.MIGRATIONS)
    # What the migrations built is what the code queries: same tables, columns, indexes.
    engine = sa.create_engine(f"sqlite:///{path}")
    inspector = sa.inspect(engine)
    for table in (_sql.studies, _sql.trials, _sql.runs, _sql.schema_version):
        built = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
        assert built == {c.name: c.nullable for c in table.columns}, table.name
    assert {i["name"] for i in inspector.get_indexes("trials")} == {
        i.name for i in _sql.trials.indexes
    }
    engine.dispose()


def test_version_1_database_opens_with_data_intact(tmp_path):
    path = tmp_path / "v1.db"
    storage = SQLStorage(make_v1(path))
    check_v1_data(storage)
    storage.close()
    assert version_of(path) == SCHEMA_VERSION


def test_version_1_database_works_with_several_controllers(tmp_path):
    """Version 2 added change numbers, budgets, keys, heartbeats and runs to version 1 data."""
    storage = SQLStorage(make_v1(tmp_path / "v1.db"))
    study = storage.load_study("old")
    assert study.budget is None
    everything, seq = storage.changed_trials(study.id, 0)
    assert [t.number for t in everything] == [0, 1, 2] and everything[0].host is None
    storage.set_study_budget(study.id, 5)
    got = storage.reserve_trials(
        study.id, [({"x": 0.4}, "k"), ({"x": 0.5}, "k2"), ({"x": 0.6}, None)], worker="h:1"
    )
    assert [t.number for t in got.trials] == [3, 4] and got.budget_spent
    changed, _ = storage.changed_trials(study.id, seq)
    assert [t.number for t in changed] == [3, 4]  # numbered past the old trials' changes
    run = storage.start_run(study.id, "h:1")
    assert storage.end_run(run, "COMPLETE", 30) == "COMPLETE"
    storage.close()


def test_old_database_is_upgraded_in_order(tmp_path, monkeypatch):
    """A version 2 (here a stand-in) is applied to a version 1 file on open, data intact."""
    applied = []

    def v2_add_column(conn):
        applied.append(2)
        conn.execute(sa.text("ALTER TABLE studies ADD COLUMN description TEXT"))
        conn.execute(sa.text("UPDATE studies SET description = 'from v2'"))

    monkeypatch.setattr(_sql, "MIGRATIONS", [*_migrations.MIGRATIONS, v2_add_column])
    monkeypatch.setattr(_sql, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    path = tmp_path / "v1.db"
    storage = SQLStorage(make_v1(path))
    check_v1_data(storage)
    storage.close()
    assert applied == [2] and version_of(path) == SCHEMA_VERSION + 1
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT description FROM studies").fetchall() == [("from v2",)]
    conn.close()
    SQLStorage(f"sqlite:///{path}").close()  # already current: nothing applied again
    assert applied == [2]


def test_failed_migration_changes_nothing(tmp_path, monkeypatch):
    def v2_broken(conn):
        conn.execute(sa.text("ALTER TABLE studies ADD COLUMN description TEXT"))
        raise RuntimeError("migration bug")

    monkeypatch.setattr(_sql, "MIGRATIONS", [*_migrations.MIGRATIONS, v2_broken])
    monkeypatch.setattr(_sql, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    path = tmp_path / "v1.db"
    url = make_v1(path)
    with pytest.raises(RuntimeError, match="migration bug"):
        SQLStorage(url)
    assert version_of(path) == 1
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(studies)")]
    conn.close()
    assert "description" not in columns


def test_database_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "future.db"
    url = make_v1(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 5,))
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match=f"schema version {SCHEMA_VERSION + 5}.*upgrade OptML"):
        SQLStorage(url)


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "optuna.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="not an OptML database"):
        SQLStorage(f"sqlite:///{path}")


@pytest.mark.infra
def test_postgres_schema_is_created_once_and_versioned(postgres_url):
    from optml.samplers._base import Metric

    first = SQLStorage(postgres_url)
    first.create_study("pg", metrics=[Metric("loss")], space={}, sampler={}, seed=0)
    first.close()
    second = SQLStorage(postgres_url)  # opens the existing schema; nothing recreated
    assert second.load_study("pg").name == "pg"
    second.close()
    engine = sa.create_engine(_sql._engine_url(postgres_url))
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT version FROM schema_version")).all() == [
            (SCHEMA_VERSION,)
        ]
        conn.execute(sa.text("UPDATE schema_version SET version = 99"))
    engine.dispose()
    with pytest.raises(StorageError, match="schema version 99"):
        SQLStorage(postgres_url)
