"""Find the hyperparameters of a Keras, PyTorch or scikit-learn script in its concrete syntax tree.

A call is matched to a metadata row through the script's imports (``keras.layers.Dense``,
``layers.Dense`` after ``from keras import layers``, ``Dense`` after ``from keras.layers import
Dense``, and their aliases). An argument is a hyperparameter when its value is a literal, a
module-level constant assigned a literal exactly once (``UNITS = 128``), or a command-line
option's literal default (``lr=args.lr`` after ``add_argument("--lr", default=0.01)``; the
rewritten script parses an empty command line, so options take their defaults). Objects created
inline or held in a variable are calls of their own and are matched where they are created. A literal
that the data fixes is never proposed: the output layer's width and activation (the last layer of
a Keras model, the last ``nn.Linear``/``nn.Conv*`` of a PyTorch chain), the input width, and a
PyTorch width that the next layer does not take as its input literal (proposing it would break
the model). See :mod:`optml.detect` for the metric rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from optml.detect._errors import NoMetricError, NothingToTuneError, ScriptSyntaxError
from optml.detect._metadata import MetadataTable, Row, load_table

# Methods whose call trains, evaluates or changes a model: a statement that calls one runs in
# each trial (never hoisted to once per worker).
TRAINING_METHODS = frozenset(
    {
        "fit",
        "compile",
        "add",
        "train",
        "step",
        "backward",
        "evaluate",
        "score",
        "predict",
        "zero_grad",
        "fit_generator",
        "partial_fit",
    }
)

_PREFIXES = (("tensorflow.keras.", "keras."), ("tf.keras.", "keras."))
# Framework modules re-export their classes under shorter paths than the ones they live in.
_REEXPORTS = {
    "keras.src.layers.": "keras.layers.",
    "keras.layers.core.": "keras.layers.",
    "torch.nn.modules.linear.": "torch.nn.",
    "torch.optim.sgd.": "torch.optim.",
    "torch.optim.adam.": "torch.optim.",
}
_KERAS_WIDTH = ("units", "filters")
_CONTAINERS = ("Pipeline", "ColumnTransformer", "FeatureUnion", "make_pipeline", "make_union")
_TORCH_WIDTH_OUT = ("out_features", "out_channels")
_TORCH_WIDTH_IN = ("in_features", "in_channels", "num_features")
_SEED = re.compile(r"(^|[._])(manual_seed|seed|set_seed|set_random_seed)$")
# Maximised metric functions of scikit-learn; the others there are losses.
_SKLEARN_MAX = {
    "accuracy_score",
    "balanced_accuracy_score",
    "f1_score",
    "precision_score",
    "recall_score",
    "r2_score",
    "roc_auc_score",
    "average_precision_score",
    "explained_variance_score",
}
_SKLEARN_MIN = {
    "mean_squared_error",
    "mean_absolute_error",
    "log_loss",
    "root_mean_squared_error",
    "mean_absolute_percentage_error",
    "median_absolute_error",
    "zero_one_loss",
    "hinge_loss",
}
# PyTorch's convention: the last assignment to one of these names is the metric.
TORCH_METRIC_NAMES = {
    "val_loss": "minimize",
    "valid_loss": "minimize",
    "validation_loss": "minimize",
    "test_loss": "minimize",
    "val_acc": "maximize",
    "val_accuracy": "maximize",
    "valid_acc": "maximize",
    "test_acc": "maximize",
    "test_accuracy": "maximize",
}
METRIC_HELP = (
    "mark it with optml.report(value) (add direction='maximize' for a score), or use a rule: "
    "Keras model.evaluate(...) or fit(..., validation_data=...); scikit-learn model.score(...), "
    "cross_val_score(...) or a sklearn.metrics function; PyTorch an assignment to val_loss, "
    "test_loss, val_accuracy or test_accuracy"
)


@dataclass
class Hyperparameter:
    """One hyperparameter found in a script."""

    name: str
    value: Any
    distribution: dict[str, list[Any]]
    row: Row
    line: int
    column: int
    sites: list[Any] = field(default_factory=list, repr=False)  # literal nodes to replace

    @property
    def why(self) -> str:
        return f"{self.row.layer}.{self.row.param} ({self.row.source})"


@dataclass
class Metric:
    """Where the script's metric comes from."""

    name: str
    direction: str
    how: str  # the runtime conversion: report, evaluate, fit, cross_val_score, value
    line: int
    node: Any = field(repr=False)  # the call (or assignment value) to wrap
    explicit: bool = False
    # PyTorch's convention: every assignment to the name is recorded (values wrapped; after an
    # augmented assignment such as ``val_loss += ...``, the name's new value).
    also: list[Any] = field(default_factory=list, repr=False)
    after: list[Any] = field(default_factory=list, repr=False)


