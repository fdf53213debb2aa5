"""The one worker runtime every backend runs trials with: a supervised worker process that
captures a trial's output, reports as it goes, and dies with its whole process tree."""

from __future__ import annotations

import gc
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from optml._process import (
    become_subreaper,
    descendants,
    kill_group,
    kill_procs,
    kill_tree,
    limit_threads,
)
from optml.executors._base import TrialOutcome, TrialTask
from optml.executors._inprocess import _LogCapture, read_log_tail, run_trial
from optml.objectives._base import Objective, TrialContext

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

# -- the objective on the wire --------------------------------------------------------------


def dump_objective(objective: Objective) -> bytes:
    """The objective as bytes another machine can load (cloudpickle).

    A callable from a module that is not installed (a script, a notebook, a test file) travels
    by value, since the worker cannot import it; one from an installed package by reference.
    """
    try:
        import cloudpickle
    except ImportError:
        from optml.errors import missing_dependency

        raise missing_dependency("cloudpickle", "dask") from None
    registered = _registered_by_value()
    by_value = {m.__name__: m for m in _user_modules(objective) if m.__name__ not in registered}
    by_value_modules = list(by_value.values())
    for module in by_value_modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        return bytes(cloudpickle.dumps(objective))
    finally:
        for module in by_value_modules:
            cloudpickle.unregister_pickle_by_value(module)


def _registered_by_value() -> set[str]:
    import cloudpickle

    return set(getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", ()))


def _user_modules(objective: Objective) -> list[Any]:
    """Modules of callables the objective holds that are not installed packages."""
    import sysconfig

    installed = {
        os.path.realpath(p)
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(key))
    }
    found = []
    for value in vars(objective).values():
        name = getattr(value, "__module__", None) if callable(value) else None
        if not isinstance(name, str) or name == "__main__" or name.startswith("optml"):
            continue
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if module is None or path is None:
            continue
        real = os.path.realpath(path)
        if not any(real.startswith(root + os.sep) for root in installed):
            found.append(module)
    return found


class _Unloadable(Objective):
    """Stands for an objective the worker could not load: every trial fails saying why."""

    def __init__(self, message: str) -> None:
        self.message = message

    def run(self, params: dict[str, Any], context: TrialContext) -> Any:
        from optml.errors import ObjectiveError

        raise ObjectiveError(self.message)


def load_objective(payload: bytes, relocate: dict[str, str] | None = None) -> Objective:
    """The objective :func:`dump_objective` wrote, with its paths moved per ``relocate``
    (files shipped to this machine); one that cannot be loaded fails each trial saying why."""
    import pickle

    try:
        objective = pickle.loads(payload)
    except Exception as exc:  # noqa: BLE001 - reported as every trial's error
        return _Unloadable(
            f"the objective could not be loaded on worker host {socket.gethostname()}: "
            f"{type(exc).__name__}: {exc} (a function must be importable there, or defined in a "
            "script or notebook so that it travels by value)"
        )
    for key, value in list(vars(objective).items()):
        if isinstance(value, str) and relocate:
            vars(objective)[key] = _moved(value, relocate)
    return objective  # type: ignore[no-any-return]


def _moved(value: str, relocate: dict[str, str]) -> str:
    """``value`` with a shipped path replaced by where it lies here (``file.py:fn`` too)."""
    if value in relocate:
        return relocate[value]
    target, sep, attr = value.rpartition(":")
    if sep and target in relocate:
        return f"{relocate[target]}:{attr}"
    return value


# -- a worker process and its supervisor ------------------------------------------------------


def _log_path(log_dir: str, pid: int) -> str:
    """The log file of worker ``pid``, which holds the output of the trial it runs."""
    return os.path.join(log_dir, f"worker-{pid}.log")


