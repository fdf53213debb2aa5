"""Objectives that run Python code in the worker: a callable, or a model module in the seed protocol."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from optml.errors import ObjectiveError
from optml.objectives._base import Objective, TrialContext


class FunctionObjective(Objective):
    """A Python callable.

    The callable gets the trial's parameters as keyword arguments
    (``def objective(learning_rate, units): ...``), or, if it takes a single argument that is
    not a parameter name, the whole dict (Hyperopt/Mango style). It may also declare ``trial``
    (a :class:`TrialContext`, e.g. to ``report`` intermediate values) and ``data`` (the study's
    data path). It returns a number or a dict of metrics.
    """

    def __init__(self, function: Callable[..., Any] | str, data: str | None = None) -> None:
        self.function = function
        self.data = data
        self._fn: Callable[..., Any] | None = None if isinstance(function, str) else function
        self._sig: inspect.Signature | None = None  # of _fn, read once: trials may be short
        self._plans: dict[tuple[str, ...], _Plan] = {}

    def check(self) -> None:
        if isinstance(self.function, str):
            module_name, attr = _split_target(self.function)
            _check_source(module_name, [attr], f"objective.function {self.function!r}")

    def setup(self) -> None:
        if self._fn is None:
            self._fn = load_callable(str(self.function))

    def run(self, params: dict[str, Any], context: TrialContext) -> Any:
        if self._fn is None:
            self.setup()
        fn = self._fn
        assert fn is not None
        if self._sig is None:
            self._sig = _signature(fn)
        return _call(fn, params, context, self._sig, self._plans)

    def describe(self) -> str:
        name = (
            self.function
            if isinstance(self.function, str)
            else getattr(self.function, "__qualname__", repr(self.function))
        )
        return f"function {name}"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_sig"] = None
        state["_plans"] = {}
        if isinstance(self.function, str):
            state["_fn"] = None  # re-import by name on the other side
        return state


_NO_SIGNATURE = inspect.Signature()


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """``fn``'s signature, or an empty one when it has none to read (a builtin)."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return _NO_SIGNATURE


def _call(
    fn: Callable[..., Any],
    params: dict[str, Any],
    context: TrialContext,
    sig: inspect.Signature | None = None,
    plans: dict[tuple[str, ...], _Plan] | None = None,
) -> Any:
    """Call ``fn`` with ``params`` as it takes them; ``plans`` keeps how, per set of parameter
    names, for the next call (the same names come with every trial of a study)."""
    sig = _signature(fn) if sig is None else sig
    if sig is _NO_SIGNATURE:
        return fn(**params)
    names = tuple(params)
    plan = None if plans is None else plans.get(names)
    if plan is None:
        plan = _plan(fn, sig, params)
        if plans is not None:
            plans[names] = plan
    spread, trial, data = plan
    extras: dict[str, Any] = {}
    if trial:
        extras["trial"] = context
    if data:
        extras["data"] = context.data
    return fn(**params, **extras) if spread else fn(params, **extras)


# How to call an objective: parameters as keywords (else the whole dict as its one argument),
# and whether it also takes ``trial`` and ``data``.
_Plan = tuple[bool, bool, bool]


def _plan(fn: Callable[..., Any], sig: inspect.Signature, params: dict[str, Any]) -> _Plan:
    names = sig.parameters
    accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in names.values())
    trial = "trial" in names and "trial" not in params
    data = "data" in names and "data" not in params
    extras = {"trial"} if trial else set()
    if data:
        extras.add("data")
    positional = [
        p
        for p in names.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in extras
    ]
    if accepts_kwargs or all(n in names for n in params):
        return True, trial, data
    if len(positional) >= 1 and positional[0].name not in params:
        return False, trial, data
    missing = [n for n in params if n not in names]
    raise ObjectiveError(
        f"the objective {getattr(fn, '__qualname__', fn)!r} takes {list(names)} but the space "
        f"has parameters {missing} it does not accept; add them (or **params)"
    )


def load_callable(target: str) -> Callable[..., Any]:
    """Load ``"package.module:function"`` or ``"path/to/file.py:function"``."""
    module_name, attr = _split_target(target)
    module = load_module(module_name, where="objective.function")
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ObjectiveError(
            f"objective.function {target!r}: {module_name} has no {attr!r}"
        ) from None
    if not callable(fn):
        raise ObjectiveError(f"objective.function {target!r} is not callable")
    return fn  # type: ignore[no-any-return]


def _split_target(target: str) -> tuple[str, str]:
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ObjectiveError(
            f"objective.function {target!r}: expected 'module:function' or 'file.py:function'"
        )
    return module_name, attr


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or "\\" in name


