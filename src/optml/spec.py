"""The study spec: one pydantic schema for YAML files, REST bodies and keyword arguments."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from optml.errors import OptMLError, SpecError

if TYPE_CHECKING:
    from optml.storage import Storage

# A spec file larger than this is refused unread (a spec is a page of YAML; grids go in files).
MAX_SPEC_BYTES = 4 * 1024 * 1024
# How many nodes YAML aliases may add to a spec by repeating what an anchor names: enough for
# shared defaults, far too few for an alias bomb (a few hundred bytes that expand to billions).
MAX_ALIAS_NODES = 10_000

_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s?)?\s*$"
)


def parse_duration(value: Any) -> float | None:
    """Seconds from a number or a string such as ``"90"``, ``"30s"``, ``"10m"``, ``"1h30m"``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s, 10m or 1h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise ValueError(f"expected a duration such as 30s, 10m or 1h, got {value!r}")
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ObjectiveSpec(_Model):
    """What runs a trial: exactly one of ``function``, ``module`` or ``command``."""

    function: str | None = None
    module: str | None = None
    command: str | None = None
    # Run the command line in /bin/sh (pipes, &&); by default it runs without a shell.
    shell: bool = False
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> ObjectiveSpec:
        given = [k for k in ("function", "module", "command") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of function ('pkg.module:fn' or 'file.py:fn'), module (a model "
                f"module in the seed protocol) or command (a command-line template); got {given or 'none'}"
            )
        if self.shell and not self.command:
            raise ValueError("shell: true applies to a command objective only")
        if self.command:
            from optml.objectives._command import parse_command

            try:
                parse_command(self.command, self.shell)
            except OptMLError as exc:
                raise ValueError(str(exc).removeprefix("objective.")) from None
        return self


class MetricSpec(_Model):
    name: str = "value"
    direction: Literal["minimize", "maximize"] = "minimize"


class BudgetSpec(_Model):
    trials: int | None = Field(default=None, ge=1)
    timeout: float | None = None
    target: float | None = None

    _duration = field_validator("timeout", mode="before")(lambda cls, v: parse_duration(v))


class ResourcesSpec(_Model):
    """What one trial needs, on every backend that places trials: ``cpus`` and ``memory`` (Dask
    and Ray worker resources; a Kubernetes container's requests and limits, where ``cpus`` may
    be a quantity such as ``500m``) and ``gpus`` (whole GPUs each trial gets to itself: local,
    Dask, Ray; ``nvidia.com/gpu`` on Kubernetes). ``cpu`` and ``gpu`` are accepted for them,
    as Kubernetes writes them."""

    cpus: str | int | float | None = Field(
        default=None, validation_alias=AliasChoices("cpus", "cpu")
    )
    memory: str | float | None = None
    gpus: float | None = Field(default=None, gt=0, validation_alias=AliasChoices("gpus", "gpu"))

    @field_validator("cpus")
    @classmethod
    def _cpu_quantity(cls, value: Any) -> Any:
        if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
            if value is not None and not value > 0:
                raise ValueError(f"cpus must be more than 0, got {value!r}")
            return value
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?m?", value.strip()):
            return value.strip()
        raise ValueError(
            f"cpus must be a number of CPUs (2, 0.5) or a Kubernetes quantity (500m), got {value!r}"
        )

    def cpu_count(self) -> float | None:
        """``cpus`` as a number (``500m`` is 0.5), for the backends that count CPUs."""
        value = self.cpus
        if isinstance(value, str):
            return float(value[:-1]) / 1000 if value.endswith("m") else float(value)
        return value


class ExecutionSpec(_Model):
    backend: str = "local"
    workers: int | None = Field(default=None, ge=1)
    trial_timeout: float | None = None
    retries: int = Field(default=0, ge=0)
    # Allow more local workers than LocalExecutor starts unasked (checked when it is built).
    oversubscribe: bool = False
    # dask, ray: the scheduler or cluster (none: a local one started with the study).
    address: str | None = None
    # What one trial needs (Dask worker resources CPU, MEMORY and GPU; Ray's num_cpus, memory
    # and num_gpus; a container's requests and limits); gpus (local, dask, ray): GPUs each trial
    # gets to itself (see optml.executors._gpus; Ray assigns its own).
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    # kubernetes: one Job per trial (see optml.executors.KubernetesExecutor).
    image: str | None = None
    namespace: str | None = None
    service_account: str | None = None
    env: dict[str, str] | None = None
    # Liveness (see Study.optimize): how often running trials heartbeat, how long a heartbeat
    # may lapse before a trial is STALE, and what becomes of a STALE trial.
    heartbeat: float = Field(default=5.0, gt=0)
    grace: float = Field(default=30.0, gt=0)
    stale: Literal["requeue", "fail"] = "requeue"
    # Propose the next wave while the current one runs (see Study.optimize): off by default.
    propose_ahead: bool = False

    _duration = field_validator("trial_timeout", "heartbeat", "grace", mode="before")(
        lambda cls, v: parse_duration(v)
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_resources(cls, data: Any) -> Any:
        # ``cpus``, ``memory`` and ``gpus`` written directly under execution (as specs did
        # before the resources block, and as stored studies still hold them) mean the same.
        if not isinstance(data, dict):
            return data
        flat = {k: data[k] for k in ("cpus", "memory", "gpus") if k in data}
        if not flat:
            return data
        nested = data.get("resources") or {}
        if not isinstance(nested, dict):
            return data
        both = [k for k in flat if k in nested or k.rstrip("s") in nested]
        if both:
            raise ValueError(
                f"{both[0]} is given both under execution and under execution.resources; "
                "keep the one under resources"
            )
        rest = {k: v for k, v in data.items() if k not in flat}
        return {**rest, "resources": {**nested, **flat}}

    @model_validator(mode="after")
    def _grace_past_heartbeat(self) -> ExecutionSpec:
        if self.grace <= self.heartbeat:
            raise ValueError(
                f"grace ({self.grace:g} s) must be longer than heartbeat ({self.heartbeat:g} s)"
            )
        return self

    @model_validator(mode="after")
    def _kubernetes_fields(self) -> ExecutionSpec:
        given = [
            f
            for f in ("image", "namespace", "service_account", "env")
            if getattr(self, f) is not None
        ]
        if self.backend == "kubernetes":
            if not self.image:
                raise ValueError(
                    "backend kubernetes needs image (the container image trials run in)"
                )
        elif given:
            raise ValueError(f"{given[0]} applies to backend kubernetes, not {self.backend!r}")
        return self

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from optml.executors import _BACKENDS

        if value not in _BACKENDS:
            raise ValueError(f"unknown backend {value!r}; choose one of {', '.join(_BACKENDS)}")
        return value


class GridFileSpec(_Model):
    path: str
    columns: list[str] | None = None


class StudySpec(_Model):
    """A whole study. Relative paths are relative to the spec file."""

    name: str = Field(min_length=1)
    objective: ObjectiveSpec
    data: str | None = None
    metric: MetricSpec | list[MetricSpec] | str = Field(default_factory=MetricSpec)
    space: dict[str, Any] | list[dict[str, Any]] | None = None
    grid_file: GridFileSpec | str | None = None
    algorithm: str | dict[str, Any] = "auto"
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    storage: str | None = None
    seed: int | None = None
    constraints: list[str | dict[str, Any]] = Field(default_factory=list)

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: int | None) -> int | None:
        from optml.study import check_seed

        if value is None:
            return None
        try:
            return check_seed(value)
        except OptMLError as exc:  # its message names the field and value; pydantic does too
            raise ValueError(str(exc).removeprefix("seed ").partition(", got")[0]) from None

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        from optml.storage._base import check_study_name

        try:
            return check_study_name(value)
        except OptMLError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _metrics_once(self) -> StudySpec:
        names = [m.name for m in self.metrics]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"metric {', '.join(map(repr, twice))} is named more than once")
        return self

    @model_validator(mode="after")
    def _space_or_file(self) -> StudySpec:
        if (self.space is None) == (self.grid_file is None):
            raise ValueError(
                "give either space (the parameters to search) or grid_file, not both or neither"
            )
        return self

    @property
    def metrics(self) -> list[MetricSpec]:
        if isinstance(self.metric, str):
            return [MetricSpec(name=self.metric)]
        if isinstance(self.metric, MetricSpec):
            return [self.metric]
        return list(self.metric)


