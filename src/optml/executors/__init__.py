"""Executors: where trials run (serial, local processes; Dask, Ray and Kubernetes as extras)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optml.errors import SpecError
from optml.executors._base import (
    Executor,
    TrialEvent,
    TrialOutcome,
    TrialReported,
    TrialStarted,
    TrialTask,
)

if TYPE_CHECKING:
    from optml.executors._dask import DaskExecutor, check_address
    from optml.executors._inprocess import run_trial
    from optml.executors._k8s import KubernetesExecutor
    from optml.executors._local import LocalExecutor
    from optml.executors._ray import RayExecutor
    from optml.executors._serial import SerialExecutor

# Each backend's module is imported when it is first used, so that a study run in its own
# process (the serial backend) does not load the process, cluster and Kubernetes machinery.
_BACKENDS: dict[str, str] = {
    "serial": "SerialExecutor",
    "local": "LocalExecutor",
    "dask": "DaskExecutor",
    "ray": "RayExecutor",
    "kubernetes": "KubernetesExecutor",
}
# The module that defines each name imported on first use.
_LAZY = {
    "SerialExecutor": "_serial",
    "LocalExecutor": "_local",
    "DaskExecutor": "_dask",
    "check_address": "_dask",
    "RayExecutor": "_ray",
    "KubernetesExecutor": "_k8s",
    "run_trial": "_inprocess",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


# Options only some backends take: (option, backends).
_OPTIONS = {
    "address": ("dask", "ray"),
    "cpus": ("dask", "ray"),
    "memory": ("dask", "ray", "kubernetes"),
    "gpus": ("local", "dask", "ray"),
    "in_thread": ("dask",),
    "study": ("kubernetes",),
    "image": ("kubernetes",),
    "namespace": ("kubernetes",),
    "cpu": ("kubernetes",),
    "gpu": ("kubernetes",),
    "service_account": ("kubernetes",),
    "env": ("kubernetes",),
    "api_client": ("kubernetes",),
}


def make_executor(
    backend: str | Executor | None = None,
    workers: int | None = None,
    *,
    oversubscribe: bool = False,
    **options: Any,
) -> Executor:
    """Build an executor by name (``local`` by default) with ``workers`` slots.

    ``oversubscribe`` lets a local executor start more workers than
    :func:`~optml.executors._local.max_local_workers` (refused otherwise). The Dask backend
    takes ``address`` (its scheduler; none: a local cluster) and what one trial needs:
    ``cpus``, ``memory``, ``gpus`` (see :class:`~optml.executors.DaskExecutor`); so does the
    Ray backend (:class:`~optml.executors.RayExecutor`); the local backend takes ``gpus`` too
    (whole GPUs per trial, see :mod:`optml.executors._gpus`). An option left None is not
    given, and one the backend does not take is refused.
    """
    if isinstance(backend, Executor):
        return backend
    name = backend or "local"
    if name not in _BACKENDS:
        raise SpecError(f"execution.backend: unknown {name!r}; choose one of {sorted(_BACKENDS)}")
    options = {k: v for k, v in options.items() if v is not None}
    for option in options:
        takers = _OPTIONS.get(option)
        if takers is not None and name not in takers:
            field = f"resources.{option}" if option in ("cpus", "memory", "gpus") else option
            raise SpecError(
                f"execution.{field} applies to backend {' or '.join(takers)}, not {name!r}"
            )
    if name == "local":
        options["oversubscribe"] = oversubscribe
    if name == "dask" and options.get("address"):
        check_address(options["address"])
    backend_class: type[Executor] = __getattr__(_BACKENDS[name])
    return backend_class(workers=workers, **options)  # type: ignore[call-arg]


__all__ = [
    "DaskExecutor",
    "Executor",
    "KubernetesExecutor",
    "LocalExecutor",
    "RayExecutor",
    "SerialExecutor",
    "TrialEvent",
    "TrialOutcome",
    "TrialReported",
    "TrialStarted",
    "TrialTask",
    "make_executor",
    "run_trial",
]
