"""Parameter types of a search space and their mapping to and from the unit interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optml.errors import SpaceError

Scalar = bool | int | float | str | None


def _check_number(name: str, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpaceError(f"parameter {name!r}: {what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Float:
    """A real parameter in [low, high], sampled uniformly or (``log=True``) log-uniformly.

    >>> Float("learning_rate", 1e-4, 1e-1, log=True).from_unit(0.5)  # doctest: +ELLIPSIS
    0.00316...
    """

    name: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        low = _check_number(self.name, "low", self.low)
        high = _check_number(self.name, "high", self.high)
        if not low < high:
            raise SpaceError(
                f"parameter {self.name!r}: the range [{low}, {high}] is empty or inverted; "
                "give low < high"
            )
        if self.log and low <= 0:
            raise SpaceError(
                f"parameter {self.name!r}: a log-scale range must be positive, got low={low}"
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def kind(self) -> str:
        return "float"

    def to_unit(self, value: Any) -> float:
        v = float(value)
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

    def to_unit_many(self, values: Sequence[Any]) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        if self.log:
            lo = math.log(self.low)
            return (np.log(v) - lo) / (math.log(self.high) - lo)
        return (v - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            v = math.exp(lo + u * (hi - lo))
        else:
            v = self.low + u * (self.high - self.low)
        return min(max(v, self.low), self.high)

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.low <= float(value) <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}

    def describe(self) -> str:
        return f"{'loguniform' if self.log else 'uniform'}[{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Int:
    """An integer parameter in [low, high] (both included) on a grid of ``step``."""

    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self) -> None:
        for what in ("low", "high", "step"):
            value = getattr(self, what)
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ):
                raise SpaceError(
                    f"parameter {self.name!r}: {what} must be an integer, got {value!r}"
                )
            object.__setattr__(self, what, int(value))
        if self.step < 1:
            raise SpaceError(f"parameter {self.name!r}: step must be >= 1, got {self.step}")
        if not self.low <= self.high:
            raise SpaceError(
                f"parameter {self.name!r}: the range [{self.low}, {self.high}] is inverted; "
                "give low <= high"
            )
        if self.log and (self.low <= 0 or self.step != 1):
            raise SpaceError(
                f"parameter {self.name!r}: a log-scale integer range needs low >= 1 and step 1"
            )
        # Keep high on the step grid so that every value in [low, high] is reachable.
        object.__setattr__(self, "high", self.low + (self.high - self.low) // self.step * self.step)

    @property
    def kind(self) -> str:
        return "int"

    @property
    def size(self) -> int:
        return (self.high - self.low) // self.step + 1

    @property
    def log_range(self) -> tuple[float, float]:
        """Log of the bounds a log-scale integer maps onto [0, 1]: each value owns the cell
        from ``v - 0.5`` to ``v + 0.5``, so the end values are as likely as the others."""
        return math.log(self.low - 0.5), math.log(self.high + 0.5)

    def to_unit(self, value: Any) -> float:
        v = int(value)
        if self.log:
            lo, hi = self.log_range
            return (math.log(v) - lo) / (hi - lo)
        return ((v - self.low) // self.step + 0.5) / self.size

    def to_unit_many(self, values: Sequence[Any]) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        if self.log:
            lo, hi = self.log_range
            return (np.log(v) - lo) / (hi - lo)
        return ((v - self.low) // self.step + 0.5) / self.size

    def from_unit(self, u: float) -> int:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            lo, hi = self.log_range
            v = int(round(math.exp(lo + u * (hi - lo))))
            return min(max(v, self.low), self.high)
        index = min(int(u * self.size), self.size - 1)
        return self.low + index * self.step

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "int",
            "low": self.low,
            "high": self.high,
            "log": self.log,
            "step": self.step,
        }

    def describe(self) -> str:
        step = f" step {self.step}" if self.step != 1 else ""
        return f"{'logint' if self.log else 'int'}[{self.low}, {self.high}]{step}"


@dataclass(frozen=True)
class Categorical:
    """A choice among a fixed list of values (numbers, strings, booleans or None)."""

    name: str
    choices: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        choices = tuple(self.choices)
        if not choices:
            raise SpaceError(f"parameter {self.name!r}: a list of choices must not be empty")
        for c in choices:
            if not isinstance(c, bool | int | float | str | type(None)):
                raise SpaceError(
                    f"parameter {self.name!r}: choice {c!r} is a {type(c).__name__}; choices must "
                    "be numbers, strings, booleans or null"
                )
        keys = [_choice_key(c) for c in choices]
        if len(set(keys)) != len(keys):
            raise SpaceError(
                f"parameter {self.name!r}: the choices {list(choices)!r} repeat a value"
            )
        object.__setattr__(self, "choices", choices)

    @property
    def kind(self) -> str:
        return "categorical"

    @property
    def size(self) -> int:
        return len(self.choices)

    def index(self, value: Any) -> int:
        key = _choice_key(value)
        for i, c in enumerate(self.choices):
            if _choice_key(c) == key:
                return i
        raise SpaceError(f"parameter {self.name!r}: {value!r} is not one of {list(self.choices)!r}")

    def to_unit(self, value: Any) -> float:
        return (self.index(value) + 0.5) / self.size

    def to_unit_many(self, values: Sequence[Any]) -> np.ndarray:
        positions = {_choice_key(c): i for i, c in enumerate(self.choices)}
        try:
            index = [positions[_choice_key(v)] for v in values]
        except KeyError:
            bad = next(v for v in values if _choice_key(v) not in positions)
            self.index(bad)  # raises the usual message
            raise
        return (np.asarray(index, dtype=float) + 0.5) / self.size

    def from_unit(self, u: float) -> Scalar:
        u = min(max(float(u), 0.0), 1.0)
        return self.choices[min(int(u * self.size), self.size - 1)]

    def contains(self, value: Any) -> bool:
        key = _choice_key(value)
        return any(_choice_key(c) == key for c in self.choices)

    def values(self) -> list[Scalar]:
        return list(self.choices)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}

    def describe(self) -> str:
        return "choice" + repr(list(self.choices))


def _choice_key(value: Any) -> tuple[str, Any]:
    """A key that tells 1 from True and 1 from 1.5, but 1 and 1.0 alike."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float):
        return ("number", float(value))
    return (type(value).__name__, repr(value))


Param = Float | Int | Categorical


def param_from_dict(name: str, data: dict[str, Any]) -> Param:
    """Rebuild a parameter from :meth:`to_dict` output (as kept in storage)."""
    kind = data.get("type")
    if kind == "float":
        return Float(name, data["low"], data["high"], bool(data.get("log", False)))
    if kind == "int":
        return Int(
            name, data["low"], data["high"], bool(data.get("log", False)), data.get("step", 1)
        )
    if kind == "categorical":
        return Categorical(name, tuple(data["choices"]))
    raise SpaceError(f"parameter {name!r}: unknown stored type {kind!r}")
