"""SQL storage (SQLAlchemy Core): a SQLite file by default, or a PostgreSQL server.

Concurrency design, since several processes may drive one study at once:

- SQLite runs in WAL mode (readers never block the writer) with ``synchronous=NORMAL`` and a long
  busy timeout, and every write transaction starts with ``BEGIN IMMEDIATE``: it takes the write
  lock before reading anything, so two writers queue on the lock instead of failing with
  "database is locked" when both try to upgrade a read lock. A write that still finds the file
  locked (busy timeout spent) is retried whole, which is safe because it was rolled back.
- Trial numbers come from a ``next_trial_number`` counter on the study row, incremented in the
  same transaction that inserts the trial; on PostgreSQL the row lock of that UPDATE orders
  concurrent creators, so numbers are 0, 1, 2, ... without gaps or repeats.
- ``claim_trial`` selects the lowest WAITING (or STALE) trial ``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL (the write lock already serialises SQLite) and moves it to RUNNING only if it is
  still claimable.
- Several controllers share a study (see the Storage contract). Every transaction that writes
  trials locks the study row first (one lock order: no deadlocks), and every write but a
  heartbeat takes the study's next change number (``studies.seq``) while holding that lock, so
  change numbers commit in order and ``changed_trials(since)`` misses nothing. The same lock
  makes ``reserve_trials`` count the budget and check keys against every committed trial.
- A PostgreSQL transaction that fails because the server went away (or a pooled connection it
  dropped) is retried, whole, on a fresh connection for up to ``reconnect_s`` seconds: a
  restarted server costs the controllers a pause, not the study. (A commit whose answer is lost
  with the connection is the one ambiguous case; it is retried like the rest.) This replaces
  ``pool_pre_ping``, which costs a round trip per transaction.

A SQLite file is created by the first write (creating a study), never by a read: looking up a
study in a file that is not there says so instead of leaving an empty database behind. Every write
first checks that the path still names the file opened (same device and inode), so a database
deleted or replaced while in use stops the run with an error instead of writing into a file that
no longer has a name.

Values that JSON cannot hold (NaN, +-inf) are stored tagged in the JSON columns, and as NULL plus a
``value_is_nan`` flag in the float ``value`` column (SQLite turns NaN into NULL anyway). Datetimes
are stored in UTC and come back timezone-aware in UTC; naive datetimes are taken to be UTC.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from optml import _interrupt
from optml.errors import (
    DuplicateStudyError,
    LostTrialError,
    StorageError,
    StudyNotFoundError,
    missing_dependency,
)
from optml.ranking import best_trial
from optml.storage import safe_url
from optml.storage._base import (
    STUDY_STATES,
    Reservation,
    Storage,
    StudyRecord,
    StudySummary,
    TrialRow,
    check_owner,
    check_page,
    check_study_name,
    check_update,
    stale_changes,
    stored_constraints,
)
from optml.storage._migrations import MIGRATIONS
from optml.trial import Metric, Trial, TrialState

SCHEMA_VERSION = len(MIGRATIONS)

_T = TypeVar("_T")


class _UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps ``timestamptz``. SQLite keeps naive UTC text in SQLAlchemy's own format
    (``2024-01-02 03:04:05.678901``), parsed here with ``datetime.fromisoformat``, which is several
    times faster than SQLAlchemy's regular-expression parser on large reads.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        value = _utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            # Stored naive UTC by process_bind_param; one C call parses it timezone-aware.
            value = datetime.fromisoformat(value + "+00:00" if len(value) <= 26 else value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value if value.tzinfo is UTC else value.astimezone(UTC)


# The current schema; it must equal what the migrations in _migrations.py build (a test checks).
_md = sa.MetaData()
schema_version = sa.Table("schema_version", _md, sa.Column("version", sa.Integer, nullable=False))
studies = sa.Table(
    "studies",
    _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("metrics", sa.Text, nullable=False),
    sa.Column("space", sa.Text, nullable=False),
    sa.Column("sampler", sa.Text, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("user_attrs", sa.Text, nullable=False),
    sa.Column("created_at", _UTCDateTime, nullable=True),
    sa.Column("next_trial_number", sa.Integer, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("trial_budget", sa.Integer, nullable=True),
    sqlite_autoincrement=True,
)
trials = sa.Table(
    "trials",
    _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False
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
    sa.Column("started_at", _UTCDateTime, nullable=True),
    sa.Column("finished_at", _UTCDateTime, nullable=True),
    sa.Column("duration_s", sa.Float(53), nullable=True),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("user_attrs", sa.Text, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("param_key", sa.String(64), nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("runner", sa.String(255), nullable=True),
    sa.Column("heartbeat_at", _UTCDateTime, nullable=True),
    sa.UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
    sa.Index("ix_trials_study_state_value", "study_id", "state", "value", "number"),
    sa.Index("ix_trials_study_seq", "study_id", "seq"),
    sa.Index("ix_trials_study_key", "study_id", "param_key"),
)
runs = sa.Table(
    "runs",
    _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "study_id", sa.Integer, sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("owner", sa.String(255), nullable=False),
    sa.Column("started_at", _UTCDateTime, nullable=False),
    sa.Column("heartbeat_at", _UTCDateTime, nullable=False),
    sa.Column("finished_at", _UTCDateTime, nullable=True),
    sa.Column("stop_requested", sa.Boolean, nullable=False),
    sa.Index("ix_runs_study", "study_id", "finished_at"),
)

# Trial columns in the order _row_to_trial reads them.
_TRIAL_COLS = (
    trials.c.number,
    trials.c.state,
    trials.c.params,
    trials.c.value,
    trials.c.value_is_nan,
    trials.c.metrics,
    trials.c.intermediate,
    trials.c.error,
    trials.c.logs,
    trials.c.attempts,
    trials.c.started_at,
    trials.c.finished_at,
    trials.c.duration_s,
    trials.c.worker,
    trials.c.user_attrs,
    trials.c.host,
    trials.c.runner,
    trials.c.heartbeat_at,
)
# The same for bulk reads, with the datetimes and flag left raw: _rows_to_trials converts them
# in its own loop, cheaper than SQLAlchemy's per-value result processors.
_BULK_TRIAL_COLS = tuple(
    sa.type_coerce(c, sa.String).label(c.name)
    if isinstance(c.type, _UTCDateTime)
    else sa.type_coerce(c, sa.Integer).label(c.name)
    if c.name == "value_is_nan"
    else c
    for c in _TRIAL_COLS
)
_STUDY_COLS = (
    studies.c.id,
    studies.c.name,
    studies.c.metrics,
    studies.c.space,
    studies.c.sampler,
    studies.c.seed,
    studies.c.state,
    studies.c.spec,
    studies.c.created_at,
    studies.c.user_attrs,
    studies.c.trial_budget,
)
# Hot statements built once: building SQLAlchemy constructs costs more than running them.
_bp = sa.bindparam
_NEXT_NUMBER = (
    studies.update()
    .where(studies.c.id == _bp("sid"))
    .values(next_trial_number=studies.c.next_trial_number + 1, seq=studies.c.seq + 1)
    .returning(studies.c.next_trial_number, studies.c.seq)
)
# Takes the study's next change number (and its row lock: see the module docstring).
_NEXT_SEQ = (
    studies.update()
    .where(studies.c.id == _bp("sid"))
    .values(seq=studies.c.seq + 1)
    .returning(studies.c.seq)
)
_LOCK_STUDY = (
    sa.select(studies.c.next_trial_number, studies.c.trial_budget, studies.c.seq)
    .where(studies.c.id == _bp("sid"))
    .with_for_update()
)
_INSERT_TRIAL = trials.insert()
_UPDATE_TRIAL = trials.update().where(trials.c.id == _bp("tid"))
_CLAIMABLE = (TrialState.WAITING.value, TrialState.STALE.value)
_CLAIM_TRIAL = trials.update().where(trials.c.id == _bp("tid"), trials.c.state.in_(_CLAIMABLE))
_TRIAL_FOR_UPDATE = (
    sa.select(trials.c.id, *_TRIAL_COLS)
    .where(trials.c.study_id == _bp("sid"), trials.c.number == _bp("num"))
    .with_for_update()
)
_TRIAL = sa.select(*_TRIAL_COLS).where(
    trials.c.study_id == _bp("sid"), trials.c.number == _bp("num")
)
_FIRST_WAITING = (
    sa.select(trials.c.id, *_TRIAL_COLS)
    .where(trials.c.study_id == _bp("sid"), trials.c.state.in_(_CLAIMABLE))
    .order_by(trials.c.number)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_ANY_WAITING = (
    sa.select(trials.c.id)
    .where(trials.c.study_id == _bp("sid"), trials.c.state.in_(_CLAIMABLE))
    .limit(1)
)
# The statements every trial runs are built once: building one costs SQLAlchemy more than
# running it. An UPDATE without values sets the columns its parameters name.
_CHANGED_TRIALS = (
    sa.select(*_BULK_TRIAL_COLS, trials.c.seq)
    .where(trials.c.study_id == _bp("sid"), trials.c.seq > _bp("since"))
    .order_by(trials.c.number)
)
_TAKEN_KEYS = sa.select(trials.c.param_key).where(
    trials.c.study_id == _bp("sid"), trials.c.param_key.in_(_bp("keys", expanding=True))
)
_STUDY_UPDATE = studies.update().where(studies.c.id == _bp("sid"))
_UNFINISHED = tuple(s.value for s in TrialState if not s.is_finished)
_UPDATE_UNFINISHED = (
    trials.update()
    .where(
        trials.c.study_id == _bp("sid"),
        trials.c.number == _bp("num"),
        trials.c.state.in_(_UNFINISHED),
    )
    .returning(*_TRIAL_COLS)
)
_UPDATE_OWNED = (
    trials.update()
    .where(
        trials.c.study_id == _bp("sid"),
        trials.c.number == _bp("num"),
        trials.c.state == TrialState.RUNNING.value,
        trials.c.worker == _bp("owner"),
    )
    .returning(*_TRIAL_COLS)
)


# For update_trials: several change numbers at once (the last comes back), the fast updates
# sent together as one executemany (no RETURNING: not available to one), and the rows read
# back after them.
_TAKE_SEQS = (
    studies.update()
    .where(studies.c.id == _bp("sid"))
    .values(seq=studies.c.seq + _bp("k", type_=sa.BigInteger))
    .returning(studies.c.seq)
)
_SET_UNFINISHED = trials.update().where(
    trials.c.study_id == _bp("sid"),
    trials.c.number == _bp("num"),
    # Literals: an IN list of parameters cannot go with executemany.
    trials.c.state.in_([sa.literal_column(f"'{state}'") for state in _UNFINISHED]),
)
_SET_OWNED = trials.update().where(
    trials.c.study_id == _bp("sid"),
    trials.c.number == _bp("num"),
    trials.c.state == TrialState.RUNNING.value,
    trials.c.worker == _bp("owner"),
)
_TRIALS_BY_NUMBER = (
    sa.select(trials.c.id, *_TRIAL_COLS, trials.c.seq)
    .where(trials.c.study_id == _bp("sid"), trials.c.number.in_(_bp("nums", expanding=True)))
    .with_for_update()
)


_FINITE_VALUE = (trials.c.value >= -sys.float_info.max, trials.c.value <= sys.float_info.max)


def _best_statement(direction: str) -> sa.Select:
    # The best value first (an index probe: ORDER BY value in one direction, LIMIT 1), then the
    # lowest-numbered trial with it (the index again, in number order). A single ORDER BY value
    # DESC, number ASC mixes directions, and PostgreSQL then sorts every COMPLETE trial; MIN/MAX
    # is planned as a scan of them all while the table has no statistics. Only finite values
    # rank (optml.ranking): the range excludes infinities, and PostgreSQL's NaN, which sorts
    # above every number.
    where = (trials.c.study_id == _bp("sid"), trials.c.state == _bp("complete"))
    order = trials.c.value.asc() if direction == "minimize" else trials.c.value.desc()
    best_value = (
        sa.select(trials.c.value)
        .where(*where, *_FINITE_VALUE)
        .order_by(order)
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.select(*_TRIAL_COLS)
        .where(*where, trials.c.value == best_value)
        .order_by(trials.c.number)
        .limit(1)
    )


_BEST_MIN = _best_statement("minimize")
_BEST_MAX = _best_statement("maximize")
_STUDY_EXISTS = sa.select(studies.c.id).where(studies.c.id == _bp("sid"))
_STATES = {s.value: s for s in TrialState}
_COMPLETE = TrialState.COMPLETE.value
_WAITING = TrialState.WAITING.value
# How often a write that found SQLite locked past its busy timeout is retried from scratch.
_LOCK_RETRIES = 8


class _Rollback(Exception):
    """Raised inside a write transaction to undo it; carries what the caller returns."""

    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result


class SQLStorage(Storage):
    """Studies and trials in a SQL database: ``sqlite:///PATH.db`` or ``postgresql://...``.

    Example::

        storage = SQLStorage("sqlite:///optml.db")   # relative to the current directory
        storage = SQLStorage("postgresql://user:secret@db.example.org/optml")

    ``busy_timeout_s`` is how long a SQLite writer waits for another process's write to finish;
    ``reconnect_s`` how long a PostgreSQL client keeps retrying while the server is unreachable
    (after a first successful connection: a wrong URL fails at once).
    """

    def __init__(
        self, url: str, *, busy_timeout_s: float = 60.0, reconnect_s: float = 120.0
    ) -> None:
        self.url = url
        self._reconnect_s = reconnect_s
        self._connected = False
        # For messages: never print a password.
        self._safe_url = safe_url(url)
        engine_url = _engine_url(url)
        self._dialect = engine_url.get_backend_name()
        self._memory = self._dialect == "sqlite" and engine_url.database in (None, "", ":memory:")
        # The SQLite file, when there is one: (path, (device, inode) once opened).
        self._file: str | None = None
        self._identity: tuple[int, int] | None = None
        # Kept open to read the file's header: closing any descriptor of the file would drop
        # every POSIX lock this process holds on it, SQLite's included (another process could
        # then take this one's connections for gone and delete the write-ahead log under them).
        self._header_fd: int | None = None
        self._opened = False
        if self._dialect == "sqlite" and not self._memory:
            database = engine_url.database or ""
            if not database.startswith("file:"):
                self._file = database
        self._engine = _create_engine(engine_url, busy_timeout_s, self._memory, self._safe_url)
        self._pid = os.getpid()
        # An in-memory SQLite database is one connection shared by every thread: take turns.
        self._serial = threading.RLock() if self._memory else nullcontext()
        # The primary metric of each study id; ids are never reused, metrics never change.
        self._metric_cache: dict[int, Metric] = {}
        # The constraints stored with each study (its spec never changes either).
        self._constraint_cache: dict[int, tuple[Any, ...]] = {}
        if self._file is None or os.path.exists(self._file):
            self._open()

    def _open(self) -> None:
        """Bring the schema up to date and, for a SQLite file, remember which file it is."""
        self._opened = True
        try:
            self._upgrade()
            self._connected = True
        except BaseException as exc:
            self._opened = False
            self._engine.dispose()
            cause = exc.__cause__
            if isinstance(exc, StorageError) and isinstance(cause, sa.exc.OperationalError):
                # An unreachable server or an unreadable file.
                raise StorageError(
                    f"cannot open storage {self._safe_url}: {_reason(cause)}"
                ) from cause
            raise
        if self._file is not None:
            self._identity = _identity(self._file)
            if self._header_fd is None:
                try:
                    self._header_fd = os.open(self._file, os.O_RDONLY)
                except OSError:
                    self._header_fd = None

    @property
    def _absent(self) -> bool:
        """True while the SQLite file this storage names has not been created (by anyone)."""
        if self._file is None or self._opened:
            return False
        if os.path.exists(self._file):
            self._open()  # another process created it meanwhile
            return False
        return True

    def _check_file(self) -> None:
        """Refuse to write when the path no longer names the file this storage opened."""
        if self._file is None or self._identity is None:
            return
        try:
            now = _identity(self._file)
        except FileNotFoundError:
            raise StorageError(
                f"the database file {self._file} was deleted while in use; stopping, since "
                "nothing more could be recorded"
            ) from None
        if now != self._identity:
            raise StorageError(
                f"the database file {self._file} was replaced by another file while in use; "
                "stopping rather than writing into the old one"
            )
        try:
            header = (
                os.pread(self._header_fd, len(_SQLITE_HEADER), 0)
                if self._header_fd is not None
                else _SQLITE_HEADER
            )
        except OSError:
            header = _SQLITE_HEADER  # unreadable here: SQLite itself will say why
        # Empty until the first checkpoint copies pages out of the write-ahead log.
        if header not in (b"", _SQLITE_HEADER):
            raise StorageError(
                f"the database file {self._file} was overwritten while in use and is no longer "
                "a SQLite database; stopping"
            )

    def __repr__(self) -> str:
        return f"SQLStorage({self._safe_url!r})"

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def _connect(self, *, write: bool) -> Iterator[Connection]:
        if os.getpid() != self._pid:
            # A forked child must not share the parent's sockets or file handles.
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        with self._serial, self._engine.connect() as conn:
            if self._dialect == "sqlite":
                conn.execution_options(optml_begin="IMMEDIATE" if write else "DEFERRED")
            yield conn

    def _read(
        self, fn: Callable[[Connection], _T], if_absent: Callable[[], _T] | None = None
    ) -> _T:
        """Run ``fn`` in a read transaction; a SQLite file not created yet holds no study, so
        ``if_absent()`` answers instead (by default: StudyNotFoundError naming the file)."""
        if self._absent:
            if if_absent is not None:
                return if_absent()
            raise StudyNotFoundError(self._no_file())
        attempt = 0
        lost_since: float | None = None
        while True:
            try:
                with _interrupt.critical(), self._connect(write=False) as conn:
                    return fn(conn)
            except sa.exc.IntegrityError:
                raise
            except sa.exc.DatabaseError as exc:
                # (A connection's first statements switch a new file to WAL, which can find it
                # locked by another process creating it at the same moment.)
                if self._locked_again(exc, attempt):
                    attempt += 1
                    continue
                lost_since = self._lost(exc, lost_since)
                if lost_since is None:
                    raise StorageError(self._failure("reading", exc)) from exc

    def _write(self, fn: Callable[[Connection], _T]) -> _T:
        """Run ``fn`` in one write transaction, committed before this returns (``fn`` may raise
        :class:`_Rollback` to undo it and return its result)."""
        if self._absent:
            self._open()  # the first write creates the file
        self._check_file()
        attempt = 0
        lost_since: float | None = None
        while True:
            try:
                # Ctrl-C waits for the transaction to end (see optml._interrupt).
                with _interrupt.critical(), self._connect(write=True) as conn, conn.begin():
                    return fn(conn)
            except _Rollback as undo:
                return undo.result  # type: ignore[no-any-return]
            except sa.exc.IntegrityError:
                raise
            except sa.exc.DatabaseError as exc:
                if self._locked_again(exc, attempt):
                    attempt += 1
                    continue
                lost_since = self._lost(exc, lost_since)
                if lost_since is None:
                    raise StorageError(self._failure("writing", exc)) from exc

    def _locked_again(self, exc: sa.exc.DBAPIError, attempt: int) -> bool:
        """Whether to try again a SQLite transaction that found the file locked (after a pause
        that grows with ``attempt``); SQLite's own busy timeout does not cover every lock."""
        if self._dialect != "sqlite" or not _is_locked(exc) or attempt >= _LOCK_RETRIES:
            return False
        time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
        return True

    def _lost(self, exc: sa.exc.DBAPIError, since: float | None) -> float | None:
        """When the PostgreSQL server went away (since when; None: give up), after a pause.

        A deadlock or serialisation failure is rolled back whole by the server: retried too.
        """
        if self._dialect != "postgresql" or not self._connected:
            return None
        if not (exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError)):
            return None
        now = time.monotonic()
        since = now if since is None else since
        if now - since >= self._reconnect_s:
            return None
        time.sleep(min(0.1 * 2 ** min((now - since), 4), 2.0) * random.uniform(0.5, 1.0))
        return since

    def _failure(self, doing: str, exc: sa.exc.DBAPIError) -> str:
        reason = _reason(exc)
        if self._file is not None and (
            "not a database" in reason or "malformed" in reason or "disk i/o" in reason.lower()
        ):
            return (
                f"{doing} {self._safe_url} failed: {self._file} is not a SQLite database, or is "
                f"damaged ({reason}); give another file (sqlite:///PATH.db), or restore this one "
                "from a backup"
            )
        return f"{doing} {self._safe_url} failed: {reason}"

    def _no_file(self) -> str:
        return (
            f"no OptML database at {self._file} ({self._safe_url}): the file does not exist; "
            "it is created with the first study"
        )

    def _upgrade(self) -> None:
        """Bring the schema to SCHEMA_VERSION, or refuse a database newer than this code."""

        def current(conn: Connection) -> int | None:
            if not sa.inspect(conn).has_table("schema_version"):
                return None
            return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()

        if self._read(current) == SCHEMA_VERSION:
            return

        def upgrade(conn: Connection) -> None:
            if self._dialect == "postgresql":
                # Two processes opening a new database must not both create the tables.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7428511)"))
            version = current(conn)
            if version is None:
                names = set(sa.inspect(conn).get_table_names())
                if names & {"studies", "trials"}:
                    raise StorageError(
                        f"{self._safe_url} has tables named studies/trials but no OptML "
                        "schema_version table: it is not an OptML database (Optuna's?); use "
                        "another database file or name"
                    )
                schema_version.create(conn)
                version = 0
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self._safe_url} has schema version {version}, newer than this OptML "
                    f"understands (up to {SCHEMA_VERSION}): upgrade OptML to open it"
                )
            if version == SCHEMA_VERSION:
                return
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
            conn.execute(schema_version.delete())
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))

        self._write(upgrade)

    def close(self) -> None:
        self._engine.dispose()
        if self._header_fd is not None:
            # After the connections: its close drops this process's locks on the file.
            os.close(self._header_fd)
            self._header_fd = None

    # -- studies --------------------------------------------------------------------------
    def create_study(
        self,
        name: str,
        *,
        metrics: Sequence[Metric],
        space: Mapping[str, Any],
        sampler: Mapping[str, Any],
        seed: int,
        spec: Mapping[str, Any] | None = None,
        user_attrs: Mapping[str, Any] | None = None,
    ) -> StudyRecord:
        check_study_name(name)
        metrics = tuple(metrics)
        if not metrics:
            raise StorageError(f"study {name!r}: at least one metric is needed")
        row = {
            "name": name,
            "state": "CREATED",
            "metrics": _dumps([asdict(m) for m in metrics], "metrics"),
            "space": _dumps(dict(space), "space"),
            "sampler": _dumps(dict(sampler), "sampler"),
            "seed": int(seed),
            "spec": _dumps(dict(spec or {}), "spec"),
            "user_attrs": _dumps(dict(user_attrs or {}), "user_attrs"),
            "created_at": datetime.now(UTC),
            "next_trial_number": 0,
            "seq": 0,
            "trial_budget": None,
        }

        def insert(conn: Connection) -> int:
            taken = conn.execute(sa.select(studies.c.id).where(studies.c.name == name)).first()
            if taken is not None:
                raise DuplicateStudyError(
                    f"a study named {name!r} already exists in {self._safe_url}"
                )
            return int(
                conn.execute(studies.insert().values(**row).returning(studies.c.id)).scalar_one()
            )

        try:
            study_id = self._write(insert)
        except sa.exc.IntegrityError:
            # Another process created it between our check and our insert (PostgreSQL).
            raise DuplicateStudyError(
                f"a study named {name!r} already exists in {self._safe_url}"
            ) from None
        self._metric_cache[study_id] = metrics[0]
        return _row_to_study(
            (
                study_id,
                name,
                row["metrics"],
                row["space"],
                row["sampler"],
                row["seed"],
                "CREATED",
                row["spec"],
                row["created_at"],
                row["user_attrs"],
                None,
            )
        )

    def load_study(self, name: str) -> StudyRecord:
        def missing() -> None:
            raise StudyNotFoundError(f"no study named {name!r}: {self._no_file()}")

        row = self._read(
            lambda conn: conn.execute(
                sa.select(*_STUDY_COLS).where(studies.c.name == name)
            ).first(),
            if_absent=missing,
        )
        if row is None:
            raise StudyNotFoundError(f"no study named {name!r} in {self._safe_url}")
        record = _row_to_study(row)
        self._metric_cache[record.id] = record.metrics[0]
        return record

    def list_studies(self) -> list[StudySummary]:
        # One statement: each study with its trial count per state and, in the COMPLETE group,
        # the lowest and highest finite value (only finite values rank: optml.ranking); the
        # covering index on trials answers it without reading trial rows. A study with stored
        # constraints needs its feasible best, one more query for each such study.
        finite = sa.case((sa.and_(*_FINITE_VALUE), trials.c.value), else_=None)
        stmt = (
            sa.select(
                studies.c.id,
                studies.c.name,
                studies.c.state,
                studies.c.metrics,
                studies.c.created_at,
                studies.c.spec,
                trials.c.state,
                sa.func.count(trials.c.id),
                sa.func.min(finite),
                sa.func.max(finite),
            )
            .select_from(studies.outerjoin(trials, trials.c.study_id == studies.c.id))
            .group_by(studies.c.id, trials.c.state)
            .order_by(studies.c.id)
        )

        def query(conn: Connection) -> list[StudySummary]:
            out: dict[int, StudySummary] = {}
            for row in conn.execute(stmt).all():
                study_id, name, state, metrics_json, created_at, spec_json = row[:6]
                tstate, n, lo, hi = row[6:]
                summary = out.get(study_id)
                if summary is None:
                    metric = Metric(**json.loads(metrics_json)[0])
                    self._metric_cache[study_id] = metric
                    summary = out[study_id] = StudySummary(
                        name=name,
                        state=state,
                        metric=metric,
                        counts={},
                        best_value=None,
                        created_at=created_at,
                    )
                if tstate is None:  # a study without trials (the outer join's empty side)
                    continue
                summary.counts[tstate] = n
                if tstate != _COMPLETE or lo is None:
                    continue
                best_value = lo if summary.metric.direction == "minimize" else hi
                constraints = self._constraint_cache.get(study_id)
                if constraints is None:
                    constraints = stored_constraints(_loads(spec_json))
                    self._constraint_cache[study_id] = constraints
                if constraints:  # only a feasible trial's value is best
                    best = self._best(conn, study_id)
                    best_value = None if best is None else best.value
                out[study_id] = dataclasses.replace(summary, best_value=best_value)
            return list(out.values())

        return self._read(query, if_absent=list)

    def delete_study(self, name: str) -> None:
        def delete(conn: Connection) -> int:
            study_id = conn.execute(sa.select(studies.c.id).where(studies.c.name == name)).scalar()
            if study_id is None:
                raise StudyNotFoundError(f"no study named {name!r} in {self._safe_url}")
            # Explicit: SQLite enforces ON DELETE CASCADE only with PRAGMA foreign_keys.
            conn.execute(trials.delete().where(trials.c.study_id == study_id))
            conn.execute(runs.delete().where(runs.c.study_id == study_id))
            conn.execute(studies.delete().where(studies.c.id == study_id))
            return study_id

        study_id = self._write(delete)
        self._metric_cache.pop(study_id, None)
        self._constraint_cache.pop(study_id, None)

    def set_study_state(self, study_id: int, state: str) -> None:
        if state not in STUDY_STATES:
            raise StorageError(f"study state {state!r} is not one of {', '.join(STUDY_STATES)}")

        def update(conn: Connection) -> None:
            done = conn.execute(
                studies.update().where(studies.c.id == study_id).values(state=state)
            )
            if done.rowcount == 0:
                raise self._no_study(study_id)

        self._write(update)

    def set_study_attrs(self, study_id: int, attrs: Mapping[str, Any]) -> None:
        def update(conn: Connection) -> None:
            old = conn.execute(
                sa.select(studies.c.user_attrs).where(studies.c.id == study_id).with_for_update()
            ).scalar()
            if old is None:
                raise self._no_study(study_id)
            merged = {**_loads(old), **attrs}
            conn.execute(
                studies.update()
                .where(studies.c.id == study_id)
                .values(user_attrs=_dumps(merged, "user_attrs"))
            )

        self._write(update)

    # -- trials ---------------------------------------------------------------------------
    def create_trial(
        self,
        study_id: int,
        params: Mapping[str, Any],
        *,
        state: TrialState = TrialState.WAITING,
        key: str | None = None,
        **fields: Any,
    ) -> Trial:
        params_json = _dumps(dict(params), "params")

        def insert(conn: Connection) -> Trial:
            # The row lock of this UPDATE orders concurrent creators of the same study.
            got = conn.execute(_NEXT_NUMBER, {"sid": study_id}).first()
            if got is None:
                raise self._no_study(study_id)
            number, seq = got
            number -= 1
            base = Trial(number=number, state=TrialState.WAITING, params=_loads(params_json))
            changes = check_update(base, {"state": state, **fields})
            values, trial = _encode_changes(base, changes)
            conn.execute(
                _INSERT_TRIAL,
                {
                    **_DEFAULT_ROW,
                    **values,
                    "study_id": study_id,
                    "number": number,
                    "params": params_json,
                    "seq": seq,
                    "param_key": key,
                },
            )
            return trial

        return self._write(insert)

    def reserve_trials(
        self,
        study_id: int,
        configs: Sequence[tuple[Mapping[str, Any], str | None]],
        *,
        worker: str | None,
    ) -> Reservation:
        encoded = [(_dumps(dict(p), "params"), key) for p, key in configs]
        if not encoded:
            return Reservation([], [], False)

        def reserve(conn: Connection) -> Reservation:
            locked = conn.execute(_LOCK_STUDY, {"sid": study_id}).first()
            if locked is None:
                raise self._no_study(study_id)
            number, budget, seq = locked
            keys = {k for _, k in encoded if k is not None}
            known: set[str] = set()
            if keys:
                known = set(
                    conn.execute(_TAKEN_KEYS, {"sid": study_id, "keys": sorted(keys)}).scalars()
                )
            now = datetime.now(UTC)
            rows, made, taken = [], [], []
            spent = False
            for i, (params_json, key) in enumerate(encoded):
                if key is not None and key in known:
                    taken.append(i)
                    continue
                if budget is not None and number >= budget:
                    spent = True
                    break
                if key is not None:
                    known.add(key)
                seq += 1
                base = Trial(number=number, state=TrialState.WAITING, params=_loads(params_json))
                changes = {
                    "state": TrialState.RUNNING,
                    "worker": worker,
                    "started_at": now,
                    "heartbeat_at": now,
                }
                values, trial = _encode_changes(base, changes)
                rows.append(
                    {
                        **_DEFAULT_ROW,
                        **values,
                        "study_id": study_id,
                        "number": number,
                        "params": params_json,
                        "seq": seq,
                        "param_key": key,
                    }
                )
                made.append(trial)
                number += 1
            if rows:
                conn.execute(_INSERT_TRIAL, rows)
                conn.execute(
                    _STUDY_UPDATE, {"sid": study_id, "next_trial_number": number, "seq": seq}
                )
            return Reservation(made, taken, spent)

        return self._write(reserve)

    def set_study_budget(self, study_id: int, budget: int | None) -> None:
        def update(conn: Connection) -> None:
            done = conn.execute(
                studies.update().where(studies.c.id == study_id).values(trial_budget=budget)
            )
            if done.rowcount == 0:
                raise self._no_study(study_id)

        self._write(update)

    def changed_trials(self, study_id: int, since: int) -> tuple[list[Trial], int]:
        def query(conn: Connection) -> tuple[list[Trial], int]:
            rows = conn.execute(_CHANGED_TRIALS, {"sid": study_id, "since": since}).all()
            if not rows:
                self._require_study(conn, study_id)
                return [], since
            return _rows_to_trials([r[:-1] for r in rows]), max(since, max(r[-1] for r in rows))

        return self._read(query)

    def claim_trial(self, study_id: int, worker: str | None = None) -> Trial | None:
        # A read first: the common answer (nothing queued) takes no lock.
        if self._read(lambda conn: conn.execute(_ANY_WAITING, {"sid": study_id}).first()) is None:
            self._read(lambda conn: self._require_study(conn, study_id))
            return None

        def claim(conn: Connection) -> Trial | None:
            seq = conn.execute(_NEXT_SEQ, {"sid": study_id}).scalar()
            if seq is None:
                raise self._no_study(study_id)
            row = conn.execute(_FIRST_WAITING, {"sid": study_id}).first()
            if row is None:
                raise _Rollback(None)
            trial = _row_to_trial(row[1:])
            now = datetime.now(UTC)
            changes = {
                "state": TrialState.RUNNING,
                "worker": worker,
                "started_at": now,
                "heartbeat_at": now,
            }
            values, claimed = _encode_changes(trial, check_update(trial, changes))
            done = conn.execute(_CLAIM_TRIAL, {**values, "seq": seq, "tid": row[0]})
            if done.rowcount != 1:  # cannot happen under the study lock; be safe
                raise _Rollback(None)
            return claimed

        return self._write(claim)

    def update_trial(
        self, study_id: int, number: int, *, owner: str | None = None, **fields: Any
    ) -> Trial:
        # The common case in one statement: an unfinished trial (still the owner's, with
        # ``owner``) updated in place; anything else takes the checked path below.
        placeholder = Trial(number=number, state=TrialState.WAITING, params={})
        fast, _ = _encode_changes(placeholder, check_update(placeholder, fields))
        fast_update = _UPDATE_UNFINISHED if owner is None else _UPDATE_OWNED
        where = {"sid": study_id, "num": number, "owner": owner}

        def update(conn: Connection) -> Trial:
            seq = conn.execute(_NEXT_SEQ, {"sid": study_id}).scalar()
            if seq is None:
                raise self._no_study(study_id)
            if fast:
                done = conn.execute(fast_update, {**fast, "seq": seq, **where}).first()
                if done is not None:
                    return _row_to_trial(done)
            row = conn.execute(_TRIAL_FOR_UPDATE, {"sid": study_id, "num": number}).first()
            if row is None:
                raise self._no_trial(conn, study_id, number)
            trial = _row_to_trial(row[1:])
            check_owner(trial, owner)
            values, new = _encode_changes(trial, check_update(trial, fields))
            if values:
                conn.execute(_UPDATE_TRIAL, {**values, "seq": seq, "tid": row[0]})
            return new

        return self._write(update)

    def update_trials(
        self,
        study_id: int,
        updates: Mapping[int, Mapping[str, Any]],
        *,
        owner: str | None = None,
    ) -> dict[int, Trial | None]:
        if len(updates) <= 1:
            return super().update_trials(study_id, updates, owner=owner)
        todo = []
        for number, fields in updates.items():
            placeholder = Trial(number=number, state=TrialState.WAITING, params={})
            fast, _ = _encode_changes(placeholder, check_update(placeholder, fields))
            todo.append((number, fields, fast))
        fast_update = _SET_UNFINISHED if owner is None else _SET_OWNED

        def update(conn: Connection) -> dict[int, Trial | None]:
            last = conn.execute(_TAKE_SEQS, {"sid": study_id, "k": len(todo)}).scalar()
            if last is None:
                raise self._no_study(study_id)
            seqs = {number: last - len(todo) + 1 + i for i, (number, _, _) in enumerate(todo)}
            # The common case (unfinished trials, still the owner's) as one statement per set
            # of fields; each row's change number then tells whether its update took.
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for number, _, fast in todo:
                if fast:
                    groups.setdefault(tuple(sorted(fast)), []).append(
                        {
                            **fast,
                            "seq": seqs[number],
                            "sid": study_id,
                            "num": number,
                            "owner": owner,
                        }
                    )
            for rows in groups.values():
                conn.execute(fast_update, rows)
            found = {
                row[1]: row
                for row in conn.execute(
                    _TRIALS_BY_NUMBER, {"sid": study_id, "nums": [n for n, _, _ in todo]}
                )
            }
            out: dict[int, Trial | None] = {}
            for number, fields, fast in todo:
                row = found.get(number)
                if row is None:
                    raise self._no_trial(conn, study_id, number)
                trial = _row_to_trial(row[1:-1])
                if fast and row[-1] == seqs[number]:
                    out[number] = trial
                    continue
                # Not taken by the fast path: the checks of update_trial, one trial at a time.
                try:
                    check_owner(trial, owner)
                except LostTrialError:
                    out[number] = None
                    continue
                values, new = _encode_changes(trial, check_update(trial, fields))
                if values:
                    conn.execute(_UPDATE_TRIAL, {**values, "seq": seqs[number], "tid": row[0]})
                out[number] = new
            return out

        return self._write(update)

    # -- liveness -------------------------------------------------------------------------
    def start_run(self, study_id: int, owner: str) -> int:
        def start(conn: Connection) -> int:
            done = conn.execute(
                studies.update().where(studies.c.id == study_id).values(state="RUNNING")
            )
            if done.rowcount == 0:
                raise self._no_study(study_id)
            now = datetime.now(UTC)
            return int(
                conn.execute(
                    runs.insert()
                    .values(
                        study_id=study_id,
                        owner=owner,
                        started_at=now,
                        heartbeat_at=now,
                        finished_at=None,
                        stop_requested=False,
                    )
                    .returning(runs.c.id)
                ).scalar_one()
            )

        return self._write(start)

    def heartbeat(self, study_id: int, owner: str, run_id: int | None = None) -> bool:
        def beat(conn: Connection) -> bool:
            if conn.execute(_LOCK_STUDY, {"sid": study_id}).first() is None:
                raise self._no_study(study_id)
            now = datetime.now(UTC)
            conn.execute(
                trials.update()
                .where(
                    trials.c.study_id == study_id,
                    trials.c.state == TrialState.RUNNING.value,
                    trials.c.worker == owner,
                )
                .values(heartbeat_at=now)
            )
            if run_id is None:
                return False
            stop = conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(heartbeat_at=now)
                .returning(runs.c.stop_requested)
            ).scalar()
            return bool(stop)

        return self._write(beat)

    def _live_runs(self, study_id: int, grace_s: float) -> sa.ColumnElement[bool]:
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
        return sa.and_(
            runs.c.study_id == study_id, runs.c.finished_at.is_(None), runs.c.heartbeat_at >= cutoff
        )

    def end_run(self, run_id: int, state: str, grace_s: float) -> str:
        if state not in STUDY_STATES:
            raise StorageError(f"study state {state!r} is not one of {', '.join(STUDY_STATES)}")

        def end(conn: Connection) -> str:
            study_id = conn.execute(sa.select(runs.c.study_id).where(runs.c.id == run_id)).scalar()
            if study_id is None:
                raise StorageError(f"no run with id {run_id} in {self._safe_url}")
            conn.execute(_LOCK_STUDY, {"sid": study_id})
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(finished_at=datetime.now(UTC))
            )
            others = conn.execute(
                sa.select(sa.func.count()).where(
                    self._live_runs(study_id, grace_s), runs.c.id != run_id
                )
            ).scalar()
            if others:
                return "RUNNING"
            conn.execute(studies.update().where(studies.c.id == study_id).values(state=state))
            return state

        return self._write(end)

    def live_runs(self, study_id: int, grace_s: float) -> list[str]:
        return self._read(
            lambda conn: list(
                conn.execute(
                    sa.select(runs.c.owner).where(self._live_runs(study_id, grace_s))
                ).scalars()
            )
        )

    def request_stop(self, study_id: int, grace_s: float) -> int:
        def stop(conn: Connection) -> int:
            if conn.execute(_LOCK_STUDY, {"sid": study_id}).first() is None:
                raise self._no_study(study_id)
            asked = conn.execute(
                runs.update().where(self._live_runs(study_id, grace_s)).values(stop_requested=True)
            ).rowcount
            if not asked:
                conn.execute(
                    studies.update()
                    .where(studies.c.id == study_id, studies.c.state == "RUNNING")
                    .values(state="INTERRUPTED")
                )
            return int(asked)

        return self._write(stop)

    def mark_stale(
        self,
        study_id: int,
        grace_s: float,
        *,
        dead_owners: Iterable[str] = (),
        fail: bool = False,
    ) -> list[Trial]:
        dead = sorted(set(dead_owners))

        def mark(conn: Connection) -> list[Trial]:
            if conn.execute(_LOCK_STUDY, {"sid": study_id}).first() is None:
                raise self._no_study(study_id)
            cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
            beat, start = trials.c.heartbeat_at, trials.c.started_at
            lapsed = sa.or_(
                sa.and_(beat.is_not(None), beat < cutoff),
                sa.and_(beat.is_(None), start.is_not(None), start < cutoff),
            )
            if dead:
                lapsed = sa.or_(lapsed, trials.c.worker.in_(dead))
            rows = conn.execute(
                sa.select(trials.c.id, *_TRIAL_COLS)
                .where(
                    trials.c.study_id == study_id,
                    trials.c.state == TrialState.RUNNING.value,
                    lapsed,
                )
                .order_by(trials.c.number)
            ).all()
            out = []
            now = datetime.now(UTC)
            for row in rows:
                trial = _row_to_trial(row[1:])
                seq = conn.execute(_NEXT_SEQ, {"sid": study_id}).scalar()
                values, new = _encode_changes(trial, stale_changes(trial, now, fail))
                conn.execute(_UPDATE_TRIAL, {**values, "seq": seq, "tid": row[0]})
                out.append(new)
            return out

        return self._write(mark)

    def get_trial(self, study_id: int, number: int) -> Trial:
        def query(conn: Connection) -> Trial:
            row = conn.execute(_TRIAL, {"sid": study_id, "num": number}).first()
            if row is None:
                raise self._no_trial(conn, study_id, number)
            return _row_to_trial(row)

        return self._read(query)

    def get_trials(self, study_id: int, states: Iterable[TrialState] | None = None) -> list[Trial]:
        stmt = sa.select(*_BULK_TRIAL_COLS).where(trials.c.study_id == study_id)
        if states is not None:
            stmt = stmt.where(trials.c.state.in_([TrialState(s).value for s in states]))
        stmt = stmt.order_by(trials.c.number)

        def query(conn: Connection) -> list[Trial]:
            out = _rows_to_trials(conn.execute(stmt).all())
            if not out:
                self._require_study(conn, study_id)
            return out

        return self._read(query)

    def trials_page(
        self,
        study_id: int,
        *,
        offset: int = 0,
        limit: int = 50,
        sort: str = "number",
        descending: bool = False,
        states: Iterable[TrialState] | None = None,
    ) -> tuple[list[Trial], int]:
        check_page(offset, limit, sort)
        where = [trials.c.study_id == study_id]
        if states is not None:
            where.append(trials.c.state.in_([TrialState(s).value for s in states]))
        column = {
            "number": trials.c.number,
            "value": trials.c.value,
            "duration": trials.c.duration_s,
            "state": trials.c.state,
        }[sort]
        order: list[Any] = []
        if sort in ("value", "duration"):
            # Trials without one (and NaN, stored as NULL) come last in either direction.
            order.append(column.is_(None).asc())
        order.append(column.desc() if descending else column.asc())
        if sort != "number":
            order.append(trials.c.number.desc() if descending else trials.c.number.asc())
        stmt = sa.select(*_BULK_TRIAL_COLS).where(*where).order_by(*order).offset(offset)
        stmt = stmt.limit(limit)
        count = sa.select(sa.func.count()).select_from(trials).where(*where)

        def query(conn: Connection) -> tuple[list[Trial], int]:
            total = conn.execute(count).scalar() or 0
            if not total:
                self._require_study(conn, study_id)
            return _rows_to_trials(conn.execute(stmt).all()), total

        return self._read(query)

    def trial_rows(
        self,
        study_id: int,
        *,
        params: bool = False,
        times: bool = True,
        states: Iterable[TrialState] | None = None,
    ) -> list[TrialRow]:
        # Raw text for datetimes (parsed here only when asked), one JSON decode for all params:
        # this reads every trial of a study, so per-row conversions dominate.
        raw = sa.String
        cols: list[Any] = [
            trials.c.number,
            trials.c.state,
            trials.c.value,
            sa.type_coerce(trials.c.value_is_nan, sa.Integer),
            trials.c.duration_s,
            sa.type_coerce(trials.c.started_at, raw) if times else sa.null(),
            sa.type_coerce(trials.c.finished_at, raw) if times else sa.null(),
            trials.c.host,
            sa.func.coalesce(trials.c.runner, trials.c.worker),
        ]
        if params:
            cols.append(trials.c.params)
        stmt = sa.select(*cols).where(trials.c.study_id == study_id)
        if states is not None:
            stmt = stmt.where(trials.c.state.in_([TrialState(s).value for s in states]))
        stmt = stmt.order_by(trials.c.number)

        def query(conn: Connection) -> list[TrialRow]:
            rows = conn.execute(stmt).all()
            if not rows:
                self._require_study(conn, study_id)
                return []
            decoded: list[Any] = _loads_many([r[9] for r in rows]) if params else [None] * len(rows)
            return [
                TrialRow(
                    r[0],
                    r[1],
                    math.nan if r[3] else r[2],
                    r[4],
                    None if r[5] is None else _as_utc(r[5]),
                    None if r[6] is None else _as_utc(r[6]),
                    r[7],
                    r[8],
                    p,
                )
                for r, p in zip(rows, decoded, strict=True)
            ]

        return self._read(query)

    def completed_values(self, study_id: int) -> list[tuple[int, float]]:
        # Only columns of the covering index (study_id, state, value, number): no table row is
        # read. Sorting here is cheaper than asking the database to (it would leave the index).
        stmt = sa.select(trials.c.number, trials.c.value).where(
            trials.c.study_id == study_id, trials.c.state == _COMPLETE, trials.c.value.is_not(None)
        )

        def query(conn: Connection) -> list[tuple[int, float]]:
            rows = conn.execute(stmt).all()
            if not rows:
                self._require_study(conn, study_id)
            return sorted((n, v) for n, v in rows)

        return self._read(query)

    def trial_params(self, study_id: int, numbers: Iterable[int]) -> dict[int, dict[str, Any]]:
        wanted = sorted(set(numbers))
        out: dict[int, dict[str, Any]] = {}

        def query(conn: Connection) -> None:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                rows = conn.execute(
                    sa.select(trials.c.number, trials.c.params).where(
                        trials.c.study_id == study_id, trials.c.number.in_(chunk)
                    )
                ).all()
                out.update(
                    zip([r[0] for r in rows], _loads_many([r[1] for r in rows]), strict=True)
                )

        if wanted:
            self._read(query)
        return out

    def trials_version(self, study_id: int) -> int:
        stmt = sa.select(studies.c.seq).where(studies.c.id == study_id)

        def query(conn: Connection) -> int:
            seq = conn.execute(stmt).scalar()
            if seq is None:
                raise self._no_study(study_id)
            return int(seq)

        return self._read(query)

    def get_best_trial(self, study_id: int) -> Trial | None:
        return self._read(lambda conn: self._best(conn, study_id))

    def _best(self, conn: Connection, study_id: int) -> Trial | None:
        metric = self._metric(conn, study_id)
        constraints = self._constraints(conn, study_id)
        if constraints:  # feasibility is judged in Python, as everywhere (optml.ranking)
            complete = conn.execute(
                sa.select(*_TRIAL_COLS)
                .where(trials.c.study_id == study_id, trials.c.state == _COMPLETE)
                .order_by(trials.c.number)
            ).all()
            return best_trial(_rows_to_trials(complete), metric, constraints)
        row = conn.execute(
            _BEST_MIN if metric.direction == "minimize" else _BEST_MAX,
            {"sid": study_id, "complete": _COMPLETE},
        ).first()
        if row is None:
            self._require_study(conn, study_id)
            return None
        return _row_to_trial(row)

    def count_trials(self, study_id: int) -> dict[str, int]:
        def query(conn: Connection) -> dict[str, int]:
            counts = {
                state: n
                for state, n in conn.execute(
                    sa.select(trials.c.state, sa.func.count())
                    .where(trials.c.study_id == study_id)
                    .group_by(trials.c.state)
                )
            }
            if not counts:
                self._require_study(conn, study_id)
            return counts

        return self._read(query)

    # -- helpers --------------------------------------------------------------------------
    def _metric(self, conn: Connection, study_id: int) -> Metric:
        metric = self._metric_cache.get(study_id)
        if metric is None:
            metrics_json = conn.execute(
                sa.select(studies.c.metrics).where(studies.c.id == study_id)
            ).scalar()
            if metrics_json is None:
                raise self._no_study(study_id)
            metric = self._metric_cache[study_id] = Metric(**json.loads(metrics_json)[0])
        return metric

    def _constraints(self, conn: Connection, study_id: int) -> tuple[Any, ...]:
        constraints = self._constraint_cache.get(study_id)
        if constraints is None:
            spec_json = conn.execute(
                sa.select(studies.c.spec).where(studies.c.id == study_id)
            ).scalar()
            if spec_json is None:
                raise self._no_study(study_id)
            constraints = self._constraint_cache[study_id] = stored_constraints(_loads(spec_json))
        return constraints

    def _require_study(self, conn: Connection, study_id: int) -> None:
        found = conn.execute(_STUDY_EXISTS, {"sid": study_id}).first()
        if found is None:
            raise self._no_study(study_id)

    def _no_study(self, study_id: int) -> StudyNotFoundError:
        return StudyNotFoundError(f"no study with id {study_id} in {self._safe_url}")

    def _no_trial(self, conn: Connection, study_id: int, number: int) -> StorageError:
        self._require_study(conn, study_id)
        return StorageError(f"study {study_id} has no trial {number}")


