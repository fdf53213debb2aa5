"""The REST API fuzzed from its own OpenAPI description (schemathesis): no input makes it
answer 500, and input the description calls invalid is never accepted."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import negative_data_rejection, not_a_server_error  # noqa: E402

from optml.server import create_app  # noqa: E402
from server.conftest import TOKEN  # noqa: E402


def _app():
    import tempfile
    from pathlib import Path

    import optml

    folder = Path(tempfile.mkdtemp(prefix="optml-fuzz-"))
    url = f"sqlite:///{folder}/fuzz.db"
    study = optml.create_study("s", space={"x": {"uniform": [0, 1]}, "k": ["a", "b"]}, storage=url)
    for i in range(20):
        study.add_trial({"x": i / 20, "k": "ab"[i % 2]}, i / 7 if i % 4 else float("nan"))
    return create_app(url, folder / "files", token=TOKEN)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_fuzz(case):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error, negative_data_rejection],
    )
