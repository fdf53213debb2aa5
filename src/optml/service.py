"""The one way to manage studies, shared by the CLI and the web server: create from a spec,
start a run in its own process, stop, resume, delete, and read trials page by page.

A run started here is a detached ``optml resume`` process: it records itself in storage as a
run with a heartbeat (see :meth:`optml.storage.Storage.start_run`), so it outlives the process
that started it (the web server may restart), and a RUNNING study without a live run is one
whose controller crashed. A stop is a stored request, so any process can ask.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optml.errors import OptMLError, SpecError, StudyNotFoundError
from optml.trial import Trial, TrialState

# Largest uploaded file the service stores (model modules, scripts, data sets).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class Conflict(OptMLError):
    """The study is in a state that refuses the request (already running, still running)."""


@dataclass(frozen=True)
class TrialsPage:
    """One page of a study's trials and how many match in all."""

    trials: list[Trial]
    total: int
    offset: int
    limit: int


class UntrustedObjectiveError(OptMLError):
    """A stored objective was not signed with this user's key (see ``optml._trust``)."""


def executor_for(spec: Any, workers: int | None = None, oversubscribe: bool = False) -> Any:
    """The executor a spec asks for, with ``workers`` and ``oversubscribe`` overriding it;
    built (and its worker count checked) before any study is written."""
    from optml.executors import make_executor

    e = spec.execution
    r = e.resources
    if e.backend == "kubernetes":
        return make_executor(
            "kubernetes",
            workers or e.workers,
            study=spec.name,
            image=e.image,
            namespace=e.namespace,
            cpu=None if r.cpus is None else str(r.cpus),
            memory=None if r.memory is None else str(r.memory),
            gpu=r.gpus,
            service_account=e.service_account,
            env=e.env,
        )
    return make_executor(
        e.backend,
        workers or e.workers,
        oversubscribe=oversubscribe or e.oversubscribe,
        address=e.address,
        cpus=r.cpu_count(),
        memory=r.memory,
        gpus=r.gpus,
    )


def run_here(
    study: Any, spec: Any, executor: Any, *, workers: int | None = None, show_progress: bool = False
) -> None:
    """Drive ``study`` in this process with its spec's settings until the budget is spent, the
    space exhausted, or a stop (what ``optml run`` and ``optml resume`` do, and what a run
    started by :meth:`StudyService.start` does in its own process)."""
    from optml.spec import build_objective

    # The budget is the study's, stored: every controller of it (here or on other machines)
    # counts against the same number.
    if spec.budget.trials is not None and study.budget != spec.budget.trials:
        study.set_budget(spec.budget.trials)
    study.optimize(
        build_objective(spec),
        timeout=spec.budget.timeout,
        workers=workers or spec.execution.workers,
        executor=executor,
        trial_timeout=spec.execution.trial_timeout,
        retries=spec.execution.retries,
        target=spec.budget.target,
        data=spec.data,
        show_progress=show_progress,
        heartbeat=spec.execution.heartbeat,
        grace=spec.execution.grace,
        stale=spec.execution.stale,
        propose_ahead=spec.execution.propose_ahead,
    )


def stored_spec(study: Any, *, trust: bool = False) -> Any:
    """The spec stored with ``study``, to run it again. The database may be shared, so an
    objective not signed with this user's key is refused (naming it) unless ``trust``."""
    import json

    from optml import _trust
    from optml.spec import parse_spec

    stored = study.spec
    if not stored:
        raise OptMLError(
            f"study {study.name!r} was not created from a spec, so there is no objective to "
            "run it with; continue it from Python with load_study(...).optimize(...)"
        )
    if not trust and not _trust.verify(stored, study.name):
        shown = json.dumps({"objective": stored.get("objective"), "data": stored.get("data")})
        raise UntrustedObjectiveError(
            f"study {study.name!r}: its stored objective {shown} was not signed with your key, "
            "so it may have been written by someone else; it is not run unless you pass "
            "--trust (or run your own spec file: optml run SPEC_FILE)"
        )
    stored.pop(_trust.SIGNATURE, None)
    return parse_spec(stored, source=f"stored spec of {study.name!r}")


