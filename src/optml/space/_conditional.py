"""The conditional (CASH) space: several model families, each with its own parameters.

A configuration is the family's name under ``"model"`` plus that family's parameters only::

    {"model": "svm", "C": 3.2, "gamma": 0.01}
    {"model": "knn", "n_neighbors": 7, "weights": "distance"}

Parameter names. A family's parameters keep their own names, so an objective reads
``params["C"]``. Two families may share a name when they define it identically (it is then one
parameter of the union space). When they define it differently, each family's copy is prefixed
with the family's name: ``"rf.max_depth"`` and ``"gbm.max_depth"``.
:meth:`MetaSpace.split` always gives back ``(family, params under their own names)``, so an
objective that wants the plain names calls ``family, params = space.split(config)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from optml.errors import SpaceError, SpecError
from optml.space._params import Categorical
from optml.space._parse import parse_space
from optml.space._space import Space

MODEL_KEY = "model"
_META_TYPE = "meta"


def _parse_family(name: str, spec: Any, where: str) -> Space:
    """A family's space from YAML/Python forms or from :meth:`Space.to_dict` (stored) form."""
    if isinstance(spec, Space):
        return spec
    if (
        isinstance(spec, Mapping)
        and spec
        and all(isinstance(v, Mapping) and "type" in v for v in spec.values())
    ):
        return Space.from_dict(spec)
    return parse_space(spec, where=where)


def parse_subspaces(spec: Any, where: str = "space") -> dict[str, Space]:
    """Read the families of a meta study.

    Accepted: a dict ``{family: space}`` or a list ``[{model: family, space: {...}}, ...]``
    (the study spec's form), where each space is anything :func:`parse_space` reads.
    """
    if isinstance(spec, MetaSpace):
        return spec.families
    families: dict[str, Space] = {}
    if isinstance(spec, Mapping):
        items = [(name, value, f"{where}.{name}") for name, value in spec.items()]
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        items = []
        for i, entry in enumerate(spec):
            if not isinstance(entry, Mapping) or set(entry) != {MODEL_KEY, "space"}:
                raise SpecError(
                    f"{where}[{i}]: each model family is {{model: NAME, space: {{...}}}}, "
                    f"got {entry!r}"
                )
            items.append((entry[MODEL_KEY], entry["space"], f"{where}[{i}].space"))
    else:
        raise SpecError(
            f"{where}: the families of a meta study are a dict {{family: space}} or a list "
            f"[{{model: family, space: {{...}}}}], got {type(spec).__name__}"
        )
    for name, value, here in items:
        if not isinstance(name, str) or not name:
            raise SpecError(f"{here}: a model family needs a non-empty name, got {name!r}")
        if name in families:
            raise SpecError(f"{where}: the model family {name!r} is given twice")
        families[name] = _parse_family(name, value, here)
    if not families:
        raise SpecError(f"{where}: a meta study needs at least one model family")
    return families


