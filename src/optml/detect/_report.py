"""``optml.report(value)``: marks a script's metric for ``optml detect``/``optml tune``."""

from __future__ import annotations

from typing import Literal, TypeVar

T = TypeVar("T")


def report(value: T, direction: Literal["minimize", "maximize"] = "minimize") -> T:
    """Mark ``value`` as the script's metric and return it unchanged.

    Outside a tuning run it does nothing. ``optml detect`` reads the call in the source (the
    direction must be written as a literal) and ``optml tune`` turns it into the trial's result:
    the value of the last call that ran.
    """
    return value
