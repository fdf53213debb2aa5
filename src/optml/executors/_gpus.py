"""GPUs for trials: which devices a machine has, leases that give a trial devices to itself, and
the refusal of a study that asks for GPUs where there are none."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from functools import lru_cache

from optml.errors import GpuError

# The device list, for tests and for users who want to give optml fewer devices than the
# machine has: comma-separated ids as CUDA_VISIBLE_DEVICES takes them; empty means none.
GPUS_ENV = "OPTML_GPUS"
# Where the lock files that keep trials of one user on one host apart live.
LOCKS_ENV = "OPTML_GPU_LOCKS"


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPU ids trials on this machine may be given, as CUDA_VISIBLE_DEVICES takes them.

    ``OPTML_GPUS`` first (a comma-separated list; empty: none), then a CUDA_VISIBLE_DEVICES
    already set on this process (its devices are all this process may hand out; empty or
    ``-1``: none), then what the NVIDIA driver lists (``nvidia-smi -L``, else
    ``/proc/driver/nvidia/gpus``), numbered from 0 in CUDA's order."""
    env = os.environ if environ is None else environ
    if GPUS_ENV in env:
        return _parse(env[GPUS_ENV])
    if "CUDA_VISIBLE_DEVICES" in env:
        return _parse(env["CUDA_VISIBLE_DEVICES"])
    return [str(i) for i in range(_driver_gpu_count())]


def _parse(value: str) -> list[str]:
    ids = []
    for part in value.split(","):
        part = part.strip()
        # CUDA ignores the list from the first invalid entry on; -1 is the usual "none".
        if not part or part.startswith("-"):
            break
        ids.append(part)
    return ids


@lru_cache(maxsize=1)
def _driver_gpu_count() -> int:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            listed = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=20, check=False
            )
        except (OSError, subprocess.SubprocessError):
            listed = None
        if listed is not None and listed.returncode == 0:
            return sum(1 for line in listed.stdout.splitlines() if re.match(r"GPU \d+:", line))
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def whole_gpus(gpus: float | None, backend: str) -> int:
    """The number of GPUs one trial asks for, as a whole number (0: none)."""
    if not gpus:
        return 0
    if gpus != int(gpus) or gpus < 0:
        raise GpuError(
            f"execution.gpus: {gpus:g} — the {backend} backend gives each trial whole GPUs to "
            "itself; give a whole number (1, 2, ...)"
        )
    return int(gpus)


def require_gpus(asked: float, found: float, where: str, how: str) -> None:
    """Refuse a study whose trials ask for more GPUs than ``where`` has (``how``: where that
    was seen, and what to do about it)."""
    if asked > found:
        raise GpuError(
            f"execution.gpus: each trial asks for {asked:g} GPU(s), but {where} offers "
            f"{found:g} ({how})"
        )


def local_gpus(asked: int) -> list[str]:
    """This machine's GPUs, refusing a study that asks for more per trial than it has."""
    devices = visible_gpus()
    require_gpus(
        asked,
        len(devices),
        "this machine",
        f"seen through {_source()}; set {GPUS_ENV}=0,1,... to name the devices to use",
    )
    return devices


def _source() -> str:
    if GPUS_ENV in os.environ:
        return f"{GPUS_ENV}={os.environ[GPUS_ENV]!r}"
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r}"
    return "nvidia-smi -L and /proc/driver/nvidia/gpus"


# -- leases -------------------------------------------------------------------------------------

# Devices this process holds. POSIX record locks keep processes apart but not the threads of
# one process (a process never conflicts with its own locks), and a forked child does not
# inherit them: the lock stays with the process that took it and ends when it dies.
_HELD: set[str] = set()
_HELD_LOCK = threading.Lock()


def lock_dir() -> str:
    """Where the lock files of this user's device leases live (``OPTML_GPU_LOCKS``)."""
    return os.environ.get(LOCKS_ENV) or os.path.join(
        tempfile.gettempdir(), f"optml-gpu-locks-{os.getuid()}"
    )


class GpuLease:
    """Devices held by this process for one trial (or one worker process) until released."""

    def __init__(self, ids: list[str], fds: list[int], keys: list[str]) -> None:
        self.ids = ids
        self._fds = fds
        self._keys = keys

    @property
    def visible(self) -> str:
        """The value of CUDA_VISIBLE_DEVICES for the process these devices are given to."""
        return ",".join(self.ids)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with these devices visible only."""
        env = dict(os.environ if base is None else base)
        env["CUDA_VISIBLE_DEVICES"] = self.visible
        return env

    def release(self) -> None:
        """Give the devices back (closing the lock file releases its lock); idempotent."""
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
        with _HELD_LOCK:
            _HELD.difference_update(self._keys)
        self._keys = []

    def __enter__(self) -> GpuLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class GpuAllocator:
    """Hands out distinct ``devices`` to trials: one lock file per device id under
    :func:`lock_dir`, so that trials of every optml process of this user on this host
    (controllers, Dask workers) never share a device. A lock is held by the process that took
    it and released when the lease is released or that process dies, however it dies."""

    def __init__(self, devices: list[str], directory: str | None = None) -> None:
        self.devices = list(devices)
        self.directory = directory or lock_dir()

    def acquire(self, n: int) -> GpuLease | None:
        """``n`` free devices, now, or None when fewer are free."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        ids: list[str] = []
        fds: list[int] = []
        keys: list[str] = []
        lease = GpuLease(ids, fds, keys)
        for device in self.devices:
            if len(ids) == n:
                break
            key = os.path.join(self.directory, "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", device))
            with _HELD_LOCK:
                if key in _HELD:
                    continue
                fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                if not _try_lock(fd):
                    os.close(fd)
                    continue
                _HELD.add(key)
            ids.append(device)
            fds.append(fd)
            keys.append(key)
        if len(ids) < n:
            lease.release()
            return None
        return lease

    def wait(self, n: int, give_up: Callable[[], bool], poll: float = 0.2) -> GpuLease | None:
        """``n`` devices as soon as they are free; None if ``give_up()`` says so first."""
        while True:
            lease = self.acquire(n)
            if lease is not None or give_up():
                return lease
            time.sleep(poll)


def _try_lock(fd: int) -> bool:
    import fcntl

    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True