def spec_error(exc: ValidationError, source: str) -> SpecError:
    """One line naming every field that is wrong and what was expected."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "union[")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        given = err.get("input")
        shown = (
            f" (got {given!r})"
            if err["type"] not in ("missing", "extra_forbidden") and not isinstance(given, dict)
            else ""
        )
        parts.append(f"{loc or 'spec'}: {msg}{shown}")
    # The same field can fail each member of a union: keep each message once.
    unique = list(dict.fromkeys(parts))
    return SpecError(f"{source}: " + "; ".join(unique))


def parse_spec(data: Any, source: str = "spec", base_dir: str | Path | None = None) -> StudySpec:
    """Validate a spec dict; resolve relative paths against ``base_dir``."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: expected a mapping of fields (name, objective, space, ...), got {type(data).__name__}"
        )
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc, source) from None
    if base_dir is not None:
        spec = _resolve_paths(spec, Path(base_dir))
    return spec


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a YAML (or JSON) spec file.

    The file must be UTF-8 text of at most MAX_SPEC_BYTES. YAML anchors and aliases may be
    used (for shared defaults), but together the aliases may add at most MAX_ALIAS_NODES
    nodes to the document; a key given twice in one mapping is an error.
    """
    import yaml

    from optml.space._parse import read_text

    path = Path(path)
    text = read_text(path, "spec", SpecError, max_bytes=MAX_SPEC_BYTES)
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply") from None
    return parse_spec(data, source=str(path), base_dir=path.resolve().parent)


def _yaml_loader() -> Any:
    """PyYAML's safe loader, but reading ``1e-5`` as a number (YAML 1.1 wants ``1.0e-5``),
    refusing a key given twice in one mapping, and refusing aliases that expand the document
    by more than MAX_ALIAS_NODES nodes."""
    import yaml
    from yaml.composer import ComposerError

    class _Loader(yaml.SafeLoader):
        def compose_mapping_node(self, anchor: Any) -> Any:
            node = super().compose_mapping_node(anchor)
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                key = self.construct_object(key_node)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: the constructor reports it
                    continue
                if first is not key_node.start_mark:
                    raise ComposerError(
                        "while reading a mapping",
                        node.start_mark,
                        f"duplicate key {key!r} (first given on line {first.line + 1}); give "
                        "each key once",
                        key_node.start_mark,
                    )
            return node

        def compose_document(self) -> Any:
            node = super().compose_document()
            if node is not None:
                _check_aliases(node)
            return node

    _Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+][0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return _Loader


def _check_aliases(root: Any) -> None:
    """Refuse a YAML node graph whose aliases repeat more than MAX_ALIAS_NODES nodes, or refer
    to a node from inside itself. Each node's expanded size is computed once."""
    from yaml.composer import ComposerError

    sizes: dict[int, int] = {}
    building: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in building:
            raise ComposerError(
                None, None, "an alias refers to a node from inside itself", node.start_mark
            )
        building.add(key)
        total = 1
        if isinstance(node.value, list):
            for item in node.value:
                for child in item if isinstance(item, tuple) else (item,):
                    total += size(child)
        building.discard(key)
        sizes[key] = total
        return total

    added = size(root) - len(sizes)
    if added > MAX_ALIAS_NODES:
        raise ComposerError(
            None,
            None,
            f"aliases repeat {added} nodes, more than the {MAX_ALIAS_NODES} a spec may have "
            "(an alias bomb?); write the values out, or put large grids in a grid_file",
            root.start_mark,
        )


