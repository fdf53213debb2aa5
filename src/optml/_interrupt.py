"""Ctrl-C (and SIGTERM) during a study: never inside a storage transaction, and never lost.

Python raises ``KeyboardInterrupt`` at whatever bytecode the main thread is running when SIGINT
arrives. Two ways that goes wrong for a controller that writes to a database many times a
second:

- It lands inside SQLAlchemy while a write transaction is open. The connection can then be
  left holding SQLite's write lock, and the clean-up that puts running trials back in the queue
  waits on that lock through its whole busy timeout (a minute, and its retries).
- It lands inside a finaliser (``__del__``, a weakref callback), where CPython prints
  "Exception ignored" and carries on: the run does not stop at all.

While :func:`deferring_stop_signals` is active (the controller loop), a SIGINT is recorded,
and raised at once only outside :func:`critical` blocks (every storage transaction is one);
inside one it is raised when the block ends. :func:`check`, called by the loop at every turn,
raises a recorded SIGINT that got lost. Outside the loop (``ask``/``tell`` from a user's code) nothing changes:
Python's own handler is in place, and :func:`critical` only counts.

SIGTERM (``kill``, a container or service manager stopping the run) is handled the same way
when its handler is the default one (which would end the process on the spot, leaving trials
RUNNING until the next resume notices): it raises :class:`optml.errors.Terminated`, a
``KeyboardInterrupt``, so the run stops as after Ctrl-C.

Only the main thread receives signals, so only its blocks count. A handler other than Python's
default (SIGINT ignored in a background job, a host's own handler) is left alone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from optml.errors import Terminated

_depth = 0  # critical blocks the main thread is in
_pending: type[KeyboardInterrupt] | None = None  # arrived, not raised yet (or swallowed)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _depth == 0:
        raise _pending


class _Critical:
    """See :func:`critical` (a class: this runs around every storage transaction)."""

    __slots__ = ("counted",)

    def __enter__(self) -> None:
        global _depth
        # (Asked each time: after a fork the child's main thread is the one that forked.)
        self.counted = threading.get_ident() == threading.main_thread().ident
        if self.counted:
            _depth += 1

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        global _depth
        if not self.counted:
            return
        _depth -= 1
        # A pending Ctrl-C is raised here, between transactions, when the block ended
        # normally; an exception from the block propagates as it is.
        if kind is None and _depth == 0 and _pending is not None:
            raise _pending


def critical() -> _Critical:
    """A block that Ctrl-C must not interrupt (a storage transaction): it is raised after it."""
    return _Critical()


def check() -> None:
    """Raise a Ctrl-C (or SIGTERM) that arrived but was not raised (or was swallowed)."""
    if _pending is not None:
        raise _pending


def clear() -> None:
    """Forget a pending Ctrl-C: it is being handled."""
    global _pending
    _pending = None


# The handler each signal must have for ours to replace it: Python's own.
_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


@contextmanager
def deferring_stop_signals() -> Iterator[None]:
    """Install the deferring SIGINT/SIGTERM handler for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    clear()
    previous = {
        sig: signal.signal(sig, _on_signal)
        for sig, default in _DEFAULTS.items()
        if signal.getsignal(sig) is default
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear()
