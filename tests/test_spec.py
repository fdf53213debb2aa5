"""Reading spec files: UTF-8, YAML without bombs or repeated keys, and fields within bounds."""

from __future__ import annotations

import time

import pytest

from optml.errors import SpecError
from optml.spec import MAX_ALIAS_NODES, MAX_SPEC_BYTES, load_spec, parse_spec
from optml.study import SEED_LIMIT

BASE = "name: s\nobjective: {function: obj.py:f}\n"


def write(tmp_path, text: str | bytes, name: str = "spec.yaml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_anchors_and_merge_keys_for_shared_defaults_still_load(tmp_path) -> None:
    spec = load_spec(
        write(
            tmp_path,
            BASE + "space:\n  x: &b {uniform: [0, 1]}\n  y:\n    <<: *b\n    uniform: [1, 2]\n"
            "  z: *b\n",
        )
    )
    assert spec.space == {
        "x": {"uniform": [0, 1]},
        "y": {"uniform": [1, 2]},
        "z": {"uniform": [0, 1]},
    }


def test_alias_bomb_is_refused_before_it_expands(tmp_path) -> None:
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = write(tmp_path, BASE + "\n".join(levels) + "\nspace: {x: *i}\n")
    started = time.monotonic()
    with pytest.raises(SpecError, match="alias") as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert time.monotonic() - started < 30  # generous: it took 120 s and 1.9 GB before


def test_aliases_just_under_the_limit_load(tmp_path) -> None:
    values = ", ".join(["1"] * 99)
    repeats = ", ".join(["*v"] * (MAX_ALIAS_NODES // 100 - 1))
    spec = load_spec(
        write(tmp_path, BASE + f"space:\n  x: &v [{values}]\n  y: [{repeats}]\nalgorithm: random\n")
    )
    assert len(spec.space["y"]) == MAX_ALIAS_NODES // 100 - 1


def test_recursive_alias_is_refused(tmp_path) -> None:
    with pytest.raises(SpecError, match="inside itself"):
        load_spec(write(tmp_path, BASE + "space: &s {x: [1], y: *s}\n"))


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        (BASE + "space: {x: [1, 2], x: [3, 4]}\n", "'x'", 3),
        (BASE + "space:\n  x: [1]\n  y: [2]\n  x: [3]\n", "'x'", 6),
        (BASE + "space: {x: [1]}\nname: t\n", "'name'", 4),
    ],
)
def test_duplicate_key_names_the_key_and_line(tmp_path, text, key, line) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert f"{path}:{line}:" in str(err.value) and f"duplicate key {key}" in str(err.value)


def test_non_utf8_spec_names_the_byte_offset(tmp_path) -> None:
    text = BASE.encode() + b"space: {x: [caf\xe9]}\n"
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    offset = text.index(b"\xe9")
    assert f"{path}:3:" in str(err.value) and f"offset {offset}" in str(err.value)


def test_oversize_spec_is_refused_unread(tmp_path) -> None:
    path = write(tmp_path, BASE + "#" * MAX_SPEC_BYTES + "\nspace: {x: [1]}\n")
    with pytest.raises(SpecError, match="more than"):
        load_spec(path)


def test_deeply_nested_yaml_is_an_error_not_a_crash(tmp_path) -> None:
    with pytest.raises(SpecError, match=str(tmp_path)):
        load_spec(write(tmp_path, BASE + "space: " + "[" * 100_000 + "]" * 100_000 + "\n"))


def spec_with(**fields):
    return {"name": "s", "objective": {"function": "obj.py:f"}, "space": {"x": [1]}, **fields}


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"metric": [{"name": "a"}, {"name": "a", "direction": "maximize"}]}, "'a' is named more"),
        ({"seed": -5}, "seed"),
        ({"seed": SEED_LIMIT}, "seed"),
        ({"seed": 2**64 + 1}, "seed"),
        ({"execution": {"backend": "slurm"}}, "unknown backend 'slurm'"),
        ({"name": "a\nb"}, "control character"),
        ({"name": "x\x00"}, "control character"),
        ({"name": "team/study"}, "cannot contain '/'"),
    ],
)
def test_fields_out_of_bounds_are_refused(fields, words) -> None:
    with pytest.raises(SpecError, match=words):
        parse_spec(spec_with(**fields))