def load_module(name: str, where: str = "objective.module") -> ModuleType:
    """Import a dotted module name or a ``.py`` file path."""
    if _is_path(name):
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ObjectiveError(f"{where}: no such file {str(path)!r}")
        module_name = f"optml_user_{path.stem}_{abs(hash(str(path))) % 10**8}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ObjectiveError(f"{where}: cannot import {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ObjectiveError(f"{where}: importing {str(path)!r} failed: {exc!r}") from exc
        return module
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ObjectiveError(f"{where}: cannot import {name!r}: {exc}") from None


_PROTOCOL = ("generate_data", "initialization", "train", "test_error")


class ModuleObjective(Objective):
    """A model module in the seed's protocol.

    The module defines ``generate_data(path=None)`` (called once per worker and cached),
    ``initialization(**hyperparameters)``, ``train(model, data)`` and ``test_error(model, data)``,
    and optionally ``metrics(model, data)`` for extra metrics. The trial's metrics are
    ``{"test_error": ..., **metrics(...)}``.
    """

    def __init__(self, module: str, data: str | None = None) -> None:
        self.module = module
        self.data = data
        self._module: ModuleType | None = None
        self._data: Any = None

    def check(self) -> None:
        _check_source(self.module, _PROTOCOL, f"objective.module {self.module!r}")

    def setup(self) -> None:
        if self._module is not None:
            return
        module = load_module(self.module)
        missing = [f for f in _PROTOCOL if not callable(getattr(module, f, None))]
        if missing:
            raise ObjectiveError(
                f"objective.module {self.module!r} lacks {missing}; a model module defines "
                "generate_data(path=None), initialization(**hyperparameters), train(model, data) "
                "and test_error(model, data)"
            )
        gen = module.generate_data
        takes_path = bool(inspect.signature(gen).parameters)
        self._data = gen(self.data) if takes_path else gen()
        self._module = module

    def run(self, params: dict[str, Any], context: TrialContext) -> Any:
        self.setup()
        module = self._module
        assert module is not None
        model = module.initialization(**params)
        trained = module.train(model, self._data)
        if trained is not None:
            model = trained
        result: dict[str, Any] = {"test_error": module.test_error(model, self._data)}
        extra = getattr(module, "metrics", None)
        if callable(extra):
            result.update(extra(model, self._data))
        return result

    def describe(self) -> str:
        return f"module {self.module}"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_module": None, "_data": None}


# -- checks before the first trial -----------------------------------------------------------
# check() runs in the controller, which must not run the user's code: importing a module there
# could be slow (a deep-learning framework), have side effects, or differ from what a worker
# sees. So the module is only located (a file that exists; importlib's finders for a dotted name,
# without executing any package's __init__) and its source read, never executed; anything that
# cannot be decided that way is left to setup() in the worker.


def _check_source(module_name: str, names: Sequence[str], where: str) -> None:
    """Raise ObjectiveError if ``module_name`` certainly cannot be found or certainly does not
    define every one of ``names``."""
    source = _locate(module_name, where)
    if source is None:
        return
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except SyntaxError as exc:
        raise ObjectiveError(
            f"{where}: {str(source)!r} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except (OSError, ValueError):
        return
    bound = _bound_names(tree)
    if bound is None:
        return
    missing = [n for n in names if n not in bound]
    if missing:
        listed = ", ".join(repr(n) for n in missing)
        raise ObjectiveError(f"{where}: {str(source)!r} defines no {listed}")


def _locate(name: str, where: str) -> Path | None:
    """The source file of module ``name``; None when it exists but its source cannot be read
    without importing it (a compiled or built-in module, a module set up by its package)."""
    if _is_path(name):
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise ObjectiveError(f"{where}: no such file {str(path)!r}")
        return path
    if name in sys.modules:
        return None
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        raise ObjectiveError(f"{where}: {name!r} is not a module name or a .py file")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: finders only, no import
    except (ImportError, ValueError):
        return None
    if spec is None:
        raise ObjectiveError(
            f"{where}: cannot import {name!r}: no module named {parts[0]!r} on the Python path"
        )
    for depth in range(1, len(parts)):
        locations = spec.submodule_search_locations
        if locations is None:
            return None  # e.g. os.path: set by a module's code, not found by a finder
        child = ".".join(parts[: depth + 1])
        spec = importlib.machinery.PathFinder.find_spec(child, list(locations))
        if spec is None:
            raise ObjectiveError(f"{where}: cannot import {name!r}: no module named {child!r}")
    if spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


# Names through which a module can bind names that reading it cannot see (``globals()[k] = f``,
# ``vars().update(...)``, ``exec(code)``), and attributes that reach a module's namespace
# (``sys.modules[__name__]``, ``module.__dict__``).
_DYNAMIC_NAMES = frozenset({"globals", "vars", "exec"})
_DYNAMIC_ATTRS = frozenset({"modules", "__dict__"})


def _bound_names(tree: ast.Module) -> set[str] | None:
    """Every name the module binds at its top level, or None when it may bind names that a
    reading cannot see (``from x import *``, ``globals()``, ``exec``, a module ``__getattr__``)."""
    bound: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and node.id in _DYNAMIC_NAMES:
            return None
        if isinstance(node, ast.Attribute) and node.attr in _DYNAMIC_ATTRS:
            return None
        if isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                if alias.name == "*":
                    return None
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == "__getattr__":
                return None
            bound.add(node.name)
            # A body binds module names only through ``global`` (or the dynamic ways above).
            for inner in ast.walk(node):
                if isinstance(inner, ast.Global):
                    bound.update(inner.names)
                elif isinstance(inner, ast.Name) and inner.id in _DYNAMIC_NAMES:
                    return None
                elif isinstance(inner, ast.Attribute) and inner.attr in _DYNAMIC_ATTRS:
                    return None
            continue
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
        stack.extend(ast.iter_child_nodes(node))
    return bound
