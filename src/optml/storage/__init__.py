"""Storage of studies and trials: in memory, or SQL (SQLite by default, PostgreSQL)."""

from __future__ import annotations

import re

from optml.errors import StorageError
from optml.storage._base import TRIAL_SORTS, Storage, StudyRecord, StudySummary, TrialRow
from optml.storage._memory import InMemoryStorage

DEFAULT_STORAGE_URL = "sqlite:///optml.db"


def safe_url(url: str) -> str:
    """``url`` as it may be printed: its password, if any, replaced by ``***``."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def open_storage(url: str | Storage | None = None) -> Storage:
    """Open the storage at ``url``: ``memory://``, ``sqlite:///path.db`` or ``postgresql://...``."""
    if isinstance(url, Storage):
        return url
    url = url or DEFAULT_STORAGE_URL
    if url in ("memory://", ":memory:"):
        return InMemoryStorage()
    if url.startswith(("sqlite:", "sqlite+", "postgresql:", "postgresql+", "postgres:")):
        from optml.storage._sql import SQLStorage

        return SQLStorage(url)
    raise StorageError(
        f"storage URL {safe_url(url)!r} is not understood; OptML accepts sqlite:///PATH.db (relative to "
        "the current directory), sqlite:////ABS/PATH.db, postgresql://USER:PASSWORD@HOST/DB and "
        "memory://"
    )


__all__ = [
    "DEFAULT_STORAGE_URL",
    "InMemoryStorage",
    "Storage",
    "StudyRecord",
    "StudySummary",
    "TRIAL_SORTS",
    "TrialRow",
    "open_storage",
    "safe_url",
]
