"""The `optml` command: run, resume, stop, list, show and export studies; serve the dashboard."""

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
    help="Database URL: sqlite:///optml.db (default; relative to this directory), "
    "sqlite:////abs/path.db, postgresql://USER:PASSWORD@HOST/DB, or memory:// (throwaway).",
    show_default=False,
)


OversubscribeOpt = typer.Option(
    False,
    "--oversubscribe",
    help="Allow more local workers than 4 per CPU (refused otherwise).",
)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _user(value: Any) -> str:
    """User-supplied text (a study name, a value, an error, a path, a URL) made safe to print
    with rich: its brackets are never read as markup."""
    from rich.markup import escape

    return escape(str(value))


def _fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (no traceback for a mistake the user can fix)."""
    one_line = " ".join(line.strip() for line in message.splitlines() if line.strip())
    _console(stderr=True).print(f"[bold red]error:[/] {_user(one_line)}", soft_wrap=True)
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


def _service(storage: str | None) -> Any:
    """The service layer over the storage of a command that only reads or changes studies."""
    from optml.service import StudyService

    return StudyService(_storage_url(storage, must_exist=True))


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
    oversubscribe: bool = OversubscribeOpt,
    backend: str | None = typer.Option(
        None,
        "--backend",
        "-b",
        help="Where trials run: local, serial, dask or ray (default: the spec's execution.backend).",
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Dask scheduler (tcp://host:8786) or Ray cluster (ray://host:10001) (default: the spec's; none: a local cluster).",
    ),
) -> None:
    """Run the study described by SPEC_FILE; exits 0 when it finishes.

    Running the same spec again continues the study where it stopped.

    The spec is checked whole before anything is written.

    Exit codes: 1 when trials ran but none completed; 2 for bad input; 130/143 on Ctrl-C/SIGTERM.
    """
    from optml.service import executor_for
    from optml.spec import load_spec, study_from_spec

    spec = load_spec(spec_file)
    if backend or address:
        execution = {"backend": backend or spec.execution.backend, "address": address}
        if not address and execution["backend"] == spec.execution.backend:
            execution.pop("address")
        spec = spec.model_copy(update={"execution": spec.execution.model_copy(update=execution)})
    executor = executor_for(spec, workers, oversubscribe)  # refused before any study is written
    try:
        study = study_from_spec(spec, storage=storage, name=name)
    except OptMLError as exc:
        if str(exc).startswith(("space", "algorithm", "constraints")):
            raise type(exc)(f"{spec_file}: {exc}") from None
        raise
    _optimize(study, spec, workers=workers, quiet=quiet, executor=executor)


@app.command()
def resume(
    name: str = typer.Argument(..., help="The study to continue.", show_default=False),
    storage: str | None = StorageOpt,
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Parallel trials."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or table."),
    oversubscribe: bool = OversubscribeOpt,
    trust: bool = typer.Option(
        False,
        "--trust",
        help="Run the stored objective even if it was not signed by you (it is shown first).",
    ),
) -> None:
    """Finish a study that was interrupted (Ctrl-C, a crash, a kill), without re-running finished trials."""
    from optml.service import executor_for, stored_spec

    study = _load(name, storage)
    spec = stored_spec(study, trust=trust)
    executor = executor_for(spec, workers, oversubscribe)
    _optimize(study, spec, workers=workers, quiet=quiet, executor=executor)


def _optimize(study: Any, spec: Any, workers: int | None, quiet: bool, executor: Any) -> None:
    """Run ``study`` here (:func:`optml.service.run_here`) with a progress bar, then its table;
    exit codes for Ctrl-C, SIGTERM and a run in which no trial completed."""
    from optml.service import run_here
    from optml.storage import safe_url
    from optml.trial import FINISHED_STATES, TrialState

    console = _console()
    counts = study.storage.count_trials(study.id)
    finished = sum(counts.get(s.value, 0) for s in FINISHED_STATES)
    complete_before = counts.get(TrialState.COMPLETE.value, 0)
    if not quiet:
        console.print(
            f"Study [bold]{_user(study.name)}[/] · {_user(study.sampler.describe())} · "
            f"{_user(spec.execution.backend)} × "
            f"{workers or spec.execution.workers or 'CPU count'} · "
            f"storage {_user(safe_url(study.storage.url))}"
        )
        if finished:
            console.print(f"{finished} trial(s) already finished: they are kept, not run again.")
    try:
        run_here(study, spec, executor, workers=workers, show_progress=not quiet)
    except KeyboardInterrupt as exc:
        from optml.errors import Terminated

        waiting = len(study.get_trials([TrialState.WAITING]))
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        _console(stderr=True).print(
            f"\n[yellow]{what}:[/] {waiting} trial(s) are queued again; "
            f"continue with: optml resume {_user(_shell_word(study.name))}"
            + (
                f" --storage {_user(_shell_word(safe_url(study.storage.url)))}"
                if study.storage.url
                else ""
            )
        )
        # The shell's convention: 128 + the signal's number.
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    if not quiet:
        _print_trials(study, console, limit=_default_limit(console))
        _print_run_stats(study, console)
    if study.last_run is not None and study.last_run.stop_reason == "stopped":
        _console(stderr=True).print(
            f"stopped on request; continue with: optml resume {_user(_shell_word(study.name))}"
        )
        return
    _fail_if_nothing_completed(study, complete_before)


def _fail_if_nothing_completed(study: Any, complete_before: int) -> None:
    """A run whose trials all failed is a failed run (exit 1), with the last error as the why."""
    from optml.trial import TrialState

    ran = study.last_run.trials if study.last_run is not None else 0
    if not ran or study.storage.count_trials(study.id).get("COMPLETE", 0) > complete_before:
        return
    failed = study.get_trials([TrialState.FAILED, TrialState.TIMEOUT, TrialState.PRUNED])
    last = max(
        failed, key=lambda t: (t.finished_at is not None, t.finished_at, t.number), default=None
    )
    why = ""
    if last is not None:
        error = _last_line(last.error) or "no error recorded"
        why = f"; the last, trial {last.number}, was {last.state.value}: {error}"
    _fail(
        f"no trial of study {study.name!r} completed in this run ({ran} finished{why}); "
        f"see optml show {_shell_word(study.name)}",
        code=1,
    )


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1].strip() if lines else ""


def _shell_word(text: str) -> str:
    """``text`` quoted for a shell command line we suggest, when it needs it."""
    import shlex

    return shlex.quote(text)


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
    if isinstance(value, str) and not value.isprintable():
        return repr(value)  # a newline or control character would break the table's rows
    return str(value)


# Trials `show` (and `run`'s closing table) print on a terminal unless told otherwise.
DEFAULT_SHOWN = 50
# Widest a parameter, metric or the seconds column may be; longer values end in an ellipsis.
_PARAM_WIDTH, _VALUE_WIDTH, _SECS_WIDTH, _NOTE_MIN = 14, 16, 8, 6


def _cell(trial: Any, kind: str, name: str) -> Any:
    return trial.params.get(name) if kind == "param" else trial.metrics.get(name)


def _default_limit(console: Any) -> int | None:
    return DEFAULT_SHOWN if console.is_terminal else None


def _print_trials(study: Any, console: Any, limit: int | None = None) -> None:
    """The trials table: the last ``limit`` trials (every one if None) and the best one.

    Columns are chosen to fit the console's width: the trial number, state, value and note
    always show; parameters and extra metrics only as far as there is room, the rest are named
    in a line below the table.
    """
    from rich.table import Table

    trials = study.trials
    best = study._best()  # the study's own notion of best (constraints included)
    shown = trials if limit is None else trials[len(trials) - limit :] if limit else []
    if best is not None and all(t.number != best.number for t in shown):
        shown = [best, *shown]
    metric = study.metric.name
    extra_metrics: list[str] = []
    for t in trials:
        extra_metrics += [m for m in t.metrics if m != metric and m not in extra_metrics]

    def width(header: str, cells: list[str], cap: int) -> int:
        return min(cap, max([len(header), *(len(c) for c in cells)]))

    number_w = max([1, *(len(str(t.number)) for t in shown)])
    value_w = width(metric, [_fmt(t.value) for t in shown], _VALUE_WIDTH)
    # Each column costs its text plus two of padding and one of border, the table one more.
    room = console.width - 1 - (number_w + 3) - (8 + 3) - (value_w + 3) - (_SECS_WIDTH + 3)
    room -= _NOTE_MIN + 3
    columns: list[tuple[str, str, int]] = []  # (kind, name, width)
    hidden: list[str] = []
    for kind, names in (("param", study.space.names), ("metric", extra_metrics)):
        for n in names:
            w = width(n, [_fmt(_cell(t, kind, n)) for t in shown], _PARAM_WIDTH)
            if w + 3 <= room and not hidden:
                columns.append((kind, n, w))
                room -= w + 3
            else:
                hidden.append(n)

    goal = "minimising" if study.metric.direction == "minimize" else "maximising"
    table = Table(
        title=f"{_user(study.name)}: {len(trials)} trial(s), {goal} {_user(metric)}",
        title_justify="left",
    )
    table.add_column("#", justify="right", no_wrap=True, min_width=number_w)
    table.add_column("state", no_wrap=True, min_width=8)
    for _, n, w in columns:
        table.add_column(_user(n), justify="right", no_wrap=True, max_width=w, overflow="ellipsis")
    table.add_column(
        _user(metric), justify="right", no_wrap=True, max_width=value_w, overflow="ellipsis"
    )
    table.add_column("secs", justify="right", no_wrap=True, max_width=_SECS_WIDTH)
    table.add_column(
        "note", min_width=_NOTE_MIN, max_width=_NOTE_MIN + room, no_wrap=True, overflow="ellipsis"
    )
    colours = {
        "COMPLETE": "green",
        "FAILED": "red",
        "TIMEOUT": "magenta",
        "PRUNED": "yellow",
        "STALE": "cyan",
    }
    for t in shown:
        is_best = best is not None and t.number == best.number
        note = "★ best" if is_best else _last_line(t.error)[:60]
        table.add_row(
            str(t.number),
            f"[{colours.get(t.state.value, 'white')}]{t.state.value}[/]",
            *[_user(_fmt(_cell(t, kind, n))) for kind, n, _ in columns],
            _user(_fmt(t.value)),
            _fmt(round(t.duration_s, 2) if t.duration_s is not None else None),
            _user(note),
            style="bold" if is_best else None,
        )
    console.print(table)
    if hidden:
        console.print(
            f"Not shown for want of width: {_user(', '.join(hidden))} "
            "(a wider terminal shows them; optml export has every column)"
        )
    left_out = len(trials) - len(shown)
    if best is not None:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        console.print(
            f"Best: trial {best.number}: {_user(metric)} = {_user(_fmt(best.value))} "
            f"with {_user(params)}"
        )
    else:
        console.print("No trial has completed yet.")
    if left_out:
        console.print(
            f"{left_out} earlier trial(s) not shown; optml show {_user(_shell_word(study.name))} "
            "--all shows every trial, --limit N the last N."
        )


@app.command()
def studies(storage: str | None = StorageOpt) -> None:
    """List the studies in the database with their state, trial counts and best value."""
    from rich.table import Table

    from optml.storage import safe_url

    service = _service(storage)
    store = service.storage
    rows = service.list_studies()
    console = _console()
    if not rows:
        console.print(f"No studies in {_user(safe_url(store.url))}.")
        return
    table = Table(title=f"Studies in {_user(safe_url(store.url))}", title_justify="left")
    for col in ("name", "state", "trials", "complete", "failed", "metric", "best", "created"):
        table.add_column(
            col, justify="right" if col in ("trials", "complete", "failed", "best") else "left"
        )
    for s in rows:
        failed = s.counts.get("FAILED", 0) + s.counts.get("TIMEOUT", 0)
        table.add_row(
            _user(_fmt(s.name)),
            _user(s.state),
            str(s.n_trials),
            str(s.counts.get("COMPLETE", 0)),
            str(failed),
            f"{_user(_fmt(s.metric.name))} ({s.metric.direction[:3]})",
            _fmt(s.best_value),
            s.created_at.strftime("%Y-%m-%d %H:%M") if s.created_at else "-",
        )
    console.print(table)


@app.command()
def show(
    name: str = typer.Argument(..., help="The study to show.", show_default=False),
    storage: str | None = StorageOpt,
    limit: int | None = typer.Option(
        None,
        "--limit",
        help=f"Show the last N trials (and the best). Default on a terminal: {DEFAULT_SHOWN}; "
        "when the output is piped or redirected: all.",
        show_default=False,
    ),
    show_all: bool = typer.Option(False, "--all", "-a", help="Show every trial."),
) -> None:
    """Show a study's trials as a table, with the best one marked.

    On a terminal: the last 50 trials and the best; --all shows every trial.
    """
    if limit is not None and limit < 0:
        _fail(f"--limit must be 0 or more (the number of trials to show), not {limit}")
    if limit is not None and show_all:
        _fail("give --limit N or --all, not both")
    study = _load(name, storage)
    console = _console()
    counts = study.storage.count_trials(study.id)
    console.print(
        f"Study [bold]{_user(study.name)}[/] ({_user(study.state)}) · "
        f"{_user(study.sampler.describe())} · "
        + ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
    )
    if not show_all and limit is None:
        limit = _default_limit(console)
    _print_trials(study, console, limit=None if show_all else limit)


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
    if output is not None and output.is_dir():
        _fail(
            f"--output {output} is a directory; give a file name such as {output / (name + '.' + fmt)}"
        )
    if output is not None and not output.parent.is_dir():
        _fail(f"--output {output}: the directory {output.parent} does not exist; create it first")
    text = _service(storage).export(name, fmt)
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        output.write_text(text)
    except OSError as exc:
        _fail(f"--output {output}: cannot write it: {exc.strerror}")
    _console(stderr=True).print(f"wrote {_user(output)}")


@app.command()
def delete(
    name: str = typer.Argument(..., help="The study to delete.", show_default=False),
    storage: str | None = StorageOpt,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a study and all its trials."""
    service = _service(storage)
    service.load(name)
    if not yes and not typer.confirm(f"Delete study {name!r} and all its trials?"):
        raise typer.Exit(1)
    service.delete(name)
    _console().print(f"deleted {_user(name)}")