# -- engine ---------------------------------------------------------------------------------
_ACCEPTED = (
    "OptML accepts sqlite:///PATH.db (relative to the current directory), sqlite:////ABS/PATH.db, "
    "postgresql://USER:PASSWORD@HOST/DB and memory://"
)
# Synchronous drivers SQLAlchemy can use for each backend (None: its default).
_DRIVERS = {"sqlite": (None, "pysqlite"), "postgresql": (None, "psycopg", "psycopg2", "pg8000")}


def _engine_url(url: str) -> sa.engine.URL:
    safe = safe_url(url)
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StorageError(f"storage URL {safe!r} is malformed; {_ACCEPTED}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
        parsed = parsed.set(drivername="postgresql")
    if backend not in _DRIVERS:
        raise StorageError(
            f"storage URL {safe!r}: {backend!r} databases are not supported; {_ACCEPTED}"
        )
    driver = parsed.drivername.partition("+")[2] or None
    if driver not in _DRIVERS[backend]:
        accepted = ", ".join(f"{backend}+{d}" for d in _DRIVERS[backend] if d)
        raise StorageError(
            f"storage URL {safe!r}: the driver {driver!r} is not one OptML can use (it needs a "
            f"synchronous driver: {backend}:// or {accepted}); {_ACCEPTED}"
        )
    if backend == "postgresql":
        if driver is None:
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername == "postgresql+psycopg":
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise missing_dependency("psycopg", "postgres") from None
        return parsed
    database = parsed.database
    if parsed.host or parsed.port or parsed.username:
        raise StorageError(
            f"storage URL {safe!r} names a host ({parsed.host!r}), which SQLite does not have: "
            "a file needs three slashes, as in "
            f"sqlite:///{parsed.host or ''}{'/' + database if database else ''}; {_ACCEPTED}"
        )
    if database == "":
        raise StorageError(
            f"storage URL {safe!r} names no file; give one (sqlite:///PATH.db), or memory:// "
            "for a database that lasts only as long as the process"
        )
    if database in (None, ":memory:") or database.startswith("file:"):
        return parsed
    # Pin relative paths to today's directory, so a later chdir opens the same file.
    path = os.path.abspath(os.path.expanduser(database))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise StorageError(
            f"storage URL {safe!r}: directory {folder} does not exist; create it first "
            "(sqlite:///relative.db is relative to the current directory, "
            "sqlite:////absolute/path.db is absolute)"
        )
    if os.path.isdir(path):
        raise StorageError(f"storage URL {safe!r}: {path} is a directory, not a database file")
    return parsed.set(database=path)


_SQLITE_HEADER = b"SQLite format 3\x00"


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _create_engine(
    url: sa.engine.URL, busy_timeout_s: float, memory: bool, safe_url: str
) -> Engine:
    try:
        if url.get_backend_name() != "sqlite":
            # No pool_pre_ping (a round trip per transaction): a connection the server dropped
            # fails its first statement, which is retried whole on a fresh one (see _lost).
            return sa.create_engine(url, pool_size=4, max_overflow=8)
        kwargs: dict[str, Any] = {
            "connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}
        }
        if memory:
            kwargs["poolclass"] = sa.pool.StaticPool
        engine = sa.create_engine(url, **kwargs)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise StorageError(
            f"storage URL {safe_url!r}: its database driver is not installed ({exc}); "
            f"{_ACCEPTED} (PostgreSQL with pip install 'optml[postgres]')"
        ) from None

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event, not the driver, decide how transactions start.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if not memory:
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('optml_begin', '')}")

    return engine


