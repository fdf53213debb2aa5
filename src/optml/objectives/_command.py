"""An objective that runs a command line (any language) and reads its metrics back."""

from __future__ import annotations

import json
import os
import selectors
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Formatter
from typing import IO, Any

from optml._process import (
    LOG_TAIL,
    adopting_orphans,
    descendants,
    kill_group,
    kill_procs,
)
from optml.errors import ObjectiveError
from optml.objectives._base import Objective, TrialContext, TrialTimeoutError

# How long the output of a command that has exited is still read: a process it left behind
# may hold its stdout open (and is killed once the trial ends).
_DRAIN_S = 1.0
_SHELL_HINT = "set objective.shell: true for pipes, &&, redirections or variables"


class CommandObjective(Objective):
    """Run a command template such as ``python driver.py --lr {learning_rate}`` per trial.

    The template is split into arguments once, as a shell would split it (quotes group words),
    and each placeholder ``{name}`` is replaced by the parameter's value inside its argument;
    ``{data}`` by the study's data path. No shell runs: a value is always exactly one
    argument's text, whatever characters it holds. With ``shell=True`` the line runs in
    ``/bin/sh`` (pipes, ``&&``) with each value shell-quoted; a placeholder written inside
    quotes (which would undo that quoting) is refused.

    The command also sees ``OPTML_PARAMS`` (JSON), ``OPTML_TRIAL_NUMBER``, ``OPTML_DATA`` and
    ``OPTML_RESULT_FILE``. Its metrics are read from the file named by ``OPTML_RESULT_FILE`` if
    it wrote one (JSON object or a number), else from the last line of stdout that is a JSON
    object (or a bare number), within the last ``LOG_TAIL`` bytes of its output. A non-zero
    exit fails the trial. Every process the command starts (however it detaches) is killed
    when the trial ends.
    """

    def __init__(
        self,
        command: str,
        data: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        shell: bool = False,
    ) -> None:
        self._args = parse_command(command, shell)
        self.command = command
        self.shell = shell
        self.data = data
        self.cwd = cwd
        self.env = dict(env or {})

    def check(self) -> None:
        cwd = self.cwd or os.getcwd()
        if not os.path.isdir(cwd):
            what = "does not exist" if not os.path.exists(cwd) else "is not a directory"
            raise ObjectiveError(f"objective.cwd {cwd!r} {what}")
        if self.shell:
            return
        program = self._args[0]
        if "{" in program:
            return  # chosen by a parameter: known only per trial
        if "/" in program:
            path = os.path.join(cwd, os.path.expanduser(program))
            if not os.path.isfile(path):
                raise ObjectiveError(
                    f"objective.command {self.command!r}: the program {program!r} does not exist "
                    f"(relative to objective.cwd {cwd!r})"
                )
            if not os.access(path, os.X_OK):
                raise ObjectiveError(
                    f"objective.command {self.command!r}: the program {program!r} is not "
                    f"executable (chmod +x it, or name its interpreter, e.g. 'bash {program}')"
                )
            return
        search = self.env.get("PATH", os.environ.get("PATH", os.defpath))
        if shutil.which(program, path=search) is None:
            raise ObjectiveError(
                f"objective.command {self.command!r}: the program {program!r} is not on PATH "
                f"(name it with a path such as './{program}' if it is in objective.cwd; "
                f"{_SHELL_HINT})"
            )

    def render(self, params: dict[str, Any]) -> list[str] | str:
        """The argument list (or, with ``shell``, the shell line) for ``params``."""
        values = {k: _format_value(v) for k, v in params.items()}
        values.setdefault("data", self.data or "")
        try:
            if self.shell:
                return self.command.format_map({k: shlex.quote(v) for k, v in values.items()})
            return [arg.format_map(values) for arg in self._args]
        except KeyError as exc:
            raise ObjectiveError(
                f"objective.command {self.command!r} uses {{{exc.args[0]}}}, which is not a "
                f"parameter; the space has {sorted(params)}"
            ) from None
        except (ValueError, IndexError, AttributeError) as exc:
            raise ObjectiveError(f"objective.command {self.command!r}: {exc}") from None

    def run(self, params: dict[str, Any], context: TrialContext) -> Any:
        argv = self.render(params)
        line = argv if isinstance(argv, str) else shlex.join(argv)
        # Orphans of the command (double forks, new sessions) are re-parented to this process
        # while it is a subreaper, so that they can be found and killed with the trial.
        with (
            adopting_orphans() as reaping,
            tempfile.TemporaryDirectory(prefix="optml-trial-") as tmp,
        ):
            before = {p.pid for p in descendants()}
            result_file = Path(tmp) / "result.json"
            env = {
                **os.environ,
                **self.env,
                "OPTML_PARAMS": json.dumps(params),
                "OPTML_TRIAL_NUMBER": str(context.number),
                "OPTML_DATA": self.data or "",
                "OPTML_RESULT_FILE": str(result_file),
            }
            # In a worker (which leads its own process group) the command joins that group,
            # which dies with the worker even if the worker is killed outright; elsewhere it
            # gets a group of its own, killed with the trial.
            own_group = os.getpgrp() != os.getpid()
            try:
                proc = subprocess.Popen(
                    argv,
                    shell=self.shell,
                    cwd=self.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=own_group,
                )
            except OSError as exc:
                raise ObjectiveError(
                    f"cannot start the command {line!r}: {exc.strerror or exc}"
                    + ("" if self.shell else f" ({_SHELL_HINT})")
                ) from None
            try:
                out, err = _collect(proc, context.timeout)
            finally:
                # Whatever the trial started ends with it, however it detached.
                kill_procs([p for p in descendants() if p.pid not in before])
                if own_group and not reaping:  # no subreaper here: orphans stay in the group
                    kill_group(proc.pid)
                if proc.returncode is None:
                    proc.poll()
                for pipe in (proc.stdout, proc.stderr):
                    if pipe is not None:
                        pipe.close()
            if proc.returncode != 0:
                tail = (err or out).strip()[-LOG_TAIL:]
                raise ObjectiveError(
                    f"the command exited with status {proc.returncode}: {line}\n{tail}".rstrip()
                )
            if result_file.exists() and result_file.stat().st_size:
                text = result_file.read_bytes()[-LOG_TAIL:].decode("utf-8", errors="replace")
                return _parse_result(text, f"OPTML_RESULT_FILE of {line!r}")
            return _last_result(out, line)

    def describe(self) -> str:
        return f"command {self.command}"


