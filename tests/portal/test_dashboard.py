"""``swarmtwin run ... --dashboard``: the run is a portal job, and the portal stays up."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.portal.measure import free_port
from tests.portal.test_browser import get

pytestmark = pytest.mark.slow


def test_run_dashboard_runs_as_a_portal_job_and_stays_up_until_ctrl_c(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    port = free_port()
    command = [sys.executable, "-m", "harness.cli", "--reports", str(reports), "run", "smoke"]
    process = subprocess.Popen(
        [*command, "--backend", "sim", "--duration", "1", "--dashboard", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline and process.poll() is None
            try:
                jobs = get(f"{url}/api/jobs")
            except OSError:
                time.sleep(0.2)
                continue
            if jobs and jobs[0]["state"] == "done":
                break
            time.sleep(0.2)
        (run_dir,) = (reports / "runs").iterdir()
        assert jobs[0]["result"]["run_id"] == run_dir.name
        assert get(f"{url}/api/runs/{run_dir.name}")["figures"]["sim"]["p95_ms"] > 0
        time.sleep(0.5)  # the command prints its table, then waits for Ctrl-C
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "latency p95" in output and f"run folder: {run_dir}" in output
