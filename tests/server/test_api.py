"""The REST API against the app (FastAPI's TestClient over a real SQLite file)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import optml

SPEC = {
    "name": "api-study",
    "objective": {"module": "optml.models.lms"},
    "metric": {"name": "test_error"},
    "space": {"learning_rate": {"loguniform": [1e-4, 0.1]}, "filter_size": [4, 8]},
    "algorithm": "random",
    "budget": {"trials": 5},
    "execution": {"backend": "serial"},
}


def _fill(client, n=30):
    """A study with ``n`` trials written through the library into the app's database."""
    url = client.app.state.service.url
    study = optml.create_study("filled", space={"a": {"uniform": [0.0, 1.0]}, "b": ["x", "y"]}, storage=url)
    for i in range(n):
        study.add_trial({"a": i / n, "b": "xy"[i % 2]}, (i * 7 % n) / n if i % 5 else math.nan)
    return study


def test_import_optml_does_not_import_the_web_stack():
    code = "import sys, optml, optml.cli; print(sorted(m for m in ('fastapi','uvicorn','jinja2','plotly','starlette') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_mutating_calls_need_the_token(client, auth):
    assert client.post("/api/studies", json={"spec": SPEC}).status_code == 401
    r = client.post("/api/studies", json={"spec": SPEC}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert client.get("/api/studies").json() == []  # nothing was written
    assert client.post("/api/studies", json={"spec": SPEC}, headers=auth).status_code == 201
    for path in ("/api/studies/api-study/stop", "/api/studies/api-study/start"):
        assert client.post(path).status_code == 401
    assert client.delete("/api/studies/api-study").status_code == 401
    assert client.post("/api/studies/api-study/files", files={"file": ("a.csv", b"1,2")}).status_code == 401
    assert client.get("/new", follow_redirects=False).status_code == 303


def test_login_keeps_the_token_in_a_cookie(client):
    r = client.post("/login", data={"token": "wrong", "next": "/new"}, follow_redirects=False)
    assert r.status_code == 401
    r = client.post("/login", data={"token": "test-token-123", "next": "//evil.example"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert client.post("/api/studies", json={"spec": SPEC}).status_code == 201


def test_invalid_spec_is_422_naming_the_field(client, auth):
    bad = {**SPEC, "budget": {"trials": 0}}
    r = client.post("/api/studies", json={"spec": bad}, headers=auth)
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert "budget.trials" in detail["msg"] and detail["loc"][:3] == ["body", "spec", "budget"]
    r = client.post("/api/studies", json={"spec": {**SPEC, "algorithm": "magic"}}, headers=auth)
    assert r.status_code == 422 and "algorithm" in r.text
    r = client.post("/api/studies", json={"spec": SPEC, "workers": 0}, headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "workers"]
    r = client.post("/api/studies", json={"nospec": 1}, headers=auth)
    assert r.status_code == 422
    assert client.get("/api/studies").json() == []


def test_trials_paged_sorted_filtered(client):
    _fill(client, 30)
    r = client.get("/api/studies/filled/trials", params={"limit": 10, "sort": "value"})
    body = r.json()
    assert body["total"] == 30 and len(body["trials"]) == 10
    values = [t["value"] for t in body["trials"]]
    assert values == sorted(values)
    r = client.get("/api/studies/filled/trials", params={"state": "FAILED"}).json()
    assert r["total"] == 6 and {t["state"] for t in r["trials"]} == {"FAILED"}
    r = client.get("/api/studies/filled/trials", params={"offset": 25, "order": "desc"}).json()
    assert [t["number"] for t in r["trials"]] == [4, 3, 2, 1, 0]
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"sort": "x"}, {"state": "DONE"}):
        r = client.get("/api/studies/filled/trials", params=bad)
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["loc"][0] == "query"


def test_one_trial_best_and_export(client):
    _fill(client, 10)
    t = client.get("/api/studies/filled/trials/3").json()
    assert t["params"] == {"a": 0.3, "b": "y"} and "logs" in t and "intermediate" in t
    nan_trial = client.get("/api/studies/filled/trials/0").json()
    assert nan_trial["state"] == "FAILED"
    best = client.get("/api/studies/filled/best").json()
    assert best["value"] == min(
        t["value"] for t in client.get("/api/studies/filled/trials").json()["trials"]
        if t["state"] == "COMPLETE"
    )
    assert client.get("/api/studies/filled/trials/99").status_code in (404, 422)
    assert client.get("/api/studies/nope/trials").status_code == 404
    csv = client.get("/api/studies/filled/export", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("number,")
    data = json.loads(client.get("/api/studies/filled/export").text)
    assert len(data["trials"] if isinstance(data, dict) else data) == 10
    assert client.get("/api/studies/filled/export", params={"format": "xml"}).status_code == 422


def test_every_chart_answers_with_bounded_data(client):
    _fill(client, 30)
    for chart in ("history", "bars", "parallel", "slice", "contour", "importance", "timeline"):
        r = client.get(f"/api/studies/filled/charts/{chart}")
        assert r.status_code == 200, (chart, r.text)
        fig = r.json()
        assert "layout" in fig and "data" in fig
    assert client.get("/api/studies/filled/charts/pie").status_code == 422


def test_a_kept_chart_is_redrawn_when_a_trial_changes(client):
    study = _fill(client, 10)
    first = client.get("/api/studies/filled/charts/history").json()
    assert client.get("/api/studies/filled/charts/history").json() == first  # kept
    study.add_trial({"a": 0.5, "b": "x"}, -1.0)
    again = client.get("/api/studies/filled/charts/history").json()
    assert again != first and -1.0 in again["data"][0]["y"]


def test_uploads_are_stored_safely_per_study(client, auth, tmp_path):
    r = client.post(
        "/api/studies/up/files", files={"file": ("../../../evil.py", b"x = 1\n")}, headers=auth
    )
    assert r.status_code == 201 and r.json()["name"] == "evil.py"
    files = tmp_path / "files"
    stored = list(files.rglob("evil.py"))
    assert len(stored) == 1 and stored[0].parent.parent == files.resolve()
    assert not (tmp_path.parent / "evil.py").exists()
    r = client.post("/api/studies/up/files", files={"file": ("..", b"x")}, headers=auth)
    assert r.status_code == 422


def test_study_created_with_an_uploaded_file(client, auth):
    module = (
        "import numpy as np\n"
        "def objective(x, data):\n"
        "    return float(np.loadtxt(data, delimiter=',').sum()) * x\n"
    )
    assert client.post("/api/studies/upl/files", files={"file": ("obj.py", module.encode())}, headers=auth).status_code == 201
    assert client.post("/api/studies/upl/files", files={"file": ("d.csv", b"1,2\n3,4\n")}, headers=auth).status_code == 201
    spec = {"name": "upl", "objective": {"function": "obj.py:objective"}, "data": "d.csv",
            "space": {"x": {"uniform": [0, 1]}}, "budget": {"trials": 2}}
    r = client.post("/api/studies", json={"spec": spec}, headers=auth)
    assert r.status_code == 201, r.text
    stored = client.get("/api/studies/upl").json()["spec"]
    assert stored["objective"]["function"].endswith("/obj.py:objective")


def test_pages_render(client, auth):
    _fill(client, 12)
    assert "filled" in client.get("/").text
    page = client.get("/studies/filled").text
    assert "Best configuration" in page and "/static/plotly.min.js" in page
    assert client.get("/studies/filled/trials/2").status_code == 200
    assert client.get("/studies/nope").status_code == 404
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert client.get("/static/../templates/base.html").status_code == 404
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").status_code == 200
    client.post("/login", data={"token": "test-token-123"})
    assert "Create and run" in client.get("/new").text


def test_new_study_form_errors_name_the_field(client):
    client.post("/login", data={"token": "test-token-123"})
    r = client.post("/new", data={"name": "f", "model": "lms", "space": "{", "trials": "3"})
    assert r.status_code == 422 and "space:" in r.text
    r = client.post("/new", data={"name": "f", "model": "nope", "space": "{}", "trials": "3"})
    assert r.status_code == 422 and "model:" in r.text
    r = client.post("/new", data={"name": "f", "model": "lms", "space": "a: [1]", "trials": "-3"})
    assert r.status_code == 422 and "trials:" in r.text
    assert client.get("/api/studies").json() == []


def test_serve_refuses_a_public_address_without_a_token(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPTML_TOKEN"}
    r = subprocess.run(
        [sys.executable, "-m", "optml.cli", "serve", "--host", "0.0.0.0", "--files", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert r.returncode == 2 and "OPTML_TOKEN" in r.stderr


def test_generated_token_is_kept_and_private(tmp_path, monkeypatch):
    from optml.server import load_token

    monkeypatch.delenv("OPTML_TOKEN", raising=False)
    token, new = load_token(tmp_path)
    assert new and len(token) >= 24
    assert (tmp_path / "token").stat().st_mode & 0o077 == 0
    assert load_token(tmp_path) == (token, False)
    monkeypatch.setenv("OPTML_TOKEN", "mine")
    assert load_token(tmp_path) == ("mine", False)
