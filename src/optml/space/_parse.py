"""Build a Space from a Python dict (Mango style), a YAML/JSON spec, or a seed hyperparameter file."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optml.errors import OptMLError, SpaceError
from optml.space._params import Categorical, Float, Int, Param, _choice_key
from optml.space._space import Space

_YAML_FORMS = (
    "a list of choices, {uniform: [low, high]}, {loguniform: [low, high]}, {int: [low, high]}, "
    "{logint: [low, high]}, {choice: [...]}, range(...) or a scipy.stats distribution"
)


def parse_space(spec: Space | Mapping[str, Any], where: str = "space") -> Space:
    """Build a :class:`Space` from a dict of ``name -> definition``.

    Definitions may be parameter objects, lists of choices, ``range`` objects, frozen
    ``scipy.stats`` distributions (``uniform``, ``loguniform``, ``randint``) or the YAML forms
    ``{uniform: [a, b]}``, ``{loguniform: [a, b]}``, ``{int: [a, b]}``, ``{logint: [a, b]}``,
    ``{choice: [...]}``.

    >>> from scipy.stats import uniform
    >>> parse_space({"dropout": uniform(0.1, 0.4), "units": [32, 64]})
    Space(dropout=uniform[0.1, 0.5], units=choice[32, 64])
    """
    if isinstance(spec, Space):
        return spec
    if not isinstance(spec, Mapping):
        raise SpaceError(
            f"{where}: expected a mapping of parameter names to definitions, "
            f"got {type(spec).__name__}"
        )
    if not spec:
        raise SpaceError(f"{where}: the search space is empty: give at least one parameter")
    params = [parse_param(str(name), value, f"{where}.{name}") for name, value in spec.items()]
    return Space(params)


def parse_param(name: str, value: Any, where: str) -> Param:
    """Turn one parameter definition into a parameter object."""
    if isinstance(value, Float | Int | Categorical):
        if value.name != name:
            raise SpaceError(
                f"{where}: the key {name!r} holds a parameter named {value.name!r}; "
                "give both the same name"
            )
        return value
    try:
        if isinstance(value, range):
            return _from_range(name, value, where)
        if hasattr(value, "dist") and hasattr(value, "args"):
            return _from_scipy(name, value, where)
        if isinstance(value, Mapping):
            return _from_mapping(name, value, where)
        if isinstance(value, list | tuple):
            return Categorical(name, tuple(value))
        if isinstance(value, bool | int | float | str) or value is None:
            return Categorical(name, (value,))
    except SpaceError as exc:
        message = str(exc)
        if message.startswith(where):
            raise
        prefix = f"parameter {name!r}: "
        if message.startswith(prefix):
            message = message[len(prefix) :]
        raise SpaceError(f"{where}: {message}") from None
    raise SpaceError(f"{where}: cannot read {value!r} as a parameter; use {_YAML_FORMS}")


def _from_range(name: str, r: range, where: str) -> Param:
    if len(r) == 0:
        raise SpaceError(f"{where}: {r!r} is empty")
    if r.step > 0:
        return Int(name, r.start, r[-1], step=r.step)
    return Categorical(name, tuple(r))


def _from_scipy(name: str, dist: Any, where: str) -> Param:
    dist_name = getattr(dist.dist, "name", type(dist.dist).__name__)
    args = dict(zip(("a", "b", "c"), dist.args, strict=False))
    if dist_name == "uniform":
        loc, scale = _scipy_args(dist, ("loc", "scale"), (0.0, 1.0))
        if not scale > 0:
            raise SpaceError(
                f"{where}: uniform({loc:g}, {scale:g}) is an empty or inverted range. scipy's "
                "uniform(loc, scale) covers [loc, loc + scale], not [low, high]: for the range "
                f"[a, b] write uniform(a, b - a)"
            )
        return Float(name, loc, loc + scale)
    if dist_name in ("loguniform", "reciprocal"):
        a, b, loc, scale = _scipy_args(dist, ("a", "b", "loc", "scale"), (None, None, 0.0, 1.0))
        if loc != 0:
            raise SpaceError(f"{where}: loguniform with loc={loc:g} is not log-uniform; drop loc")
        if not (a is not None and b is not None and 0 < a < b):
            raise SpaceError(
                f"{where}: loguniform(a, b) needs 0 < a < b (it covers [a, b]); got a={a}, b={b}"
            )
        return Float(name, a * scale, b * scale, log=True)
    if dist_name == "randint":
        low, high, loc = _scipy_args(dist, ("low", "high", "loc"), (None, None, 0))
        if low is None or high is None or not high > low:
            raise SpaceError(
                f"{where}: randint(low, high) needs high > low (it covers low .. high - 1); "
                f"got low={low}, high={high}"
            )
        return Int(name, int(low + loc), int(high + loc - 1))
    del args
    raise SpaceError(
        f"{where}: the scipy distribution {dist_name!r} is not supported; use uniform(loc, scale), "
        "loguniform(a, b) or randint(low, high)"
    )


def _scipy_args(dist: Any, names: Sequence[str], defaults: Sequence[Any]) -> list[Any]:
    values = dict(zip(names, defaults, strict=True))
    for n, v in zip(names, dist.args, strict=False):
        values[n] = v
    for n, v in dist.kwds.items():
        if n in values:
            values[n] = v
    return [values[n] for n in names]


def _pair(value: Any, key: str, where: str) -> tuple[Any, Any]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise SpaceError(f"{where}: {{{key}: ...}} needs a [low, high] pair, got {value!r}")
    low, high = value
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpaceError(f"{where}: {{{key}: [low, high]}} needs numbers, got {value!r}")
    return low, high


def _from_mapping(name: str, value: Mapping[str, Any], where: str) -> Param:
    kinds = [k for k in ("uniform", "loguniform", "float", "int", "logint", "choice") if k in value]
    if len(kinds) != 1:
        raise SpaceError(f"{where}: cannot read {dict(value)!r} as a parameter; use {_YAML_FORMS}")
    kind = kinds[0]
    extra = set(value) - {kind, "log", "step"}
    if extra:
        raise SpaceError(f"{where}: unknown key(s) {sorted(extra)} beside {kind!r}")
    if kind == "choice":
        choices = value[kind]
        if not isinstance(choices, list | tuple):
            raise SpaceError(f"{where}: {{choice: ...}} needs a list, got {choices!r}")
        return Categorical(name, tuple(choices))
    low, high = _pair(value[kind], kind, where)
    if "step" in value and kind not in ("int", "logint"):
        raise SpaceError(
            f"{where}: 'step' is for integer ranges ({{int: [low, high], step: k}}); a "
            f"{kind!r} range is continuous: list its values instead ([0.1, 0.2, ...])"
        )
    log = bool(value.get("log", False)) or kind in ("loguniform", "logint")
    if kind in ("int", "logint"):
        return Int(name, low, high, log=log, step=value.get("step", 1))
    return Float(name, low, high, log=log)


def _parse_scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def read_text(path: Path, what: str, error: type[OptMLError], max_bytes: int | None = None) -> str:
    """The text of a UTF-8 file the user gave (a spec, a grid file); ``error`` names the file
    and, for bytes that are not UTF-8, the line and byte offset of the first one."""
    try:
        if max_bytes is not None and path.stat().st_size > max_bytes:
            raise error(
                f"{path}: the {what} is {path.stat().st_size} bytes, more than the "
                f"{max_bytes} accepted"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{path}:{line}: the {what} is not UTF-8 text: byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start}; save it as UTF-8"
        ) from None


def read_grid_file(
    path: str | Path, columns: Sequence[str] | None = None
) -> tuple[Space, list[dict[str, Any]]]:
    """Read a seed-style hyperparameter file: whitespace-separated values, one configuration per line.

    ``columns`` names the values of each row. Without it, the file's first line must be a
    header starting with ``#`` that names them. Blank lines and other ``#`` lines are skipped.
    Returns the space the rows span (a list of choices per column) and the rows in file order.
    """
    path = Path(path)
    lines = read_text(path, "hyperparameter file", SpaceError).splitlines()
    rows: list[dict[str, Any]] = []
    names = list(columns) if columns else None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if names is None and not rows:
                names = line.lstrip("#").split()
            continue
        if names is None:
            raise SpaceError(
                f"{path}:{lineno}: no column names: give them (columns: [...]) or start the file "
                "with a header line such as '# learning_rate network_size'"
            )
        fields = line.split()
        if len(fields) != len(names):
            raise SpaceError(
                f"{path}:{lineno}: expected {len(names)} values ({' '.join(names)}), "
                f"found {len(fields)}: {line!r}"
            )
        rows.append(dict(zip(names, (_parse_scalar(f) for f in fields), strict=True)))
    if not rows:
        raise SpaceError(f"{path}: the hyperparameter file has no configurations")
    if names and len(set(names)) != len(names):
        raise SpaceError(f"{path}: the column names {names} repeat a name")
    choices: dict[str, dict[Any, Any]] = {n: {} for n in names or []}
    for row in rows:
        for n, v in row.items():
            choices[n].setdefault(_choice_key(v), v)
    space = Space([Categorical(n, tuple(vs.values())) for n, vs in choices.items()])
    return space, rows
