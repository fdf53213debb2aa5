"""Storage fixtures: a throwaway PostgreSQL server for the session, and fresh databases."""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

POSTGRES_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"


def _unavailable(why: str) -> None:
    # CI installs PostgreSQL (scripts/postgres.sh install), so there a missing server is a bug.
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run: {why}")
    pytest.skip(f"PostgreSQL tests skipped: {why}")


def _have_server_binaries() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or shutil.which("initdb") is not None


@pytest.fixture(scope="session")
def postgres_server_url():
    """A PostgreSQL URL: $OPTML_TEST_POSTGRES_URL, or a server started for this session."""
    url = os.environ.get("OPTML_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if importlib.util.find_spec("psycopg") is None:
        _unavailable("the psycopg driver is not installed (bash scripts/postgres.sh install)")
    if not _have_server_binaries():
        _unavailable("no PostgreSQL server binaries (bash scripts/postgres.sh install)")
    # Under /tmp, not pytest's tmp dir: the server runs as the postgres user, who must reach it.
    folder = tempfile.mkdtemp(prefix="optml-pg.", dir="/tmp")
    started = subprocess.run(
        ["bash", str(POSTGRES_SCRIPT), "start", folder],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        _unavailable(f"scripts/postgres.sh start failed:\n{started.stderr[-2000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(
            ["bash", str(POSTGRES_SCRIPT), "stop", folder], capture_output=True, timeout=60
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server_url):
    """The session's PostgreSQL database, emptied of OptML's tables."""
    import sqlalchemy as sa

    from optml.storage._sql import _engine_url

    engine = sa.create_engine(_engine_url(postgres_server_url))
    with engine.begin() as conn:
        conn.execute(
            sa.text("DROP TABLE IF EXISTS runs, trials, studies, schema_version CASCADE")
        )
    engine.dispose()
    return postgres_server_url


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'optml.db'}"
