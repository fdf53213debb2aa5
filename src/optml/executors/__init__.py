"""Executors: where trials run (serial, local processes; Dask, Ray and Kubernetes as extras)."""

from __future__ import annotations

from typing import Any

from optml.errors import SpecError
from optml.executors._base import Executor, TrialOutcome, TrialTask, run_trial
from optml.executors._local import LocalExecutor
from optml.executors._serial import SerialExecutor

_BACKENDS: dict[str, type[Executor]] = {"serial": SerialExecutor, "local": LocalExecutor}


def make_executor(
    backend: str | Executor | None = None,
    workers: int | None = None,
    *,
    oversubscribe: bool = False,
    **options: Any,
) -> Executor:
    """Build an executor by name (``local`` by default) with ``workers`` slots.

    ``oversubscribe`` lets a local executor start more workers than
    :func:`~optml.executors._local.max_local_workers` (refused otherwise).
    """
    if isinstance(backend, Executor):
        return backend
    name = backend or "local"
    if name not in _BACKENDS:
        raise SpecError(f"execution.backend: unknown {name!r}; choose one of {sorted(_BACKENDS)}")
    if name == "local":
        options["oversubscribe"] = oversubscribe
    return _BACKENDS[name](workers=workers, **options)  # type: ignore[call-arg]


__all__ = [
    "Executor",
    "LocalExecutor",
    "SerialExecutor",
    "TrialOutcome",
    "TrialTask",
    "make_executor",
    "run_trial",
]
