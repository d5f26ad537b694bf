"""Pushing live updates to the open pages, ten times a second, with bounded memory.

Events (a job's progress, live points, state changes) are collected as they
happen (``Pusher.add``). Every ``PERIOD`` seconds, if any came, they go out as
one *frame*: ``{"seq": n, "stamp_ms": server wall clock, "events": [...]}``.
The stamp lets a page measure push-to-render latency: the time from the
frame's stamp to the moment it has drawn it (both clocks are this machine's).

Each open page is a ``Client`` with a queue of at most ``QUEUE_FRAMES`` frames.
A page that reads slower than frames come (a background tab, a dead
connection) loses its *oldest* frames, never the newest, and the server's
memory stays bounded whatever it does; it counts what it dropped, and the
page, seeing a gap in ``seq``, reloads the job's state over HTTP. Between
periods, events wait in a list bounded by ``MAX_PENDING`` (the oldest go first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any

PERIOD = 0.1  # seconds between frames: 10 Hz
QUEUE_FRAMES = 16  # frames a slow page may fall behind before the oldest are dropped
MAX_PENDING = 5_000  # events waiting for the next frame


class Client:
    """One page's queue of frames (already encoded as text)."""

    def __init__(self) -> None:
        self.frames: deque[str] = deque()
        self.ready = asyncio.Event()
        self.dropped = 0
        self.sent = 0

    def offer(self, frame: str) -> None:
        if len(self.frames) >= QUEUE_FRAMES:
            self.frames.popleft()
            self.dropped += 1
        self.frames.append(frame)
        self.ready.set()

    async def next_frame(self) -> str:
        while not self.frames:
            self.ready.clear()
            await self.ready.wait()
        self.sent += 1
        return self.frames.popleft()


class Pusher:
    """Collects events and hands every client one frame per ``PERIOD``."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.pending: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING)
        self.seq = 0
        self.frames = 0
        self.dropped_events = 0
        self.dropped_frames = 0  # by clients that have gone, plus the live ones' below
        self._task: asyncio.Task[None] | None = None

    def add(self, event: dict[str, Any]) -> None:
        if len(self.pending) == self.pending.maxlen:
            self.dropped_events += 1
        self.pending.append(event)

    def connect(self) -> Client:
        client = Client()
        self.clients.add(client)
        return client

    def disconnect(self, client: Client) -> None:
        self.clients.discard(client)
        self.dropped_frames += client.dropped

    def flush(self) -> str | None:
        """One frame of the pending events, offered to every client (None: none pending)."""
        if not self.pending:
            return None
        events = list(self.pending)
        self.pending.clear()
        self.seq += 1
        frame = json.dumps(
            {"seq": self.seq, "stamp_ms": time.time() * 1000.0, "events": events},
            allow_nan=False,
        )
        self.frames += 1
        for client in self.clients:
            client.offer(frame)
        return frame

    async def run(self) -> None:
        while True:
            await asyncio.sleep(PERIOD)
            self.flush()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def stats(self) -> dict[str, int]:
        return {
            "clients": len(self.clients),
            "frames": self.frames,
            "dropped_events": self.dropped_events,
            "dropped_frames": self.dropped_frames + sum(c.dropped for c in self.clients),
        }
