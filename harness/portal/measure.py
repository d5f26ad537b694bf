"""Measure the portal: push-to-render latency in a real browser, and the server's CPU.

``python -m harness.portal.measure [--scenario dashboard] [--backend real]``
starts ``swarmtwin serve`` on a free loopback port with a temporary reports
folder, opens the page in headless Chromium (Playwright, with the Chromium
``make browser`` installs), starts the scenario from the page (by default
``dashboard``: 50k deliveries/s in process for 20 s) and waits for it to end.
It prints:

- push-to-render latency as the page measured it: for every pushed frame that
  carried live points, the time from the server's wall-clock stamp on the
  frame to the first animation frame after the page had drawn it (p50, p95,
  max, frames);
- the server process's CPU seconds over the run (``GET /api/server`` before
  and after), per second of the run, and the frames it pushed: the cost of
  reading the job's reports and pushing them at 10 Hz to one page.

Both clocks are this machine's, so the latency needs no clock sync.

``--cost N`` measures instead what being watched costs the run itself: N pairs of
real runs of the scenario in this process, one with a live feed turned into points
as a job does (``harness.jobs.live``) and one without, alternating and starting
with the watched one, and prints each run's CPU seconds and p95.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.jobs.live import LivePoints
from protocol.records import LiveBatch, LiveFeed


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def free_port() -> int:
    """A loopback TCP port free at the moment of asking."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def measure(scenario: str, backend: str, screenshot: Path | None) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from harness.certify.render import find_chromium

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium: run `make browser` (Debian's chromium)")
    with tempfile.TemporaryDirectory(prefix="swarmtwin-portal-") as scratch:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "harness.cli", "--reports", scratch, "serve"]
        server = subprocess.Popen(
            [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            for _ in range(300):
                try:
                    _get(f"{url}/api/server")
                    break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                page.goto(url)
                page.wait_for_selector("#connection[data-state=open]")
                page.select_option("#scenario", scenario)
                page.select_option("#backend", backend)
                before = _get(f"{url}/api/server")
                start = time.monotonic()
                page.click("#start-button")
                page.wait_for_selector(
                    "#job-state[data-state=done], #job-state[data-state=invalid], "
                    "#job-state[data-state=failed]",
                    timeout=900_000,
                )
                wall = time.monotonic() - start
                after = _get(f"{url}/api/server")
                render = page.evaluate("window.swarmtwinRenderStats()")
                state = page.get_attribute("#job-state", "data-state")
                if screenshot is not None:
                    page.wait_for_selector("#figures td[data-figure=p95_ms]")
                    page.screenshot(path=str(screenshot), full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(10)
    cpu = after["cpu_seconds"] - before["cpu_seconds"]
    return {
        "scenario": scenario,
        "backend": backend,
        "state": state,
        "wall_s": wall,
        "render": render,
        "server_cpu_s": cpu,
        "server_cpu_share": cpu / wall if wall > 0 else None,
        "frames_pushed": after["push"]["frames"] - before["push"]["frames"],
        "frames_dropped": after["push"]["dropped_frames"],
    }


def _points_feed(points: LivePoints) -> LiveFeed:
    def feed(batch: LiveBatch) -> None:
        points.point("real", batch)

    return feed


def watch_cost(scenario: str, pairs: int) -> list[tuple[bool, float, float]]:
    """(watched, CPU seconds, p95 ms) of ``pairs`` pairs of real runs of ``scenario``."""
    from harness.metrics.figures import summarize
    from harness.run.runner import run_backend
    from harness.scenario.compile import compile_plan
    from harness.scenario.schema import load_scenario
    from harness.scenario.shipped import resolve

    loaded = load_scenario(resolve(scenario))
    plan = compile_plan(loaded)
    found = []
    for _ in range(pairs):
        for watched in (True, False):
            feed = _points_feed(LivePoints(plan)) if watched else None
            result = run_backend(plan, "real", loaded, live=feed)
            summary = summarize(plan, result)
            cpu = sum(p.cpu_seconds for p in result.processes)
            found.append((watched, cpu, summary.latency.p95_ms))
            print(
                f"{'watched' if watched else 'not watched'}: CPU {cpu:.2f} s, "
                f"p95 {summary.latency.p95_ms:.3f} ms",
                flush=True,
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="dashboard")
    parser.add_argument("--backend", choices=["real", "sim", "both"], default="real")
    parser.add_argument("--screenshot", type=Path, default=None, help="save the page here")
    parser.add_argument(
        "--cost", type=int, default=0, metavar="N", help="N pairs of runs, watched and not"
    )
    args = parser.parse_args(argv)
    if args.cost:
        watch_cost(args.scenario, args.cost)
        return 0
    found = measure(args.scenario, args.backend, args.screenshot)
    render = found["render"]
    print(
        f"{found['scenario']} on {found['backend']}: {found['state']} in {found['wall_s']:.1f} s\n"
        f"push-to-render: p50 {render['p50_ms']:.1f} ms, p95 {render['p95_ms']:.1f} ms, "
        f"max {render['max_ms']:.1f} ms over {render['frames']} frames\n"
        f"server CPU: {found['server_cpu_s']:.2f} s over the run "
        f"({found['server_cpu_share']:.1%} of one core), {found['frames_pushed']} frames "
        f"pushed, {found['frames_dropped']} dropped"
    )
    return 0 if found["state"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