def test_fields_at_their_bounds_are_accepted() -> None:
    assert parse_spec(spec_with(seed=0)).seed == 0
    assert parse_spec(spec_with(seed=SEED_LIMIT - 1)).seed == SEED_LIMIT - 1
    assert parse_spec(spec_with(execution={"backend": "serial"})).execution.backend == "serial"
    assert parse_spec(spec_with(name="a name [with] brackets & ünïcode")).name.endswith("ünïcode")


def test_liveness_settings_are_durations_and_grace_must_outlast_the_heartbeat() -> None:
    base = {"name": "s", "objective": {"function": "m:f"}, "space": {"x": [1, 2]}}
    spec = parse_spec({**base, "execution": {"heartbeat": "2s", "grace": "1m", "stale": "fail"}})
    assert (spec.execution.heartbeat, spec.execution.grace, spec.execution.stale) == (
        2.0,
        60.0,
        "fail",
    )
    defaults = parse_spec(base).execution
    assert (defaults.heartbeat, defaults.grace, defaults.stale) == (5.0, 30.0, "requeue")
    with pytest.raises(SpecError, match=r"grace \(5 s\) must be longer than heartbeat \(10 s\)"):
        parse_spec({**base, "execution": {"heartbeat": 10, "grace": 5}})
    with pytest.raises(SpecError, match="stale"):
        parse_spec({**base, "execution": {"stale": "ignore"}})


def test_proposing_ahead_is_off_unless_the_spec_asks_for_it() -> None:
    base = {"name": "s", "objective": {"function": "m:f"}, "space": {"x": [1, 2]}}
    assert parse_spec(base).execution.propose_ahead is False
    assert parse_spec({**base, "execution": {"propose_ahead": True}}).execution.propose_ahead
    with pytest.raises(SpecError, match="propose_ahead"):
        parse_spec({**base, "execution": {"propose_ahead": "sometimes"}})


@pytest.mark.parametrize(
    "execution",
    [
        {"resources": {"cpus": 2, "memory": "4GB", "gpus": 1}},
        {"resources": {"cpu": 2, "memory": "4GB", "gpu": 1}},
        # As earlier specs (and the studies that stored them) wrote it.
        {"cpus": 2, "memory": "4GB", "gpus": 1},
    ],
)
def test_what_a_trial_needs_is_one_resources_block_however_written(execution) -> None:
    r = parse_spec(spec_with(execution={"backend": "dask", **execution})).execution.resources
    assert (r.cpus, r.memory, r.gpus) == (2, "4GB", 1)


def test_resources_apply_to_every_backend_and_cpu_quantities_count() -> None:
    local = parse_spec(spec_with(execution={"resources": {"gpus": 1}})).execution
    assert local.backend == "local" and local.resources.gpus == 1
    k8s = parse_spec(
        spec_with(execution={"backend": "kubernetes", "image": "i", "resources": {"cpu": "500m"}})
    ).execution
    assert k8s.resources.cpus == "500m" and k8s.resources.cpu_count() == 0.5


@pytest.mark.parametrize(
    ("execution", "words"),
    [
        ({"gpus": 1, "resources": {"gpu": 2}}, "gpus is given both"),
        ({"resources": {"cpus": "lots"}}, "Kubernetes quantity"),
        ({"resources": {"cpus": 0}}, "more than 0"),
        ({"resources": {"gpus": -1}}, "gpus"),
        ({"resources": {"disks": 1}}, "disks"),
    ],
)
def test_bad_resources_are_refused_by_name(execution, words) -> None:
    with pytest.raises(SpecError, match=words):
        parse_spec(spec_with(execution=execution))
