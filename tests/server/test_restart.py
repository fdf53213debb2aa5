"""A study started from the server outlives the server: SIGKILL it mid-run, the study still
finishes, and a restarted server shows it finished."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from server.conftest import TOKEN

pytestmark = pytest.mark.slow


def _call(url: str, method: str = "GET", body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_study_survives_the_server_killed(server, tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ndef objective(x):\n    time.sleep(0.3)\n    return x\n")
    spec = {
        "name": "survivor",
        "objective": {"function": f"{slow}:objective"},
        "space": {"x": {"uniform": [0, 1]}},
        "algorithm": "random",
        "budget": {"trials": 15},
        "execution": {"workers": 1},
    }
    first = server()
    made = _call(f"{first.url}/api/studies", "POST", {"spec": spec, "start": True})
    deadline = time.monotonic() + 60
    while _call(f"{first.url}/api/studies/survivor")["trials"] < 2:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.2)
    first.kill()  # SIGKILL: no clean-up in the server at all
    assert made["pid"]
    second = server()
    deadline = time.monotonic() + 120
    while True:
        study = _call(f"{second.url}/api/studies/survivor")
        if study["state"] == "COMPLETE":
            break
        assert time.monotonic() < deadline, study
        time.sleep(0.5)
    assert study["counts"] == {"COMPLETE": 15} and not study["running"]
    html = urllib.request.urlopen(f"{second.url}/", timeout=30).read().decode()
    assert "survivor" in html and "COMPLETE" in html
