"""A small Kubernetes API server on loopback for the Kubernetes executor's tests.

It answers the calls the executor makes (create / read / list / watch / delete Jobs, list Pods,
read or follow a Pod's log) with the JSON shapes a real API server returns, and runs each
Job's pod as a kubelet would, with its container command as a local process tree (the image is
ignored; ``python`` is this interpreter):

- the container runs under a small init (its own process group, a child subreaper, the
  container's environment only): when its main process ends, whatever else it started is
  killed, as the processes of a container's PID namespace are;
- its stdout and stderr are the pod's log, readable while it runs (``follow=true`` streams);
- exit 0 makes the Job Complete; a failure starts a new pod up to ``backoffLimit`` and then
  fails the Job with BackoffLimitExceeded; a run past ``activeDeadlineSeconds`` is terminated
  and fails the Job with DeadlineExceeded;
- deleting a Job with propagationPolicy Background or Foreground terminates its pods (SIGTERM,
  then SIGKILL after the grace period); without one, or with Orphan, the pods run on, as the
  batch/v1 API's default (orphanDependents) leaves them.

Every process it starts ends within ``max_pod_s`` and is killed when the server closes.
Knobs for the failure cases: ``drop_watch_after`` (close each watch stream after that many
events), ``lost_logs`` (the pod's log answers 404), ``hold`` (Jobs are created but not started
until released), ``hold_pods`` and ``pending_s`` (pods stay Pending: not scheduled yet),
``expire_watches`` (answer that many resumed watches 410 Expired).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import psutil

JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")

# The container's init: the command's parent, a child subreaper (so that whatever the command
# starts, however it detaches, stays below it), and when the command ends it kills every other
# process of the container and exits with the command's status, as a container does.
POD_INIT = r"""
import ctypes, os, signal, subprocess, sys
import psutil
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
try:
    child = subprocess.Popen(sys.argv[1:])
except OSError as exc:
    print(f"exec {sys.argv[1]!r} failed: {exc}", flush=True)
    sys.exit(127)
signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
code = child.wait()
me = psutil.Process()
for _ in range(50):
    rest = [p for p in me.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    for p in rest:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    if not rest:
        break
sys.exit(128 - code if code < 0 else code)
"""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for part in selector.split(","):
        key, _, value = part.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _status(code: int, reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
        **extra,
    }


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a container: its init's descendants (kept below it: it is a subreaper) until
    none is left, then the init and its process group."""
    try:
        root = psutil.Process(proc.pid)
        for _ in range(50):
            rest = [p for p in root.children(recursive=True) if p.status() != "zombie"]
            if not rest:
                break
            for p in rest:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(rest, timeout=1)
    except psutil.NoSuchProcess:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class _Container:
    """One pod's running container: its process and its log as it is written."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.reader: threading.Thread | None = None


class FakeKubernetes:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.rv = 100
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.log_done: set[str] = set()  # pods whose output is complete
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}  # pod name: its running container
        self.created: list[str] = []  # names, in order of creation (409s not counted)
        self.conflicts: list[str] = []
        self.deleted: list[tuple[str, str | None]] = []  # (name, propagationPolicy)
        self.orphaned: list[str] = []  # pods left running by a Job deleted without propagation
        self.watches: list[str | None] = []  # the resourceVersion of each watch request
        self.log_follows = 0
        self.pod_runs: dict[str, int] = {}
        self.drop_watch_after: int | None = None
        self.lost_logs = False
        self.hold = False
        self.expire_watches = 0  # answer this many watches that resume with 410 Expired
        self.lists = 0
        self.start_delay = 0.0
        self.pending_s = 0.0  # how long each pod is Pending before its container starts
        self.hold_pods = False  # pods stay Pending until this is False again
        self.log_requests = 0
        self.run_commands = True
        # No process of a pod runs longer than this, and a pod's termination grace period is
        # cut to at most max_grace_s.
        self.max_pod_s = 300.0
        self.max_grace_s = 5.0
        # Instead of running commands: each Job completes this many seconds after it is
        # created, its pod's log the line ``instant_log`` (for benchmarks of the controller).
        self.instant_after: float | None = None
        self.instant_log = "1.0\n"
        self._tmp = tempfile.TemporaryDirectory(prefix="k8s-fake-")
        self.workdir = self._tmp.name  # the image's working directory
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._threads: list[threading.Thread] = []
        self._closing = False

    def __enter__(self) -> FakeKubernetes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self.lock:
            self._closing = True
            self.lock.notify_all()
            procs = list(self.procs.values())
        for proc in procs:
            kill_tree(proc)
        for thread in list(self._threads):
            thread.join(timeout=15)
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
        self._tmp.cleanup()

    def api_client(self) -> Any:
        import kubernetes

        config = kubernetes.client.Configuration(host=self.host)
        return kubernetes.client.ApiClient(config)

    def kubeconfig(self, path: str, namespace: str = "default") -> str:
        """Write a kubeconfig file pointing at this server; its path."""
        import yaml

        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.host}}],
            "users": [{"name": "tester", "user": {"token": "fake-token"}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "tester", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f)
        return path

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    # -- state changes (under the lock) ---------------------------------------------------------
    def _event(self, kind: str, job: dict[str, Any]) -> None:
        self.rv += 1
        job["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append((self.rv, kind, json.loads(json.dumps(job))))
        self.lock.notify_all()

    def add_job(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body["metadata"]["name"]
        with self.lock:
            if name in self.jobs:
                self.conflicts.append(name)
                return 409, _status(
                    409,
                    "AlreadyExists",
                    f'jobs.batch "{name}" already exists',
                    details={"name": name, "group": "batch", "kind": "jobs"},
                )
            job = json.loads(json.dumps(body))
            job["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            job["status"] = {}
            self.jobs[name] = job
            self.created.append(name)
            self._event("ADDED", job)
        if self.instant_after is not None:
            timer = threading.Timer(self.instant_after, self._complete_now, args=(name,))
            timer.daemon = True
            timer.start()
        elif self.run_commands:
            self._spawn(self._run_job, name)
        return 201, job

    def _set_status(self, name: str, **status: Any) -> dict[str, Any] | None:
        job = self.jobs.get(name)
        if job is None:
            return None
        for key, value in status.items():
            if value is None:
                job["status"].pop(key, None)
            else:
                job["status"][key] = value
        self._event("MODIFIED", job)
        return job

    def _run_job(self, name: str) -> None:
        while True:
            with self.lock:
                if self._closing or name not in self.jobs:
                    return
                if not self.hold:
                    break
                self.lock.wait(0.1)
        time.sleep(self.start_delay)
        with self.lock:
            job = self.jobs.get(name)
            if job is None:
                return
            spec = job["spec"]
            self._set_status(name, startTime=_now(), active=1, ready=0)
        deadline = spec.get("activeDeadlineSeconds")
        limit = spec.get("backoffLimit", 6)
        started = time.monotonic()
        failures = 0
        while True:
            left = None if deadline is None else deadline - (time.monotonic() - started)
            result = self._run_pod(name, job, left)
            if result is None:  # the Job was deleted, or the server closes
                return
            code, timed_out = result
            with self.lock:
                if self.deleting(name):
                    return
                if timed_out:
                    self._fail(
                        name,
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        failures + 1,
                    )
                    return
                if code == 0:
                    cond = {"status": "True", "lastProbeTime": _now(), "lastTransitionTime": _now()}
                    self._set_status(
                        name,
                        active=None,
                        ready=0,
                        succeeded=1,
                        completionTime=_now(),
                        conditions=[
                            {"type": "SuccessCriteriaMet", "reason": "CompletionsReached", **cond},
                            {"type": "Complete", "reason": "CompletionsReached", **cond},
                        ],
                    )
                    return
                failures += 1
                if failures > limit:
                    self._fail(
                        name,
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                        failures,
                    )
                    return
                self._set_status(name, failed=failures, ready=0)

    def _run_pod(
        self, name: str, job: dict[str, Any], left: float | None
    ) -> tuple[int, bool] | None:
        """Run one pod of Job ``name`` to its end: (exit code, whether the Job's deadline cut
        it short), or None when the Job was deleted or the server closes meanwhile."""
        spec = job["spec"]
        pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
        container = spec["template"]["spec"]["containers"][0]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": job["metadata"]["namespace"],
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "labels": {
                    **spec["template"]["metadata"].get("labels", {}),
                    "job-name": name,
                    "batch.kubernetes.io/job-name": name,
                    "controller-uid": job["metadata"]["uid"],
                },
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {**spec["template"]["spec"], "nodeName": "fake-node-1"},
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                ],
            },
        }
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if argv and argv[0] == "python":
            argv[0] = sys.executable
        bindir = os.path.dirname(sys.executable)
        env = {
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.workdir,
            "LANG": "C.UTF-8",
            "HOSTNAME": pod_name,
            **{e["name"]: e["value"] for e in container.get("env", [])},
        }
        with self.lock:
            if self._closing or self.deleting(name):
                return None
            self.pods[pod_name] = pod
            self.logs[pod_name] = ""
            self.pod_runs[name] = self.pod_runs.get(name, 0) + 1
            # Pending: being scheduled, its image pulled (the Job's deadline runs meanwhile).
            since = time.monotonic()
            until = since + self.pending_s
            while (time.monotonic() < until or self.hold_pods) and not (
                self._closing or self.deleting(name)
            ):
                self.lock.wait(0.1)
            if left is not None:
                left -= time.monotonic() - since
            if self._closing or self.deleting(name):
                self.pods.pop(pod_name, None)
                return None
            proc = subprocess.Popen(
                [sys.executable, "-c", POD_INIT, *argv],
                env=env,
                cwd=container.get("workingDir") or self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.procs[pod_name] = proc
            pod["status"].update(phase="Running", startTime=_now(), podIP="127.0.0.1")
            pod["status"]["containerStatuses"][0].update(
                ready=True, started=True, state={"running": {"startedAt": _now()}}
            )
            self._set_status(name, ready=1)
        reader = threading.Thread(target=self._read_log, args=(pod_name, proc), daemon=True)
        reader.start()
        bound = self.max_pod_s if left is None else min(left, self.max_pod_s)
        try:
            proc.wait(timeout=max(0.0, bound))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = left is not None and left <= self.max_pod_s
            with self.lock:
                if timed_out and name in self.jobs:
                    # Since Kubernetes 1.31 the Job is a FailureTarget while its pods terminate,
                    # and Failed once they have.
                    cond = {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": "Job was active longer than specified deadline",
                        "lastProbeTime": _now(),
                        "lastTransitionTime": _now(),
                    }
                    self._set_status(name, conditions=[cond])
            self._terminate(proc, pod)
        reader.join(timeout=10)
        code = proc.returncode if proc.returncode is not None else 137
        with self.lock:
            self.procs.pop(pod_name, None)
            if pod_name in self.pods:
                pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
                pod["status"]["containerStatuses"][0].update(
                    ready=False,
                    started=False,
                    state={
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "startedAt": pod["status"]["startTime"],
                            "finishedAt": _now(),
                        }
                    },
                )
            if self._closing or self.deleting(name):
                return None
        return code, timed_out

    def _read_log(self, pod_name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self.lock:
                if chunk:
                    self.logs[pod_name] = self.logs.get(pod_name, "") + chunk.decode(
                        errors="replace"
                    )
                else:
                    self.log_done.add(pod_name)
                self.lock.notify_all()
            if not chunk:
                proc.stdout.close()
                return

    def _terminate(self, proc: subprocess.Popen[bytes], pod: dict[str, Any]) -> None:
        """Stop a pod's container as the kubelet does: SIGTERM to its main process, SIGKILL to
        all of it after the grace period."""
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=min(float(grace), self.max_grace_s))
        except (OSError, subprocess.TimeoutExpired):
            pass
        kill_tree(proc)

    def _complete_now(self, name: str) -> None:
        with self.lock:
            job = self.jobs.get(name)
            if job is None or self._closing:
                return
            spec = job["spec"]
            pod_name = f"{name}-fast"
            self.pods[pod_name] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": job["metadata"]["namespace"],
                    "creationTimestamp": _now(),
                    "labels": {"job-name": name},
                },
                "spec": {**spec["template"]["spec"], "nodeName": "fake-node-1"},
                "status": {"phase": "Succeeded"},
            }
            self.logs[pod_name] = self.instant_log
            cond = {"status": "True", "lastProbeTime": _now(), "lastTransitionTime": _now()}
            self._set_status(
                name,
                succeeded=1,
                completionTime=_now(),
                conditions=[{"type": "Complete", "reason": "CompletionsReached", **cond}],
            )

    def _fail(self, name: str, reason: str, message: str, failed: int) -> None:
        cond = {
            "status": "True",
            "reason": reason,
            "message": message,
            "lastProbeTime": _now(),
            "lastTransitionTime": _now(),
        }
        self._set_status(
            name,
            active=None,
            ready=0,
            failed=failed,
            conditions=[{"type": "FailureTarget", **cond}, {"type": "Failed", **cond}],
        )

    def delete_job(self, name: str, policy: str | None) -> dict[str, Any] | None:
        """Delete a Job as the API server does for ``policy``: Background (the Job goes now,
        its pods are terminated after), Foreground (the Job stays, marked, until its pods are
        gone), Orphan or none (batch/v1's default: the pods are left running)."""
        with self.lock:
            job = self.jobs.get(name)
            if job is None or job["metadata"].get("deletionTimestamp"):
                return job if job is not None else None
            self.deleted.append((name, policy))
            pods = [
                p
                for p, pod in self.pods.items()
                if pod["metadata"]["labels"].get("job-name") == name
            ]
            if policy in (None, "Orphan"):
                for pod_name in pods:
                    self.pods[pod_name]["metadata"].pop("ownerReferences", None)
                    if pod_name in self.procs:
                        self.orphaned.append(pod_name)
                del self.jobs[name]
                self._event("DELETED", job)
                return job
            for pod_name in pods:
                self.pods[pod_name]["metadata"]["deletionTimestamp"] = _now()
            if policy == "Foreground":
                job["metadata"].update(deletionTimestamp=_now(), finalizers=["foregroundDeletion"])
                self._event("MODIFIED", job)
            else:
                del self.jobs[name]
                self._event("DELETED", job)
        self._spawn(self._collect, name, pods)
        return job

    def _collect(self, name: str, pods: list[str]) -> None:
        """The garbage collector: terminate a deleted Job's pods, then remove them (and the Job,
        when its deletion waited for them)."""
        for pod_name in pods:
            with self.lock:
                proc, pod = self.procs.get(pod_name), self.pods.get(pod_name)
            if proc is not None and pod is not None:
                self._terminate(proc, pod)
            with self.lock:
                self.pods.pop(pod_name, None)
                self.lock.notify_all()
        with self.lock:
            job = self.jobs.get(name)
            if job is not None and job["metadata"].get("deletionTimestamp"):
                del self.jobs[name]
                self._event("DELETED", job)

    def deleting(self, name: str) -> bool:
        job = self.jobs.get(name)
        return job is None or bool(job["metadata"].get("deletionTimestamp"))

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the fake cluster never reached the expected state")
                self.lock.wait(min(left, 0.1))

    # -- HTTP ---------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # a watch streams in chunks, as the API server's do
            disable_nagle_algorithm = True  # a response's header and body are separate writes

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self, what: str) -> None:
                self._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": f"{what} not found",
                        "reason": "NotFound",
                        "code": 404,
                    },
                )

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def do_POST(self) -> None:
                m = JOBS.match(urlparse(self.path).path)
                if not m or m.group(2):
                    return self._not_found(self.path)
                if m.group(1) == "forbidden":
                    return self._send(
                        403,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "metadata": {},
                            "status": "Failure",
                            "message": 'jobs.batch is forbidden: User "system:serviceaccount:x:y" cannot create resource "jobs"',
                            "reason": "Forbidden",
                            "code": 403,
                        },
                    )
                code, body = fake.add_job(self._body())
                self._send(code, body)

            def do_DELETE(self) -> None:
                m = JOBS.match(urlparse(self.path).path)
                if not m or not m.group(2):
                    return self._not_found(self.path)
                body = self._body()
                query = parse_qs(urlparse(self.path).query)
                policy = (
                    body.get("propagationPolicy") or (query.get("propagationPolicy") or [None])[0]
                )
                job = fake.delete_job(m.group(2), policy)
                if job is None:
                    return self._not_found(f'jobs.batch "{m.group(2)}"')
                self._send(
                    200,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {
                            "name": m.group(2),
                            "group": "batch",
                            "kind": "jobs",
                            "uid": job["metadata"]["uid"],
                        },
                    },
                )

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if m := JOBS.match(url.path):
                    if m.group(2):
                        with fake.lock:
                            job = fake.jobs.get(m.group(2))
                        return (
                            self._send(200, job)
                            if job
                            else self._not_found(f'jobs.batch "{m.group(2)}"')
                        )
                    if query.get("watch") in ("true", "True", "1"):
                        return self._watch(query)
                    with fake.lock:
                        fake.lists += 1
                        items = [
                            j
                            for j in fake.jobs.values()
                            if _matches(j["metadata"].get("labels", {}), query.get("labelSelector"))
                        ]
                        body = {
                            "kind": "JobList",
                            "apiVersion": "batch/v1",
                            "metadata": {"resourceVersion": str(fake.rv)},
                            "items": items,
                        }
                    return self._send(200, body)
                if m := PODS.match(url.path):
                    if m.group(3):
                        return self._log(m.group(2), query)
                    with fake.lock:
                        items = [
                            p
                            for p in fake.pods.values()
                            if _matches(p["metadata"]["labels"], query.get("labelSelector"))
                        ]
                        body = {
                            "kind": "PodList",
                            "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(fake.rv)},
                            "items": items,
                        }
                    return self._send(200, body)
                self._not_found(self.path)

            def _log(self, name: str, query: dict[str, str]) -> None:
                with fake.lock:
                    fake.log_requests += 1
                    pod = fake.pods.get(name)
                    log = fake.logs.get(name, "")
                    waiting = pod is not None and pod["status"]["phase"] == "Pending"
                if fake.lost_logs or pod is None:
                    return self._not_found(f'pods "{name}"')
                if waiting:
                    container = pod["spec"]["containers"][0]["name"]
                    return self._send(
                        400,
                        _status(
                            400,
                            "BadRequest",
                            f'container "{container}" in pod "{name}" is waiting to start: '
                            "ContainerCreating",
                        ),
                    )
                if query.get("follow") not in ("true", "True", "1"):
                    return self._send(200, log, "text/plain")
                with fake.lock:
                    fake.log_follows += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                sent, end = 0, time.monotonic() + fake.max_pod_s
                try:
                    while True:
                        with fake.lock:
                            while (
                                len(fake.logs.get(name, "")) == sent
                                and name not in fake.log_done
                                and name in fake.pods
                                and not fake._closing
                                and time.monotonic() < end
                            ):
                                fake.lock.wait(0.2)
                            text = fake.logs.get(name, "")[sent:]
                            over = (
                                name in fake.log_done
                                or name not in fake.pods
                                or fake._closing
                                or time.monotonic() >= end
                            )
                        if text:
                            data = text.encode()
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                            self.wfile.flush()
                            sent += len(text)
                        elif over:
                            break
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass
                self.close_connection = True

            def _watch(self, query: dict[str, str]) -> None:
                since = int(query.get("resourceVersion") or 0)
                with fake.lock:
                    fake.watches.append(query.get("resourceVersion"))
                    if since == 0:
                        since = fake.rv
                end = time.monotonic() + float(query.get("timeoutSeconds") or 30)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self._stream(query, since, end)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass
                self.close_connection = True

            def _stream(self, query: dict[str, str], since: int, end: float) -> None:
                with fake.lock:
                    expire = fake.expire_watches > 0 and bool(query.get("resourceVersion"))
                    if expire:
                        fake.expire_watches -= 1
                if expire:
                    status = {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "message": f"too old resource version: {since}",
                        "reason": "Expired",
                        "code": 410,
                    }
                    line = (json.dumps({"type": "ERROR", "object": status}) + "\n").encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    return
                sent = 0
                selector = query.get("labelSelector")
                while True:
                    with fake.lock:
                        while not fake._closing and not any(
                            rv > since for rv, _, _ in fake.history[-1:]
                        ):
                            left = end - time.monotonic()
                            if left <= 0:
                                return
                            fake.lock.wait(min(left, 0.2))
                        if fake._closing:
                            return
                        pending = [(rv, kind, obj) for rv, kind, obj in fake.history if rv > since]
                    for rv, kind, obj in pending:
                        since = rv
                        if not _matches(obj["metadata"].get("labels", {}), selector):
                            continue
                        line = (json.dumps({"type": kind, "object": obj}) + "\n").encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
                        sent += 1
                        if fake.drop_watch_after is not None and sent >= fake.drop_watch_after:
                            return  # the stream drops; the client must resume

        return Handler
