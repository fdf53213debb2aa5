"""The per-user key that signs stored objectives (optml._trust)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from optml import _trust
from optml.errors import OptMLError


def test_the_key_is_made_once_readable_by_its_owner_only(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPTML_CONFIG_DIR", str(tmp_path / "cfg"))
    key = _trust.secret_key()
    path = tmp_path / "cfg" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _trust.secret_key() == key and len(key) >= 32


def test_where_the_key_lives(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OPTML_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert _trust.config_dir() == tmp_path / "xdg" / "optml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _trust.config_dir() == Path(tmp_path / "home" / ".config" / "optml")


def test_a_key_others_can_read_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPTML_CONFIG_DIR", str(tmp_path))
    _trust.secret_key()
    os.chmod(tmp_path / "secret.key", 0o644)
    with pytest.raises(OptMLError, match="chmod 600"):
        _trust.secret_key()


def test_a_signature_covers_the_objective_data_and_name(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPTML_CONFIG_DIR", str(tmp_path))
    spec = {"objective": {"command": "./train.sh {x}"}, "data": "d.csv", "budget": {"trials": 3}}
    spec[_trust.SIGNATURE] = _trust.sign(spec, "s")
    assert _trust.verify(spec, "s")
    assert _trust.verify({**spec, "budget": {"trials": 9}}, "s")
    assert not _trust.verify(spec, "other")
    assert not _trust.verify({**spec, "data": "e.csv"}, "s")
    assert not _trust.verify({**spec, "objective": {"command": "./evil.sh"}}, "s")
    assert not _trust.verify({k: v for k, v in spec.items() if k != _trust.SIGNATURE}, "s")
    monkeypatch.setenv("OPTML_CONFIG_DIR", str(tmp_path / "another-user"))
    assert not _trust.verify(spec, "s")
