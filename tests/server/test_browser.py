"""The dashboard in a real browser: Playwright driving Debian's chromium (installed by `make
test` with apt), against `optml serve` running in its own process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from server.conftest import TOKEN

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
CHARTS = ("history", "bars", "parallel", "slice", "contour", "importance", "timeline")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it)"),
]


@pytest.fixture
def browser_page(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.console_errors = errors  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


def _sign_in(page, base: str) -> None:
    page.goto(f"{base}/new")
    assert "/login" in page.url
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/new")


def _wait_state(page, state: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if page.locator("#state").inner_text().startswith(state):
            return
        page.wait_for_timeout(300)
    raise AssertionError(f"the study page did not show {state} within {within} s")


def test_create_watch_finish_charts_and_trial_page(server, browser_page, tmp_path):
    base = server().url
    page = browser_page
    _sign_in(page, base)
    page.fill("#name", "iris-svc")
    page.select_option("#model", "sklearn:svc")
    assert "gamma" in page.input_value("#space")  # the model's default space, pre-filled
    assert page.input_value("#dataset") == "iris"
    page.fill("#trials", "8")
    page.fill("#workers", "2")
    page.click("#submit")
    page.wait_for_url(f"{base}/studies/iris-svc")
    page.wait_for_selector("body[data-ready='1']")
    _wait_state(page, "COMPLETE")
    page.wait_for_function("document.querySelectorAll('#trials tbody tr').length === 8")
    page.wait_for_timeout(5000)  # the charts redraw with the last trials
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    for chart in CHARTS:
        el = page.locator(f"#chart-{chart}")
        assert el.get_attribute("data-rendered") == "1", chart
        assert el.locator(".main-svg").count() >= 1, chart
    assert "Best configuration" in page.content()
    # Sorting by value puts the best first.
    page.click("th[data-sort=value]")
    page.wait_for_timeout(500)
    first = page.locator("#trials tbody tr").first.inner_text()
    best_number = page.locator("#best a").first.inner_text()
    assert first.startswith(best_number)
    page.screenshot(path=str(tmp_path / "study.png"), full_page=True)
    page.locator("#trials tbody tr a").first.click()
    page.wait_for_url("**/trials/*")
    assert "gamma" in page.locator("#params").inner_text()
    assert "accuracy" in page.locator("#metrics").inner_text()
    page.screenshot(path=str(tmp_path / "trial.png"), full_page=True)
    page.goto(base + "/")
    assert "iris-svc" in page.locator("#studies").inner_text()
    page.screenshot(path=str(tmp_path / "studies.png"), full_page=True)
    assert page.console_errors == []  # type: ignore[attr-defined]


def test_stop_and_resume_a_running_study(server, browser_page, tmp_path):
    base = server().url
    page = browser_page
    _sign_in(page, base)
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import time\n"
        "def objective(x):\n"
        "    time.sleep(0.4)\n"
        "    return (x - 0.3) ** 2\n"
    )
    page.fill("#name", "slow")
    page.select_option("#model", "upload")
    page.set_input_files("input[name=model_file]", str(slow))
    page.fill("#space", "x: {uniform: [0, 1]}")
    page.fill("#metric", "value")
    page.fill("#trials", "40")
    page.fill("#workers", "1")
    page.click("#submit")
    page.wait_for_url(f"{base}/studies/slow")
    page.wait_for_selector("#stop:not([disabled])", timeout=60_000)
    page.click("#stop")
    _wait_state(page, "INTERRUPTED")
    page.wait_for_selector("#resume:not([disabled])")
    stopped_at = int(page.locator("#summary").inner_text().split()[0])
    assert stopped_at < 40
    page.click("#resume")
    _wait_state(page, "COMPLETE", within=180)
    page.wait_for_function("document.getElementById('summary').textContent.startsWith('40 ')")
    # The best configuration found while the page was open is shown without a reload.
    page.wait_for_selector("#best table")
    assert "x" in page.locator("#best table").inner_text()
    page.screenshot(path=str(tmp_path / "resumed.png"), full_page=True)
    assert page.console_errors == []  # type: ignore[attr-defined]
