"""Ctrl-C during a study: never inside a storage transaction, and never lost.

Python raises ``KeyboardInterrupt`` at whatever bytecode the main thread is running when SIGINT
arrives. Two ways that goes wrong for a controller that writes to a database many times a
second (both reproduced by sending SIGINT to ``optml run`` at random moments, 2 runs in 60):

- It lands inside SQLAlchemy while a write transaction is open. The connection can then be
  left holding SQLite's write lock, and the clean-up that puts running trials back in the queue
  waits on that lock through its whole busy timeout (a minute, and its retries).
- It lands inside a finaliser (``__del__``, a weakref callback), where CPython prints
  "Exception ignored" and carries on: the run does not stop at all.

While :func:`catching_ctrl_c` is active (the controller loop), a SIGINT is recorded, and raised
at once only outside :func:`critical` blocks (every storage transaction is one); inside one it is
raised when the block ends. :func:`check`, called by the loop at every turn, raises a recorded
SIGINT that got lost. Outside the loop (``ask``/``tell`` from a user's code) nothing changes:
Python's own handler is in place, and :func:`critical` only counts.

Only the main thread receives signals, so only its blocks count. A handler other than Python's
default (SIGINT ignored in a background job, a host's own handler) is left alone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_depth = 0  # critical blocks the main thread is in
_pending = False  # a SIGINT arrived and is not raised yet (or its raise was swallowed)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = True
    if _depth == 0:
        raise KeyboardInterrupt


@contextmanager
def critical() -> Iterator[None]:
    """A block that Ctrl-C must not interrupt (a storage transaction): it is raised after it."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
    # Reached only when the block ended normally: a pending Ctrl-C is raised here, between
    # transactions; an exception from the block propagates as it is.
    if _depth == 0 and _pending:
        raise KeyboardInterrupt


def check() -> None:
    """Raise a Ctrl-C that arrived but was not raised (or was swallowed)."""
    if _pending:
        raise KeyboardInterrupt


def clear() -> None:
    """Forget a pending Ctrl-C: it is being handled."""
    global _pending
    _pending = False


@contextmanager
def catching_ctrl_c() -> Iterator[None]:
    """Install the deferring SIGINT handler for the duration of the block (main thread only)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    clear()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        clear()