@dataclass
class Detection:
    """What ``detect`` found in one script."""

    path: str
    source: str
    module: Any = field(repr=False)
    frameworks: list[str]
    hyperparameters: list[Hyperparameter]
    metric: Metric | None
    imports: dict[str, str] = field(repr=False, default_factory=dict)
    table: MetadataTable | None = field(repr=False, default=None)

    @property
    def space(self) -> dict[str, dict[str, list[Any]]]:
        return {hp.name: hp.distribution for hp in self.hyperparameters}

    def require(self) -> Detection:
        """Raise the one-line error for a script that cannot be tuned."""
        if not self.hyperparameters:
            known = ", ".join(self.frameworks) or "none of Keras, PyTorch or scikit-learn"
            raise NothingToTuneError(
                f"{self.path}: nothing to tune: no literal argument of a class in the metadata "
                f"table (frameworks imported: {known}); write the values as literals or "
                "module-level constants, or add the classes with --metadata your.csv"
            )
        if self.metric is None:
            raise NoMetricError(f"{self.path}: no metric found: {METRIC_HELP}")
        return self


@dataclass
class _Candidate:
    row: Row
    call: Any
    value: Any
    site: Any  # the literal node
    line: int
    column: int
    owner: str  # the name prefix: dense, svc, clf__svc, ...
    scope: Any  # the function (or module) the call is in, for chains
    element: int | None = None  # index inside a tuple literal (MLP hidden_layer_sizes)


def _literal(node: Any) -> tuple[bool, Any]:
    """(True, value) for a number or string literal (negative numbers included)."""
    if isinstance(node, cst.Integer | cst.Float):
        return True, node.evaluated_value
    if isinstance(node, cst.SimpleString):
        return True, node.evaluated_value
    if (
        isinstance(node, cst.UnaryOperation)
        and isinstance(node.operator, cst.Minus)
        and isinstance(node.expression, cst.Integer | cst.Float)
    ):
        return True, -node.expression.evaluated_value
    return False, None


def dotted(node: Any) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def _normalise(path: str) -> str:
    for old, new in _PREFIXES:
        if path.startswith(old):
            path = new + path[len(old) :]
    for old, new in _REEXPORTS.items():
        if path.startswith(old):
            path = new + path[len(old) :]
    return path


def _imports(module: Any) -> tuple[dict[str, str], list[str]]:
    """Local name -> imported dotted path, and the modules imported with ``*``."""
    names: dict[str, str] = {}
    stars: list[str] = []

    class V(cst.CSTVisitor):
        def visit_Import(self, node: cst.Import) -> None:
            for alias in node.names:
                full = dotted(alias.name) or ""
                if alias.asname is not None:
                    names[dotted(alias.asname.name) or full] = full
                else:
                    names[full.split(".")[0]] = full.split(".")[0]

        def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
            if node.relative or node.module is None:
                return
            base = dotted(node.module) or ""
            if isinstance(node.names, cst.ImportStar):
                stars.append(base)
                return
            for alias in node.names:
                local = dotted(alias.asname.name) if alias.asname else dotted(alias.name)
                names[str(local)] = f"{base}.{dotted(alias.name)}"

    module.visit(V())
    return names, stars


class _Resolver:
    def __init__(self, imports: dict[str, str], stars: list[str], table: MetadataTable) -> None:
        self.imports = imports
        self.stars = stars
        self.table = table

    def qualify(self, func: Any) -> str | None:
        name = dotted(func)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        if head in self.imports:
            full = self.imports[head] + ("." + rest if rest else "")
            return _normalise(full)
        for star in self.stars:
            candidate = _normalise(f"{star}.{name}")
            if self.table.has(candidate):
                return candidate
        return None


