"""The entry point a Kubernetes Job's container runs for a Python objective: one trial from its
description, with the shared worker runtime, its outcome printed as the last line of output.

``python -m optml.trial_run`` (or ``optml trial run``) reads ``OPTML_TASK`` (the task as JSON)
and ``OPTML_OBJECTIVE`` (the objective, cloudpickled and base64-encoded) from the environment;
``--task FILE`` reads both from one JSON file ``{"task": ..., "objective": ...}`` instead.
The trial's own output is captured by the runtime and travels inside the outcome, so the last
line stays one parseable JSON object: ``{"optml_outcome": {...}}``.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from datetime import datetime
from typing import Any

from optml.executors._base import TrialOutcome, TrialTask

OUTCOME_KEY = "optml_outcome"


def encode_task(task: TrialTask) -> str:
    """The task as the JSON ``OPTML_TASK`` holds."""
    return json.dumps(
        {
            "number": task.number,
            "params": task.params,
            "metric": task.metric,
            "attempt": task.attempt,
            "timeout": task.timeout,
            "data": task.data,
        }
    )


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
    """Run one trial in this process, its output captured (it is the container's only job)."""
    from optml.executors._runtime import load_objective, run_trial

    task = decode_task(task_json)
    objective = load_objective(base64.b64decode(objective_b64))
    with tempfile.TemporaryDirectory(prefix="optml-trial-") as tmp:
        return run_trial(
            objective, task, log_path=os.path.join(tmp, "trial.log"), interruptible=False
        )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--task"] and len(args) == 2:
        with open(args[1], encoding="utf-8") as f:
            d = json.load(f)
        task_json, objective_b64 = json.dumps(d["task"]), d["objective"]
    elif not args:
        try:
            task_json, objective_b64 = os.environ["OPTML_TASK"], os.environ["OPTML_OBJECTIVE"]
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
