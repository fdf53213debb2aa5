"""Schema versions of the SQL storage and the migrations between them.

``MIGRATIONS[i]`` takes a database from version ``i`` to version ``i + 1``; an empty database is
version 0. Each migration is a function of an open SQLAlchemy connection inside the transaction
that also records the new version, so a migration is applied entirely or not at all (DDL is
transactional in SQLite and PostgreSQL). A migration spells out its own DDL rather than using the
current table definitions in ``_sql.py``, because those will keep changing and a migration must
not: migration 1 must create version 1 forever.

To change the schema: append a function here, update the tables in ``_sql.py`` to match the
result, and extend ``tests/storage/test_migrations.py`` with a database of the previous version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def _v1_initial(conn: Connection) -> None:
    """Version 1: studies, trials, and the index that finds a study's best trial."""
    import sqlalchemy as sa

    md = sa.MetaData()
    sa.Table(
        "studies",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("space", sa.Text, nullable=False),
        sa.Column("sampler", sa.Text, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("user_attrs", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_trial_number", sa.Integer, nullable=False),
        # Never reuse the id of a deleted study in SQLite: ids are cached by open storages.
        sqlite_autoincrement=True,
    )
    sa.Table(
        "trials",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "study_id",
            sa.Integer,
            sa.ForeignKey("studies.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("value", sa.Float(53), nullable=True),
        sa.Column("value_is_nan", sa.Boolean, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("intermediate", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("logs", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(53), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("user_attrs", sa.Text, nullable=False),
        sa.UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
        # (study_id, state, value, number): counts per state, the best COMPLETE value in either
        # direction, and the lowest number among ties, all from the index alone.
        sa.Index("ix_trials_study_state_value", "study_id", "state", "value", "number"),
    )
    md.create_all(conn)


def _v2_peers(conn: Connection) -> None:
    """Version 2: several controllers on one study.

    Change numbers (``studies.seq``, ``trials.seq``) for reading only what changed; the study's
    trial budget; a key per trial for handing each point out once; trial heartbeats and where a
    trial ran; and ``runs``, one row per controller with its heartbeat and stop request.
    """
    import sqlalchemy as sa

    timestamp = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
    for ddl in (
        "ALTER TABLE studies ADD COLUMN seq BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE studies ADD COLUMN trial_budget INTEGER",
        "ALTER TABLE trials ADD COLUMN seq BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE trials ADD COLUMN param_key VARCHAR(64)",
        "ALTER TABLE trials ADD COLUMN host VARCHAR(255)",
        "ALTER TABLE trials ADD COLUMN runner VARCHAR(255)",
        f"ALTER TABLE trials ADD COLUMN heartbeat_at {timestamp}",
        # Existing trials get distinct change numbers; each study's counter starts past them.
        "UPDATE trials SET seq = id",
        "UPDATE studies SET seq = COALESCE("
        "(SELECT MAX(trials.seq) FROM trials WHERE trials.study_id = studies.id), 0)",
        "CREATE INDEX ix_trials_study_seq ON trials (study_id, seq)",
        "CREATE INDEX ix_trials_study_key ON trials (study_id, param_key)",
    ):
        conn.execute(sa.text(ddl))
    md = sa.MetaData()
    sa.Table("studies", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table(
        "runs",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "study_id",
            sa.Integer,
            sa.ForeignKey("studies.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_requested", sa.Boolean, nullable=False),
        sa.Index("ix_runs_study", "study_id", "finished_at"),
    )
    md.tables["runs"].create(conn)


# The ordered migrations; the code's schema version is len(MIGRATIONS).
MIGRATIONS: list[Callable[[Connection], None]] = [_v1_initial, _v2_peers]
