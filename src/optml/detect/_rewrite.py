"""Rewrite a detected script so that it takes its hyperparameters as parameters.

Every literal hyperparameter becomes ``optml_params["name"]``; the metric expression is wrapped
in ``optml_runtime.record(...)``. Imports, functions and classes stay at module level; the
script's other top-level statements (and the body of ``if __name__ == "__main__":``) move into
``def optml_objective(**optml_trial_params)``, which declares the names they bind ``global`` so
that the code behaves as it did at module level. Leading statements that load data and do not
depend on a hyperparameter stay at module level, so they run once per worker, not once per
trial: an assignment or call that contains no hyperparameter, creates no object of a framework
class (``Sequential()``, ``StandardScaler()``; datasets such as ``TensorDataset`` excepted) nor of
a class of the script, calls no training method (fit, compile, add, step, ...) nor a function of
the script that does, reads no name set by a moved statement, and binds no name that later code
changes in place (``X += 1``, ``X[0] = ...``, ``X.append(...)``, ``model.add(...)``, ``w.zero_()``). Seeding calls (``np.random.seed(0)``) stay too and are repeated at
the start of each trial. Everything else is unchanged, comments and formatting included.
"""

from __future__ import annotations

from typing import Any

import libcst as cst

from optml.detect._detect import TRAINING_METHODS, Detection, Metric, dotted

OBJECTIVE = "optml_objective"
_HEADER = (
    "from optml.detect import runtime as optml_runtime  # added by optml: the trial's values\n"
    "\n"
    "optml_params = optml_runtime.params\n"
)
_MUTATING = {
    "append",
    "extend",
    "insert",
    "update",
    "pop",
    "remove",
    "clear",
    "sort",
    "shuffle",
    "setdefault",
    "add_module",
    "register_buffer",
    "set_params",
    "load_state_dict",
    "load_weights",
    "reset_states",
    "build",
    "set_weights",
    "drop_duplicates",
    "fillna",
}
# Framework classes that hold data, not state a trial changes: these may load once per worker.
_DATA_CLASSES = {"TensorDataset", "DataFrame", "Series", "Generator", "RandomState"}
_FRAMEWORKS = ("keras", "tensorflow", "torch", "sklearn", "xgboost", "lightgbm")
_TRAINING = TRAINING_METHODS | {"cross_val_score", "cross_validate"}


class _Replace(cst.CSTTransformer):
    def __init__(self, sites: dict[int, str], metric: Metric) -> None:
        super().__init__()
        self.sites = sites
        self.wrap: dict[int, str] = {id(node): metric.how for node in metric.also}
        if metric.node is not None:
            self.wrap[id(metric.node)] = metric.how
        self.after = {id(node): node.target.value for node in metric.after}

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> Any:
        names = [self.after[id(s)] for s in original_node.body if id(s) in self.after]
        if not names:
            return updated_node
        # ``val_loss += loss.item()``: the sum so far is the metric until it changes again.
        # Recorded on the same line, so that the module keeps its statements one to one.
        record = cst.Expr(cst.parse_expression(f"optml_runtime.record({names[-1]})"))
        return updated_node.with_changes(body=[*updated_node.body, record])

    def on_leave(self, original_node: Any, updated_node: Any) -> Any:
        updated_node = super().on_leave(original_node, updated_node)
        name = self.sites.get(id(original_node))
        if name is not None:
            return cst.parse_expression(f'optml_params["{name}"]')
        if (
            isinstance(updated_node, cst.Call)
            and isinstance(updated_node.func, cst.Attribute)
            and updated_node.func.attr.value in ("parse_args", "parse_known_args")
            and not updated_node.args
        ):
            # The worker's command line is not the script's: options take their defaults,
            # which now read the trial's values.
            updated_node = updated_node.with_changes(args=[cst.Arg(cst.List([]))])
        how = self.wrap.get(id(original_node))
        if how is not None:
            inner = updated_node
            if how == "report" and isinstance(updated_node, cst.Call):
                inner = updated_node.args[0].value
            args = [cst.Arg(inner)]
            if how not in ("value", "report"):
                args.append(cst.Arg(cst.SimpleString(f'"{how}"')))
            return cst.Call(func=cst.parse_expression("optml_runtime.record"), args=args)
        return updated_node


def _contains(node: Any, ids: set[int]) -> bool:
    found = False

    class V(cst.CSTVisitor):
        def on_visit(self, n: cst.CSTNode) -> bool:
            nonlocal found
            if id(n) in ids:
                found = True
            return not found

    node.visit(V())
    return found


def _names_read(node: Any) -> set[str]:
    out: set[str] = set()

    class V(cst.CSTVisitor):
        def visit_Name(self, n: cst.Name) -> None:
            out.add(n.value)

    node.visit(V())
    return out


