"""Which stored objectives this user may run: an HMAC of the objective under a per-user key.

``optml resume NAME`` runs the objective stored with a study. A database can be shared (a
PostgreSQL server, a SQLite file on a network drive), so anyone who can write to it could
otherwise put a command there for the next user to run. When a study is created from a spec,
its objective (and data path, and name) is signed with a secret key that only this user can
read; ``resume`` runs a stored objective only if that signature verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from optml.errors import OptMLError

# The key in a stored spec that holds the signature (not part of the spec itself).
SIGNATURE = "signature"
_KEY_FILE = "secret.key"


def config_dir() -> Path:
    """``$OPTML_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/optml``, else ``~/.config/optml``."""
    if os.environ.get("OPTML_CONFIG_DIR"):
        return Path(os.environ["OPTML_CONFIG_DIR"])
    if os.environ.get("XDG_CONFIG_HOME"):
        return Path(os.environ["XDG_CONFIG_HOME"]) / "optml"
    return Path.home() / ".config" / "optml"


def secret_key() -> bytes:
    """This user's signing key, created (mode 0600) on first use."""
    path = config_dir() / _KEY_FILE
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        info = path.stat()
        key = path.read_text().strip()
    except OSError as exc:
        raise OptMLError(f"cannot use the signing key {path}: {exc.strerror or exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) or (
        hasattr(os, "getuid") and info.st_uid != os.getuid()
    ):
        raise OptMLError(
            f"the signing key {path} can be read or written by others; "
            f"make it yours alone (chmod 600 {path}) or delete it to make a new one"
        )
    if len(key) < 32:
        raise OptMLError(f"the signing key {path} is damaged; delete it to make a new one")
    return key.encode()


def _payload(spec: dict[str, Any], name: str) -> bytes:
    signed = {"name": name, "objective": spec.get("objective"), "data": spec.get("data")}
    return json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()


def sign(spec: dict[str, Any], name: str) -> str:
    """The signature of the stored ``spec``'s objective for the study ``name``."""
    return hmac.new(secret_key(), _payload(spec, name), hashlib.sha256).hexdigest()


def verify(spec: dict[str, Any], name: str) -> bool:
    """Whether ``spec`` carries this user's signature of its objective for study ``name``."""
    given = spec.get(SIGNATURE)
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given, sign(spec, name))
