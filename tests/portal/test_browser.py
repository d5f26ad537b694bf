"""The portal in a real browser: headless Chromium (Debian's, which ``make test``
installs) driven by Playwright against ``swarmtwin serve`` on loopback.

The page starts the smoke scenario on both backends, its charts fill as the run
goes, and its final figures must equal the run's ``summary.json``; the page
measures push-to-render latency and reports it to the server. A screenshot goes
to the test's reports folder (``docs/images/portal.png`` is one of these).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.certify.render import find_chromium

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: make browser installs it"),
]


@contextlib.contextmanager
def opened(url: str, errors: list[str]) -> Iterator[Any]:
    """The portal's page in headless Chromium, its live socket open; page errors go to
    ``errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.wait_for_selector("#connection[data-state=open]")
            yield page
        finally:
            browser.close()


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_a_run_started_from_the_page_is_drawn_live_and_ends_with_its_summary(
    server: tuple[str, Path],
) -> None:
    url, reports = server
    errors: list[str] = []
    with opened(url, errors) as page:
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
        # reliability, uptime, shed and agents are drawn live too
        page.wait_for_function(
            "(document.querySelector('#now tr[data-label=real]')?.cells[4]?.textContent"
            " || '').endsWith('%')",
            timeout=60_000,
        )
        live = page.evaluate(
            "[...document.querySelectorAll('#now tr[data-label]')].map("
            "r => [r.dataset.label, ...[...r.cells].map(c => c.textContent)])"
        )
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
    rows = {row[0]: row[1:] for row in live}
    assert set(rows) <= {"real", "sim #1", "sim #2", "sim #3"} and "real" in rows
    _, t, _, _, reliability, uptime, _, agents = rows["real"]
    assert float(t) > 0 and reliability.endswith("%") and int(agents) > 0

    # push-to-render latency: measured on the page, and reported to the server
    assert stats["frames"] >= 3 and math.isfinite(stats["p95_ms"]) and stats["p95_ms"] >= 0
    deadline = time.monotonic() + 15
    while not get(f"{url}/api/server")["render"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert get(f"{url}/api/server")["render"]["frames"] >= 3
    assert (reports / "screenshots" / "portal.png").stat().st_size > 10_000


def test_a_fault_is_shaded_and_its_measured_recovery_drawn_and_tabled(
    server: tuple[str, Path],
) -> None:
    """The model's run of the coordinator crash: the recovery the page shows is the
    summary's, and the recovery bar is drawn over the fault's shading."""
    url, reports = server
    errors: list[str] = []
    with opened(url, errors) as page:
        page.select_option("#scenario", "faults/coordinator-crash")
        page.select_option("#backend", "sim")
        page.click("#start-button")
        page.wait_for_selector("#job-state[data-state=done]", timeout=180_000)
        page.wait_for_selector("#recoveries:not([hidden]) td")
        rows = page.evaluate(
            "[...document.querySelectorAll('#recoveries tr')].slice(1)"
            ".map(r => [...r.cells].map(c => c.textContent))"
        )
        # the throughput chart: the fault's red shading, in its middle below the bars,
        # and the model's orange recovery bar at its start, along the top
        colors = page.evaluate(
            """(() => {
              const u = state.charts.throughput;
              const f = state.faults[0];
              const ctx = u.ctx;
              const at = (t, y) => [...ctx.getImageData(
                Math.round(u.valToPos(t, 'x', true)), Math.round(y), 1, 1).data];
              return {
                shade: at(f.at + 0.1, u.bbox.top + u.bbox.height * 0.9),
                bar: at(f.at + 0.01, u.bbox.top + 2 * devicePixelRatio),
                before: at(f.at - 1.0, u.bbox.top + u.bbox.height * 0.9),
              };
            })()"""
        )
        assert not errors, errors

    (run_dir,) = (reports / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    runs = summary["backends"]["sim"]["repetitions"]
    faults = [f for run in runs for f in run["faults"]["faults"]]
    assert len(rows) == len(faults) >= 1
    for row, fault in zip(rows, faults, strict=True):
        assert row[0] == fault["kind"] == "crash_coordinator"
        assert float(row[2]) == fault["at"]
        assert row[4] == fault["status"]
        if fault["recovery_s"] is not None:
            assert float(row[3]) == pytest.approx(fault["recovery_s"], rel=1e-3)
    red, green, blue, _ = colors["shade"]
    assert red > green + 10 and abs(green - blue) <= 2, colors  # a light red
    assert colors["before"][:3] != colors["shade"][:3], colors
    assert colors["bar"][:3] == [0xE6, 0x55, 0x0D], colors  # the model's orange
