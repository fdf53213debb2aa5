"""Storage of studies and trials: in memory, or SQL (SQLite by default, PostgreSQL)."""

from __future__ import annotations

from optml.errors import StorageError
from optml.storage._base import Storage, StudyRecord, StudySummary
from optml.storage._memory import InMemoryStorage

DEFAULT_STORAGE_URL = "sqlite:///optml.db"


def open_storage(url: str | Storage | None = None) -> Storage:
    """Open the storage at ``url``: ``memory://``, ``sqlite:///path.db`` or ``postgresql://...``."""
    if isinstance(url, Storage):
        return url
    url = url or DEFAULT_STORAGE_URL
    if url in ("memory://", ":memory:"):
        return InMemoryStorage()
    if url.startswith(("sqlite:", "postgresql:", "postgresql+", "postgres:")):
        from optml.storage._sql import SQLStorage

        return SQLStorage(url)
    raise StorageError(
        f"storage URL {url!r} is not understood; use memory://, sqlite:///PATH.db or "
        "postgresql://USER:PASSWORD@HOST/DB"
    )


__all__ = [
    "DEFAULT_STORAGE_URL",
    "InMemoryStorage",
    "Storage",
    "StudyRecord",
    "StudySummary",
    "open_storage",
]