def _frameworks(imports: dict[str, str], stars: list[str]) -> list[str]:
    roots = {v.split(".")[0] for v in imports.values()} | {s.split(".")[0] for s in stars}
    found = []
    if roots & {"keras", "tensorflow"}:
        found.append("keras")
    if "torch" in roots:
        found.append("pytorch")
    if roots & {"sklearn", "xgboost", "lightgbm"}:
        found.append("scikit-learn")
    return found


def parse_module(source: str, path: str) -> Any:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        line, column = exc.raw_line, exc.raw_column + 1
        message = str(exc.message).splitlines()[0] if exc.message else "invalid syntax"
    # Python's own parser names the place more precisely than libcst's tokenizer does.
    import ast

    try:
        ast.parse(source)
    except SyntaxError as err:
        line, column = err.lineno or line, err.offset or column
        message = err.msg or message
    raise ScriptSyntaxError(f"{path}:{line}:{column}: not valid Python: {message}")


def detect_file(path: str | Path, metadata: str | Path | None = None) -> Detection:
    """Read a script from disk and :func:`detect` its hyperparameters."""
    from optml.detect._errors import DetectError

    p = Path(path)
    try:
        source = p.read_text()
    except OSError as exc:
        raise DetectError(f"{p}: cannot read the script: {exc.strerror}") from None
    return detect(source, str(p), metadata=metadata)


def detect(source: str, path: str = "<script>", metadata: str | Path | None = None) -> Detection:
    """Find the hyperparameters and the metric of a training script's source."""

    table = load_table(metadata)
    module = parse_module(source, path)
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    imports, stars = _imports(module)
    resolver = _Resolver(imports, stars, table)
    frameworks = _frameworks(imports, stars)
    constants = _constants(module)
    uses_argparse = any(v.split(".")[0] == "argparse" for v in imports.values())
    options = _argparse_defaults(module) if uses_argparse else {}
    finder = _Finder(resolver, positions, constants, "keras" in frameworks, options)
    module.visit(finder)
    candidates = _prune(finder.candidates, finder, table)
    hps = _name(candidates, finder.constant_names)
    metric = _metric(finder, frameworks, positions)
    return Detection(
        path=path,
        source=source,
        module=module,
        frameworks=frameworks,
        hyperparameters=hps,
        metric=metric,
        imports=imports,
        table=table,
    )


def _constants(module: Any) -> dict[str, Any]:
    """Module-level names assigned a literal (or a tuple of int literals) exactly once, and
    never assigned anywhere else: name -> the literal node."""
    counts: dict[str, int] = {}
    found: dict[str, Any] = {}

    class Count(cst.CSTVisitor):
        def visit_Name(self, node: cst.Name) -> None:
            pass

        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            for name in _target_names(node.target):
                counts[name] = counts.get(name, 0) + 1

        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            for name in _target_names(node.target):
                counts[name] = counts.get(name, 0) + 2

        def visit_For(self, node: cst.For) -> None:
            for name in _target_names(node.target):
                counts[name] = counts.get(name, 0) + 2

    module.visit(Count())
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if (
                isinstance(small, cst.Assign)
                and len(small.targets) == 1
                and isinstance(small.targets[0].target, cst.Name)
            ):
                name = small.targets[0].target.value
                ok, _ = _literal(small.value)
                if ok and counts.get(name) == 1:
                    found[name] = small.value
    return found