def _is_locked(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "locked" in text or "busy" in text


def _reason(exc: sa.exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


# -- encoding -------------------------------------------------------------------------------
_FLOAT_TAG = "$float"
_DEFAULT_ROW = {
    "state": _WAITING,
    "value": None,
    "value_is_nan": False,
    "metrics": "{}",
    "intermediate": "{}",
    "error": None,
    "logs": None,
    "attempts": 0,
    "started_at": None,
    "finished_at": None,
    "duration_s": None,
    "worker": None,
    "user_attrs": "{}",
    "host": None,
    "runner": None,
    "heartbeat_at": None,
}


def _plain(obj: Any) -> Any:
    """json's fallback: numpy scalars and arrays become Python numbers and lists."""
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _tag_nonfinite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_FLOAT_TAG: "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, Mapping):
        return {k: _tag_nonfinite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_tag_nonfinite(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return _tag_nonfinite(obj.tolist())
    return obj


def _dumps(obj: Any, what: str) -> str:
    """Strict JSON text; NaN and infinities become {"$float": "nan" | "inf" | "-inf"}."""
    try:
        return json.dumps(obj, allow_nan=False, separators=(",", ":"), default=_plain)
    except ValueError:
        try:
            return json.dumps(
                _tag_nonfinite(obj), allow_nan=False, separators=(",", ":"), default=_plain
            )
        except (TypeError, ValueError) as exc:
            raise StorageError(f"{what} cannot be stored as JSON: {exc}") from exc
    except TypeError as exc:
        raise StorageError(
            f"{what} cannot be stored as JSON: {exc}; use numbers, strings, booleans, None, "
            "lists and dicts"
        ) from exc


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _FLOAT_TAG in obj:
        return float(obj[_FLOAT_TAG])
    return obj


def _loads(text: str) -> Any:
    if text == "{}":
        return {}
    if _FLOAT_TAG in text:
        return json.loads(text, object_hook=_untag)
    return json.loads(text)


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise StorageError(f"expected a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _encode_changes(trial: Trial, changes: Mapping[str, Any]) -> tuple[dict[str, Any], Trial]:
    """Column values for ``changes`` of ``trial``, and the trial as it will read back."""
    values: dict[str, Any] = {}
    decoded: dict[str, Any] = {}
    for name, new in changes.items():
        if name == "state":
            values["state"] = new.value
            decoded["state"] = new
        elif name == "value":
            value = None if new is None else float(new)
            nan = value is not None and math.isnan(value)
            values["value"] = None if nan else value
            values["value_is_nan"] = nan
            decoded["value"] = value
        elif name in ("metrics", "user_attrs"):
            text = _dumps(dict(new or {}), name)
            values[name] = text
            decoded[name] = _loads(text)
        elif name == "intermediate":
            text = _dumps({str(int(k)): v for k, v in dict(new or {}).items()}, name)
            values[name] = text
            decoded[name] = {int(k): v for k, v in _loads(text).items()}
        elif name in ("started_at", "finished_at", "heartbeat_at"):
            when = None if new is None else _utc(new)
            values[name] = when
            decoded[name] = when
        elif name in ("duration_s",):
            values[name] = decoded[name] = None if new is None else float(new)
        elif name == "attempts":
            values[name] = decoded[name] = int(new)
        else:  # error, logs, worker, host, runner
            values[name] = decoded[name] = None if new is None else str(new)
    return values, trial.with_changes(**decoded)


def _row_to_trial(row: Sequence[Any]) -> Trial:
    (
        number,
        state,
        params,
        value,
        value_is_nan,
        metrics,
        intermediate,
        error,
        logs,
        attempts,
        started_at,
        finished_at,
        duration_s,
        worker,
        user_attrs,
        host,
        runner,
        heartbeat_at,
    ) = row
    return Trial(
        number=number,
        state=_STATES[state],
        params=_loads(params),
        value=math.nan if value_is_nan else value,
        metrics=_loads(metrics),
        intermediate={int(k): v for k, v in _loads(intermediate).items()}
        if intermediate != "{}"
        else {},
        error=error,
        logs=logs,
        attempts=attempts,
        started_at=started_at,
        finished_at=finished_at,
        duration_s=duration_s,
        worker=worker,
        user_attrs=_loads(user_attrs),
        host=host,
        runner=runner,
        heartbeat_at=heartbeat_at,
    )


def _as_utc(value: str | datetime) -> datetime:
    """A stored datetime, raw from the driver, as an aware UTC datetime (see _UTCDateTime)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00" if len(value) <= 26 else value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _loads_many(texts: Sequence[str]) -> list[Any]:
    """Decode many JSON texts in one call: much faster than one ``json.loads`` per text."""
    joined = "[" + ",".join(texts) + "]"
    if _FLOAT_TAG in joined:
        return json.loads(joined, object_hook=_untag)
    return json.loads(joined)


def _rows_to_trials(rows: Sequence[Sequence[Any]]) -> list[Trial]:
    """_row_to_trial for many rows, decoding each JSON column in one go."""
    if not rows:
        return []
    columns = list(zip(*rows, strict=True))
    params, metrics, user_attrs = (_loads_many(columns[i]) for i in (2, 5, 14))
    out = []
    for row, p, m, u in zip(rows, params, metrics, user_attrs, strict=True):
        (
            number,
            state,
            _,
            value,
            value_is_nan,
            _,
            intermediate,
            error,
            logs,
            attempts,
            started_at,
            finished_at,
            duration_s,
            worker,
            _,
            host,
            runner,
            heartbeat_at,
        ) = row
        out.append(
            Trial(
                number=number,
                state=_STATES[state],
                params=p,
                value=math.nan if value_is_nan else value,
                metrics=m,
                intermediate={int(k): v for k, v in _loads(intermediate).items()}
                if intermediate != "{}"
                else {},
                error=error,
                logs=logs,
                attempts=attempts,
                started_at=None if started_at is None else _as_utc(started_at),
                finished_at=None if finished_at is None else _as_utc(finished_at),
                duration_s=duration_s,
                worker=worker,
                user_attrs=u,
                host=host,
                runner=runner,
                heartbeat_at=None if heartbeat_at is None else _as_utc(heartbeat_at),
            )
        )
    return out


def _row_to_study(row: Sequence[Any]) -> StudyRecord:
    (study_id, name, metrics, space, sampler, seed, state, spec, created_at, user_attrs, budget) = (
        row
    )
    return StudyRecord(
        id=study_id,
        name=name,
        metrics=tuple(Metric(**m) for m in json.loads(metrics)),
        space=_loads(space),
        sampler=_loads(sampler),
        seed=seed,
        state=state,
        spec=_loads(spec),
        created_at=created_at,
        user_attrs=_loads(user_attrs),
        budget=budget,
    )