def death_message(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"the worker process running the trial was killed by signal {name}"
    return f"the worker process running the trial exited unexpectedly with status {code}"


# How long a worker process may take to start a task it was handed (a fresh interpreter
# importing the objective's modules) before the task's own time limit starts to count anyway.
START_ALLOWANCE_S = 60.0


class WorkerProcess:
    """A worker process of the runtime and its supervisor's handle on it.

    Built with an ``objective`` it is forked (no pickling: closures work; the caller must have
    no other threads running); built with a ``payload`` from :func:`dump_objective` it is a
    fresh interpreter (safe from a multi-threaded process such as a Dask worker). Either way
    it runs :func:`worker_main` (with ``env`` as its environment, if given): one task at a
    time, each reported as ``("started", ...)``, ``("reported", ...)`` messages and then its
    :class:`TrialOutcome`. Tasks handed over while one runs wait in the worker and run in
    order, each with its own time limit from its start.
    """

    def __init__(
        self,
        log_dir: str,
        threads: int | None = 1,
        *,
        objective: Objective | None = None,
        payload: bytes | None = None,
        relocate: dict[str, str] | None = None,
        mp_context: Any = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_dir = log_dir
        # The task running (or next to run), and those handed over behind it, run in order.
        self.task: TrialTask | None = None
        self.queued: deque[TrialTask] = deque()
        # Queued tasks taken back (see cancel_queued), the one of them the worker started
        # before it saw that, and whether it was killed for that (its tasks never started).
        self.cancelled: set[int] = set()
        self._running_cancelled: int | None = None
        self.interrupted = False
        self._stopping = False
        self.started = 0.0
        self.started_at: datetime | None = None
        self.deadline: float | None = None
        self.confirmed = False  # whether the worker said it started self.task
        self.dead = False
        self._proc: Any = None
        self._popen: subprocess.Popen[bytes] | None = None
        parent = os.getpid()
        if objective is not None:
            ctx = mp_context
            conn, child = ctx.Pipe()
            self._proc = ctx.Process(
                target=worker_main,
                args=(child, objective, log_dir, threads, parent, env),
                name="optml-worker",
            )
            if threads:  # imported here once, not in every worker that limit_threads starts
                try:
                    import threadpoolctl  # noqa: F401
                except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
                    pass
            # The objects the fork shares stay out of the worker's garbage collections, which
            # would otherwise write to (and so copy) most of the controller's memory pages.
            gc.freeze()
            try:
                self._proc.start()
            finally:
                gc.unfreeze()
            child.close()
            self.conn: Connection = conn
            self.pid: int = self._proc.pid
            self.sentinel: Any = self._proc.sentinel
        else:
            assert payload is not None
            ours, theirs = socket.socketpair()
            try:
                self._popen = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "from optml.executors._runtime import _main; _main()",
                        str(theirs.fileno()),
                        log_dir,
                        str(threads or 0),
                        str(parent),
                    ],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            finally:
                theirs.close()
            from multiprocessing.connection import Connection

            self.conn = Connection(ours.detach())
            self.pid = self._popen.pid
            self.sentinel = None  # its death shows as the end of the connection
            self.conn.send_bytes(payload)
            self.conn.send(relocate or {})

    @property
    def waitables(self) -> list[Any]:
        return [self.conn] if self.sentinel is None else [self.conn, self.sentinel]

    def submit(self, task: TrialTask) -> None:
        """Hand ``task`` over; behind the running one, it starts when those before it end."""
        self.submit_many([task])

    def submit_many(self, tasks: list[TrialTask]) -> None:
        """Hand ``tasks`` over in one message, to run in order."""
        self.conn.send_bytes(_dumps(tasks[0] if len(tasks) == 1 else tasks))
        for task in tasks:
            if self.task is None:
                self._begin(task)
            else:
                self.queued.append(task)

    def _begin(self, task: TrialTask | None, confirmed: bool = False) -> None:
        """``task`` is now the one running: its time limit counts from now once the worker
        ``confirmed`` that it started it; until then the worker's start-up (a fresh
        interpreter importing the objective's modules, on a loaded machine) gets
        START_ALLOWANCE_S on top, so that it does not eat the trial's own time."""
        self.task = task
        self.confirmed = confirmed
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.deadline = None
        if task and task.timeout:
            self.deadline = self.started + task.timeout + (0 if confirmed else START_ALLOWANCE_S)

    def cancel_queued(self, number: int) -> None:
        """Take back a task waiting behind the running one: the worker skips it."""
        self.queued = deque(t for t in self.queued if t.number != number)
        self.cancelled.add(number)
        try:
            self.conn.send_bytes(_dumps(("cancel", number)))
        except OSError:
            pass

    def unstarted(self) -> list[TrialTask]:
        """The tasks that never started here (to run elsewhere), taken from this worker."""
        tasks = list(self.queued)
        self.queued.clear()
        if self.interrupted and self.task is not None:
            tasks.insert(0, self.task)
            self.task = None
        return tasks

    def prune(self, number: int) -> None:
        try:
            self.conn.send_bytes(_dumps(("prune", number)))
        except OSError:
            pass

    def receive(self) -> list[Any]:
        """The messages that arrived (without blocking); ``dead`` is set when the process is
        gone (its connection closed)."""
        messages: list[Any] = []
        try:
            while not self.dead and self.conn.poll():
                self._take(self.conn.recv(), messages)
        except (EOFError, OSError):
            self.dead = True
        if self._running_cancelled is not None and not self.dead:
            # A task taken back started before the worker saw that, and is still running:
            # stop it with the worker; the tasks behind it never started.
            self.kill()
            self.interrupted = True
            return messages
        if not self.dead and not self.alive():
            self.dead = True
            messages += self.receive_rest()
        return messages

    def receive_rest(self) -> list[Any]:
        messages: list[Any] = []
        try:
            while self.conn.poll():
                self._take(self.conn.recv(), messages)
        except (EOFError, OSError):
            pass
        return messages

    def _take(self, message: Any, messages: list[Any]) -> None:
        """Keep track of which task runs as ``message`` tells, and keep ``message`` (an
        outcome as a :class:`TrialOutcome`) unless it is about a task taken back."""
        if isinstance(message, list):  # an outcome and the next task's start, sent together
            for one in message:
                self._take(one, messages)
            return
        if message[0] == "outcome":
            message = TrialOutcome(*message[1:])
        if isinstance(message, TrialOutcome):
            if message.number in self.cancelled:
                self._running_cancelled = None
                return
            self._begin(self.queued.popleft() if self.queued else None)
        elif message[1] in self.cancelled:
            if message[0] == "started":
                self._running_cancelled = message[1]
            return
        elif message[0] == "started" and self.task is not None and self.task.number == message[1]:
            self._begin(self.task, confirmed=True)  # its limit counts from its start
        messages.append(message)

    def alive(self) -> bool:
        if self._proc is not None:
            return bool(self._proc.is_alive())
        assert self._popen is not None
        return self._popen.poll() is None

    @property
    def exitcode(self) -> int | None:
        if self._proc is not None:
            return self._proc.exitcode  # type: ignore[no-any-return]
        assert self._popen is not None
        return self._popen.poll()

    def past_deadline(self, now: float | None = None) -> bool:
        return self.deadline is not None and (now or time.monotonic()) >= self.deadline

    def lost(self, state: str, error: str, host: str | None, runner: str | None) -> TrialOutcome:
        """The outcome of the task this process was running when it was killed or died."""
        task = self.task
        assert task is not None
        self.task = None
        return TrialOutcome(
            number=task.number,
            state=state,
            error=error,
            logs=read_log_tail(_log_path(self.log_dir, self.pid)),
            duration_s=time.monotonic() - self.started,
            started_at=self.started_at,
            finished_at=datetime.now(UTC),
            attempt=task.attempt,
            host=host,
            runner=runner,
        )

    def timed_out(self, host: str | None, runner: str | None) -> TrialOutcome:
        """Kill the process tree of a task past its time limit; its TIMEOUT outcome."""
        assert self.task is not None
        self.kill()
        limit = f"{self.task.timeout:g} s"
        message = f"the trial ran past its time limit of {limit} and was killed"
        if not self.confirmed:
            message = (
                f"the trial's worker process did not start it within {START_ALLOWANCE_S:g} s "
                f"plus its time limit of {limit}, and was killed"
            )
        return self.lost("TIMEOUT", message, host, runner)

    def died(self, host: str | None, runner: str | None) -> TrialOutcome:
        """The FAILED outcome of a task whose process died; what it left in its group dies."""
        kill_group(self.pid)
        self.join(1)
        return self.lost("FAILED", death_message(self.exitcode), host, runner)

    def join(self, timeout: float) -> None:
        if self._proc is not None:
            self._proc.join(timeout=timeout)
        elif self._popen is not None:
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass

    def kill(self) -> None:
        """Kill the process and every process below it, now."""
        kill_tree(self.pid)
        self.join(2)
        self.dead = True

    def stop(self) -> None:
        """Ask an idle worker to end: it kills what its trials left running, then exits
        (several workers asked first and then closed end together)."""
        if self.task is None and not self._stopping:
            self._stopping = True
            try:
                self.conn.send_bytes(_dumps(None))
            except OSError:
                pass

    def close(self, kill: bool = False) -> None:
        """End the process: killed with its whole tree while it holds a task (``kill`` then
        changes nothing: an idle worker, asked to stop, ends as fast and takes what its trials
        left running with it); then release the connection."""
        if self.task is not None:
            kill_tree(self.pid)
        else:
            self.stop()
        self.join(2)
        if self.alive():
            kill_tree(self.pid)
            self.join(2)
        self.conn.close()
        self.dead = True


def worker_main(
    conn: Connection,
    objective: Objective | None,
    log_dir: str,
    threads: int | None,
    parent: int,
    env: dict[str, str] | None = None,
) -> None:
    """The body of a worker process: run tasks from ``conn`` until told to stop (None), with
    ``env`` as its environment if given (a forked worker's devices, say)."""
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    os.setsid()
    become_subreaper()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller handles Ctrl-C
    # Not the controller's handler inherited by the fork, which defers the signal.
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Write Python-level output to the real fds 1 and 2, which each trial redirects to its log
    # (a forked worker may have inherited a replaced sys.stdout, e.g. under a test runner).
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if threads:
        limit_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    relocate: dict[str, str] = {}
    if objective is None:
        try:
            payload = conn.recv_bytes()
            relocate = conn.recv()
        except (EOFError, OSError):
            return
        objective = load_objective(payload, relocate)
    lock = threading.Lock()

    def send(message: Any) -> None:
        data = _dumps(message)
        with lock:
            conn.send_bytes(data)

    tasks: queue.SimpleQueue[TrialTask | None] = queue.SimpleQueue()
    pruned: set[int] = set()
    cancelled: set[int] = set()  # tasks handed over and taken back before they started
    threading.Thread(
        target=_read_commands, args=(conn, tasks, pruned, cancelled), daemon=True
    ).start()
    host, pid = socket.gethostname(), os.getpid()
    capture = _LogCapture(_log_path(log_dir, pid), keep=True)
    # A finished trial's outcome, held back to go in one message with the next task's start
    # when that task is already here (one write and one wake-up of the controller, not two).
    held: tuple[Any, ...] | None = None
    try:
        while True:
            try:
                task = tasks.get_nowait() if held else tasks.get()
            except queue.Empty:
                send(held)
                held = None
                continue
            if task is None:
                break
            if task.number in cancelled:
                cancelled.discard(task.number)
                continue
            if relocate and task.data in relocate:
                task = replace(task, data=relocate[task.data])
            started = ("started", task.number, task.attempt, host, pid)
            send([held, started] if held else started)
            # Processes a Python trial leaves running are kept until the worker ends: they may
            # be a pool the objective reuses in its next trial (joblib's loky workers, for one),
            # which breaks if they are killed between trials. A timeout, a SIGTERM, the parent's
            # death and the worker's exit still take every one of them down.
            held = _wire(_run_reporting(objective, task, capture, send, pruned))
            pruned.discard(task.number)
        if held:
            send(held)
    except OSError:
        pass
    conn.close()
    capture.close()
    kill_procs(descendants())


_OUTCOME_FIELDS = [f.name for f in fields(TrialOutcome)]


def _wire(outcome: TrialOutcome) -> tuple[Any, ...]:
    """An outcome as a worker sends it: a tuple of plain values (cheaper to pickle)."""
    return ("outcome", *(getattr(outcome, name) for name in _OUTCOME_FIELDS))


def _dumps(message: Any) -> bytes:
    """A message to or from a worker process, pickled (without multiprocessing's reducers,
    which a message of plain data does not need and which cost more than the pickling)."""
    return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)