def _is_path(value: str) -> bool:
    return value.endswith(".py") or "/" in value or value.startswith(".")


def _resolve(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(spec: StudySpec, base: Path) -> StudySpec:
    obj = spec.objective.model_copy()
    if obj.module and _is_path(obj.module):
        obj.module = _resolve(base, obj.module)
    if obj.function:
        target, sep, attr = obj.function.rpartition(":")
        if sep and _is_path(target):
            obj.function = f"{_resolve(base, target)}:{attr}"
    if obj.command and not obj.cwd:
        obj.cwd = str(base)
    elif obj.cwd:
        obj.cwd = _resolve(base, obj.cwd)
    changes: dict[str, Any] = {"objective": obj}
    if spec.data:
        changes["data"] = _resolve(base, spec.data)
    if spec.grid_file is not None:
        grid = (
            spec.grid_file
            if isinstance(spec.grid_file, GridFileSpec)
            else GridFileSpec(path=spec.grid_file)
        )
        changes["grid_file"] = GridFileSpec(path=_resolve(base, grid.path), columns=grid.columns)
    if (
        spec.storage
        and spec.storage.startswith("sqlite:///")
        and not spec.storage.startswith("sqlite:////")
    ):
        changes["storage"] = "sqlite:///" + _resolve(base, spec.storage.removeprefix("sqlite:///"))
    return spec.model_copy(update=changes)


def build_objective(spec: StudySpec) -> Any:
    """The Objective a spec describes."""
    from optml.objectives import CommandObjective, FunctionObjective, ModuleObjective

    o = spec.objective
    if o.function:
        return FunctionObjective(o.function, data=spec.data)
    if o.module:
        return ModuleObjective(o.module, data=spec.data)
    assert o.command is not None
    return CommandObjective(o.command, data=spec.data, cwd=o.cwd, env=o.env, shell=o.shell)


def study_from_spec(
    spec: StudySpec, storage: str | Storage | None = None, name: str | None = None
) -> Any:
    """Create the study a spec describes (or return the existing one of that name if its spec
    is the same).

    Everything that can be checked is checked before anything is written: the name, the
    objective (its file, module or working directory), the space and grid file, the sampler
    and the constraints (in ``create_study``). A spec that fails leaves no study behind, so the
    corrected spec runs under the same name.
    """
    from optml import _trust
    from optml.errors import DuplicateStudyError, StudyNotFoundError
    from optml.space import parse_space, read_grid_file
    from optml.storage import DEFAULT_STORAGE_URL, open_storage
    from optml.storage._base import check_study_name
    from optml.study import Study, create_study

    name = check_study_name(name or spec.name)
    build_objective(spec).check()
    algorithm: Any = spec.algorithm
    if spec.grid_file is not None:
        grid = (
            spec.grid_file
            if isinstance(spec.grid_file, GridFileSpec)
            else GridFileSpec(path=spec.grid_file)
        )
        space, rows = read_grid_file(grid.path, grid.columns)
        if algorithm not in ("grid", "auto"):
            raise SpecError(
                f"{spec.name}: a grid_file runs its rows as a grid; algorithm must be grid, not {algorithm!r}"
            )
        algorithm = {"name": "grid", "points": rows}
    elif isinstance(spec.space, list):
        from optml.samplers._meta import meta_space

        space = meta_space(spec.space)
    else:
        space = parse_space(spec.space or {})
    store = open_storage(storage or spec.storage or DEFAULT_STORAGE_URL)
    stored = spec.model_dump(mode="json")
    try:
        record = store.load_study(name)
    except StudyNotFoundError:
        record = None
    if record is not None:
        ignored = ("name", "storage", "execution", _trust.SIGNATURE)
        same = {k: v for k, v in _normalized(record.spec).items() if k not in ignored} == {
            k: v for k, v in stored.items() if k not in ignored
        }
        if not same:
            raise SpecError(
                f"a study named {name!r} already exists in {store.url} with a different spec; "
                f"choose another name (--name) or resume it (optml resume {name})"
            )
        return Study(store, record)

    # resume runs the stored objective only if this user's signature of it verifies.
    stored[_trust.SIGNATURE] = _trust.sign(stored, name)
    try:
        return create_study(
            name,
            space=space,
            metric=[{"name": m.name, "direction": m.direction} for m in spec.metrics],
            sampler=algorithm,
            storage=store,
            seed=spec.seed,
            spec=stored,
            budget=spec.budget.trials,
            constraints=spec.constraints,
        )
    except DuplicateStudyError:
        # Another controller started on the same spec created it first: join that study.
        return study_from_spec(spec, storage=store, name=name)


def _normalized(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored spec with the defaults of fields added since it was stored filled in."""
    from optml import _trust

    try:
        spec = StudySpec.model_validate({k: v for k, v in stored.items() if k != _trust.SIGNATURE})
    except ValidationError:
        return stored
    return spec.model_dump(mode="json")
