"""The portal in a real browser: headless Chromium (Debian's, which ``make test``
installs) driven by Playwright against ``swarmtwin serve`` on loopback.

The page starts the smoke scenario on both backends, its charts fill as the run
goes, and its final figures must equal the run's ``summary.json``; the page
measures push-to-render latency and reports it to the server. A screenshot goes
to the test's reports folder (``docs/images/portal.png`` is one of these).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.certify.render import find_chromium
from harness.portal.measure import free_port

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: make browser installs it"),
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    reports = tmp_path / "reports"
    port = free_port()
    command = [sys.executable, "-m", "harness.cli", "--reports", str(reports)]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [*command, "serve", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/server", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("the portal did not start") from None
                time.sleep(0.1)
        yield url, reports
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_a_run_started_from_the_page_is_drawn_live_and_ends_with_its_summary(
    server: tuple[str, Path],
) -> None:
    from playwright.sync_api import sync_playwright

    url, reports = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_selector("#connection[data-state=open]")
            page.select_option("#scenario", "smoke")
            page.select_option("#backend", "both")
            page.fill("#duration", "2")
            page.click("#start-button")
            # the charts update while the run goes: frames drawn before it ends
            page.wait_for_function(
                "Number(document.getElementById('render').dataset.frames || 0) >= 3",
                timeout=60_000,
            )
            assert page.get_attribute("#job-state", "data-state") == "running"
            page.wait_for_selector("#job-state[data-state=done]", timeout=180_000)
            page.wait_for_selector("#figures td[data-figure=p95_ms]")
            shown = {
                (cell.get_attribute("data-backend"), cell.get_attribute("data-figure")): (
                    cell.get_attribute("data-value")
                )
                for cell in page.query_selector_all("#figures td[data-figure]")
            }
            stats = page.evaluate("window.swarmtwinRenderStats()")
            (reports / "screenshots").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(reports / "screenshots" / "portal.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()

    (run_dir,) = (reports / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    real = summary["backends"]["real"]
    sim = summary["backends"]["sim"]["figures"]  # three replications: their medians
    expected = {
        ("real", "p50_ms"): real["latency"]["p50_ms"],
        ("real", "p95_ms"): real["latency"]["p95_ms"],
        ("real", "p99_ms"): real["latency"]["p99_ms"],
        ("real", "deliveries_per_s"): real["throughput"]["deliveries_per_s"],
        ("real", "reliability"): real["reliability"]["reliability"],
        ("real", "uptime"): real["availability"]["uptime"],
        ("sim", "p95_ms"): sim["p95_ms"]["median"],
        ("sim", "deliveries_per_s"): sim["deliveries_per_s"]["median"],
        ("sim", "reliability"): sim["reliability"]["median"],
    }
    for key, value in expected.items():
        assert float(shown[key]) == value, key

    # push-to-render latency: measured on the page, and reported to the server
    assert stats["frames"] >= 3 and math.isfinite(stats["p95_ms"]) and stats["p95_ms"] >= 0
    deadline = time.monotonic() + 15
    while not get(f"{url}/api/server")["render"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert get(f"{url}/api/server")["render"]["frames"] >= 3
    assert (reports / "screenshots" / "portal.png").stat().st_size > 10_000