def _argparse_defaults(module: Any) -> dict[str, Any]:
    """``parser.add_argument("--batch-size", type=int, default=64)``: dest -> the default's
    literal node, for options defined once with a literal default."""
    found: dict[str, Any] = {}
    seen: dict[str, int] = {}

    class V(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            if not (
                isinstance(node.func, cst.Attribute) and node.func.attr.value == "add_argument"
            ):
                return
            flags = [
                a.value.evaluated_value
                for a in node.args
                if a.keyword is None and isinstance(a.value, cst.SimpleString)
            ]
            keywords = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
            dest_node = keywords.get("dest")
            if isinstance(dest_node, cst.SimpleString):
                dest = str(dest_node.evaluated_value)
            else:
                longs = [f for f in flags if isinstance(f, str) and f.startswith("--")]
                if not longs:
                    return
                dest = longs[0][2:].replace("-", "_")
            seen[dest] = seen.get(dest, 0) + 1
            default = keywords.get("default")
            if default is not None and _literal(default)[0]:
                found[dest] = default

    module.visit(V())
    return {k: v for k, v in found.items() if seen[k] == 1}


def _target_names(target: Any) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, cst.Tuple | cst.List):
        out: list[str] = []
        for el in target.elements:
            out += _target_names(el.value)
        return out
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


def _shuffles(call: cst.Call) -> bool:
    """Whether a DataLoader is the training one (``shuffle=True``)."""
    return any(
        a.keyword is not None
        and a.keyword.value == "shuffle"
        and isinstance(a.value, cst.Name)
        and a.value.value == "True"
        for a in call.args
    )


def _snake(class_name: str) -> str:
    return class_name.lower()