@app.command()
def stop(
    name: str = typer.Argument(..., help="The study to stop.", show_default=False),
    storage: str | None = StorageOpt,
) -> None:
    """Stop every controller running the study, on any machine: no new trial starts, running
    trials finish, and the study ends INTERRUPTED (optml resume continues it)."""
    asked = _service(storage).stop(name)
    if asked:
        _console().print(
            f"asked {asked} controller(s) of {_user(name)} to stop; each stops at its next "
            "heartbeat, once its running trials finish"
        )
    else:
        _console().print(f"no controller is running {_user(name)}; nothing to stop")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    storage: str | None = StorageOpt,
    files: Path = typer.Option(
        Path("optml-files"), "--files", help="Folder for uploads and the logs of runs started here."
    ),
) -> None:
    """Serve the web dashboard and REST API (needs: pip install 'optml[web]').

    Starting, stopping and creating studies need the token in $OPTML_TOKEN, or the one made at
    the first start (printed once, kept in FILES/token). Listening on anything but loopback
    needs $OPTML_TOKEN.
    """
    import ipaddress
    import os

    try:
        import uvicorn

        from optml.server import create_app, load_token
    except ImportError as exc:
        _fail(f"optml serve needs the web extra: pip install 'optml[web]' ({exc.name} is missing)")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not os.environ.get("OPTML_TOKEN"):
        _fail(
            f"--host {host} is reachable from other machines; set OPTML_TOKEN to a secret first "
            "(anyone with it can run code here), or listen on 127.0.0.1"
        )
    token, new = load_token(files)
    if new:
        _console(stderr=True).print(
            f"access token (printed once; kept in {_user(files / 'token')}): {token}",
            markup=False,
            soft_wrap=True,
        )
    url = _storage_url(storage)
    _console(stderr=True).print(
        f"OptML dashboard on http://{_user(host)}:{port} · storage {_user(_safe(url))}"
    )
    uvicorn.run(create_app(url, files, token), host=host, port=port, log_level="warning")