class StudyService:
    """Studies in one storage, with a folder per study for uploads and run logs.

    ``files_dir`` holds ``<study folder>/`` for each study (uploads, the log of runs started
    here); by default ``optml-files`` in the current directory.
    """

    def __init__(self, storage: str | None = None, files_dir: str | Path | None = None) -> None:
        from optml.storage import DEFAULT_STORAGE_URL, open_storage

        self.url = storage or DEFAULT_STORAGE_URL
        self.storage = open_storage(self.url)
        self.files_dir = Path(files_dir or "optml-files").resolve()
        self._children: list[subprocess.Popen[bytes]] = []

    # -- studies ---------------------------------------------------------------------------
    def list_studies(self) -> list[Any]:
        """Every study's summary, a study whose controllers all died shown INTERRUPTED."""
        from dataclasses import replace

        from optml.study import study_state

        return [
            replace(s, state=study_state(self.storage, self.storage.load_study(s.name)))
            if s.state == "RUNNING"
            else s
            for s in self.storage.list_studies()
        ]

    def load(self, name: str) -> Any:
        from optml.study import Study

        return Study(self.storage, self.storage.load_study(name))

    def create(self, spec: Mapping[str, Any] | Any, *, base_dir: str | Path | None = None) -> Any:
        """Create the study a spec (a dict in the YAML schema, or a parsed StudySpec) describes;
        everything is checked before anything is written."""
        from optml.spec import StudySpec, parse_spec, study_from_spec

        if not isinstance(spec, StudySpec):
            spec = parse_spec(dict(spec), source="spec", base_dir=base_dir)
        return study_from_spec(spec, storage=self.storage)

    def delete(self, name: str) -> None:
        """Delete a study, its trials and its folder of uploads; refused while a run drives it."""
        import shutil

        study = self.load(name)
        if self.running(study):
            raise Conflict(f"study {name!r} is running; stop it first (optml stop {name})")
        self.storage.delete_study(name)
        folder = self.folder(name, create=False)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)

    # -- runs ------------------------------------------------------------------------------
    def running(self, study: Any) -> bool:
        """Whether a live controller drives the study now (its run's heartbeat is recent)."""
        from optml._controller import DEFAULT_GRACE_S

        grace = float((study.spec.get("execution") or {}).get("grace") or DEFAULT_GRACE_S)
        return len(self.storage.live_runs(study.id, grace)) > 0

    def start(self, name: str, *, workers: int | None = None) -> int:
        """Start (or resume) the study's run in a detached process; returns its pid.

        The process is ``optml resume NAME``: it runs the stored spec's objective (signed by this
        user when the study was created), records itself in storage, and keeps running when the
        caller exits. Refused for a study without a stored spec, with ``memory://`` storage
        (another process cannot see it), or while a run is live.
        """
        study = self.load(name)
        stored_spec(study)  # refused here, not in a detached process nobody watches
        if self.url.startswith(("memory:", ":memory:")):
            raise OptMLError("a run in its own process needs a database; memory:// is private")
        if self.running(study):
            raise Conflict(f"study {name!r} is already running")
        folder = self.folder(name)
        cmd = [sys.executable, "-m", "optml.cli", "resume", name, "--storage", self.url, "-q"]
        if workers is not None:
            cmd += ["--workers", str(int(workers))]
        with open(folder / "run.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not killed with the server's process group
                cwd=os.getcwd(),
            )
        self._children.append(proc)
        # Reap it when it ends, so a long-lived server leaves no zombies.
        threading.Thread(target=proc.wait, daemon=True).start()
        return proc.pid

    def resume(self, name: str, *, workers: int | None = None) -> int:
        return self.start(name, workers=workers)

    def stop(self, name: str) -> int:
        """Ask every live controller of the study to stop (a stored request); returns how many
        were asked. Running trials finish; the study ends INTERRUPTED."""
        return int(self.load(name).stop(everywhere=True))

    # -- trials ----------------------------------------------------------------------------
    def trials_page(
        self,
        name: str,
        *,
        offset: int = 0,
        limit: int = 50,
        sort: str = "number",
        descending: bool = False,
        states: Iterable[str] | None = None,
    ) -> TrialsPage:
        study_id = self.storage.load_study(name).id
        chosen = None if states is None else [_state(s) for s in states]
        trials, total = self.storage.trials_page(
            study_id,
            offset=offset,
            limit=limit,
            sort=sort,
            descending=descending,
            states=chosen,
        )
        return TrialsPage(trials, total, offset, limit)

    def trial(self, name: str, number: int) -> Trial:
        return self.storage.get_trial(self.storage.load_study(name).id, number)

    def best(self, name: str) -> Trial | None:
        return self.load(name)._best()

    def export(self, name: str, fmt: str = "json") -> str:
        if fmt not in ("csv", "json"):
            raise OptMLError(f"format must be csv or json, not {fmt!r}")
        return str(self.load(name).export(fmt))

    # -- files -----------------------------------------------------------------------------
    def folder(self, name: str, *, create: bool = True) -> Path:
        """The study's own folder under ``files_dir`` (its name made safe, plus a hash so two
        names that clean to the same text stay apart)."""
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        stem = _SAFE_NAME.sub("_", name).strip("._")[:60] or "study"
        folder = self.files_dir / f"{stem}-{digest}"
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def save_upload(self, name: str, filename: str, content: bytes) -> Path:
        """Store an uploaded file in the study's folder under a safe name; returns its path.

        The name keeps only letters, digits, ``.``, ``_`` and ``-`` of its last path part, so it
        can never leave the folder; files over :data:`MAX_UPLOAD_BYTES` are refused.
        """
        if len(content) > MAX_UPLOAD_BYTES:
            raise SpecError(
                f"upload {filename!r} is {len(content)} bytes; the limit is {MAX_UPLOAD_BYTES}"
            )
        folder = self.folder(name)
        path = folder / safe_filename(filename)
        if path.resolve().parent != folder.resolve():
            raise SpecError(f"upload name {filename!r} is not a plain file name")
        path.write_bytes(content)
        return path

    def close(self) -> None:
        self.storage.close()


def safe_filename(filename: str) -> str:
    """A file name that stays inside its folder: the last path part, only ``[A-Za-z0-9._-]``,
    no leading dot; refused when nothing usable is left."""
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = _SAFE_NAME.sub("_", base).lstrip(".")[:100]
    if not cleaned or cleaned in (".", ".."):
        raise SpecError(
            f"upload name {filename!r} has no usable characters; use letters, digits, . _ -"
        )
    return cleaned


def _state(value: str) -> TrialState:
    try:
        return TrialState(str(value).upper())
    except ValueError:
        raise OptMLError(
            f"state {value!r} is not a trial state; choose from {', '.join(s.value for s in TrialState)}"
        ) from None


__all__ = [
    "MAX_UPLOAD_BYTES",
    "Conflict",
    "StudyNotFoundError",
    "StudyService",
    "TrialsPage",
    "safe_filename",
]
