"""A portal application on a temporary reports folder, through Starlette's TestClient;
and ``server``: ``swarmtwin serve`` itself, a subprocess on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from harness.portal.app import create_app
from harness.portal.measure import free_port
from protocol.settings import DEV_TOKEN

AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    return tmp_path / "reports"


@pytest.fixture
def client(reports: Path) -> Iterator[TestClient]:
    app = create_app(reports, allowed_hosts=("testserver", "127.0.0.1", "localhost"))
    with TestClient(app) as test_client:
        yield test_client


def wait_finished(client: TestClient, job_id: str, limit: float = 120.0) -> dict[str, Any]:
    """Poll a job until it has finished (bounded: ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "invalid", "failed", "stopped"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {limit} s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``swarmtwin serve`` on a free port with its reports under ``tmp_path``: its URL."""
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
