"""Files that travel with an objective to another machine (a Dask worker, a Kubernetes pod):
which paths an objective names, which of them are shipped, where they land, and the error for a
path that is neither shipped nor there."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from optml.objectives._base import Objective

if TYPE_CHECKING:
    from optml.executors._base import TrialTask

_LOCK = threading.Lock()
_SHIP_DIR: str | None = None


def ship_dir() -> str:
    """This process's directory for files shipped to it (made once, on first use)."""
    global _SHIP_DIR
    with _LOCK:
        if _SHIP_DIR is None:
            _SHIP_DIR = tempfile.mkdtemp(prefix="optml-shipped-")
        return _SHIP_DIR


def named_paths(objective: Objective) -> list[tuple[str, str]]:
    """(field, path) for every path the objective names: ``function``'s file, ``module``,
    ``data`` and ``cwd``."""
    found = []
    for field in ("function", "module", "data", "cwd"):
        value = getattr(objective, field, None)
        if not isinstance(value, str) or not value:
            continue
        if field == "function":
            target, sep, _ = value.rpartition(":")
            if not (sep and target.endswith(".py")):
                continue
            value = target
        elif field == "module" and not value.endswith(".py"):
            continue
        found.append((field, value))
    return found


def shipped_files(objective: Objective, limit: int, data: str | None = None) -> dict[str, bytes]:
    """The files that travel with the objective: those it names (and ``data``, the study's data
    path) that are regular files of at most ``limit`` bytes (a directory, such as a command's
    ``cwd``, never does)."""
    paths = [(f, p) for f, p in named_paths(objective) if f != "cwd"]
    if data:
        paths.append(("data", data))
    files = {}
    for _, path in paths:
        if path not in files and os.path.isfile(path) and os.path.getsize(path) <= limit:
            with open(path, "rb") as f:
                files[path] = f.read()
    return files


def localize(key: str, files: dict[str, bytes]) -> dict[str, str]:
    """Where each shipped file lies on this machine: its own path where that holds the same
    bytes (a shared filesystem, or the image), else a copy written under :func:`ship_dir`."""
    relocate = {}
    for path, content in files.items():
        try:
            with open(path, "rb") as f:
                if f.read() == content:
                    continue
        except OSError:
            pass
        digest = hashlib.sha256(content).hexdigest()[:12]
        local = os.path.join(ship_dir(), key, digest, os.path.basename(path))
        if not os.path.exists(local):
            os.makedirs(os.path.dirname(local), exist_ok=True)
            tmp = f"{local}.{os.getpid()}.{threading.get_ident()}"
            with open(tmp, "wb") as f:
                f.write(content)
            os.replace(tmp, local)
        relocate[path] = local
    return relocate


def size_text(n: int) -> str:
    return f"{n // 2**20} MB" if n >= 2**20 else f"{n // 2**10} KB"


def unseen_path(
    paths: list[tuple[str, str]], relocate: dict[str, str], where: str, limit: int, advice: str
) -> str | None:
    """An error for the first of ``paths`` that this machine (``where``) cannot see."""
    for field, path in paths:
        if path in relocate or os.path.exists(path):
            continue
        name = f"objective.{field}" if field != "data" else "data"
        return (
            f"{name} {path!r} does not exist on {where}: only files of up to "
            f"{size_text(limit)} that a function or model module names, or a data file, are "
            f"shipped; {advice}"
        )
    return None


def arrive(
    key: str,
    files: dict[str, bytes],
    named: list[tuple[str, str]],
    task: TrialTask,
    where: str,
    limit: int,
    advice: str,
) -> tuple[dict[str, str], TrialTask, str | None]:
    """Put the shipped files in place on this machine: (where each one lies, the task with its
    data path moved accordingly, an error naming a path this machine cannot see, or None)."""
    relocate = localize(key, files)
    if task.data in relocate:
        task = replace(task, data=relocate[task.data])
    paths = [(f, relocate.get(p, p)) for f, p in named]
    if task.data and not any(p == task.data for _, p in paths):
        paths.append(("data", task.data))
    return relocate, task, unseen_path(paths, relocate, where, limit, advice)