def _run_reporting(
    objective: Objective,
    task: TrialTask,
    capture: _LogCapture,
    send: Callable[[Any], None],
    pruned: set[int],
) -> TrialOutcome:
    number, attempt = task.number, task.attempt
    return run_trial(
        objective,
        task,
        capture=capture,
        interruptible=False,  # SIGINT is ignored here: a KeyboardInterrupt is the trial's
        on_report=lambda step, value: send(("reported", number, attempt, step, value)),
        should_prune=lambda: number in pruned,
    )


def _read_commands(
    conn: Connection,
    tasks: queue.SimpleQueue[TrialTask | None],
    pruned: set[int],
    cancelled: set[int],
) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            tasks.put(None)
            return
        if isinstance(message, tuple) and message[0] == "prune":
            pruned.add(message[1])
        elif isinstance(message, tuple) and message[0] == "cancel":
            cancelled.add(message[1])
        elif isinstance(message, list):  # several tasks handed over at once
            for task in message:
                tasks.put(task)
        else:
            tasks.put(message)
            if message is None:
                return


def _on_sigterm(signum: int, frame: Any) -> None:
    """Stop the running trial (all its processes) and end the worker as SIGTERM would."""
    kill_procs(descendants())
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent: int) -> None:
    """Take this worker and everything below it down if its parent goes away."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            try:
                kill_procs(descendants(), wait=0)
                os.killpg(0, signal.SIGKILL)
            finally:
                os._exit(1)


def _main() -> None:
    """Entry point of a worker process started as a fresh interpreter."""
    fd, log_dir, threads, parent = sys.argv[1:5]
    from multiprocessing.connection import Connection

    worker_main(Connection(int(fd)), None, log_dir, int(threads) or None, int(parent))
