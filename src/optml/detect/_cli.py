"""The `optml detect` and `optml tune` commands (registered by optml.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

_MetadataOpt = typer.Option(
    None,
    "--metadata",
    "-m",
    help="A CSV of extra metadata rows (the shipped table's columns); its rows replace the same class and parameter.",
    show_default=False,
)


def _tuned_path(script: Path) -> Path:
    return script.with_name(f"{script.stem}_optml.py")


def _detection(script: Path, metadata: Path | None) -> Any:
    from optml.detect import detect

    return detect(script, metadata=metadata).require()


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _range(dist: dict[str, list[Any]]) -> str:
    ((kind, values),) = dist.items()
    if kind == "choice":
        return "choice " + ", ".join(_fmt(v) for v in values)
    return f"{kind} [{_fmt(values[0])}, {_fmt(values[1])}]"


def _print_table(detection: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"{len(detection.hyperparameters)} hyperparameter(s) in {detection.path}")
    for column in ("parameter", "where", "current", "proposed", "why"):
        table.add_column(column, overflow="fold")
    for hp in detection.hyperparameters:
        table.add_row(
            hp.name, f"{hp.line}:{hp.column}", _fmt(hp.value), _range(hp.distribution), hp.why
        )
    console.print(table)
    m = detection.metric
    how = "optml.report" if m.explicit else "rule"
    console.print(f"metric: {m.name} ({m.direction}), line {m.line}, found by {how}")


def spec_dict(
    detection: Any,
    tuned: Path,
    name: str,
    trials: int,
    algorithm: str = "auto",
    data: str | None = None,
    workers: int | None = None,
    trial_timeout: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """The study spec that tunes the rewritten script ``tuned``."""
    m = detection.metric
    spec: dict[str, Any] = {
        "name": name,
        "objective": {"function": f"{tuned}:optml_objective"},
        "metric": {"name": m.name, "direction": m.direction},
        "space": detection.space,
        "algorithm": algorithm,
        "budget": {"trials": trials},
    }
    execution: dict[str, Any] = {}
    if workers is not None:
        execution["workers"] = workers
    if trial_timeout is not None:
        execution["trial_timeout"] = trial_timeout
    if execution:
        spec["execution"] = execution
    if data is not None:
        spec["data"] = data
    if seed is not None:
        spec["seed"] = seed
    return spec


def detect(
    script: Path = typer.Argument(
        ..., help="The training script (not modified).", show_default=False
    ),
    spec: Path | None = typer.Option(
        None,
        "--spec",
        help="Write a study spec with the proposed space (run it with optml run).",
        show_default=False,
    ),
    write: Path | None = typer.Option(
        None, "--write", help="Write the rewritten script there, for review.", show_default=False
    ),
    metadata: Path | None = _MetadataOpt,
    trials: int = typer.Option(20, "--trials", "-t", min=1, help="The spec's trial budget."),
) -> None:
    """List the hyperparameters SCRIPT sets as literals, where, and the range proposed for each.

    Keras, PyTorch and scikit-learn scripts; see `optml tune` to tune them in one go.
    """
    from optml.detect import rewrite

    detection = _detection(script, metadata)
    _print_table(detection)
    if write is None and spec is None:
        return
    tuned = write if write is not None else spec.with_name(f"{script.stem}_optml.py")  # type: ignore[union-attr]
    tuned.write_text(rewrite(detection))
    typer.echo(f"wrote {tuned}")
    if spec is not None:
        import yaml

        function = Path(tuned).resolve()
        try:
            function = function.relative_to(spec.resolve().parent)
        except ValueError:
            pass
        data = spec_dict(detection, function, script.stem, trials)
        spec.write_text(yaml.safe_dump(data, sort_keys=False))
        typer.echo(f"wrote {spec}: run it with optml run {spec}")


def tune(
    script: Path = typer.Argument(
        ..., help="The training script (not modified).", show_default=False
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        "-d",
        help="Use this data file in place of the one the script reads.",
        show_default=False,
    ),
    trials: int = typer.Option(20, "--trials", "-t", min=1, help="How many trials."),
    algorithm: str = typer.Option(
        "auto", "--algorithm", "-a", help="The sampler (auto, tpe, gp, random, ...)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=1, help="Parallel trials (default: one per CPU)."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        "-s",
        help="Database URL (default sqlite:///optml.db).",
        show_default=False,
    ),
    name: str | None = typer.Option(
        None, "--name", "-n", help="Study name (default: the script's name)."
    ),
    trial_timeout: str | None = typer.Option(
        None, "--trial-timeout", help="Stop a trial after this long (30s, 10m)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="The sampler's seed (reproducible runs)."),
    metadata: Path | None = _MetadataOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Detect SCRIPT's hyperparameters, rewrite it to take them (SCRIPT_optml.py beside it;
    SCRIPT itself is not modified) and run a study on them.

    Running it again continues the same study.
    """
    from optml.cli import _optimize
    from optml.detect import rewrite
    from optml.service import executor_for
    from optml.spec import parse_spec, study_from_spec

    detection = _detection(script, metadata)
    data_path = str(data.resolve()) if data is not None else None
    tuned = _tuned_path(script)
    tuned.write_text(rewrite(detection, data=data_path))
    if not quiet:
        _print_table(detection)
        typer.echo(f"rewritten script: {tuned}")
    raw = spec_dict(
        detection,
        tuned.resolve(),
        name or script.stem,
        trials,
        algorithm=algorithm,
        data=data_path,
        trial_timeout=trial_timeout,
        seed=seed,
    )
    spec = parse_spec(raw, source=f"the spec for {script}", base_dir=script.resolve().parent)
    executor = executor_for(spec, workers)
    study = study_from_spec(spec, storage=storage)
    _optimize(study, spec, workers=workers, quiet=quiet, executor=executor)
