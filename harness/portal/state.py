"""The portal's state: its settings, its jobs, its pusher and what it has measured.

One ``Portal`` lives in ``app.state.portal`` for the application's life. It
also answers ``GET /api/server``: the server process's CPU seconds since it
started (``time.process_time``), so the cost of pushing at 10 Hz during a run
can be read off by comparing two readings, and the last push-to-render
latency a page reported.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from harness.jobs.manager import Event, Job, Jobs
from harness.mcp.state import McpState
from harness.portal.gateway import Gateway
from harness.portal.push import Pusher
from harness.swarm.console import Console, Coordinator
from protocol.settings import ProtocolSettings


class Portal:
    def __init__(
        self, reports: Path, settings: ProtocolSettings, coordinator: Coordinator | None = None
    ) -> None:
        self.reports = reports
        self.settings = settings
        self.coordinator = coordinator
        self.system = Console(coordinator)
        self.gateway = (
            Gateway(coordinator.host, coordinator.port) if coordinator is not None else None
        )
        self.pusher = Pusher()
        self.jobs = Jobs(reports, self._job_event)
        self.mcp = McpState(reports, self.jobs)  # the MCP server at /mcp/ shares the jobs
        self.mcp_gate: Any = None  # its token check, once mounted (refusals counted)
        self.render: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once it runs
        self.refused = 0
        self.started = time.time()
        self._cpu0 = time.process_time()

    def _job_event(self, job: Job, event: Event) -> None:
        self.pusher.add({"job": job.job_id, **event})

    def describe(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uptime_s": time.time() - self.started,
            "cpu_seconds": time.process_time() - self._cpu0,
            "push": self.pusher.stats(),
            "render": self.render,
            "refused_tokens": self.refused,
            "coordinator": None
            if self.coordinator is None
            else f"{self.coordinator.host}:{self.coordinator.port}",
            "gateway": None
            if self.gateway is None
            else {"links": self.gateway.links, "refused": self.gateway.refused},
            "running_job": None if self.jobs.running is None else self.jobs.running.job_id,
            "mcp": {
                "swarm": None if self.mcp.swarm is None else self.mcp.swarm.swarm_id,
                "refused": 0 if self.mcp_gate is None else self.mcp_gate.refused,
            },
        }