def parse_command(command: str, shell: bool = False) -> list[str]:
    """Check a command template and split it into argument templates (one, the line, with
    ``shell``); an :class:`~optml.errors.ObjectiveError` says what is wrong with it."""
    if not command.strip():
        raise ObjectiveError("objective.command is empty")
    if shell:
        quoted = _quoted_placeholders(command)
        if quoted:
            raise ObjectiveError(
                f"objective.command {command!r}: the placeholder {{{quoted[0]}}} is inside quotes "
                "(or after a backslash or $), which would undo the quoting of its value with "
                f"shell: true; write it bare, e.g. --opt {{{quoted[0]}}}: each value is quoted"
            )
        return [command]
    try:
        args = shlex.split(command)
    except ValueError as exc:
        raise ObjectiveError(f"objective.command {command!r}: {exc}") from None
    for arg in args:
        try:
            list(Formatter().parse(arg))
        except ValueError as exc:
            raise ObjectiveError(
                f"objective.command {command!r}: {exc} (write {{{{ and }}}} for literal braces)"
            ) from None
    if not args:
        raise ObjectiveError("objective.command is empty")
    return args


def _quoted_placeholders(line: str) -> list[str]:
    """Placeholders of a shell line that sit where a shell-quoted value would not stay one
    word: inside quotes or backticks, after a backslash, or right after ``$``."""
    try:
        parts = list(Formatter().parse(line))
    except ValueError as exc:
        raise ObjectiveError(
            f"objective.command {line!r}: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    found: list[str] = []
    state = ""  # the open quote: ', " or `
    escaped = False
    for literal, field, _, _ in parts:
        for ch in literal:
            if escaped:
                escaped = False
            elif state == "'":
                state = "" if ch == "'" else state
            elif ch == "\\":
                escaped = True
            elif state:
                state = "" if ch == state else state
            elif ch in "'\"`":
                state = ch
        if field is not None:
            if state or escaped or literal.endswith("$"):
                found.append(field)
            escaped = False
    return found


def _collect(proc: subprocess.Popen[bytes], timeout: float | None) -> tuple[str, str]:
    """Pass the command's stdout and stderr through to ours as they come and keep their last
    ``LOG_TAIL`` bytes (decoded, invalid bytes replaced); raise TrialTimeoutError past
    ``timeout`` seconds."""
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    tails = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    sinks = {proc.stdout: sys.stdout, proc.stderr: sys.stderr}
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        for pipe in tails:
            sel.register(pipe, selectors.EVENT_READ)  # type: ignore[arg-type]
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TrialTimeoutError(f"the command ran past {timeout:g} s")
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if not sel.get_map() or (exited_at is not None and now - exited_at > _DRAIN_S):
                if exited_at is not None:
                    break
                try:  # it closed its output but runs on
                    proc.wait(timeout=None if deadline is None else max(0.0, deadline - now))
                except subprocess.TimeoutExpired:
                    continue
                break
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - now))
            for key, _ in sel.select(wait):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                tail = tails[key.fileobj]  # type: ignore[index]
                tail += chunk
                if len(tail) > LOG_TAIL:
                    del tail[:-LOG_TAIL]
                _echo(sinks[key.fileobj], chunk)  # type: ignore[index]
    out, err = (bytes(tails[p]).decode("utf-8", errors="replace") for p in tails)
    return out, err


def _echo(stream: IO[str], chunk: bytes) -> None:
    # The worker captures its own fds 1 and 2 as the trial's logs, so pass the output through.
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(chunk)
            buffer.flush()
        else:
            stream.write(chunk.decode("utf-8", errors="replace"))
            stream.flush()
    except (OSError, ValueError):
        pass


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _parse_result(text: str, where: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ObjectiveError(f"{where}: not JSON: {exc}") from None
    return value


def _last_result(stdout: str, line: str) -> Any:
    lines = [raw.strip() for raw in stdout.strip().splitlines() if raw.strip()]
    for index, text in enumerate(reversed(lines)):
        if text.startswith("{") and text.endswith("}"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
        if index == 0:
            try:
                return float(text)
            except ValueError:
                pass
    raise ObjectiveError(
        f"the command {line!r} reported no result: print a JSON object such as "
        '{"test_error": 0.12} as its last line, or write one to $OPTML_RESULT_FILE'
    )