def _calls(node: Any) -> list[cst.Call]:
    out: list[cst.Call] = []

    class V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            out.append(n)

    node.visit(V())
    return out


def _bound(stmt: Any) -> list[str]:
    """Names a top-level statement binds in the module namespace (not inside nested defs)."""
    from optml.detect._detect import _target_names

    out: list[str] = []

    class V(cst.CSTVisitor):
        def visit_FunctionDef(self, n: cst.FunctionDef) -> bool:
            return False

        def visit_ClassDef(self, n: cst.ClassDef) -> bool:
            return False

        def visit_Lambda(self, n: cst.Lambda) -> bool:
            return False

        def visit_AssignTarget(self, n: cst.AssignTarget) -> None:
            out.extend(_target_names(n.target))

        def visit_AnnAssign(self, n: cst.AnnAssign) -> None:
            out.extend(_target_names(n.target))

        def visit_AugAssign(self, n: cst.AugAssign) -> None:
            out.extend(_target_names(n.target))

        def visit_For(self, n: cst.For) -> None:
            out.extend(_target_names(n.target))

        def visit_WithItem(self, n: cst.WithItem) -> None:
            if n.asname is not None:
                out.extend(_target_names(n.asname.name))

        def visit_NamedExpr(self, n: cst.NamedExpr) -> None:
            out.extend(_target_names(n.target))

        def visit_ExceptHandler(self, n: cst.ExceptHandler) -> None:
            if n.name is not None:
                out.extend(_target_names(n.name.name))

        def visit_Import(self, n: cst.Import) -> None:
            for a in n.names:
                name = a.asname.name if a.asname else a.name  # type: ignore[attr-defined]
                out.append((dotted(name) or "").split(".")[0])

        def visit_ImportFrom(self, n: cst.ImportFrom) -> None:
            if not isinstance(n.names, cst.ImportStar):
                for a in n.names:
                    name = a.asname.name if a.asname else a.name  # type: ignore[attr-defined]
                    out.append(dotted(name) or "")

    stmt.visit(V())
    return list(dict.fromkeys(n for n in out if n))


def _mutated(stmt: Any) -> set[str]:
    """Names changed in place: ``X += 1``, ``X[i] = ...``, ``X.attr = ...``, a mutating or
    training method called on them (``model.add(...)``, ``X.append(...)``, ``w.zero_()``)."""
    out: set[str] = set()

    def base(target: Any) -> None:
        while isinstance(target, cst.Subscript | cst.Attribute):
            target = target.value
        if isinstance(target, cst.Name):
            out.add(target.value)

    class V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            # model.add(...), scaler.fit(...), scores.append(...), weights.normal_(...)
            if isinstance(n.func, cst.Attribute):
                method = n.func.attr.value
                if (
                    method in _MUTATING
                    or method in _TRAINING
                    or (method.endswith("_") and not method.startswith("_"))
                ):
                    base(n.func.value)

        def visit_AugAssign(self, n: cst.AugAssign) -> None:
            base(n.target)

        def visit_AssignTarget(self, n: cst.AssignTarget) -> None:
            if isinstance(n.target, cst.Subscript | cst.Attribute):
                base(n.target)

    stmt.visit(V())
    return out


def _is_main_guard(stmt: Any) -> bool:
    if not isinstance(stmt, cst.If) or stmt.orelse is not None:
        return False
    test = stmt.test
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return False
    left, right = test.left, test.comparisons[0].comparator
    names = {dotted(left), dotted(right)}
    return "__name__" in names and any(
        isinstance(x, cst.SimpleString) and x.evaluated_value == "__main__" for x in (left, right)
    )


def _is_header(stmt: Any) -> bool:
    if isinstance(stmt, cst.SimpleStatementLine):
        return all(isinstance(s, cst.Import | cst.ImportFrom) for s in stmt.body)
    return False


def _is_seed(stmt: Any) -> bool:
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return False
    small = stmt.body[0]
    if not isinstance(small, cst.Expr) or not isinstance(small.value, cst.Call):
        return False
    name = dotted(small.value.func) or ""
    return name.rsplit(".", 1)[-1] in ("seed", "manual_seed", "set_seed", "set_random_seed")


