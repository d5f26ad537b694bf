"""``swarmtwin run ... --dashboard``: the run as a portal job, with the portal up to watch it.

``Dashboard.start`` serves the portal (``harness.portal.app``) from a thread of
this process on loopback, then starts the run in it as a job
(``harness.jobs.manager``), exactly as the page's Start button does: the same
subprocess, the same live points, the same filing. The command then waits for
the job, prints the table ``swarmtwin run`` prints, and keeps the portal up
(so the page keeps the run's figures) until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from harness.jobs.manager import Job, JobRequest
from harness.portal.app import create_app
from harness.portal.state import Portal

START_TIMEOUT = 15.0


class Dashboard:
    def __init__(self, reports: Path, port: int) -> None:
        import uvicorn

        self.app = create_app(reports)
        self.state: Portal = self.app.state.portal
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="portal", daemon=True)
        self.url = f"http://localhost:{port}/"

    def start(self, request: JobRequest) -> Job:
        """Serve the portal and start ``request`` in it; ``OSError`` if it cannot listen."""
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the portal did not start on {self.url}")
            time.sleep(0.05)
        loop = self.state.loop
        assert loop is not None
        return asyncio.run_coroutine_threadsafe(self.state.jobs.start(request), loop).result(10)

    def wait(self, job: Job) -> Job:
        while not job.finished:
            time.sleep(0.2)
        return job

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
