"""A small Kubernetes API server on loopback for the Kubernetes executor's tests.

It answers the calls the executor makes (create / read / list / watch / delete Jobs, list Pods,
read a Pod's log) with the JSON shapes a real API server returns, and runs each Job's container
command as a local subprocess (the image is ignored): exit 0 makes the Job Complete, a failure
retries up to ``backoffLimit`` and then fails it with BackoffLimitExceeded, and a run past
``activeDeadlineSeconds`` is killed and fails it with DeadlineExceeded. Knobs for the failure
cases: ``drop_watch_after`` (close each watch stream after that many events), ``lost_logs``
(the pod's log answers 404), ``hold`` (Jobs are created but not started until released).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")


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


class FakeKubernetes:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.rv = 100
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, str] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.created: list[str] = []  # names, in order of creation (409s not counted)
        self.conflicts: list[str] = []
        self.deleted: list[tuple[str, str | None]] = []  # (name, propagationPolicy)
        self.watches: list[str | None] = []  # the resourceVersion of each watch request
        self.pod_runs: dict[str, int] = {}
        self.drop_watch_after: int | None = None
        self.lost_logs = False
        self.hold = False
        self.expire_watches = 0  # answer this many watches that resume with 410 Expired
        self.lists = 0
        self.start_delay = 0.0
        self.run_commands = True
        # Instead of running commands: each Job completes this many seconds after it is
        # created, its pod's log the line ``instant_log`` (for benchmarks of the controller).
        self.instant_after: float | None = None
        self.instant_log = "1.0\n"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
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
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def api_client(self) -> Any:
        import kubernetes

        config = kubernetes.client.Configuration(host=self.host)
        return kubernetes.client.ApiClient(config)

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
                return 409, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f'jobs.batch "{name}" already exists',
                    "reason": "AlreadyExists",
                    "details": {"name": name, "group": "batch", "kind": "jobs"},
                    "code": 409,
                }
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
            threading.Thread(target=self._run_job, args=(name,), daemon=True).start()
        return 201, job

    def _set_status(self, name: str, **status: Any) -> dict[str, Any] | None:
        job = self.jobs.get(name)
        if job is None:
            return None
        job["status"].update(status)
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
        deadline = spec.get("activeDeadlineSeconds")
        limit = spec.get("backoffLimit", 6)
        started = time.monotonic()
        with self.lock:
            self._set_status(name, startTime=_now(), active=1, ready=1)
        failures = 0
        while True:
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
                },
                "spec": {**spec["template"]["spec"], "nodeName": "fake-node-1"},
                "status": {"phase": "Running", "startTime": _now()},
            }
            argv = list(container["command"])
            if argv[0] == "python":
                argv[0] = sys.executable
            env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", [])}}
            with self.lock:
                if name not in self.jobs or self._closing:
                    return
                self.pods[pod_name] = pod
                self.pod_runs[name] = self.pod_runs.get(name, 0) + 1
                proc = subprocess.Popen(
                    argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
                self.procs[pod_name] = proc
            left = None if deadline is None else max(0.0, deadline - (time.monotonic() - started))
            try:
                out, _ = proc.communicate(timeout=left)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                timed_out = True
            with self.lock:
                self.procs.pop(pod_name, None)
                self.logs[pod_name] = out.decode(errors="replace")
                if pod_name in self.pods:
                    pod["status"]["phase"] = "Succeeded" if proc.returncode == 0 else "Failed"
                if name not in self.jobs:
                    return
                if timed_out:
                    self._fail(
                        name,
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        failures + 1,
                    )
                    return
                if proc.returncode == 0:
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
                self._set_status(name, failed=failures)

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
        with self.lock:
            job = self.jobs.pop(name, None)
            if job is None:
                return None
            self.deleted.append((name, policy))
            for pod_name in [
                p
                for p, pod in self.pods.items()
                if pod["metadata"]["labels"].get("job-name") == name
            ]:
                del self.pods[pod_name]
                proc = self.procs.pop(pod_name, None)
                if proc is not None and proc.poll() is None:
                    proc.kill()
            self._event("DELETED", job)
            return job

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
                        with fake.lock:
                            log = fake.logs.get(m.group(2))
                            if fake.lost_logs or m.group(2) not in fake.pods:
                                log = None
                        if log is None:
                            return self._not_found(f'pods "{m.group(2)}"')
                        return self._send(200, log, "text/plain")
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
