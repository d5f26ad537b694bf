"""The portal's state: its settings, its jobs, its pusher and what it has measured.

One ``Portal`` lives in ``app.state.portal`` for the application's life. It
also answers ``GET /api/server``: the server process's CPU seconds since it
started (``time.process_time``), so the cost of pushing at 10 Hz during a run
can be read off by comparing two readings, and the last push-to-render
latency a page reported.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from harness.portal.gateway import Gateway
from harness.portal.jobs import Event, Job, Jobs
from harness.portal.push import Pusher
from harness.portal.system import Coordinator, SystemLink
from protocol.settings import ProtocolSettings


def finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float as the string JSON cannot carry
    otherwise (``"inf"``, ``"-inf"``, ``"nan"``): a latency of a run whose
    completions never came is infinite, and says so."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def headline(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each backend's headline figures from a ``summary.json``: a backend that ran once
    gives ``Summary.figures()``; one that ran several times, the median of each."""
    from harness.metrics.summary import Summary

    found: dict[str, dict[str, Any]] = {}
    for backend, data in summary.get("backends", {}).items():
        if "figures" in data:  # repeated: every figure's median and interval
            found[backend] = {name: entry.get("median") for name, entry in data["figures"].items()}
        else:
            found[backend] = finite(dict(Summary.from_dict(data).figures()))
    return found


class Portal:
    def __init__(
        self, reports: Path, settings: ProtocolSettings, coordinator: Coordinator | None = None
    ) -> None:
        self.reports = reports
        self.settings = settings
        self.coordinator = coordinator
        self.system = SystemLink(coordinator)
        self.gateway = (
            Gateway(coordinator.host, coordinator.port) if coordinator is not None else None
        )
        self.pusher = Pusher()
        self.jobs = Jobs(reports, self._job_event)
        self.render: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once it runs
        self.refused = 0
        self.started = time.time()
        self._cpu0 = time.process_time()

    def _job_event(self, job: Job, event: Event) -> None:
        self.pusher.add({"job": job.job_id, **event})

    def summary(self, folder: Path) -> dict[str, Any] | None:
        path = folder / "summary.json"
        if not path.is_file():
            return None
        found: dict[str, Any] = finite(json.loads(path.read_text()))
        return found

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
        }
