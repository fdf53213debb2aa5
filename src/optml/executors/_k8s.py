"""The Kubernetes executor: one batch/v1 Job per trial, built with the official client's models,
submitted, watched, its metric read from the pod's log, and deleted once recorded."""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from optml.errors import OptMLError, missing_dependency
from optml.executors._base import (
    Executor,
    TrialEvent,
    TrialOutcome,
    TrialReported,
    TrialStarted,
    TrialTask,
    ending_with,
)
from optml.objectives._base import Objective

LABEL_STUDY = "optml.io/study"
LABEL_TRIAL = "optml.io/trial"
LABEL_ATTEMPT = "optml.io/attempt"
ANNOTATION_STUDY = "optml.io/study-name"
# Finished Jobs the controller could not delete (it died first) are removed by the cluster.
TTL_AFTER_FINISHED_S = 3600
DEFAULT_IMAGE_PYTHON = "python"
_WATCH_S = 30  # one watch request's server-side limit; the watch resumes from where it was


def _client() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise missing_dependency("kubernetes", "kubernetes") from None
    return kubernetes


@dataclass(frozen=True)
class JobSettings:
    """What every trial's Job of a study shares (``execution:`` of a spec)."""

    study: str
    image: str
    namespace: str = "default"
    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None
    service_account: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    ttl_s: int = TTL_AFTER_FINISHED_S


def study_label(study: str) -> str:
    """A label value for the study (at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends);
    a name that does not fit keeps a readable prefix and a hash of the whole."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", study).strip("-_.")
    if clean == study and len(study) <= 63:
        return study
    digest = hashlib.sha256(study.encode()).hexdigest()[:10]
    return f"{clean[:50].strip('-_.') or 's'}-{digest}"


def job_name(study: str, number: int, attempt: int) -> str:
    """The Job's name (a DNS-1123 label; the controller finds it again from the trial)."""
    slug = re.sub(r"[^a-z0-9-]", "-", study.lower()).strip("-")[:30].strip("-") or "study"
    digest = hashlib.sha256(study.encode()).hexdigest()[:8]
    return f"optml-{slug}-{digest}-{number}-{attempt}"


def container_args(
    objective: Objective, task: TrialTask, files: dict[str, bytes] | None = None
) -> tuple[list[str], dict[str, str]]:
    """The container's command and environment for one trial.

    A command objective runs its own command line (the image need not have optml); the paths
    it names (``data``, ``cwd``) are not shipped, so when it names any, a ``/bin/sh`` preamble
    checks that they exist in the pod first and otherwise ends the pod with a line naming the
    missing one (``optml: ...``). A Python objective runs the package's entry point with the
    task, the pickled objective and the small ``files`` it names in its environment (see
    :mod:`optml.trial_run`), and its reports printed as they happen."""
    from optml.executors._ship import named_paths
    from optml.objectives._command import CommandObjective
    from optml.trial_run import encode_task, env_parts

    env = {"OPTML_PARAMS": json.dumps(task.params), "OPTML_TRIAL_NUMBER": str(task.number)}
    if isinstance(objective, CommandObjective):
        env.update(objective.env)
        env["OPTML_DATA"] = objective.data or ""
        argv = objective.render(task.params)
        checks = [(f, p) for f, p in named_paths(objective) if f in ("data", "cwd")]
        if not checks:
            return (["/bin/sh", "-c", argv] if isinstance(argv, str) else argv), env
        return ["/bin/sh", "-c", _checked(argv, checks)], env
    from optml.executors._runtime import dump_objective

    env.update(env_parts("OPTML_TASK", encode_task(task, files, named_paths(objective))))
    objective_b64 = base64.b64encode(dump_objective(objective)).decode()
    env.update(env_parts("OPTML_OBJECTIVE", objective_b64))
    return ["python", "-m", "optml.trial_run"], env


MISSING_PREFIX = "optml: "