class MetaSpace(Space):
    """The union of several model families' spaces with a ``"model"`` choice among them.

    As a :class:`Space` it lists ``"model"`` and every family parameter under its flat name (see
    the module docstring), so displays and storage see one list. Its methods are conditional:
    :meth:`validate` wants ``"model"`` and exactly that family's parameters, :meth:`sample`,
    :meth:`decode` and :meth:`grid` produce such configurations, and :meth:`encode` puts the
    parameters of the other families at 0.5.

    >>> space = MetaSpace({"svm": {"C": {"loguniform": [0.1, 10]}}, "knn": {"k": [1, 3, 5]}})
    >>> space.validate({"model": "knn", "k": 3})
    {'model': 'knn', 'k': 3}
    >>> space.split({"model": "svm", "C": 1.0})
    ('svm', {'C': 1.0})
    """

    def __init__(self, families: Any) -> None:
        self._families = parse_subspaces(families)
        definitions: dict[str, set[str]] = {}
        for family in self._families.values():
            for p in family:
                definitions.setdefault(p.name, set()).add(repr(p.to_dict()))
        self._flat: dict[str, dict[str, str]] = {}
        params: list[Any] = [Categorical(MODEL_KEY, tuple(self._families))]
        added: set[str] = set()
        for fname, family in self._families.items():
            if MODEL_KEY in family:
                raise SpaceError(
                    f"space.{fname}: a family may not have a parameter named {MODEL_KEY!r}; "
                    "that name holds the family's name"
                )
            mapping: dict[str, str] = {}
            for p in family:
                flat = p.name if len(definitions[p.name]) == 1 else f"{fname}.{p.name}"
                mapping[p.name] = flat
                if flat not in added:
                    added.add(flat)
                    params.append(dataclasses.replace(p, name=flat))
            self._flat[fname] = mapping
        super().__init__(params)
        self._index = {name: i for i, name in enumerate(self.names)}

    # -- families -------------------------------------------------------------------------
    @property
    def families(self) -> dict[str, Space]:
        """Each family's own space, parameters under their own names."""
        return dict(self._families)

    def flat_names(self, family: str) -> dict[str, str]:
        """A family's parameter names mapped to their names in trial params."""
        return dict(self._flat[family])

    def join(self, family: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Trial params from a family's name and its parameters under their own names."""
        mapping = self._flat[family]
        return {MODEL_KEY: family, **{mapping[k]: v for k, v in params.items()}}

    def split(self, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(family, its parameters under their own names)`` of trial params."""
        family = self._family(config, "configuration")
        mapping = self._flat[family]
        return family, {own: config[flat] for own, flat in mapping.items() if flat in config}

    def _family(self, config: Mapping[str, Any], where: str) -> str:
        family = config.get(MODEL_KEY)
        if not isinstance(family, str) or family not in self._families:
            raise SpaceError(
                f"{where}: {MODEL_KEY}={family!r} is not one of the model families "
                f"{list(self._families)}"
            )
        return family

    # -- checking -------------------------------------------------------------------------
    def validate(self, config: Mapping[str, Any], where: str = "configuration") -> dict[str, Any]:
        family = self._family(config, where)
        mapping = self._flat[family]
        expected = set(mapping.values())
        given = set(config) - {MODEL_KEY}
        if given != expected:
            parts = []
            if expected - given:
                parts.append(f"missing {sorted(expected - given)}")
            if given - expected:
                parts.append(f"unknown {sorted(given - expected)}")
            raise SpaceError(
                f"{where}: {', '.join(parts)}; the family {family!r} has {sorted(expected)}"
            )
        own = {o: config[f] for o, f in mapping.items()}
        checked = self._families[family].validate(own, where=f"{where} ({MODEL_KEY} {family!r})")
        return self.join(family, checked)

    # -- unit cube ------------------------------------------------------------------------
    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        return np.array(
            [p.to_unit(config[p.name]) if p.name in config else 0.5 for p in self], dtype=float
        )

    def encode_many(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if not configs:
            return np.empty((0, len(self)))
        return np.array([self.encode(c) for c in configs], dtype=float)

    def decode(self, point: Sequence[float] | np.ndarray) -> dict[str, Any]:
        if len(point) != len(self):
            raise ValueError(f"point has {len(point)} dimensions, the space {len(self)}")
        family = str(self[MODEL_KEY].from_unit(point[0]))
        return {
            MODEL_KEY: family,
            **{f: self[f].from_unit(point[self._index[f]]) for f in self._flat[family].values()},
        }

    def sample(self, rng: np.random.Generator, n: int = 1) -> list[dict[str, Any]]:
        """A family drawn uniformly, then a uniform point of its space, ``n`` times."""
        names = list(self._families)
        out = []
        for i in rng.integers(len(names), size=n):
            family = names[int(i)]
            out.append(self.join(family, self._families[family].sample(rng, 1)[0]))
        return out

    # -- grids ----------------------------------------------------------------------------
    @property
    def is_finite(self) -> bool:
        return all(f.is_finite for f in self._families.values())

    @property
    def grid_size(self) -> int:
        return sum(f.grid_size for f in self._families.values())

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every point of every family, family after family."""
        for name, family in self._families.items():
            for config in family.grid():
                yield self.join(name, config)

    # -- storage --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"model": {"type": "meta", "families": {name: family.to_dict()}}}``."""
        return {
            MODEL_KEY: {
                "type": _META_TYPE,
                "families": {n: f.to_dict() for n, f in self._families.items()},
            }
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaSpace:
        if not is_meta_dict(data):
            raise SpaceError(f"not a stored meta space: {dict(data)!r}")
        return cls(dict(data[MODEL_KEY]["families"]))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={f!r}" for n, f in self._families.items())
        return f"MetaSpace({inner})"


def is_meta_dict(data: Any) -> bool:
    """Whether ``data`` is the stored form (:meth:`MetaSpace.to_dict`) of a meta space."""
    if not isinstance(data, Mapping) or set(data) != {MODEL_KEY}:
        return False
    entry = data[MODEL_KEY]
    return isinstance(entry, Mapping) and entry.get("type") == _META_TYPE


def meta_space(subspaces: Any) -> MetaSpace:
    """The space of a meta study from ``{family: space}`` or ``[{model: family, space: ...}]``."""
    return MetaSpace(subspaces)


__all__ = ["MODEL_KEY", "MetaSpace", "is_meta_dict", "meta_space", "parse_subspaces"]