def rewrite(detection: Detection, data: str | None = None) -> str:
    """The source of the rewritten script (a module defining ``optml_objective``)."""
    detection.require()
    metric = detection.metric
    assert metric is not None
    sites = {id(s): hp.name for hp in detection.hyperparameters for s in hp.sites}
    marked = set(sites) | {
        id(n) for n in [metric.node, *metric.also, *metric.after] if n is not None
    }
    table = detection.table
    assert table is not None
    module = detection.module
    tainted_ids = set(marked)

    # Functions of the script that train, build a model or read a hyperparameter: calling one
    # keeps a statement in the objective.
    from optml.detect._detect import _imports, _Resolver

    imports, stars = _imports(module)
    resolver = _Resolver(imports, stars, table)

    local_defs: dict[str, Any] = {}
    for stmt in module.body:
        if isinstance(stmt, cst.FunctionDef | cst.ClassDef):
            local_defs[stmt.name.value] = stmt

    def trains(node: Any) -> bool:
        """Whether ``node`` trains, reads a hyperparameter, or builds a model object (a
        framework class such as ``Sequential()`` or ``StandardScaler()``, or a class of the
        script): such an object would carry one trial's changes into the next."""
        if _contains(node, tainted_ids):
            return True
        for call in _calls(node):
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value in _TRAINING:
                return True
            path = resolver.qualify(func)
            if path is not None and (table.has(path) or path.rsplit(".", 1)[-1] in _TRAINING):
                return True
            tail = (path or dotted(func) or "").rsplit(".", 1)[-1]
            if (
                path is not None
                and path.split(".")[0] in _FRAMEWORKS
                and tail[:1].isupper()
                and tail not in _DATA_CLASSES
            ):
                return True
            if isinstance(func, cst.Name) and isinstance(local_defs.get(func.value), cst.ClassDef):
                return True
        return False

    tainted_defs: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, node in local_defs.items():
            if name in tainted_defs:
                continue
            if trains(node) or (_names_read(node) & tainted_defs):
                tainted_defs.add(name)
                changed = True

    # The statements that run the script, in order: top level and the __main__ block.
    stream: list[tuple[int, int | None, Any]] = []  # (index in body, index in guard, stmt)
    for i, stmt in enumerate(module.body):
        if _is_main_guard(stmt):
            for j, inner in enumerate(stmt.body.body):
                if not _is_header(inner):
                    stream.append((i, j, inner))
        elif not (
            _is_header(stmt)
            or isinstance(stmt, cst.FunctionDef | cst.ClassDef)
            or (i == 0 and _is_docstring(stmt))
        ):
            stream.append((i, None, stmt))

    mutated_later: set[str] = set()
    for _, _, stmt in stream:
        mutated_later |= _mutated(stmt)

    hoisted: set[int] = set()  # id() of statements that stay at module level
    seeds: list[Any] = []
    moved_names: set[str] = set()
    blocked = False
    for _, _, stmt in stream:
        ok = (
            not blocked
            and isinstance(stmt, cst.SimpleStatementLine)
            and all(isinstance(s, cst.Assign | cst.AnnAssign | cst.Expr) for s in stmt.body)
            and not trains(stmt)
            and not (_names_read(stmt) & (moved_names | tainted_defs))
            and not (set(_bound(stmt)) & mutated_later)
        )
        if ok:
            hoisted.add(id(stmt))
            if _is_seed(stmt):
                seeds.append(stmt)
            continue
        moved_names |= set(_bound(stmt))
        pure = (
            isinstance(stmt, cst.SimpleStatementLine)
            and all(isinstance(s, cst.Assign) for s in stmt.body)
            and not _calls(stmt)
        )
        if not pure:
            blocked = True

    new_module = module.visit(_Replace(sites, metric))
    moved: list[Any] = []
    new_body: list[Any] = []
    header_end = 0
    for i, (old, new) in enumerate(zip(module.body, new_module.body, strict=True)):
        if _is_main_guard(old):
            for inner_old, inner_new in zip(old.body.body, new.body.body, strict=True):
                if _is_header(inner_old):
                    new_body.append(inner_new)
                elif id(inner_old) in hoisted:
                    new_body.append(inner_new)
                else:
                    moved.append(_without_exit(inner_new))
            continue
        in_stream = not (
            _is_header(old)
            or isinstance(old, cst.FunctionDef | cst.ClassDef)
            or (i == 0 and _is_docstring(old))
        )
        if in_stream and id(old) not in hoisted:
            moved.append(new)
            if _is_constant(old):
                # Module-level code (a default argument, a class attribute) may read the
                # constant when the module is imported: it keeps its original value there.
                new_body.append(old)
        else:
            new_body.append(new)
        if len(new_body) == header_end + 1 and (_is_header(old) or (i == 0 and _is_docstring(old))):
            header_end = len(new_body)

    names = sorted({n for stmt in moved for n in _bound(stmt)})
    body_lines = [
        f'"""One trial: the script with the values in optml_trial_params; returns {metric.name}."""\n'
    ]
    if names:
        body_lines.append(f"global {', '.join(names)}\n")
    body_lines.append("optml_runtime.start(optml_trial_params)\n")
    preamble = [cst.parse_statement(line) for line in body_lines]
    objective = cst.FunctionDef(
        name=cst.Name(OBJECTIVE),
        params=cst.Parameters(star_kwarg=cst.Param(cst.Name("optml_trial_params"))),
        body=cst.IndentedBlock(
            body=preamble
            + [s.deep_clone() for s in seeds]
            + [_strip_leading_lines(s, k == 0) for k, s in enumerate(moved)]
            + [cst.parse_statement("return optml_runtime.result()\n")]
        ),
        leading_lines=[cst.EmptyLine(), cst.EmptyLine()],
    )
    header = list(cst.parse_module(_HEADER).body)
    header[0] = header[0].with_changes(leading_lines=[cst.EmptyLine()])
    final = new_body[:header_end] + header + new_body[header_end:] + [objective]
    out = new_module.with_changes(body=final).code
    if data is not None:
        out = _replace_data(out, detection, data)
    return out