def _safe(url: str) -> str:
    from optml.storage import safe_url

    return safe_url(url)


from optml.detect import _cli as detect_cli  # noqa: E402 - typer and libcst-free

app.command(name="detect")(detect_cli.detect)
app.command(name="tune")(detect_cli.tune)

k8s_app = typer.Typer(help="Kubernetes Jobs: see what a study would submit.", no_args_is_help=True)
app.add_typer(k8s_app, name="k8s")
trial_app = typer.Typer(help="Run one trial (what a Kubernetes Job's container runs).", hidden=True)
app.add_typer(trial_app, name="trial", hidden=True)


@k8s_app.command("render")
def k8s_render(
    spec_file: Path = typer.Argument(..., help="The study spec (YAML).", show_default=False),
    trials: int = typer.Option(1, "--trials", "-t", min=1, help="Jobs of this many trials."),
) -> None:
    """Print the batch/v1 Jobs (YAML) the study would submit for its first trials."""
    from optml.executors import TrialTask
    from optml.executors._k8s import render
    from optml.service import executor_for
    from optml.spec import build_objective, load_spec, study_from_spec

    spec = load_spec(spec_file)
    e = spec.execution
    if e.backend != "kubernetes":
        raise OptMLError(
            f"{spec_file}: execution.backend is {e.backend!r}; k8s render needs kubernetes"
        )
    settings = executor_for(spec).settings  # the Jobs `optml run` would submit
    study = study_from_spec(spec, storage="memory://")
    asked = study.ask(trials, heartbeat=False)
    metric = study.metrics[0].name
    tasks = [
        TrialTask(t.number, dict(t.params), metric, timeout=e.trial_timeout, data=spec.data)
        for t in asked
    ]
    typer.echo(render(settings, build_objective(spec), tasks), nl=False)


@trial_app.command("run")
def trial_run(
    task: Path | None = typer.Option(None, "--task", help="JSON file: {task, objective}."),
) -> None:
    """Run one trial from OPTML_TASK and OPTML_OBJECTIVE (or --task) and print its outcome."""
    from optml.trial_run import main as run_main

    raise typer.Exit(run_main(["--task", str(task)] if task else []))


def main(argv: list[str] | None = None) -> None:
    """Entry point: turn OptML errors into one-line messages instead of tracebacks."""
    try:
        app(args=argv, standalone_mode=True)
    except OptMLError as exc:
        _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    main()
