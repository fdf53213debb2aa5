"""The `optml` command: run, resume, list, show and export studies."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from optml.errors import OptMLError

app = typer.Typer(
    help="OptML: tune hyperparameters in parallel and keep every trial in a database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StorageOpt = typer.Option(
    None,
    "--storage",
    "-s",
    help="Database URL: sqlite:///optml.db (default), postgresql://..., memory://",
    show_default=False,
)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (no traceback for a mistake the user can fix)."""
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def _storage_url(url: str | None, must_exist: bool = False) -> str:
    """The storage URL; for reading commands, a SQLite file that is not there is an error
    (rather than a new empty database left behind)."""
    from optml.storage import DEFAULT_STORAGE_URL

    url = url or DEFAULT_STORAGE_URL
    if must_exist and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            _fail(f"no OptML database at {path}; give the one your studies are in with --storage")
    return url


def _load(name: str, storage: str | None) -> Any:
    from optml.study import load_study

    return load_study(name, storage=_storage_url(storage, must_exist=True))


@app.command()
def run(
    spec_file: Path = typer.Argument(..., help="The study spec (YAML).", show_default=False),
    storage: str | None = StorageOpt,
    workers: int | None = typer.Option(
        None,
        "--workers",
        "-w",
        min=1,
        help="Parallel trials (default: the spec's, else one per CPU).",
    ),
    name: str | None = typer.Option(
        None, "--name", "-n", help="Study name (default: the spec's name)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Run the study described by SPEC_FILE; exits 0 when it finishes.

    Running the same spec again continues the study where it stopped.
    """
    from optml.spec import load_spec, study_from_spec

    spec = load_spec(spec_file)
    try:
        study = study_from_spec(spec, storage=storage, name=name)
    except OptMLError as exc:
        if str(exc).startswith(("space", "algorithm", "constraints")):
            raise type(exc)(f"{spec_file}: {exc}") from None
        raise
    _optimize(study, spec, workers=workers, quiet=quiet)


@app.command()
def resume(
    name: str = typer.Argument(..., help="The study to continue.", show_default=False),
    storage: str | None = StorageOpt,
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Parallel trials."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
) -> None:
    """Finish a study that was interrupted (Ctrl-C, a crash, a kill), without re-running finished trials."""
    from optml.spec import parse_spec

    study = _load(name, storage)
    if not study.spec:
        _fail(
            f"study {name!r} was not created from a spec, so there is no objective to resume it with; "
            "continue it from Python with load_study(...).optimize(...)"
        )
    spec = parse_spec(study.spec, source=f"stored spec of {name!r}")
    _optimize(study, spec, workers=workers, quiet=quiet)


def _optimize(study: Any, spec: Any, workers: int | None, quiet: bool) -> None:
    from optml.spec import build_objective
    from optml.trial import FINISHED_STATES, TrialState

    console = _console()
    finished = len(study.get_trials(FINISHED_STATES))
    n_trials = None
    if spec.budget.trials is not None:
        n_trials = max(0, spec.budget.trials - finished)
    if not quiet:
        console.print(
            f"Study [bold]{study.name}[/] · {study.sampler.describe()} · "
            f"{spec.execution.backend} × {workers or spec.execution.workers or 'CPU count'} · "
            f"storage {study.storage.url}"
        )
        if finished:
            console.print(f"{finished} trial(s) already finished: they are kept, not run again.")
    try:
        study.optimize(
            build_objective(spec),
            n_trials=n_trials,
            timeout=spec.budget.timeout,
            workers=workers or spec.execution.workers,
            executor=spec.execution.backend,
            trial_timeout=spec.execution.trial_timeout,
            retries=spec.execution.retries,
            target=spec.budget.target,
            data=spec.data,
            show_progress=not quiet,
        )
    except KeyboardInterrupt as exc:
        from optml.errors import Terminated

        waiting = len(study.get_trials([TrialState.WAITING]))
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        _console(stderr=True).print(
            f"\n[yellow]{what}:[/] {waiting} trial(s) are queued again; "
            f"continue with: optml resume {study.name}"
            + (f" --storage {study.storage.url}" if study.storage.url else "")
        )
        # The shell's convention: 128 + the signal's number.
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    if not quiet:
        _print_trials(study, console)
        _print_run_stats(study, console)


def _print_run_stats(study: Any, console: Any) -> None:
    stats = study.last_run
    if stats is None or not stats.trials:
        return
    if stats.busy_s < 1.0:  # trials too short for a speedup to mean anything
        console.print(
            f"{stats.trials} trial(s) in {stats.wall_s:.2f} s on {stats.workers} worker(s)"
        )
        return
    console.print(
        f"{stats.trials} trial(s) in {stats.wall_s:.1f} s on {stats.workers} worker(s); one after "
        f"another they would take {stats.busy_s:.1f} s: speedup [bold]{stats.speedup:.2f}x[/], "
        f"parallel efficiency {stats.efficiency:.2f}"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _print_trials(study: Any, console: Any, limit: int | None = None) -> None:
    from rich.table import Table

    trials = study.trials
    best = study._best()  # the study's own notion of best (constraints included)
    names = study.space.names
    extra_metrics: list[str] = []
    for t in trials:
        extra_metrics += [m for m in t.metrics if m != study.metric.name and m not in extra_metrics]
    goal = "minimising" if study.metric.direction == "minimize" else "maximising"
    table = Table(
        title=f"{study.name}: {len(trials)} trial(s), {goal} {study.metric.name}",
        title_justify="left",
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True, min_width=8)
    for n in names:
        table.add_column(n, justify="right", no_wrap=True, min_width=min(len(n), 14))
    value_header = study.metric.name
    table.add_column(
        value_header, justify="right", no_wrap=True, min_width=min(len(value_header), 16)
    )
    # Extra metrics only as far as the terminal has room for them.
    used = 24 + sum(min(len(n), 14) + 3 for n in names) + min(len(value_header), 16) + 3 + 11 + 8
    extras = extra_metrics[: max(0, min(4, (console.width - used) // 14))]
    for m in extras:
        table.add_column(m, justify="right", no_wrap=True)
    table.add_column("secs", justify="right", no_wrap=True)
    table.add_column("note", min_width=6, no_wrap=True, overflow="ellipsis")
    shown = trials if limit is None else trials[-limit:]
    colours = {"COMPLETE": "green", "FAILED": "red", "TIMEOUT": "magenta", "PRUNED": "yellow"}
    for t in shown:
        is_best = best is not None and t.number == best.number
        note = "★ best" if is_best else ((t.error or "").strip().splitlines() or [""])[-1][:60]
        table.add_row(
            str(t.number),
            f"[{colours.get(t.state.value, 'white')}]{t.state.value}[/]",
            *[_fmt(t.params.get(n)) for n in names],
            _fmt(t.value),
            *[_fmt(t.metrics.get(m)) for m in extras],
            _fmt(round(t.duration_s, 2) if t.duration_s is not None else None),
            note,
            style="bold" if is_best else None,
        )
    console.print(table)
    if best is not None:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        console.print(
            f"Best: trial {best.number}: {study.metric.name} = {_fmt(best.value)} with {params}"
        )
    else:
        console.print("No trial has completed yet.")


@app.command()
def studies(storage: str | None = StorageOpt) -> None:
    """List the studies in the database with their state, trial counts and best value."""
    from rich.table import Table

    from optml.storage import open_storage

    store = open_storage(_storage_url(storage, must_exist=True))
    rows = store.list_studies()
    console = _console()
    if not rows:
        console.print(f"No studies in {store.url}.")
        return
    table = Table(title=f"Studies in {store.url}", title_justify="left")
    for col in ("name", "state", "trials", "complete", "failed", "metric", "best", "created"):
        table.add_column(
            col, justify="right" if col in ("trials", "complete", "failed", "best") else "left"
        )
    for s in rows:
        failed = s.counts.get("FAILED", 0) + s.counts.get("TIMEOUT", 0)
        table.add_row(
            s.name,
            s.state,
            str(s.n_trials),
            str(s.counts.get("COMPLETE", 0)),
            str(failed),
            f"{s.metric.name} ({s.metric.direction[:3]})",
            _fmt(s.best_value),
            s.created_at.strftime("%Y-%m-%d %H:%M") if s.created_at else "-",
        )
    console.print(table)


@app.command()
def show(
    name: str = typer.Argument(..., help="The study to show.", show_default=False),
    storage: str | None = StorageOpt,
    limit: int | None = typer.Option(None, "--limit", help="Show only the last N trials."),
) -> None:
    """Show a study's trials as a table, with the best one marked."""
    study = _load(name, storage)
    console = _console()
    counts = study.storage.count_trials(study.id)
    console.print(
        f"Study [bold]{study.name}[/] ({study.state}) · {study.sampler.describe()} · "
        + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
    )
    _print_trials(study, console, limit=limit)


@app.command()
def export(
    name: str = typer.Argument(..., help="The study to export.", show_default=False),
    fmt: str = typer.Option("json", "--format", "-f", help="csv or json."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of stdout."
    ),
    storage: str | None = StorageOpt,
) -> None:
    """Export a study's trials as CSV or JSON (a list of trials: number, state, params, value, metrics, duration_s, error)."""
    if fmt not in ("csv", "json"):
        _fail(f"--format must be csv or json, not {fmt!r}")
    text = _load(name, storage).export(fmt)
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        output.write_text(text)
        _console(stderr=True).print(f"wrote {output}")


@app.command()
def delete(
    name: str = typer.Argument(..., help="The study to delete.", show_default=False),
    storage: str | None = StorageOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a study and all its trials."""
    from optml.storage import open_storage

    store = open_storage(_storage_url(storage, must_exist=True))
    store.load_study(name)
    if not yes and not typer.confirm(f"Delete study {name!r} and all its trials?"):
        raise typer.Exit(1)
    store.delete_study(name)
    _console().print(f"deleted {name}")


from optml.detect import _cli as detect_cli  # noqa: E402 - typer and libcst-free

app.command(name="detect")(detect_cli.detect)
app.command(name="tune")(detect_cli.tune)


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn OptML errors into one-line messages instead of tracebacks."""
    try:
        app(args=argv, standalone_mode=True)
    except OptMLError as exc:
        _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    main()
