"""What the MCP server's tools act on: the reports folder, the jobs, and the swarm.

One ``McpState`` per server. ``swarm`` is None until ``swarm_init`` and again after
``swarm_destroy``; ``require_swarm`` says so in a tool error. ``watch`` gives a
queue of one job's events (``Jobs`` hands every event to ``_on_event``), for
``run_scenario`` to turn into progress notifications. ``close`` destroys a swarm
that is still live and stops a running job, so that a server that exits leaves
no process behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness.jobs.manager import Event, Job, Jobs
from harness.swarm.swarm import Swarm, SwarmError

CLIENT = "mcp-client"  # the server's own agent on the swarm's coordinator


class McpState:
    def __init__(self, reports: Path, jobs: Jobs | None = None) -> None:
        self.reports = reports
        self.jobs = jobs if jobs is not None else Jobs(reports)
        self.jobs.listeners.append(self._on_event)
        self.swarm: Swarm | None = None
        self.lock = asyncio.Lock()  # one swarm change at a time
        self._watchers: dict[str, list[asyncio.Queue[Event]]] = {}

    def require_swarm(self) -> Swarm:
        if self.swarm is None:
            raise SwarmError("no swarm: start one with swarm_init")
        return self.swarm

    def watch(self, job_id: str) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._watchers.setdefault(job_id, []).append(queue)
        return queue

    def unwatch(self, job_id: str, queue: asyncio.Queue[Event]) -> None:
        queues = self._watchers.get(job_id, [])
        if queue in queues:
            queues.remove(queue)
        if not queues:
            self._watchers.pop(job_id, None)

    def _on_event(self, job: Job, event: Event) -> None:
        for queue in self._watchers.get(job.job_id, []):
            queue.put_nowait(event)

    async def close(self) -> None:
        if self.swarm is not None:
            swarm, self.swarm = self.swarm, None
            await swarm.destroy()
        await self.jobs.close()
