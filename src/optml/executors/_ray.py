"""The Ray executor: one Ray task per trial, run on a Ray cluster's workers by the worker runtime."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import uuid
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
from optml.executors._hosted import PolledCommands
from optml.executors._local import usable_cpus
from optml.objectives._base import Objective

# The object store of a local instance: it holds only the objective and small outcomes.
_OBJECT_STORE_BYTES = 100 * 2**20
# How long the mailbox's drain call waits for a message before answering with none (it is
# asked again at once); short enough that an abandoned call ends soon.
_DRAIN_S = 10.0


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise missing_dependency("ray", "ray") from None
    return ray


class RayError(OptMLError):
    """A Ray cluster could not be reached, or cannot run the study's trials."""


# Reruns of a trial whose Ray worker died, as Dask's ``allowed-failures`` (3 by default).
LOST_WORKER_RERUNS = 3


class RayExecutor(Executor):
    """Runs each trial as one Ray task on a Ray cluster (``address``: ``ray://host:10001``
    through Ray Client, ``host:6379`` for a cluster's GCS, or ``auto``), or, without an
    address, on a local Ray instance of ``workers`` CPUs started with the executor and shut
    down with it (no dashboard, a small object store, its logs in a temporary directory). In a
    process where Ray is already initialised (a notebook that called ``ray.init()``), that
    connection is used and left open.

    A task asks Ray for what one trial needs: ``cpus`` (``num_cpus``, 1 by default),
    ``memory`` (bytes; "4GB" accepted) and ``gpus`` (``num_gpus``: Ray assigns the devices and
    sets ``CUDA_VISIBLE_DEVICES``, which the trial's process inherits). A study that asks for
    more than any node of the cluster has is refused before any trial starts.

    On the Ray worker the task runs the trial in a worker process of the runtime (fds 1 and 2
    are never redirected inside the multi-threaded Ray worker), reused by the study's next
    trials on that Ray worker; its time limit is enforced there by killing its whole process
    tree, and it dies with the Ray worker. Started and reported events travel back through a
    mailbox actor the controller drains with one blocking call; commands (cancel, prune) reach
    the task through the same actor, and a cancel also interrupts the task (``ray.cancel``).
    The outcome is the task's return value, in the JSON form of :mod:`optml.trial_run`.

    A Ray worker that dies while running a trial: Ray runs the task again (``max_retries``,
    which Ray applies to lost workers only, never to a trial's own failure: the runtime returns
    that as an outcome), as Dask does; the controller counts the rerun as a retry from its
    second started event and records the trial once; after ``LOST_WORKER_RERUNS`` such deaths
    the trial is FAILED, and ``retries`` then applies as to any failed trial.

    Files travel as with Dask: the ``.py`` file of a function or model module and a data file
    of up to 16 MB go with the objective; any other path must be on a shared filesystem.
    OptML itself must be installed on the cluster's nodes.
    """

    name = "ray"
    remote = True

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        *,
        cpus: float | None = None,
        memory: str | float | None = None,
        gpus: float | None = None,
    ) -> None:
        _ray()
        if address:
            check_address(address)
        self.address = address
        self._asked_workers = workers
        self.workers = max(1, int(workers or (1 if address else usable_cpus())))
        self.cpus = float(cpus) if cpus else 1.0
        self.memory = _parse_bytes(memory) if memory else None
        self.gpus = float(gpus) if gpus else 0.0
        self._own_instance = False
        self._connected = False
        self._temp_dir: str | None = None
        self._mailbox: Any = None
        self._remote: Any = None
        self._options: dict[str, Any] = {}
        self._payload: Any = None
        self._drain: Any = None
        self._refs: dict[int, Any] = {}
        self._tasks: dict[int, TrialTask] = {}
        self._seen: dict[int, tuple[bool, list[int]]] = {}
        self._topic = f"optml-ray-{uuid.uuid4().hex[:12]}"

    # -- life cycle -----------------------------------------------------------------------
    def start(self, objective: Objective) -> None:
        from optml.executors._hosted import SHIP_LIMIT
        from optml.executors._runtime import dump_objective
        from optml.executors._ship import named_paths, shipped_files

        ray = _ray()
        payload = dump_objective(objective)
        self._connect(ray)
        try:
            check_resources(
                _alive_nodes(ray), self.cpus, self.gpus, self.memory, self.address or "local"
            )
            if self._asked_workers is None and not self._own_instance:
                total = ray.cluster_resources()
                fits = total.get("CPU", 1.0) // self.cpus
                if self.gpus:
                    fits = min(fits, total.get("GPU", 0.0) // self.gpus)
                self.workers = max(1, int(fits))
            self._mailbox = ray.remote(_Mailbox).options(num_cpus=0, max_restarts=0).remote()
            options: dict[str, Any] = {"num_cpus": self.cpus, "max_retries": LOST_WORKER_RERUNS}
            if self.gpus:
                options["num_gpus"] = self.gpus
            if self.memory:
                options["memory"] = self.memory
            self._remote = ray.remote(run_ray_task)
            self._options = options
            files = shipped_files(objective, SHIP_LIMIT)
            key = hashlib.sha256(payload + repr(sorted(files)).encode()).hexdigest()[:16]
            self._payload = ray.put((key, payload, files, named_paths(objective)))
        except BaseException:
            self._disconnect(ray)
            raise

    def _connect(self, ray: Any) -> None:
        """Connect to the cluster, start a local instance, or use this process's connection;
        Ray's SIGTERM handler (exit at once) must not replace the controller's."""
        if ray.is_initialized():
            if self.address:
                raise RayError(
                    f"execution.address {self.address!r}: Ray is already initialised in this "
                    "process; give no address to run on that connection, or call "
                    "ray.shutdown() first"
                )
            return
        handler = _sigterm_handler()
        try:
            if self.address:
                try:
                    _reachable(self.address)
                    extra = {}
                    if self.address.startswith("ray://"):
                        extra["_metadata"] = _client_auth()
                    ray.init(
                        address=self.address,
                        logging_level="ERROR",
                        log_to_driver=False,
                        namespace=self._topic,
                        **extra,
                    )
                except Exception as exc:  # noqa: BLE001 - any failure to connect is the address's
                    raise RayError(
                        f"execution.address {self.address!r}: could not connect to a Ray "
                        f"cluster there ({type(exc).__name__}: {_first_line(exc)}); "
                        + (
                            "the cluster asks for its token: set RAY_AUTH_MODE=token and "
                            "RAY_AUTH_TOKEN (or ~/.ray/auth_token) as Ray's token "
                            "authentication says"
                            if _auth_refused(exc)
                            else "give ray://HOST:10001 (Ray Client) or HOST:6379 (the head's "
                            "GCS) of a running cluster, or no address for a local instance"
                        )
                    ) from None
            else:
                # Short socket paths: Ray's unix sockets live under this directory.
                base = "/tmp" if os.path.isdir("/tmp") else None
                self._temp_dir = tempfile.mkdtemp(prefix="optml-ray-", dir=base)
                self._own_instance = True
                gpus = None if self.gpus else 0  # None: the machine's own GPUs
                ray.init(
                    address="local",
                    num_cpus=int(max(1, round(self.workers * self.cpus))),
                    num_gpus=gpus,
                    object_store_memory=_OBJECT_STORE_BYTES,
                    include_dashboard=False,
                    logging_level="ERROR",
                    log_to_driver=False,
                    _temp_dir=self._temp_dir,
                    namespace=self._topic,
                )
            self._connected = True
        except BaseException:
            try:  # a failed connection can leave Ray half set up in this process
                ray.shutdown()
            except Exception:  # noqa: BLE001
                pass
            self._remove_temp_dir()
            raise
        finally:
            _restore_sigterm(handler)

    def shutdown(self, kill: bool = False) -> None:
        if self._mailbox is None and not self._connected:
            return
        ray = _ray()
        refs = list(self._refs.values())
        for number in list(self._refs):
            self.cancel(number)
        if refs:
            # The cancelled tasks kill their trials' processes; wait for that before returning.
            try:
                ray.wait(refs, num_returns=len(refs), timeout=10, fetch_local=False)
            except Exception:  # noqa: BLE001 - a cluster already gone has nothing left to stop
                pass
        self._disconnect(ray)

    def _disconnect(self, ray: Any) -> None:
        mailbox, self._mailbox = self._mailbox, None
        self._payload = self._drain = None
        if mailbox is not None and not self._connected:
            try:
                ray.kill(mailbox)
            except Exception:  # noqa: BLE001
                pass
        if self._connected:
            self._connected = False
            handler = _sigterm_handler()
            try:
                ray.shutdown()
            finally:
                _restore_sigterm(handler)
        self._remove_temp_dir()

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
            self._own_instance = False

    # -- work -----------------------------------------------------------------------------
    def free_slots(self) -> int:
        return max(0, self.workers - len(self._refs))

    def running(self) -> int:
        return len(self._refs)

    def submit(self, task: TrialTask) -> None:
        assert self._remote is not None, "start() first"
        number = task.number
        ref = self._remote.options(name=f"optml-trial-{number}", **self._options).remote(
            self._payload, task, self._mailbox, self._topic
        )
        self._refs[number] = ref
        self._tasks[number] = task
        self._seen[number] = (False, [])

    def cancel(self, number: int) -> None:
        ref = self._refs.pop(number, None)
        self._tasks.pop(number, None)
        self._seen.pop(number, None)
        if ref is not None:
            ray = _ray()
            self._mailbox.command.remote(number, "cancel")
            try:
                # Interrupts the task at once (KeyboardInterrupt in it: it kills its trial's
                # process tree on the way out), or drops it if it has not started.
                ray.cancel(ref, force=False, recursive=False)
            except Exception:  # noqa: BLE001 - it finished meanwhile
                pass

    def prune(self, number: int) -> None:
        if number in self._refs:
            self._mailbox.command.remote(number, "prune")

    def events(self, timeout: float | None = None) -> list[TrialEvent]:
        if not self._refs:
            return []
        ray = _ray()
        if self._drain is None:
            self._drain = self._mailbox.drain.remote(_DRAIN_S)
        waiting = [self._drain, *self._refs.values()]
        # One blocking wait for whichever comes first: a message, or a task's end.
        ready, _ = ray.wait(waiting, num_returns=1, timeout=timeout, fetch_local=False)
        if not ready:
            return []
        ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0, fetch_local=False)
        # By id: Ray Client hands back other objects for the same references.
        done = {ref.hex() for ref in ready}
        out: list[TrialEvent] = []
        if self._drain.hex() in done:
            messages = ray.get(self._drain)
            self._drain = None
            for msg in messages:
                out += self._from_worker(msg)
        for number, ref in list(self._refs.items()):
            if ref.hex() in done:
                out += self._finished(number, ref)
        return out

    def _from_worker(self, msg: dict[str, Any]) -> list[TrialEvent]:
        number, attempt = msg["number"], msg["attempt"]
        task = self._tasks.get(number)
        if task is None or task.attempt != attempt:
            return []  # late news of a trial already finished or cancelled
        started, steps = self._seen[number]
        if msg["kind"] == "started":
            self._seen[number] = (True, steps)
            return [
                TrialStarted(
                    number, attempt, msg["host"], msg["runner"], msg.get("pid"), msg["run"]
                )
            ]
        steps.append(msg["step"])
        return [TrialReported(number, attempt, msg["step"], msg["value"])]

    def _finished(self, number: int, ref: Any) -> list[TrialEvent]:
        from dataclasses import replace

        from optml.trial_run import outcome_from_json

        ray = _ray()
        task = self._tasks.pop(number)
        del self._refs[number]
        started, steps = self._seen.pop(number)
        try:
            outcome = replace(
                outcome_from_json(ray.get(ref, timeout=60)), number=number, attempt=task.attempt
            )
        except ray.exceptions.TaskCancelledError:
            return []
        except Exception as exc:  # noqa: BLE001 - the task's own failure is the trial's
            outcome = TrialOutcome(number, "FAILED", error=_task_error(exc), attempt=task.attempt)
        return ending_with(outcome, started, steps)