class _Finder(cst.CSTVisitor):
    """Walks the tree once: candidate literals, layer chains, metric sites."""

    def __init__(
        self,
        resolver: _Resolver,
        positions: Any,
        constants: dict[str, Any],
        keras: bool,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.options = options or {}
        self.resolver = resolver
        self.positions = positions
        self.constants = constants
        self.constant_names = {id(node): name for name, node in constants.items()}
        self.constant_names.update({id(node): name for name, node in self.options.items()})
        self.keras = keras
        self.candidates: list[_Candidate] = []
        # scope -> calls of layers with a width, in source order: (layer path, call)
        self.chains: dict[Any, list[tuple[str, Any]]] = {}
        self.metric_sites: list[
            tuple[str, str, str, Any, Any]
        ] = []  # kind, name, direction, node, how
        self.table_calls: set[int] = set()  # id() of calls to table classes
        self.training_calls: set[int] = set()
        self.stack: list[Any] = []

    # One pass keeps a parent stack (libcst's parent metadata costs a second pass).
    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.Call):
            self._call(node)
        elif isinstance(node, cst.For):
            self._for(node)
        elif isinstance(node, cst.Assign):
            self._assign(node)
        elif isinstance(node, cst.AugAssign):
            self._augassign(node)
        self.stack.append(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.stack.pop()

    def _scope(self) -> Any:
        for node in reversed(self.stack):
            if isinstance(node, cst.FunctionDef):
                return node
        return None

    def _pos(self, node: Any) -> tuple[int, int]:
        pos = self.positions[node].start
        return pos.line, pos.column + 1

    def _value_site(self, value: Any) -> tuple[Any, Any] | None:
        """(literal node, value) for a literal, a module constant or a command-line option's
        default (``args.lr`` after ``parser.add_argument("--lr", default=0.01)``)."""
        ok, lit = _literal(value)
        if ok:
            return value, lit
        if isinstance(value, cst.Name) and value.value in self.constants:
            node = self.constants[value.value]
            return node, _literal(node)[1]
        if (
            isinstance(value, cst.Attribute)
            and isinstance(value.value, cst.Name)
            and value.attr.value in self.options
        ):
            node = self.options[value.attr.value]
            return node, _literal(node)[1]
        return None

    def _owner(self, call: Any, class_name: str, layer: str) -> str:
        """The parameter-name prefix; for scikit-learn, the ``set_params`` path: step names of
        ``Pipeline``/``ColumnTransformer`` tuples, ``make_pipeline``'s lowercase class names,
        dict keys."""
        base = _snake(class_name)
        if not layer.startswith(("sklearn.", "xgboost.", "lightgbm.")):
            return base
        parts = [base]
        outermost_is_container = False
        child = call
        for node in reversed(self.stack):
            if (
                isinstance(node, cst.Tuple)
                and len(node.elements) >= 2
                and child in (node.elements[1], node.elements[1].value)
            ):
                ok, step = _literal(node.elements[0].value)
                if ok and isinstance(step, str):
                    parts[-1] = step
                    outermost_is_container = False
            elif isinstance(node, cst.DictElement) and node.value is child:
                ok, key = _literal(node.key)
                if ok and isinstance(key, str):
                    parts[-1] = key
                    outermost_is_container = False
            elif isinstance(node, cst.Call):
                tail = (self.resolver.qualify(node.func) or "").rsplit(".", 1)[-1]
                if tail in _CONTAINERS or tail.startswith(("Voting", "Stacking")):
                    # make_pipeline's name for a step; a tuple or dict further up renames it
                    parts.append(_snake(tail))
                    outermost_is_container = True
                else:
                    break
            elif isinstance(node, cst.SimpleStatementLine | cst.BaseCompoundStatement):
                break
            child = node
        if outermost_is_container:
            parts.pop()  # the pipeline itself is not a step of anything
        return "__".join(reversed(parts))

    def _call(self, call: Any) -> None:
        path = self.resolver.qualify(call.func)
        table = self.resolver.table
        method = call.func.attr.value if isinstance(call.func, cst.Attribute) else None
        if path is None and method is not None and self.keras and method in ("fit", "compile"):
            path = f"keras.Model.{method}"
        if method in TRAINING_METHODS:
            self.training_calls.add(id(call))
        if path is not None:
            self._metric_call(call, path, method)
        if method is not None and (path is None or path.startswith("keras.Model.")):
            self._metric_method(call, method)
        if path is None or not table.has(path):
            return
        self.table_calls.add(id(call))
        layer = path
        if layer.endswith(".DataLoader") and not _shuffles(call):
            return  # an evaluation loader: its batch size does not change the model
        rows = table.for_layer(layer)
        scope = self._scope()
        if any(r.param in _KERAS_WIDTH + _TORCH_WIDTH_OUT + _TORCH_WIDTH_IN for r in rows):
            self.chains.setdefault(scope, []).append((layer, call))
        owner = self._owner(call, layer.rsplit(".", 1)[-1], layer)
        positional = []
        for arg in call.args:
            if arg.star:
                break
            if arg.keyword is None:
                positional.append(arg)
        keywords = {arg.keyword.value: arg for arg in call.args if arg.keyword is not None}
        for param in dict.fromkeys(r.param for r in rows):
            arg = keywords.get(param)
            order = next(r.order for r in rows if r.param == param)
            if arg is None and 0 <= order < len(positional):
                arg = positional[order]
            if arg is None:
                continue
            value = arg.value
            if isinstance(value, cst.Tuple):
                # A tuple of widths (MLPClassifier(hidden_layer_sizes=(64, 32))): one each.
                for i, el in enumerate(value.elements):
                    site = self._value_site(el.value)
                    if site is None or not isinstance(site[1], int):
                        continue
                    row = table.row(layer, param, site[1])
                    if row is not None:
                        self._add(row, call, site, owner, scope, i)
                continue
            site = self._value_site(value)
            if site is None or isinstance(site[1], bool):
                continue
            row = table.row(layer, param, site[1])
            if row is not None:
                self._add(row, call, site, owner, scope, None)

    def _import_time(self) -> bool:
        """Whether the current node runs when the module is imported, not when the script's
        code runs: a class body, a default argument, a decorator. A literal there cannot read
        the trial's values."""
        for k in range(len(self.stack) - 1, -1, -1):
            node = self.stack[k]
            child = self.stack[k + 1] if k + 1 < len(self.stack) else None
            if isinstance(node, cst.FunctionDef | cst.Lambda) and child is node.body:
                return False
            if isinstance(node, cst.ClassDef) and child is node.body:
                return True
        return False

    def _add(
        self,
        row: Row,
        call: Any,
        site: tuple[Any, Any],
        owner: str,
        scope: Any,
        element: int | None,
    ) -> None:
        if self._import_time():
            return
        line, col = self._pos(site[0])
        self.candidates.append(
            _Candidate(row, call, site[1], site[0], line, col, owner, scope, element)
        )

    def _for(self, node: Any) -> None:
        """``for epoch in range(EPOCHS)``: the epoch count of a PyTorch training loop."""
        table = self.resolver.table
        row = table.row("torch.epoch_loop", "epochs")
        if row is None or not isinstance(node.iter, cst.Call):
            return
        if dotted(node.iter.func) != "range" or not node.iter.args:
            return
        stop = node.iter.args[-1].value
        if isinstance(stop, cst.BinaryOperation) and isinstance(stop.operator, cst.Add):
            stop = stop.left
        site = self._value_site(stop)
        target = dotted(node.target) or ""
        named = "epoch" in target.lower() or (
            isinstance(stop, cst.Name) and "epoch" in stop.value.lower()
        )
        if site is None or not named or not isinstance(site[1], int) or isinstance(site[1], bool):
            return
        self._add(row, node, site, "", self._scope(), None)

    def _assign(self, node: Any) -> None:
        if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Name):
            return
        name = node.targets[0].target.value
        # ``val_loss = 0.0`` starts a sum: not the metric itself.
        if name in TORCH_METRIC_NAMES and not _literal(node.value)[0]:
            self.metric_sites.append(("torch", name, TORCH_METRIC_NAMES[name], node.value, "value"))

    def _augassign(self, node: cst.AugAssign) -> None:
        if isinstance(node.target, cst.Name) and node.target.value in TORCH_METRIC_NAMES:
            name = node.target.value
            self.metric_sites.append(("torch", name, TORCH_METRIC_NAMES[name], node, "after"))

    def _metric_call(self, call: Any, path: str, method: str | None) -> None:
        tail = path.rsplit(".", 1)[-1]
        if path in ("optml.report", "optml.detect.report") and call.args:
            direction = "minimize"
            for arg in call.args:
                if arg.keyword is not None and arg.keyword.value == "direction":
                    ok, value = _literal(arg.value)
                    if ok and value in ("minimize", "maximize"):
                        direction = value
            self.metric_sites.append(("report", "value", direction, call, "report"))
        elif path.startswith("sklearn.") and tail in ("cross_val_score",):
            self.metric_sites.append(("sklearn", "cv_score", "maximize", call, "mean"))
        elif path.startswith("sklearn.metrics.") and tail in _SKLEARN_MAX:
            self.metric_sites.append(("sklearn", tail, "maximize", call, "value"))
        elif path.startswith("sklearn.metrics.") and tail in _SKLEARN_MIN:
            self.metric_sites.append(("sklearn", tail, "minimize", call, "value"))

    def _metric_method(self, call: Any, method: str) -> None:
        if method == "score":
            self.metric_sites.append(("sklearn", "score", "maximize", call, "value"))
        elif method == "evaluate":
            self.metric_sites.append(("keras", "loss", "minimize", call, "evaluate"))
        elif method == "fit" and any(
            a.keyword is not None and a.keyword.value in ("validation_data", "validation_split")
            for a in call.args
        ):
            self.metric_sites.append(("keras-fit", "val_loss", "minimize", call, "fit"))


