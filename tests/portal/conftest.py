"""A portal application on a temporary reports folder, through Starlette's TestClient."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from harness.portal.app import create_app
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
