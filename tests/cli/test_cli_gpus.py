"""`optml run` of a study that asks for GPUs where there are none: one line, exit 2, nothing
written."""

from __future__ import annotations

import pytest

from cli.test_cli_front_door import OBJECTIVES, one_error_line, study_names


@pytest.mark.parametrize(("backend", "gpus"), [("local", ""), ("local", "0"), ("dask", "")])
def test_a_study_asking_for_more_gpus_than_the_machine_has_is_one_line(
    cli, monkeypatch, backend, gpus
) -> None:
    if backend == "dask":
        pytest.importorskip("distributed")
    monkeypatch.setenv("OPTML_GPUS", gpus)  # the CLI's environment is this one's
    cli.write("objectives.py", OBJECTIVES)
    cli.write(
        "gpu.yaml",
        f"""
        name: gpu
        objective: {{function: objectives.py:good}}
        space: {{x: [1, 2]}}
        algorithm: grid
        execution: {{backend: {backend}, workers: 2, gpus: 2}}
        """,
    )
    result = cli.run("run", "gpu.yaml", "--storage", cli.storage, timeout=60)
    line = one_error_line(result)
    found = len(gpus.split(",")) if gpus else 0
    assert result.returncode == 2, result
    assert f"each trial asks for 2 GPU(s), but this machine offers {found}" in line, line
    assert f"OPTML_GPUS={gpus!r}" in line, line
    assert study_names(cli.db) == []