def _prune(candidates: list[_Candidate], finder: _Finder, table: MetadataTable) -> list[_Candidate]:
    """Drop what the data fixes; tie PyTorch widths to the next layer's input."""
    drop: set[int] = set()
    ties: dict[int, list[Any]] = {}  # id(candidate) -> extra sites
    by_call: dict[int, list[_Candidate]] = {}
    for c in candidates:
        by_call.setdefault(id(c.call), []).append(c)
    for chain in finder.chains.values():
        keras = [(layer, call) for layer, call in chain if layer.startswith("keras.")]
        if keras:
            # The output layer: its width and activation come from the task.
            for c in by_call.get(id(keras[-1][1]), []):
                drop.add(id(c))
        torch = [(layer, call) for layer, call in chain if layer.startswith("torch.")]
        widths = [
            (layer, call)
            for layer, call in torch
            if any(r.param in _TORCH_WIDTH_OUT for r in table.for_layer(layer))
        ]
        for _, call in torch:
            for c in by_call.get(id(call), []):
                if c.row.param in _TORCH_WIDTH_IN:
                    drop.add(id(c))
        for i, (layer, call) in enumerate(widths):
            outs = [c for c in by_call.get(id(call), []) if c.row.param in _TORCH_WIDTH_OUT]
            if not outs:
                continue
            out = outs[0]
            nxt = widths[i + 1] if i + 1 < len(widths) else None
            same_family = nxt is not None and (
                layer.rsplit(".", 1)[-1][:4] == nxt[0].rsplit(".", 1)[-1][:4]
            )
            if not same_family:
                drop.add(id(out))
                continue
            assert nxt is not None
            start = next(k for k, (_, c) in enumerate(torch) if c is call)
            stop = next(k for k, (_, c) in enumerate(torch) if c is nxt[1])
            followers = [
                c
                for _, fcall in torch[start + 1 : stop + 1]
                for c in by_call.get(id(fcall), [])
                if c.row.param in _TORCH_WIDTH_IN
            ]
            nxt_in = [c for c in followers if c.call is nxt[1]]
            if not nxt_in or nxt_in[0].value != out.value:
                drop.add(id(out))
                continue
            ties[id(out)] = [
                c.site for c in followers if c.value == out.value and c.site is not out.site
            ]
    kept = []
    for c in candidates:
        if id(c) in drop or c.row.hptype == "tied":
            continue
        if c.element is None and c.row.distribution(c.value) is None:
            continue
        c.extra_sites = ties.get(id(c), [])  # type: ignore[attr-defined]
        kept.append(c)
    return kept


