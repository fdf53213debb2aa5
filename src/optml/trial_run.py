"""The entry point a Kubernetes Job's container runs for a Python objective: one trial from its
description, with the shared worker runtime, its outcome printed as the last line of output.

``python -m optml.trial_run`` (or ``optml trial run``) reads ``OPTML_TASK`` (the task as JSON,
with the small files the objective names: see :mod:`optml.executors._ship`) and
``OPTML_OBJECTIVE`` (the objective, cloudpickled and base64-encoded) from the environment (a
value too long for one variable continues in ``NAME_1``, ``NAME_2``, ...); ``--task FILE``
reads both from one JSON file ``{"task": ..., "objective": ...}`` instead.
The trial's own output is captured by the runtime and travels inside the outcome, so what the
process prints is one JSON object per line: ``{"optml_report": {...}}`` for each value the trial
reports, as it reports it, and last ``{"optml_outcome": {...}}``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from optml.executors._base import TrialOutcome, TrialTask

OUTCOME_KEY = "optml_outcome"
REPORT_KEY = "optml_report"
# The files an objective names that are shipped inside a Job (at most two: its module or
# function's file, and the data file): a Job must fit in one etcd request (about 1.5 MB).
POD_SHIP_LIMIT = 256 * 2**10
POD_ADVICE = "put this path in the image, or on a volume mounted in the pods at the same path"
# Linux refuses to start a process with one environment string over 128 KB.
_ENV_PART = 96 * 2**10


def encode_task(
    task: TrialTask,
    files: Mapping[str, bytes] | None = None,
    named: list[tuple[str, str]] | None = None,
) -> str:
    """The task as the JSON ``OPTML_TASK`` holds, with the ``files`` shipped with it and the
    paths the objective names (``named``), which the pod checks before the trial runs."""
    d: dict[str, Any] = {
        "number": task.number,
        "params": task.params,
        "metric": task.metric,
        "attempt": task.attempt,
        "timeout": task.timeout,
        "data": task.data,
    }
    if files:
        d["files"] = {p: base64.b64encode(b).decode() for p, b in files.items()}
    if named:
        d["paths"] = [list(fp) for fp in named]
    return json.dumps(d)


def shipment(text: str) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    """The files shipped in an encoded task, and the paths its objective names."""
    d = json.loads(text)
    files = {p: base64.b64decode(b) for p, b in d.get("files", {}).items()}
    return files, [(str(f), str(p)) for f, p in d.get("paths", [])]


def env_parts(name: str, value: str) -> dict[str, str]:
    """``name=value`` as environment variables, a long value split over ``name_1``, ..."""
    parts = [value[i : i + _ENV_PART] for i in range(0, len(value), _ENV_PART)] or [""]
    return {name if i == 0 else f"{name}_{i}": part for i, part in enumerate(parts)}


def from_env(name: str, environ: Mapping[str, str]) -> str:
    """The value :func:`env_parts` split (KeyError when ``name`` is not set)."""
    value, i = environ[name], 1
    while f"{name}_{i}" in environ:
        value += environ[f"{name}_{i}"]
        i += 1
    return value


def decode_task(text: str) -> TrialTask:
    d = json.loads(text)
    return TrialTask(
        number=int(d["number"]),
        params=dict(d["params"]),
        metric=str(d["metric"]),
        attempt=int(d.get("attempt", 0)),
        timeout=d.get("timeout"),
        data=d.get("data"),
    )


def outcome_to_json(o: TrialOutcome) -> dict[str, Any]:
    return {
        "number": o.number,
        "state": o.state,
        "metrics": dict(o.metrics),
        "error": o.error,
        "logs": o.logs,
        "duration_s": o.duration_s,
        "started_at": o.started_at.isoformat() if o.started_at else None,
        "finished_at": o.finished_at.isoformat() if o.finished_at else None,
        "intermediate": [[k, v] for k, v in o.intermediate.items()],
        "attempt": o.attempt,
        "host": o.host,
        "runner": o.runner,
    }


def outcome_from_json(d: dict[str, Any]) -> TrialOutcome:
    def when(t: str | None) -> datetime | None:
        return None if t is None else datetime.fromisoformat(t)

    return TrialOutcome(
        number=int(d["number"]),
        state=str(d["state"]),
        metrics={str(k): float(v) for k, v in d.get("metrics", {}).items()},
        error=d.get("error"),
        logs=d.get("logs"),
        duration_s=float(d.get("duration_s", 0.0)),
        started_at=when(d.get("started_at")),
        finished_at=when(d.get("finished_at")),
        intermediate={int(k): float(v) for k, v in d.get("intermediate", [])},
        attempt=int(d.get("attempt", 0)),
        host=d.get("host"),
        runner=d.get("runner"),
    )


def report_line(number: int, attempt: int, step: int, value: float) -> str:
    return json.dumps(
        {REPORT_KEY: {"number": number, "attempt": attempt, "step": step, "value": value}}
    )


def parse_report(line: str) -> tuple[int, float] | None:
    """(step, value) of a report line, else None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        d = json.loads(line)[REPORT_KEY]
        return int(d["step"]), float(d["value"])
    except (ValueError, KeyError, TypeError):
        return None


def last_outcome(log: str) -> dict[str, Any] | None:
    """The outcome object on the last line of a log that has one, else None."""
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            return None
        if isinstance(value, dict) and isinstance(value.get(OUTCOME_KEY), dict):
            return value[OUTCOME_KEY]  # type: ignore[no-any-return]
        return None
    return None


def run(task_json: str, objective_b64: str) -> TrialOutcome:
    """Run one trial in this process, its output captured (it is the container's only job);
    each value it reports is printed as a line as it is reported."""
    from optml.executors._runtime import load_objective, run_trial
    from optml.executors._ship import arrive

    task = decode_task(task_json)
    files, named = shipment(task_json)
    key = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:16]
    host = socket.gethostname()
    relocate, task, problem = arrive(
        key, files, named, task, f"pod {host}", POD_SHIP_LIMIT, POD_ADVICE
    )
    if problem:
        return TrialOutcome(
            task.number,
            "FAILED",
            error=problem,
            attempt=task.attempt,
            host=host,
            runner=str(os.getpid()),
        )
    objective = load_objective(base64.b64decode(objective_b64), relocate)
    out = os.dup(1)  # the pod's log: the trial's own output goes to its capture file

    def on_report(step: int, value: float) -> None:
        line = report_line(task.number, task.attempt, step, value) + "\n"
        os.write(out, line.encode())

    try:
        with tempfile.TemporaryDirectory(prefix="optml-trial-") as tmp:
            return run_trial(
                objective,
                task,
                log_path=os.path.join(tmp, "trial.log"),
                interruptible=False,
                on_report=on_report,
            )
    finally:
        os.close(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--task"] and len(args) == 2:
        with open(args[1], encoding="utf-8") as f:
            d = json.load(f)
        task_json, objective_b64 = json.dumps(d["task"]), d["objective"]
    elif not args:
        try:
            task_json = from_env("OPTML_TASK", os.environ)
            objective_b64 = from_env("OPTML_OBJECTIVE", os.environ)
        except KeyError as exc:
            print(f"optml trial run: the environment has no {exc.args[0]}", file=sys.stderr)
            return 2
    else:
        print("usage: python -m optml.trial_run [--task FILE]", file=sys.stderr)
        return 2
    outcome = run(task_json, objective_b64)
    sys.stdout.flush()
    print(json.dumps({OUTCOME_KEY: outcome_to_json(outcome)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