def _without_exit(stmt: Any) -> Any:
    """``sys.exit(main())`` (or ``raise SystemExit(main())``) in the ``__main__`` block becomes
    ``main()``: a trial must return to the worker, not end it."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return stmt
    small = stmt.body[0]
    call = None
    if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
        if dotted(small.value.func) in ("sys.exit", "exit", "quit"):
            call = small.value
    elif isinstance(small, cst.Raise) and isinstance(small.exc, cst.Call):
        if dotted(small.exc.func) == "SystemExit":
            call = small.exc
    if call is None:
        return stmt
    if not call.args:
        return stmt.with_changes(body=[cst.Pass()])
    return stmt.with_changes(body=[cst.Expr(call.args[0].value)])


def _is_constant(stmt: Any) -> bool:
    """``NAME = <literal>`` (or several): no call, no name read on the right."""
    return isinstance(stmt, cst.SimpleStatementLine) and all(
        isinstance(s, cst.Assign)
        and all(isinstance(t.target, cst.Name) for t in s.targets)
        and not _calls(s.value)
        and not _names_read(s.value)
        for s in stmt.body
    )


def _is_docstring(stmt: Any) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


class _Unindent(cst.CSTTransformer):
    """Blank lines carry no indentation (a moved statement's would gain trailing spaces)."""

    def leave_EmptyLine(self, original: cst.EmptyLine, updated: cst.EmptyLine) -> cst.EmptyLine:
        return updated.with_changes(indent=False) if updated.comment is None else updated


def _strip_leading_lines(stmt: Any, first: bool) -> Any:
    """Blank lines between statements are kept inside the function, except before the first."""
    stmt = stmt.visit(_Unindent())
    if first and hasattr(stmt, "leading_lines"):
        lines = [ln for ln in stmt.leading_lines if ln.comment is not None]
        return stmt.with_changes(leading_lines=lines)
    return stmt


_LOADERS = {
    "read_csv",
    "read_parquet",
    "read_json",
    "read_excel",
    "read_table",
    "load",
    "loadtxt",
    "genfromtxt",
    "load_svmlight_file",
    "open",
    "fromfile",
}


def data_literals(detection: Detection) -> list[Any]:
    """String literals passed first to a file reader (``pd.read_csv("train.csv")``, ``np.load``,
    ``open``): the script's data paths."""
    found: list[Any] = []

    class V(cst.CSTVisitor):
        def visit_Call(self, n: cst.Call) -> None:
            name = (dotted(n.func) or "").rsplit(".", 1)[-1]
            if name in _LOADERS and n.args and n.args[0].keyword is None:
                value = n.args[0].value
                if isinstance(value, cst.SimpleString):
                    found.append(value)

    detection.module.visit(V())
    return found


def _replace_data(code: str, detection: Detection, data: str) -> str:
    from optml.detect._errors import DetectError

    literals = data_literals(detection)
    paths = sorted({lit.evaluated_value for lit in literals})
    if len(paths) != 1:
        what = (
            "reads no file named by a string literal"
            if not paths
            else f"reads {len(paths)} files ({', '.join(map(repr, paths))})"
        )
        raise DetectError(
            f"{detection.path}: --data {data!r} needs a script that reads one data file, but it "
            f"{what}; edit the path in the script instead"
        )
    module = cst.parse_module(code)
    target = paths[0]

    class T(cst.CSTTransformer):
        def leave_SimpleString(self, original: cst.SimpleString, updated: cst.SimpleString) -> Any:
            if original.evaluated_value == target:
                return cst.SimpleString(repr(data))
            return updated

    return module.visit(T()).code
