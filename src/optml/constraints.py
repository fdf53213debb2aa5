"""Constraints of a study: conditions on parameters, and limits on metrics the objective reports.

Two kinds, both built by :func:`parse_constraints` from a spec list:

- :class:`ParamConstraint` — a condition a configuration must meet *before* it is run: a Python
  callable ``params -> bool`` or a string expression such as ``"units * layers <= 256"``.
  Samplers never propose a configuration that breaks one (``fill_unique`` rejects it and draws
  again).
- :class:`MetricConstraint` — a limit on a metric the objective reports, such as
  ``{"metric": "memory_mb", "max": 500}``. It can only be checked *after* a trial ran; a
  finished trial that breaks it is infeasible: it never counts as the best trial (see
  :mod:`optml.ranking`, which also totals a trial's violations), and
  :meth:`SearchContext.losses` ranks it below every feasible trial so that model-based samplers
  steer away from its region.

Expressions are parsed with :mod:`ast` and evaluated by a small interpreter, never by ``eval``.
They may use parameter names, numbers, strings (to compare with categorical values),
``True``/``False``/``None``, the arithmetic operators ``+ - * / // % **``, comparisons (chained
ones too, ``is None``, and ``in``/``not in`` a literal list), ``and``/``or``/``not``, a conditional
``a if cond else b`` and the functions ``min``, ``max``, ``abs``, ``log``, ``log2``, ``log10``,
``exp``, ``sqrt``. A configuration that lacks a name the expression uses (a conditional parameter
of another model family) is not restricted by it; one where the arithmetic fails (division by
zero, log of a negative number) is refused.

>>> c = parse_constraints(["units * layers <= 256"])[0]
>>> c.allows({"units": 64, "layers": 4}), c.allows({"units": 128, "layers": 4})
(True, False)
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optml.errors import SpecError

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "exp": math.exp,
    "sqrt": math.sqrt,
}
_CONSTANT_NAMES = {"True": True, "False": False, "None": None}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_ALLOWED_HELP = (
    "parameter names, numbers, strings, + - * / // % **, comparisons, and/or/not, "
    "'a if c else b' and min/max/abs/log/log2/log10/exp/sqrt"
)


class _MissingName(Exception):
    """A name of the expression is not in the configuration (a conditional parameter)."""


class _Expression:
    """A checked expression tree, evaluated against a configuration by :meth:`__call__`."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise SpecError(f"{where}: cannot parse the constraint {text!r}: {exc.msg}") from None
        self.names: set[str] = set()
        self._check(tree.body)
        self._body = tree.body

    def _fail(self, node: ast.AST, what: str) -> SpecError:
        piece = ast.get_source_segment(self.text.strip(), node) or type(node).__name__
        return SpecError(
            f"{self.where}: the constraint {self.text!r} uses {what} ({piece!r}); "
            f"allowed are {_ALLOWED_HELP}"
        )

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | str | bool | type(None)):
                raise self._fail(node, "a constant of an unsupported type")
        elif isinstance(node, ast.Name):
            if node.id in _FUNCTIONS:
                raise self._fail(node, "a function name that is not called")
            if node.id not in _CONSTANT_NAMES:
                self.names.add(node.id)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise self._fail(node, "an operator that is not allowed")
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
                raise self._fail(node, "an operator that is not allowed")
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value)
        elif isinstance(node, ast.Compare):
            self._check(node.left)
            for op, right in zip(node.ops, node.comparators, strict=True):
                if type(op) not in _COMPARE:
                    raise self._fail(node, "a comparison that is not allowed")
                if isinstance(op, ast.In | ast.NotIn):
                    if not isinstance(right, ast.List | ast.Tuple | ast.Set):
                        raise self._fail(right, "'in' with something other than a literal list")
                    for element in right.elts:
                        self._check(element)
                else:
                    self._check(right)
        elif isinstance(node, ast.IfExp):
            for part in (node.test, node.body, node.orelse):
                self._check(part)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise self._fail(node, "a call of a function that is not allowed")
            if node.keywords or not node.args:
                raise self._fail(node, "a call with keyword arguments or no arguments")
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    raise self._fail(arg, "a starred argument")
                self._check(arg)
        else:
            raise self._fail(node, f"a {type(node).__name__} expression")

    def __call__(self, config: Mapping[str, Any]) -> Any:
        return self._eval(self._body, config)

    def _eval(self, node: ast.AST, config: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in _CONSTANT_NAMES:
                return _CONSTANT_NAMES[node.id]
            if node.id not in config:
                raise _MissingName(node.id)
            return config[node.id]
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](
                self._eval(node.left, config), self._eval(node.right, config)
            )
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, config)
            if isinstance(node.op, ast.Not):
                return not operand
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.BoolOp):
            # Short-circuit like Python, so "optimizer == 'sgd' and momentum > 0" works.
            if isinstance(node.op, ast.And):
                result: Any = True
                for value in node.values:
                    result = self._eval(value, config)
                    if not result:
                        return result
                return result
            result = False
            for value in node.values:
                result = self._eval(value, config)
                if result:
                    return result
            return result
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, config)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                if isinstance(right_node, ast.List | ast.Tuple | ast.Set):
                    right: Any = [self._eval(e, config) for e in right_node.elts]
                else:
                    right = self._eval(right_node, config)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            branch = node.body if self._eval(node.test, config) else node.orelse
            return self._eval(branch, config)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            return _FUNCTIONS[node.func.id](*(self._eval(a, config) for a in node.args))
        raise AssertionError(f"unchecked node {type(node).__name__}")  # _check rejects these