def _name(candidates: list[_Candidate], constant_names: dict[int, str]) -> list[Hyperparameter]:
    """One hyperparameter per literal (a constant used twice is one), named after its owner."""
    by_site: dict[int, Hyperparameter] = {}
    counts: dict[str, int] = {}
    out: list[Hyperparameter] = []
    for c in sorted(candidates, key=lambda c: (c.line, c.column)):
        if id(c.site) in by_site:
            hp = by_site[id(c.site)]
            for s in getattr(c, "extra_sites", []):
                if s not in hp.sites:
                    hp.sites.append(s)
            continue
        dist = c.row.distribution(c.value)
        if dist is None:
            continue
        sklearn = c.row.layer.startswith(("sklearn.", "xgboost.", "lightgbm."))
        param = c.row.param + (f"_{c.element}" if c.element is not None else "")
        if id(c.site) in constant_names:
            # A module constant reads better under its own name: UNITS -> units.
            base = constant_names[id(c.site)].lower()
        elif c.owner:
            base = f"{c.owner}__{param}" if sklearn else f"{c.owner}_{param}"
        else:
            base = param
        counts[base] = counts.get(base, 0) + 1
        name = base if counts[base] == 1 else f"{base}_{counts[base]}"
        hp = Hyperparameter(
            name=name,
            value=c.value,
            distribution=dist,
            row=c.row,
            line=c.line,
            column=c.column,
            sites=[c.site] + [s for s in getattr(c, "extra_sites", []) if s is not c.site],
        )
        by_site[id(c.site)] = hp
        out.append(hp)
    return out


def _metric(finder: _Finder, frameworks: list[str], positions: Any) -> Metric | None:
    sites = finder.metric_sites

    def pick(kinds: tuple[str, ...]) -> Metric | None:
        chosen = [s for s in sites if s[0] in kinds]
        if not chosen:
            return None
        kind, name, direction, node, how = max(chosen, key=lambda s: positions[s[3]].start.line)
        metric = Metric(
            name=name,
            direction=direction,
            how=how,
            line=positions[node].start.line,
            node=node,
            explicit=kind == "report",
        )
        if kind == "torch":
            same = [s for s in chosen if s[1] == name]
            metric.also = [s[3] for s in same if s[4] == "value"]
            metric.after = [s[3] for s in same if s[4] == "after"]
            if how == "after":  # the wrapped node must be an expression: take an assignment's
                values = metric.also
                metric.node = values[-1] if values else None
                metric.how = "value"
        return metric

    found = pick(("report",))
    if found:
        return found
    order: list[tuple[str, ...]] = []
    if "keras" in frameworks:
        order += [("keras",), ("keras-fit",)]
    if "pytorch" in frameworks:
        order.append(("torch",))
    if "scikit-learn" in frameworks:
        order.append(("sklearn",))
    for kinds in order:
        found = pick(kinds)
        if found:
            return found
    return None