def _task_error(exc: BaseException) -> str:
    ray = _ray()
    if isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return f"the Ray worker running the trial died ({_first_line(exc)})"
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return f"Ray killed the worker running the trial for lack of memory ({_first_line(exc)})"
    return f"the Ray task failed: {type(exc).__name__}: {_first_line(exc)}"


def _auth_refused(exc: BaseException | None) -> bool:
    """Whether a failure to connect came from the cluster's token authentication."""
    while exc is not None:
        if "InvalidAuthToken" in str(exc) or type(exc).__name__ == "AuthenticationError":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Mailbox:
    """An actor (asyncio) between the trials' tasks and the controller: tasks put their
    started and reported events, the controller drains them with one call that waits for the
    first; the controller's commands (cancel, prune) wait here for the tasks to poll them."""

    def __init__(self) -> None:
        import asyncio

        self._messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._commands: dict[int, str] = {}

    async def put(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        self._arrived.set()

    async def drain(self, wait: float) -> list[dict[str, Any]]:
        import asyncio

        if not self._messages:
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                pass
        messages, self._messages = self._messages, []
        self._arrived.clear()
        return messages

    async def command(self, number: int, command: str) -> None:
        if self._commands.get(number) != "cancel":
            self._commands[number] = command

    async def command_of(self, number: int) -> str | None:
        return self._commands.get(number)


class _Commands(PolledCommands):
    """The controller's command for one trial, from the mailbox actor."""

    def __init__(self, mailbox: Any, number: int) -> None:
        super().__init__()
        self._mailbox = mailbox
        self._number = number

    def _fetch(self, current: str | None) -> str | None:
        try:
            return _ray().get(self._mailbox.command_of.remote(self._number), timeout=5)  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - the controller is gone: stop the trial
            return "cancel"


def run_ray_task(payload: Any, task: TrialTask, mailbox: Any, topic: str) -> dict[str, Any]:
    """The Ray task of one trial: runs on a Ray worker, sends its events to ``mailbox``,
    returns its outcome (the JSON form of :mod:`optml.trial_run`)."""

    from optml.executors import _hosted as shared
    from optml.executors._ship import arrive
    from optml.trial_run import outcome_to_json

    ray = _ray()
    key, blob, files, named = payload
    run = uuid.uuid4().hex[:12]
    number, attempt = task.number, task.attempt
    host = socket.gethostname()
    runner = f"ray:{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"

    def emit(kind: str, **fields: Any) -> None:
        # Waits for the mailbox to take it: the trial's events arrive in the order sent.
        message = {"kind": kind, "number": number, "attempt": attempt, "run": run, **fields}
        ray.get(mailbox.put.remote(message), timeout=60)

    where = f"Ray worker host {host}"
    relocate, task, problem = arrive(
        key, files, named, task, where, shared.SHIP_LIMIT, shared.ADVICE
    )
    if problem:
        emit("started", pid=os.getpid(), host=host, runner=runner)
        failed = TrialOutcome(
            number, "FAILED", error=problem, attempt=attempt, host=host, runner=runner
        )
        return outcome_to_json(failed)
    # A trial process is reused by the study's next trials here while it sees the same GPUs;
    # one of another study (or of other GPUs) that this Ray worker keeps is ended first.
    pool = f"{topic}:{os.environ.get('CUDA_VISIBLE_DEVICES', '')}"
    with shared.STATE_LOCK:
        others = {k[0] for k in shared.POOLS if k[0] != pool}
    for other in others:
        shared.release(other)
    outcome = shared.supervise(
        key, blob, relocate, task, pool, (host, runner), emit, _Commands(mailbox, number)
    )
    return outcome_to_json(outcome)


# -- checks ---------------------------------------------------------------------------------


_ADDRESS = re.compile(r"^(auto|(ray://)?\[?[A-Za-z0-9_.:-]+\]?:\d{1,5})$")


def check_address(address: str) -> None:
    """Refuse an address Ray cannot dial, naming what is accepted."""
    if not _ADDRESS.match(address):
        raise RayError(
            f"execution.address {address!r} is not a Ray cluster address; give one such as "
            "ray://host:10001 (Ray Client), host:6379 (the head's GCS) or auto"
        )


def _reachable(address: str, within: float = 10.0) -> None:
    """Fail fast where nothing listens at ``address`` (Ray itself retries for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=within):
        pass


def _client_auth() -> list[tuple[str, str]] | None:
    """The token header for Ray Client, which does not send it by itself (a driver connecting
    to the GCS does) to a cluster with token authentication (on by default in Ray 2.60): the
    token Ray's own tools use (``RAY_AUTH_TOKEN``, ``~/.ray/auth_token``), if there is one."""
    try:
        from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

        loader = AuthenticationTokenLoader.instance()
        if not loader.has_token(ignore_auth_mode=True):
            return None
        headers = loader.get_token_for_http_header()
    except Exception:  # noqa: BLE001 - a Ray without token authentication: nothing to send
        return None
    return [(str(k).lower(), str(v)) for k, v in headers.items()] or None


def _alive_nodes(ray: Any) -> list[dict[str, float]]:
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_resources(
    nodes: list[dict[str, float]],
    cpus: float,
    gpus: float,
    memory: float | None,
    where: str,
) -> None:
    """Refuse a study one of whose trials no node of the cluster can hold (Ray would leave
    its tasks pending for ever), naming what the biggest node offers."""
    from optml.executors._gpus import require_gpus

    if gpus:
        require_gpus(
            gpus,
            max((n.get("GPU", 0.0) for n in nodes), default=0.0),
            f"the best-provided node of the Ray cluster ({where})",
            f"{len(nodes)} node(s); Ray finds a machine's GPUs itself, or start nodes with "
            "ray start --num-gpus N",
        )
    for field, need, resource, unit in (
        ("cpus", cpus, "CPU", "CPU(s)"),
        ("memory", memory, "memory", "bytes of memory"),
    ):
        if not need:
            continue
        most = max((n.get(resource, 0.0) for n in nodes), default=0.0)
        if most < need:
            offer = f"the most on one node is {most:g}" if most else f"none has a {resource}"
            raise RayError(
                f"execution.{field}: each trial asks for {need:g} {unit}, but no node of the "
                f"Ray cluster ({where}) has that many ({offer}); lower execution.{field}, or "
                f"add nodes that have them (ray start --num-gpus/--num-cpus)"
            )


_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def _parse_bytes(value: str | float) -> float:
    """Bytes from a number or a size such as "4GB", "512MiB", "2Gi"."""
    if not isinstance(value, str):
        return float(value)
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", value)
    if not match:
        raise OptMLError(
            f"execution.memory {value!r} is not a size; give bytes or a size such as 4GB or 512MiB"
        )
    number, unit, binary = match.groups()
    scale = 1024 ** "kmgt".index(unit.lower()) * 1024 if binary and unit else _UNITS[unit.lower()]
    return float(number) * scale


def _sigterm_handler() -> Any:
    if threading.current_thread() is threading.main_thread():
        return signal.getsignal(signal.SIGTERM)
    return None


def _restore_sigterm(handler: Any) -> None:
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