@dataclass(frozen=True, eq=False)
class ParamConstraint:
    """A condition on a configuration: a callable ``params -> bool`` or an expression string."""

    condition: str | Callable[[Mapping[str, Any]], Any]
    where: str = "constraints"
    _expression: _Expression | None = field(default=None, init=False, repr=False)

    kind = "params"

    def __post_init__(self) -> None:
        if isinstance(self.condition, str):
            object.__setattr__(self, "_expression", _Expression(self.condition, self.where))
        elif not callable(self.condition):
            raise SpecError(
                f"{self.where}: a parameter constraint must be an expression string or a "
                f"callable params -> bool, got {type(self.condition).__name__}"
            )

    @property
    def names(self) -> set[str]:
        """The parameter names an expression uses (empty for a callable: unknown)."""
        return set(self._expression.names) if self._expression is not None else set()

    def check_names(self, names: Iterable[str]) -> None:
        """Raise :class:`SpecError` if the expression uses a name that is not a parameter."""
        unknown = sorted(self.names - set(names))
        if unknown:
            raise SpecError(
                f"{self.where}: the constraint {self.condition!r} uses {unknown}, which are not "
                f"parameters of the space {sorted(names)}"
            )

    def allows(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` meets the condition."""
        try:
            if self._expression is not None:
                return bool(self._expression(config))
            return bool(self.condition(config))  # type: ignore[operator]
        except _MissingName:
            return True  # a conditional parameter of another family: not this condition's business
        except (ArithmeticError, ValueError, TypeError):
            return False  # the condition cannot be evaluated here: refuse rather than guess

    def violation(self, trial: Any) -> float:
        """1.0 if the trial's parameters break the condition, else 0.0."""
        return 0.0 if self.allows(trial.params) else 1.0

    def to_spec(self) -> Any:
        return self.condition if isinstance(self.condition, str) else repr(self.condition)

    def __repr__(self) -> str:
        return f"ParamConstraint({self.to_spec()!r})"


@dataclass(frozen=True)
class MetricConstraint:
    """A limit on a metric the objective reports: ``min <= metrics[metric] <= max``.

    :meth:`violation` is 0 for a trial within the limits, else how far outside relative to the
    limit's size; a trial that did not report the metric is infeasible (its violation is
    ``inf``).
    """

    metric: str
    max: float | None = None
    min: float | None = None
    where: str = "constraints"

    kind = "metric"

    def __post_init__(self) -> None:
        if self.max is None and self.min is None:
            raise SpecError(
                f"{self.where}: the limit on metric {self.metric!r} needs 'max' and/or 'min'"
            )
        for bound in ("max", "min"):
            value = getattr(self, bound)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise SpecError(
                    f"{self.where}: {bound} of metric {self.metric!r} must be a finite number, "
                    f"got {value!r}"
                )
        if self.max is not None and self.min is not None and self.min > self.max:
            raise SpecError(
                f"{self.where}: metric {self.metric!r} has min {self.min} > max {self.max}"
            )

    def value_of(self, trial: Any) -> float | None:
        value = trial.metrics.get(self.metric)
        if value is None and self.metric == "value":
            value = trial.value
        return None if value is None else float(value)

    def violation(self, trial: Any) -> float:
        value = self.value_of(trial)
        if value is None or not math.isfinite(value):
            return math.inf
        excess = 0.0
        if self.max is not None and value > self.max:
            excess = (value - self.max) / max(abs(self.max), 1e-12)
        if self.min is not None and value < self.min:
            excess = (self.min - value) / max(abs(self.min), 1e-12)
        return excess

    def allows(self, config: Mapping[str, Any]) -> bool:
        """A metric limit restricts no configuration before it runs."""
        return True

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"metric": self.metric}
        if self.max is not None:
            spec["max"] = self.max
        if self.min is not None:
            spec["min"] = self.min
        return spec


Constraint = ParamConstraint | MetricConstraint

_SPEC_HELP = (
    "an expression string such as 'units * layers <= 256', a callable params -> bool, "
    "{expr: '...'} or {metric: NAME, max: X} / {metric: NAME, min: X}"
)


def parse_constraints(
    specs: Any, names: Iterable[str] | None = None, where: str = "constraints"
) -> list[Constraint]:
    """Build constraints from a spec list (strings, callables, dicts or constraint objects).

    ``names`` (the space's parameter names), when given, makes an expression that uses an
    unknown name an error here rather than a silent no-op later.

    >>> parse_constraints([{"metric": "memory_mb", "max": 500}])
    [MetricConstraint(metric='memory_mb', max=500, min=None, where='constraints[0]')]
    """
    if specs is None:
        return []
    if isinstance(specs, str | Mapping) or callable(specs):
        specs = [specs]
    if not isinstance(specs, Sequence):
        raise SpecError(f"{where}: expected a list of constraints ({_SPEC_HELP}), got {specs!r}")
    known = set(names) if names is not None else None
    out: list[Constraint] = []
    for i, spec in enumerate(specs):
        here = f"{where}[{i}]"
        constraint = _parse_one(spec, here)
        if known is not None and isinstance(constraint, ParamConstraint):
            constraint.check_names(known)
        out.append(constraint)
    return out


def _parse_one(spec: Any, where: str) -> Constraint:
    if isinstance(spec, ParamConstraint | MetricConstraint):
        return spec
    if isinstance(spec, str) or callable(spec):
        return ParamConstraint(spec, where=where)
    if isinstance(spec, Mapping):
        if "metric" in spec:
            extra = set(spec) - {"metric", "max", "min"}
            if extra:
                raise SpecError(f"{where}: unknown key(s) {sorted(extra)}; use metric, max, min")
            if not isinstance(spec["metric"], str) or not spec["metric"]:
                raise SpecError(f"{where}: 'metric' must name a metric, got {spec['metric']!r}")
            return MetricConstraint(spec["metric"], spec.get("max"), spec.get("min"), where=where)
        for key in ("expr", "expression", "params"):
            if key in spec:
                if set(spec) != {key}:
                    raise SpecError(
                        f"{where}: {{{key}: ...}} takes no other keys, got {sorted(spec)}"
                    )
                return ParamConstraint(spec[key], where=where)
    raise SpecError(f"{where}: cannot read {spec!r} as a constraint; use {_SPEC_HELP}")


__all__ = [
    "Constraint",
    "MetricConstraint",
    "ParamConstraint",
    "parse_constraints",
]