def _checked(argv: list[str] | str, checks: list[tuple[str, str]]) -> str:
    """A shell script that fails naming the first of ``checks`` the pod lacks, then runs
    ``argv`` (in the ``cwd`` among them)."""
    import shlex

    from optml.trial_run import POD_ADVICE

    lines = []
    # The cwd first: the command's other paths may be relative to it.
    for field_name, path in sorted(checks, key=lambda fp: fp[0] != "cwd"):
        name = "data" if field_name == "data" else f"objective.{field_name}"
        before = f"{MISSING_PREFIX}{name} {path!r} does not exist in pod"
        after = f"the paths a command names are not shipped; {POD_ADVICE}"
        echo = f'echo {shlex.quote(before)} "${{HOSTNAME:-?}}:" {shlex.quote(after)} >&2'
        lines.append(f"[ -e {shlex.quote(path)} ] || {{ {echo}; exit 120; }}")
        if field_name == "cwd":
            lines.append(f"cd {shlex.quote(path)} || exit 120")
    run = f"/bin/sh -c {shlex.quote(argv)}" if isinstance(argv, str) else shlex.join(argv)
    lines.append(f"exec {run}")
    return "\n".join(lines)


def build_job(
    settings: JobSettings, task: TrialTask, command: list[str], env: dict[str, str]
) -> Any:
    """The ``V1Job`` of one trial."""
    k = _client().client
    labels = {
        LABEL_STUDY: study_label(settings.study),
        LABEL_TRIAL: str(task.number),
        LABEL_ATTEMPT: str(task.attempt),
        "app.kubernetes.io/managed-by": "optml",
    }
    quantities: dict[str, str] = {}
    if settings.cpu:
        quantities["cpu"] = str(settings.cpu)
    if settings.memory:
        quantities["memory"] = str(settings.memory)
    if settings.gpu:
        quantities["nvidia.com/gpu"] = str(settings.gpu)
    resources = k.V1ResourceRequirements(
        requests=dict(quantities) or None, limits=dict(quantities) or None
    )
    all_env = {**settings.env, **env}
    container = k.V1Container(
        name="trial",
        image=settings.image,
        command=command,
        env=[k.V1EnvVar(name=n, value=v) for n, v in sorted(all_env.items())],
        resources=resources,
    )
    pod = k.V1PodTemplateSpec(
        metadata=k.V1ObjectMeta(labels=labels),
        spec=k.V1PodSpec(
            restart_policy="Never",
            containers=[container],
            service_account_name=settings.service_account,
        ),
    )
    return k.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k.V1ObjectMeta(
            name=job_name(settings.study, task.number, task.attempt),
            namespace=settings.namespace,
            labels=labels,
            annotations={ANNOTATION_STUDY: settings.study},
        ),
        spec=k.V1JobSpec(
            template=pod,
            # Retries are the controller's (``retries``): each attempt is a Job of its own.
            backoff_limit=0,
            active_deadline_seconds=max(1, int(-(-task.timeout // 1))) if task.timeout else None,
            ttl_seconds_after_finished=settings.ttl_s,
        ),
    )


def to_dict(model: Any) -> dict[str, Any]:
    """A client model as the plain dict (camelCase keys) the API server takes."""
    return _client().client.ApiClient().sanitize_for_serialization(model)  # type: ignore[no-any-return]


def pod_files(objective: Objective, data: str | None) -> dict[str, bytes]:
    """The files shipped inside each Job of a Python objective (none for a command)."""
    from optml.executors._ship import shipped_files
    from optml.objectives._command import CommandObjective
    from optml.trial_run import POD_SHIP_LIMIT

    if isinstance(objective, CommandObjective):
        return {}
    return shipped_files(objective, POD_SHIP_LIMIT, data)


def render(settings: JobSettings, objective: Objective, tasks: list[TrialTask]) -> str:
    """The Jobs of ``tasks`` as one YAML stream, for review."""
    import yaml

    docs = []
    for task in tasks:
        command, env = container_args(objective, task, pod_files(objective, task.data))
        docs.append(to_dict(build_job(settings, task, command, env)))
    return yaml.safe_dump_all(docs, sort_keys=False)


# -- reading a finished Job ------------------------------------------------------------------


def job_state(job: Any) -> tuple[str | None, str | None]:
    """(``Complete``/``Failed``/None, reason) from a Job's status conditions."""
    for cond in (job.status and job.status.conditions) or []:
        if cond.status == "True" and cond.type in ("Complete", "Failed"):
            return cond.type, cond.reason
    return None, None


def exit_code(pod: Any) -> int | None:
    """The exit status of a finished pod's container, when it shows one."""
    for status in (pod is not None and pod.status and pod.status.container_statuses) or []:
        terminated = status.state and status.state.terminated
        if terminated is not None and terminated.exit_code is not None:
            return int(terminated.exit_code)
    return None


def outcome_from_log(
    task: TrialTask,
    objective: Objective,
    kind: str,
    reason: str | None,
    log: str | None,
    where: tuple[str | None, str | None],
    code: int | None = None,
) -> TrialOutcome:
    """What a finished Job means for its trial (``code``: its pod's exit status, if known)."""
    from optml.objectives._base import normalize_result
    from optml.trial_run import last_outcome, outcome_from_json

    host, runner = where
    number, attempt = task.number, task.attempt
    tail = (log or "")[-4000:] or None
    if kind == "Failed":
        if reason == "DeadlineExceeded":
            return TrialOutcome(
                number,
                "TIMEOUT",
                error=f"the Job ran past its activeDeadlineSeconds ({task.timeout:g} s)"
                if task.timeout
                else "the Job ran past its activeDeadlineSeconds",
                logs=tail,
                attempt=attempt,
                host=host,
                runner=runner,
            )
        found = last_outcome(log or "")
        lines = (log or "").strip().splitlines()
        if found is not None:  # the runtime reported, then the container failed
            error = outcome_from_json(found).error or "the trial's container failed"
        elif lines and lines[-1].startswith(MISSING_PREFIX):
            error = lines[-1][len(MISSING_PREFIX) :]
        elif code is not None:
            error = (
                f"the trial's container exited unexpectedly with status {code} "
                f"(the Job failed: {reason or 'no reason given'})"
            )
        else:
            error = f"the Job failed ({reason or 'no reason given'})"
        return TrialOutcome(
            number, "FAILED", error=error, logs=tail, attempt=attempt, host=host, runner=runner
        )
    if log is None:
        return TrialOutcome(
            number,
            "FAILED",
            error="the Job completed but its pod's log is gone (the pod was deleted)",
            attempt=attempt,
            host=host,
            runner=runner,
        )
    found = last_outcome(log)
    if found is not None:
        outcome = outcome_from_json(found)
        return TrialOutcome(
            number,
            outcome.state,
            outcome.metrics,
            outcome.error,
            outcome.logs,
            outcome.duration_s,
            outcome.started_at,
            outcome.finished_at,
            outcome.intermediate,
            attempt,
            host,
            runner,
        )
    from optml.objectives._command import CommandObjective, _last_result

    line = objective.command if isinstance(objective, CommandObjective) else "optml trial run"
    try:
        metrics = normalize_result(_last_result(log, line), task.metric)
    except Exception as exc:  # noqa: BLE001 - a bad result is the trial's failure
        return TrialOutcome(
            number, "FAILED", error=str(exc), logs=tail, attempt=attempt, host=host, runner=runner
        )
    return TrialOutcome(
        number, "COMPLETE", metrics, logs=tail, attempt=attempt, host=host, runner=runner
    )


# -- the executor -----------------------------------------------------------------------------


@dataclass
class _Tracked:
    task: TrialTask
    name: str
    started: bool = False
    where: tuple[str, str] = ("kubernetes", "")  # the node and the pod
    since: datetime | None = None  # when its Job started
    following: bool = False  # its pod's log is followed
    values: dict[int, float] = field(default_factory=dict)  # the reports passed on
    done: threading.Event = field(default_factory=threading.Event)  # no longer tracked


class KubernetesExecutor(Executor):
    """Runs each trial as one Kubernetes Job (see :func:`build_job`) in ``namespace``.

    The controller creates the Job, watches the study's Jobs (one watch on its label, resumed
    from the last resourceVersion when the stream ends or drops, listed again when that version
    is too old), and when a Job finishes reads its pod's log: a Python objective's last line is
    its outcome (``optml trial run``), a command's its result as for a local command. Complete
    means the trial's own outcome; Failed with DeadlineExceeded is a TIMEOUT; any other failure
    FAILED, with the container's exit status. The Job is then deleted (Background propagation:
    its pods go with it; the batch/v1 default would leave them running).

    Reports: while a Python trial's pod runs, its log is followed (one streaming request per
    running trial) and each report line the entry point prints is passed on as it comes.
    ``prune`` ends the trial PRUNED at its next report: the executor deletes the Job (its
    pod is terminated) and reports the trial PRUNED with the values reported so far.
    ``cancel`` deletes the Job and its pods; no outcome follows.

    Retries are the controller's (``retries`` of the study): a Job's ``backoffLimit`` is 0, so
    a failed pod fails its Job and the trial's next attempt is a new Job.

    Jobs carry the study and trial as labels. ``start`` lists the study's Jobs: a trial
    submitted while a Job of it (any attempt) is still there is reattached to that Job instead
    of run again, and one that finished while no controller watched is collected from it.
    ``shutdown(kill=True)`` deletes the Jobs in flight; ``kill=False`` leaves them running
    for the next controller.

    ``api_client`` is a ``kubernetes.client.ApiClient`` (for tests, or a cluster set up in
    code); otherwise the kubeconfig (``KUBECONFIG``) or the in-cluster configuration is loaded.
    """

    name = "kubernetes"
    remote = True

    def __init__(
        self,
        workers: int | None = None,
        *,
        study: str = "optml",
        image: str = DEFAULT_IMAGE_PYTHON,
        namespace: str = "default",
        cpu: str | None = None,
        memory: str | None = None,
        gpu: float | None = None,
        service_account: str | None = None,
        env: dict[str, str] | None = None,
        api_client: Any = None,
    ) -> None:
        from optml.executors._gpus import whole_gpus

        _client()
        self.workers = max(1, int(workers or 1))
        self.settings = JobSettings(
            study=study,
            image=image,
            namespace=namespace,
            cpu=cpu,
            memory=memory,
            gpu=whole_gpus(gpu, "kubernetes") or None,
            service_account=service_account,
            env=dict(env or {}),
        )
        self._api_client = api_client
        self._objective: Objective | None = None
        self._follows = False
        self._files: dict[str | None, dict[str, bytes]] = {}
        self._tracked: dict[int, _Tracked] = {}
        self._by_name: dict[str, int] = {}
        self._found: dict[int, Any] = {}  # trial number: a Job of it already in the cluster
        self._pruned: set[int] = set()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        self.resource_version: str | None = None
        self.watch_restarts = 0

    @property
    def selector(self) -> str:
        return f"{LABEL_STUDY}={study_label(self.settings.study)}"

    # -- life cycle -----------------------------------------------------------------------
    def start(self, objective: Objective) -> None:
        from optml.objectives._command import CommandObjective

        k = _client()
        if self._api_client is None:
            try:
                k.config.load_kube_config()
            except Exception:  # noqa: BLE001 - no kubeconfig: perhaps in a pod
                try:
                    k.config.load_incluster_config()
                except Exception as exc:  # noqa: BLE001
                    raise OptMLError(
                        "execution.backend kubernetes: no cluster configuration (set KUBECONFIG "
                        f"or run inside a pod): {exc}"
                    ) from None
            self._api_client = k.client.ApiClient()
        self.batch = k.client.BatchV1Api(self._api_client)
        self.core = k.client.CoreV1Api(self._api_client)
        self._objective = objective
        # Only the entry point of a Python objective prints reports.
        self._follows = not isinstance(objective, CommandObjective)
        jobs = self.batch.list_namespaced_job(self.settings.namespace, label_selector=self.selector)
        self.resource_version = jobs.metadata.resource_version
        for job in jobs.items:
            number = int(job.metadata.labels.get(LABEL_TRIAL, -1))
            if number >= 0:
                self._found[number] = job
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="optml-k8s-watch", daemon=True)
        self._watcher.start()

    def shutdown(self, kill: bool = False) -> None:
        self._stop.set()
        for tracked in list(self._tracked.values()):
            tracked.done.set()
            if kill:
                self._delete(tracked.name)
        self._tracked.clear()
        self._by_name.clear()
        self._pruned.clear()
        if self._watcher is not None:
            # A watch or a log stream waiting on the server ends at its next line or its time
            # limit; they are daemons and queue nothing more once stopped, so they need not be
            # waited for.
            self._watcher.join(timeout=0.5)
            self._watcher = None

    # -- work -----------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, self.workers - len(self._tracked))

    def running(self) -> int:
        return len(self._tracked)

    def _shipped(self, data: str | None) -> dict[str, bytes]:
        if data not in self._files:
            assert self._objective is not None
            self._files[data] = pod_files(self._objective, data)
        return self._files[data]

    def submit(self, task: TrialTask) -> None:
        assert self._objective is not None, "start() first"
        k = _client()
        existing = self._found.pop(task.number, None)
        if existing is not None:
            self._track(task, existing.metadata.name)
            self._queue.put(("job", existing))
            return
        command, env = container_args(self._objective, task, self._shipped(task.data))
        job = build_job(self.settings, task, command, env)
        name = job.metadata.name
        self._track(task, name)
        try:
            self.batch.create_namespaced_job(self.settings.namespace, job)
        except k.client.ApiException as exc:
            if exc.status != 409:
                self._untrack(task.number)
                raise OptMLError(
                    f"Kubernetes refused Job {name} in namespace {self.settings.namespace}: "
                    f"{exc.status} {exc.reason}: {_message(exc)}"
                ) from None
            # AlreadyExists: a controller before this one created it; take it over.
            self._queue.put(("job", self.batch.read_namespaced_job(name, self.settings.namespace)))

    def _track(self, task: TrialTask, name: str) -> None:
        with self._lock:
            self._tracked[task.number] = _Tracked(task, name)
            self._by_name[name] = task.number

    def _untrack(self, number: int) -> _Tracked | None:
        with self._lock:
            tracked = self._tracked.pop(number, None)
            if tracked is not None:
                self._by_name.pop(tracked.name, None)
                tracked.done.set()
            self._pruned.discard(number)
        return tracked

    def cancel(self, number: int) -> None:
        tracked = self._untrack(number)
        if tracked is not None:
            self._delete(tracked.name)

    def prune(self, number: int) -> None:
        """End the trial PRUNED at its next report (its Job is deleted then)."""
        if number in self._tracked:
            self._pruned.add(number)

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        if not self._tracked:
            return []
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        out: list[TrialEvent] = []
        for kind, *payload in items:
            if kind == "error":
                raise payload[0]
            if kind == "job":
                out += self._on_job(payload[0])
            else:
                out += self._on_report(*payload)
        return out

    def _on_report(self, tracked: _Tracked, step: int, value: float) -> list[TrialEvent]:
        task = tracked.task
        if self._tracked.get(task.number) is not tracked or not tracked.started:
            return []  # late news of a trial already finished, cancelled or pruned
        if step in tracked.values:
            return []
        tracked.values[step] = value
        events: list[TrialEvent] = [TrialReported(task.number, task.attempt, step, value)]
        if task.number in self._pruned:
            self._untrack(task.number)
            self._delete(tracked.name)
            host, runner = tracked.where
            pruned = TrialOutcome(
                task.number,
                "PRUNED",
                intermediate=dict(tracked.values),
                attempt=task.attempt,
                host=host,
                runner=runner,
            )
            events.append(_timed(pruned, tracked))
        return events

    def _on_job(self, job: Any) -> list[TrialEvent]:
        number = self._by_name.get(job.metadata.name)
        if number is None:
            return []
        tracked = self._tracked[number]
        task = tracked.task
        kind, reason = job_state(job)
        status = job.status
        active = bool(status and (status.active or status.ready))
        # Its pod runs (a cluster before 1.24 does not count ready pods: then once active).
        running = bool(status and (status.ready or (status.active and status.ready is None)))
        follow = self._follows and running and not tracked.following
        if kind is None and (not active or (tracked.started and not follow)):
            return []
        events: list[TrialEvent] = []
        if kind is not None or not tracked.started:
            pod = self._pod(tracked.name)
            tracked.where = (
                (pod.spec.node_name if pod is not None and pod.spec else None) or "kubernetes",
                pod.metadata.name if pod is not None else tracked.name,
            )
        where = tracked.where
        if not tracked.started:
            tracked.started = True
            tracked.since = (status and status.start_time) or datetime.now(UTC)
            events.append(TrialStarted(number, task.attempt, where[0], where[1], None, ""))
        if kind is None:
            if follow:
                tracked.following = True
                threading.Thread(
                    target=self._follow, args=(tracked,), name="optml-k8s-log", daemon=True
                ).start()
            return events
        log = self._log(pod)
        assert self._objective is not None
        outcome = outcome_from_log(task, self._objective, kind, reason, log, where, exit_code(pod))
        outcome = _timed(outcome, tracked)
        self._untrack(number)
        self._delete(tracked.name)
        # The log stream may not have passed on every report yet.
        return events + ending_with(outcome, True, tracked.values)

    # -- the API -------------------------------------------------------------------------
    def _pod(self, job: str) -> Any:
        pods = self.core.list_namespaced_pod(
            self.settings.namespace, label_selector=f"job-name={job}"
        ).items
        if not pods:
            return None
        # The last pod is the one whose log tells how the Job ended.
        return max(pods, key=lambda p: str(p.metadata.creation_timestamp or ""))

    def _log(self, pod: Any) -> str | None:
        if pod is None:
            return None
        k = _client()
        try:
            return self.core.read_namespaced_pod_log(  # type: ignore[no-any-return]
                pod.metadata.name, self.settings.namespace
            )
        except k.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _delete(self, name: str) -> None:
        k = _client()
        try:
            self.batch.delete_namespaced_job(
                name, self.settings.namespace, propagation_policy="Background"
            )
        except k.client.ApiException as exc:
            if exc.status != 404:
                raise

    def _follow(self, tracked: _Tracked) -> None:
        """Pass on the report lines of a running trial's pod log as they are printed. A stream
        that drops is opened again (from the start: lines already read are skipped); it ends
        with the container, or when the trial is no longer tracked."""
        from optml.trial_run import parse_report

        seen, pause = 0, 0.2
        while not (tracked.done.is_set() or self._stop.is_set()):
            try:
                pod = self._pod(tracked.name)
                if pod is None:
                    raise LookupError(tracked.name)
                response = self.core.read_namespaced_pod_log(
                    pod.metadata.name,
                    self.settings.namespace,
                    follow=True,
                    _preload_content=False,
                    _request_timeout=(10, _WATCH_S),
                )
            except Exception:  # noqa: BLE001
                # Not started yet (400), gone (404), or the API server unreachable a moment:
                # ask again, less and less often, so that many waiting trials do not flood it.
                tracked.done.wait(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.2
            lines, rest = 0, b""
            try:
                for chunk in response.stream(4096, decode_content=True):
                    *complete, rest = (rest + chunk).split(b"\n")
                    for line in complete:
                        lines += 1
                        if lines <= seen:
                            continue
                        seen = lines
                        found = parse_report(line.decode(errors="replace"))
                        if found is not None:
                            self._queue.put(("report", tracked, *found))
                    if tracked.done.is_set() or self._stop.is_set():
                        break
                else:
                    # The stream ended: with the container, unless the server closed it early.
                    pod = self._pod(tracked.name)
                    if pod is None or pod.status is None or pod.status.phase != "Running":
                        return
                    tracked.done.wait(0.5)
            except Exception:  # noqa: BLE001 - a dropped or idle stream: open it again
                pass
            finally:
                response.release_conn()

    def _watch(self) -> None:
        """Follow the study's Jobs: each change of one is queued for ``events``."""
        k = _client()
        while not self._stop.is_set():
            w = k.watch.Watch()
            try:
                for event in w.stream(
                    self.batch.list_namespaced_job,
                    self.settings.namespace,
                    label_selector=self.selector,
                    resource_version=self.resource_version,
                    timeout_seconds=_WATCH_S,
                    allow_watch_bookmarks=True,
                ):
                    if self._stop.is_set():
                        w.stop()
                        break
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raw = event.get("raw_object") or {}
                        if raw.get("code") == 410:  # too old a version: list again
                            self._relist()
                            break
                        continue
                    rv = obj.metadata.resource_version if obj.metadata else None
                    if rv:
                        self.resource_version = rv
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._queue.put(("job", obj))
            except k.client.ApiException as exc:
                if exc.status == 410:
                    self._relist()
                else:
                    time.sleep(0.2)
            except Exception:  # noqa: BLE001 - a dropped stream: resume from the last version
                time.sleep(0.2)
            finally:
                w.stop()
            self.watch_restarts += 1

    def _relist(self) -> None:
        jobs = self.batch.list_namespaced_job(self.settings.namespace, label_selector=self.selector)
        self.resource_version = jobs.metadata.resource_version
        for job in jobs.items:
            self._queue.put(("job", job))


def _timed(outcome: TrialOutcome, tracked: _Tracked) -> TrialOutcome:
    """The outcome with when it ran, where the pod did not say (it failed, timed out or was
    pruned): from its Job's start until now."""
    if outcome.started_at is not None or tracked.since is None:
        return outcome
    now = datetime.now(UTC)
    return replace(
        outcome,
        started_at=tracked.since,
        finished_at=now,
        duration_s=max(0.0, (now - tracked.since).total_seconds()),
    )


def _message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message", exc.body))
    except Exception:  # noqa: BLE001
        return str(exc.body)
