"""The metadata table: which arguments of which classes are hyperparameters, and their ranges.

One row per hyperparameter, with the serverless auto-tuner paper's columns: ``Layer`` (the
class's full import path; ``keras.Model.fit`` for a method, ``torch.epoch_loop`` for the epoch
loop), ``ParamName``, ``Hptype`` (``uniform``, ``loguniform``, ``quniform``, ``qloguniform``,
``choice``, or ``tied``: a width that only follows the one before it), ``ParamOrder`` (its
position in the call, -1 if keyword-only), ``Base`` (the family it belongs to), ``Type`` (``n``
number, ``s`` string), ``Min``, ``Max``, ``Int`` and ``Set`` (the choices, comma-separated).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from optml.detect._errors import MetadataError

COLUMNS = ("Layer", "ParamName", "Hptype", "ParamOrder", "Base", "Type", "Min", "Max", "Int", "Set")
HPTYPES = ("uniform", "loguniform", "quniform", "qloguniform", "choice", "tied")


@dataclass(frozen=True)
class Row:
    """One hyperparameter of one class."""

    layer: str
    param: str
    hptype: str
    order: int
    base: str
    type: str
    min: float | None
    max: float | None
    integer: bool
    choices: tuple[str | int | float, ...]
    source: str  # "file:line", shown as the reason a parameter was proposed

    @property
    def class_name(self) -> str:
        return self.layer.rsplit(".", 1)[-1]

    def distribution(self, current: object) -> dict[str, list[object]] | None:
        """The search range for a literal currently set to ``current``, in the spec's YAML form;
        None when the table does not cover that value (a string outside ``Set``)."""
        if self.hptype == "choice":
            if current not in self.choices:
                return None
            return {"choice": list(self.choices)}
        if (
            self.hptype == "tied"
            or not isinstance(current, int | float)
            or isinstance(current, bool)
        ):
            return None
        assert self.min is not None and self.max is not None
        low, high = self.min, self.max
        log = self.hptype in ("loguniform", "qloguniform")
        # The current value stays reachable, unless it is 0 on a log scale (0 means "off" there).
        if not (log and current <= 0):
            low, high = min(low, current), max(high, current)
        if self.integer or self.hptype in ("quniform", "qloguniform"):
            return {"logint" if log else "int": [int(low), int(high)]}
        return {"loguniform" if log else "uniform": [float(low), float(high)]}


class MetadataTable:
    """The rows, looked up by class path and parameter name."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self._by_layer: dict[str, list[Row]] = {}
        for row in rows:
            self._by_layer.setdefault(row.layer, []).append(row)

    def layers(self) -> set[str]:
        return set(self._by_layer)

    def for_layer(self, layer: str) -> list[Row]:
        return self._by_layer.get(layer, [])

    def has(self, layer: str) -> bool:
        return layer in self._by_layer

    def row(self, layer: str, param: str, value: object = None) -> Row | None:
        """The row for ``layer.param``; when a parameter takes numbers or strings (SVC's
        ``gamma``), the row of the value's kind."""
        rows = [r for r in self.for_layer(layer) if r.param == param]
        if value is not None and len(rows) > 1:
            kind = "s" if isinstance(value, str) else "n"
            rows = [r for r in rows if r.type == kind] or rows
        return rows[0] if rows else None

    def default_space(self, layer: str) -> dict[str, dict[str, list[object]]]:
        """The table's search space for every tunable parameter of ``layer`` (in the spec's YAML
        form), e.g. a default space for a scikit-learn estimator; one row per parameter (the
        first, for a parameter that takes numbers or strings)."""
        space: dict[str, dict[str, list[object]]] = {}
        for row in self.for_layer(layer):
            if row.param in space or row.hptype == "tied":
                continue
            current = row.choices[0] if row.hptype == "choice" else row.min
            dist = row.distribution(current)
            if dist is not None:
                space[row.param] = dist
        return space

    def extended(self, other: MetadataTable) -> MetadataTable:
        """This table with ``other``'s rows added; a row of ``other`` replaces the row of the
        same class and parameter (and value type)."""
        keys = {(r.layer, r.param, r.type) for r in other.rows}
        kept = [r for r in self.rows if (r.layer, r.param, r.type) not in keys]
        return MetadataTable(kept + other.rows)


def _number(text: str, where: str, column: str) -> float | None:
    if text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise MetadataError(f"{where}: {column} must be a number, got {text!r}") from None


def _choice(text: str) -> str | int | float:
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_table(text: str, source: str) -> MetadataTable:
    """Read a metadata CSV; every error names the file, line and column."""
    reader = csv.DictReader(io.StringIO(text))
    header = tuple(h.strip() for h in (reader.fieldnames or ()))
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise MetadataError(
            f"{source}: the header lacks {', '.join(missing)}; the columns are {', '.join(COLUMNS)}"
        )
    rows = []
    for number, raw in enumerate(reader, start=2):
        rec = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"{source}:{number}"
        if not rec["Layer"] or not rec["ParamName"]:
            raise MetadataError(f"{where}: Layer and ParamName must not be empty")
        hptype = rec["Hptype"]
        if hptype not in HPTYPES:
            raise MetadataError(f"{where}: Hptype {hptype!r} is not one of {', '.join(HPTYPES)}")
        try:
            order = int(rec["ParamOrder"] or "-1")
        except ValueError:
            raise MetadataError(
                f"{where}: ParamOrder must be an integer (-1: keyword only), got {rec['ParamOrder']!r}"
            ) from None
        kind = rec["Type"] or "n"
        if kind not in ("n", "s"):
            raise MetadataError(f"{where}: Type must be n (number) or s (string), got {kind!r}")
        low, high = _number(rec["Min"], where, "Min"), _number(rec["Max"], where, "Max")
        choices = tuple(_choice(c) for c in rec["Set"].split(",") if c.strip())
        if hptype == "choice" and not choices:
            raise MetadataError(f"{where}: a choice needs its values in Set")
        if hptype in ("uniform", "loguniform", "quniform", "qloguniform"):
            if low is None or high is None or low > high:
                raise MetadataError(
                    f"{where}: {hptype} needs Min <= Max, got Min={rec['Min']!r}, Max={rec['Max']!r}"
                )
            if hptype.endswith("loguniform") and low <= 0:
                raise MetadataError(f"{where}: {hptype} needs Min > 0, got {rec['Min']!r}")
        integer = rec["Int"].lower() in ("true", "1", "yes", "y")
        rows.append(
            Row(
                layer=rec["Layer"],
                param=rec["ParamName"],
                hptype=hptype,
                order=order,
                base=rec["Base"],
                type=kind,
                min=low,
                max=high,
                integer=integer,
                choices=choices,
                source=where,
            )
        )
    return MetadataTable(rows)


_SHIPPED: MetadataTable | None = None


def load_table(extra: str | Path | None = None) -> MetadataTable:
    """The shipped table, extended with the user's CSV ``extra`` (same columns) if given."""
    global _SHIPPED
    if _SHIPPED is None:
        text = resources.files("optml.detect").joinpath("metadata.csv").read_text()
        _SHIPPED = parse_table(text, "metadata.csv")
    if extra is None:
        return _SHIPPED
    path = Path(extra)
    try:
        text = path.read_text()
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read the metadata table: {exc.strerror}") from None
    return _SHIPPED.extended(parse_table(text, str(path)))
