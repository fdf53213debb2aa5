"""The search space: an ordered set of parameters, unit-cube encoding, sampling and grids."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from optml.errors import SpaceError
from optml.space._params import Categorical, Float, Int, Param, _choice_key, param_from_dict


class Space:
    """An ordered set of named parameters.

    Every point of the space maps to a point of the unit cube ``[0, 1]^d`` (one dimension per
    parameter) and back, which is what samplers work in.

    >>> space = Space([Float("x", 0, 1), Categorical("act", ("relu", "tanh"))])
    >>> space.decode(space.encode({"x": 0.25, "act": "tanh"}))
    {'x': 0.25, 'act': 'tanh'}
    """

    def __init__(self, params: Sequence[Param]) -> None:
        names = [p.name for p in params]
        if not names:
            raise SpaceError("the search space is empty: give at least one parameter")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpaceError(f"the search space names parameter(s) {dupes} more than once")
        self._params: dict[str, Param] = {p.name: p for p in params}

    @property
    def params(self) -> list[Param]:
        return list(self._params.values())

    @property
    def names(self) -> list[str]:
        return list(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params.values())

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        inner = ", ".join(f"{p.name}={p.describe()}" for p in self)
        return f"Space({inner})"

    # -- checking -------------------------------------------------------------------------
    def validate(self, config: Mapping[str, Any], where: str = "configuration") -> dict[str, Any]:
        """Return ``config`` with values cast to their parameter's type; raise if it does not fit."""
        missing = [n for n in self.names if n not in config]
        extra = [n for n in config if n not in self._params]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"unknown {extra}")
            raise SpaceError(f"{where}: {', '.join(parts)}; the space has {self.names}")
        out: dict[str, Any] = {}
        for p in self:
            value = config[p.name]
            if not p.contains(value):
                raise SpaceError(
                    f"{where}: {p.name}={value!r} is outside the space ({p.describe()})"
                )
            if isinstance(p, Int):
                value = int(value)
            elif isinstance(p, Float):
                value = float(value)
            else:
                value = p.choices[p.index(value)]
            out[p.name] = value
        return out

    def key(self, config: Mapping[str, Any]) -> tuple[Any, ...]:
        """A hashable key of a configuration: equal for configurations that are the same point."""
        if self._numbers_only:  # 1 and 1.0 already hash alike; only choices need tagging
            return tuple([config.get(n) for n in self._params])
        return tuple([_choice_key(config.get(n)) for n in self._params])

    @functools.cached_property
    def _numbers_only(self) -> bool:
        return all(not isinstance(p, Categorical) for p in self._params.values())

    # -- unit cube ------------------------------------------------------------------------
    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """Map a configuration to a point of the unit cube."""
        return np.array([p.to_unit(config[p.name]) for p in self], dtype=float)

    def encode_many(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Map many configurations to the unit cube at once (one row each), column by column."""
        columns, names, low, span, others = self._encode_plan
        # The linear float columns in one pass (what Float.to_unit_many does for one).
        values = np.array([[c[n] for n in names] for c in configs], dtype=float)
        linear = (values.reshape(len(configs), len(names)) - low) / span
        if not others:
            return linear
        out = np.empty((len(configs), len(self)))
        out[:, columns] = linear
        for j, p in others:
            out[:, j] = p.to_unit_many([c[p.name] for c in configs])
        return out

    @functools.cached_property
    def _encode_plan(
        self,
    ) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, list[tuple[int, Param]]]:
        """The linear float columns (positions, names, lows, spans: encoded together, as
        ``Float.to_unit_many`` does one), and every other column with its parameter."""
        linear = [(j, p) for j, p in enumerate(self) if isinstance(p, Float) and not p.log]
        others = [(j, p) for j, p in enumerate(self) if not (isinstance(p, Float) and not p.log)]
        return (
            np.array([j for j, _ in linear], dtype=int),
            [p.name for _, p in linear],
            np.array([p.low for _, p in linear], dtype=float),
            np.array([p.high - p.low for _, p in linear], dtype=float),  # type: ignore[union-attr]
            others,
        )

    def snap(self, points: np.ndarray) -> np.ndarray:
        """Move each row of ``points`` (unit cube) to the unit point of the configuration it
        decodes to: what ``encode(decode(u))`` gives, vectorised.

        Integers and choices take a few discrete unit values; a surrogate that scores snapped
        candidates scores the points that would actually run.
        """
        U = np.clip(np.asarray(points, dtype=float), 0.0, 1.0).copy()
        for j, p in enumerate(self):
            if isinstance(p, Categorical) or (isinstance(p, Int) and not p.log):
                size = p.size
                U[:, j] = (np.minimum((U[:, j] * size).astype(int), size - 1) + 0.5) / size
            elif isinstance(p, Int):  # log scale: as Int.from_unit then Int.to_unit
                lo, hi = p.log_range
                values = np.clip(np.rint(np.exp(lo + U[:, j] * (hi - lo))), p.low, p.high)
                U[:, j] = (np.log(values) - lo) / (hi - lo)
        return U

    def decode(self, point: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """Map a point of the unit cube to a configuration (integers rounded, choices picked)."""
        params = self._params
        if len(point) != len(params):
            raise ValueError(f"point has {len(point)} dimensions, the space {len(params)}")
        return {name: p.from_unit(u) for (name, p), u in zip(params.items(), point, strict=True)}

    def sample(self, rng: np.random.Generator, n: int = 1) -> list[dict[str, Any]]:
        """Draw ``n`` configurations uniformly (log-uniformly on log scales)."""
        # As Python floats: the same numbers, read without a numpy scalar per coordinate.
        return [self.decode(u) for u in rng.random((n, len(self))).tolist()]

    # -- grids ----------------------------------------------------------------------------
    @property
    def is_finite(self) -> bool:
        return all(not isinstance(p, Float) for p in self)

    @property
    def grid_size(self) -> int:
        if not self.is_finite:
            raise SpaceError(self._not_finite_message())
        size = 1
        for p in self:
            size *= p.size  # type: ignore[union-attr]
        return size

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every point of a finite space, in row-major order (the last parameter varies fastest)."""
        if not self.is_finite:
            raise SpaceError(self._not_finite_message())
        names = self.names
        # Lazily: itertools.product would first copy every parameter's values into a tuple,
        # which for a huge integer range exhausts memory before the first point.
        axes: list[Sequence[Any]] = [
            range(p.low, p.high + 1, p.step) if isinstance(p, Int) else p.values()  # type: ignore[union-attr]
            for p in self
        ]
        if any(len(axis) == 0 for axis in axes):
            return
        index = [0] * len(axes)
        while True:
            yield {n: axis[i] for n, axis, i in zip(names, axes, index, strict=True)}
            j = len(axes) - 1
            while j >= 0:
                index[j] += 1
                if index[j] < len(axes[j]):
                    break
                index[j] = 0
                j -= 1
            if j < 0:
                return

    def _not_finite_message(self) -> str:
        floats = [p.name for p in self if isinstance(p, Float)]
        return (
            f"grid search needs a finite space, but {floats} are continuous ranges; "
            "give them as lists of values or choose another algorithm (random, sobol, tpe, ...)"
        )

    # -- storage --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Space:
        """Rebuild a stored space (:meth:`to_dict`), including a CASH meta space."""
        entry = data.get("model") if isinstance(data, Mapping) else None
        if cls is Space and isinstance(entry, Mapping) and entry.get("type") == "meta":
            from optml.space._conditional import MetaSpace

            return MetaSpace.from_dict(data)
        return cls([param_from_dict(name, d) for name, d in data.items()])


__all__ = ["Space", "Float", "Int", "Categorical"]
