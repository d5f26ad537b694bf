"""Runs, certifications and regression checks started from the portal or the MCP
server: one ``harness.jobs.child`` subprocess at a time.

``Jobs.start`` launches ``python -m harness.jobs.child KIND ...`` with the
request's scenario (or suite, or baseline) and options, in a new session, and
reads its JSON lines as they come (``Job.take``): the labels, progress, live
points or log lines and, at the end, the result: the run's id or the report's,
and the table the CLI prints. Each line also goes to every listener
(``listeners``: the portal pushes it to every open page; the MCP server turns
progress into progress notifications).

One job runs at a time: a second run would share the machine's cores with the
first and spoil both measurements, so ``start`` refuses it (``Busy``). A stop
sends SIGTERM to the job's whole session (the coordinator and worker processes
of a tcp run included), then SIGKILL after ``STOP_GRACE`` seconds; a stopped
run files nothing. A job's standard error goes to
``<reports>/jobs/job-<id>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STOP_GRACE = 5.0
MAX_POINTS = 50_000  # live points kept per job, for a page that opens late
MAX_LOG = 200  # log lines kept per job (certify and regress say what they are doing)
KEPT_JOBS = 20  # finished jobs remembered
LINE_LIMIT = 1 << 20  # the longest line a job may write (its final table)

Event = dict[str, Any]


class Busy(Exception):
    """A job is already running."""


@dataclass(frozen=True)
class JobRequest:
    """What to do: ``run`` a scenario (a shipped name or a path) with the CLI's
    overrides, ``certify`` with a suite, ``regress`` against a baseline, or
    ``validate`` the model with a validation suite (a fidelity report)."""

    scenario: str = ""  # run: the scenario; certify: the suite; regress: the baseline's name
    backend: str | None = None  # real, sim or both; None: the scenario's backends
    transport: str | None = None
    seed: int | None = None
    duration: float | None = None
    kind: str = "run"  # run, certify, regress or validate (a fidelity report)
    repetitions: int | None = None
    replications: int | None = None  # validate: the model's per point

    def arguments(self) -> list[str]:
        found = [self.kind, self.scenario]
        for flag, value in (
            ("--backend", self.backend),
            ("--transport", self.transport),
            ("--seed", self.seed),
            ("--duration", self.duration),
            ("--repetitions", self.repetitions),
            ("--replications", self.replications),
        ):
            if value is not None:
                found += [flag, str(value)]
        return found


@dataclass
class Job:
    """One run: its request, state and everything it has said so far."""

    job_id: str
    request: JobRequest
    started: float = field(default_factory=time.time)
    state: str = "starting"  # starting, running, done, invalid, failed, stopped
    info: Event = field(default_factory=dict)  # the "started" line
    progress: dict[str, float] = field(default_factory=dict)
    points: list[Event] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # the last MAX_LOG "log" lines
    result: Event | None = None  # the "done" line
    error: str | None = None
    exit_code: int | None = None
    process: asyncio.subprocess.Process | None = None
    stopping: bool = False

    @property
    def finished(self) -> bool:
        return self.state in ("done", "invalid", "failed", "stopped")

    def take(self, event: Event) -> None:
        """Keep what a line says."""
        kind = event.get("type")
        if kind == "started":
            self.info = {k: v for k, v in event.items() if k != "type"}
            self.state = "running"
        elif kind == "progress":
            self.progress[str(event["label"])] = min(max(float(event["fraction"]), 0.0), 1.0)
        elif kind == "point":
            if len(self.points) < MAX_POINTS:
                self.points.append(event)
        elif kind == "log":
            self.log.append(str(event.get("line", "")))
            del self.log[:-MAX_LOG]
        elif kind == "done":
            self.result = {k: v for k, v in event.items() if k != "type"}
        elif kind == "error":
            self.error = str(event.get("message", ""))

    def status(self, points: bool = False) -> dict[str, Any]:
        found: dict[str, Any] = {
            "job_id": self.job_id,
            "request": vars(self.request),
            "state": self.state,
            "started": self.started,
            "info": self.info,
            "progress": self.progress,
            "result": self.result,
            "log": self.log,
            "error": self.error,
            "exit_code": self.exit_code,
        }
        if points:
            found["points"] = self.points
        return found


class Jobs:
    """The portal's jobs: at most one running, the last ``KEPT_JOBS`` remembered."""

    def __init__(self, reports: Path, on_event: Callable[[Job, Event], None] | None = None) -> None:
        self.reports = reports
        self.listeners: list[Callable[[Job, Event], None]] = [on_event] if on_event else []
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._readers: set[asyncio.Task[None]] = set()

    def on_event(self, job: Job, event: Event) -> None:
        """Hand ``event`` to every listener (the portal's pusher, the MCP server's waiters)."""
        for listener in self.listeners:
            listener(job, event)

    @property
    def running(self) -> Job | None:
        return next((job for job in self.jobs.values() if not job.finished), None)

    async def start(self, request: JobRequest) -> Job:
        current = self.running
        if current is not None:
            raise Busy(
                f"job {current.job_id} is still running: one run at a time, since a second "
                "would share the cores and spoil both measurements"
            )
        job = Job(f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._ids)}", request)
        log_dir = self.reports / "jobs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"job-{job.job_id}.log", "wb") as log:
            job.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "harness.jobs.child",
                *request.arguments(),
                "--reports",
                str(self.reports),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                limit=LINE_LIMIT,
            )
        self.jobs[job.job_id] = job
        self._forget_old()
        reader = asyncio.create_task(self._read(job))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        self.on_event(job, {"type": "state", "state": job.state})
        return job

    async def _read(self, job: Job) -> None:
        process = job.process
        assert process is not None and process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # a line over LINE_LIMIT: not one of ours
                job.error = "the job wrote a line too long to be one of its reports"
                continue
            if not line:
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # not a report line; the log has the job's own output
            if isinstance(event, dict):
                job.take(event)
                self.on_event(job, event)
        job.exit_code = await process.wait()
        if job.stopping:
            job.state = "stopped"
        elif job.result is not None:
            job.state = "done" if job.result.get("valid") else "invalid"
        else:
            job.state = "failed"
            if job.error is None:
                job.error = f"the job exited with status {job.exit_code} and filed no run"
        self.on_event(job, {"type": "state", "state": job.state, "error": job.error})

    async def stop(self, job: Job) -> None:
        """End ``job`` and every process it started (nothing is filed)."""
        process = job.process
        if process is None or job.finished:
            return
        job.stopping = True
        self._signal(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            self._signal(process.pid, signal.SIGKILL)
        # the session's other processes (a tcp run's coordinator and workers)
        self._signal(process.pid, signal.SIGKILL)

    @staticmethod
    def _signal(session: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session, sig)

    async def close(self) -> None:
        """Stop a running job (the server is shutting down)."""
        job = self.running
        if job is not None:
            await self.stop(job)
        for reader in list(self._readers):
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self.jobs.items() if job.finished]
        for job_id in finished[: max(0, len(finished) - KEPT_JOBS)]:
            del self.jobs[job_id]
