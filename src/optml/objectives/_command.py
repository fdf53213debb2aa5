"""An objective that runs a command line (any language) and reads its metrics back."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from optml._process import kill_tree
from optml.errors import ObjectiveError
from optml.objectives._base import Objective, TrialContext, TrialTimeoutError

_TAIL = 4000


class CommandObjective(Objective):
    """Run a command template such as ``python driver.py --lr {learning_rate}`` per trial.

    Placeholders ``{name}`` are replaced by the parameters (shell-quoted); ``{data}`` by the
    study's data path. The command also sees ``OPTML_PARAMS`` (JSON), ``OPTML_TRIAL_NUMBER``,
    ``OPTML_DATA`` and ``OPTML_RESULT_FILE``. Its metrics are read from the file named by
    ``OPTML_RESULT_FILE`` if it wrote one (JSON object or a number), else from the last line of
    stdout that is a JSON object (or a bare number). A non-zero exit fails the trial.
    """

    def __init__(
        self,
        command: str,
        data: str | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if not command.strip():
            raise ObjectiveError("objective.command is empty")
        self.command = command
        self.data = data
        self.cwd = cwd
        self.env = dict(env or {})

    def render(self, params: dict[str, Any]) -> str:
        values = {k: shlex.quote(_format_value(v)) for k, v in params.items()}
        values.setdefault("data", shlex.quote(self.data or ""))
        try:
            return self.command.format_map(values)
        except KeyError as exc:
            raise ObjectiveError(
                f"objective.command {self.command!r} uses {{{exc.args[0]}}}, which is not a "
                f"parameter; the space has {sorted(params)}"
            ) from None
        except (ValueError, IndexError) as exc:
            raise ObjectiveError(f"objective.command {self.command!r}: {exc}") from None

    def run(self, params: dict[str, Any], context: TrialContext) -> Any:
        line = self.render(params)
        with tempfile.TemporaryDirectory(prefix="optml-trial-") as tmp:
            result_file = Path(tmp) / "result.json"
            env = {
                **os.environ,
                **self.env,
                "OPTML_PARAMS": json.dumps(params),
                "OPTML_TRIAL_NUMBER": str(context.number),
                "OPTML_DATA": self.data or "",
                "OPTML_RESULT_FILE": str(result_file),
            }
            proc = subprocess.Popen(
                line,
                shell=True,
                cwd=self.cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            try:
                out, err = proc.communicate(timeout=context.timeout)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                out, err = proc.communicate()
                _echo(out, err)
                raise TrialTimeoutError(f"the command ran past {context.timeout:g} s") from None
            except BaseException:
                kill_tree(proc.pid)
                raise
            _echo(out, err)
            if proc.returncode != 0:
                tail = (err or out or "").strip()[-_TAIL:]
                raise ObjectiveError(
                    f"the command exited with status {proc.returncode}: {line}\n{tail}".rstrip()
                )
            if result_file.exists() and result_file.stat().st_size:
                return _parse_result(result_file.read_text(), f"OPTML_RESULT_FILE of {line!r}")
            return _last_result(out, line)

    def describe(self) -> str:
        return f"command {self.command}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _echo(out: str | None, err: str | None) -> None:
    # The worker captures its own stdout/stderr as the trial's logs, so pass them through.
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
    if err:
        sys.stderr.write(err)
        sys.stderr.flush()


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
