"""The agents' WebSocket gateway (``/ws/agent``): the tcp protocol's frames, one per message.

A client in any language that speaks WebSocket can join the swarm of the
coordinator the portal is attached to (``swarmtwin serve --coordinator``). For
each WebSocket the gateway opens one tcp connection to the coordinator and
carries frames both ways, unchanged:

- each binary message from the client must be exactly one frame of the tcp
  envelope (``protocol.envelope``: the 4-byte big-endian length, then that many
  bytes, at most ``max_frame``); the gateway checks only that framing and writes
  the bytes to the coordinator, which checks everything else (version byte, node
  id, body, token) exactly as it does on a tcp link, and answers or refuses the
  same way;
- each frame the coordinator sends becomes one binary message (a fan-out frame
  stays one message: the client decodes it as a tcp worker does).

A text message, or a binary one that is not exactly one frame, closes the
WebSocket with code 1008 and a reason, and the tcp connection with it; so does
the coordinator closing its end (after a ``Reject`` for a wrong token, say),
with code 1000 or 1011, once every frame it sent before closing has been passed
on. Nothing here buffers without bound: a frame is read from the coordinator
only once the previous one has been handed to the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect

from protocol.codec import DEFAULT_MAX_FRAME
from protocol.envelope import LENGTH

log = logging.getLogger("swarmtwin.portal.gateway")
POLICY = 1008  # WebSocket close code: a message the gateway will not carry
NO_COORDINATOR = 1011
CONNECT_TIMEOUT = 3.0
DRAIN_TIMEOUT = 2.0  # for what the coordinator sent before it closed


def framing_error(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> str:
    """Why ``data`` is not exactly one frame of the tcp envelope ("" if it is)."""
    if len(data) < LENGTH.size:
        return f"a message of {len(data)} bytes has no frame length"
    (length,) = LENGTH.unpack_from(data)
    if length < 4 or length > max_frame:
        return f"frame length {length} outside 4..{max_frame}"
    if length != len(data) - LENGTH.size:
        return f"frame length {length} but {len(data) - LENGTH.size} bytes follow it"
    return ""


class Gateway:
    """Bridges WebSockets to the coordinator at ``host:port``; counts what it refused."""

    def __init__(self, host: str, port: int, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.host = host
        self.port = port
        self.max_frame = max_frame
        self.links = 0
        self.refused = 0

    async def serve(self, socket: WebSocket) -> None:
        await socket.accept()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            await socket.close(NO_COORDINATOR, f"coordinator unreachable: {exc}"[:120])
            return
        self.links += 1
        upward = asyncio.create_task(self._upward(socket, writer))
        downward = asyncio.create_task(self._downward(socket, reader))
        try:
            done, _ = await asyncio.wait({upward, downward}, return_when=asyncio.FIRST_COMPLETED)
            reason = next(iter(done)).result()
            if downward not in done and reason is not None and reason[0] == NO_COORDINATOR:
                # the coordinator closed its end while the client wrote: what it sent
                # before closing (a Reject, an Error) still goes to the client
                with contextlib.suppress(TimeoutError):
                    reason = await asyncio.wait_for(asyncio.shield(downward), DRAIN_TIMEOUT)
        finally:
            for task in (upward, downward):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
            self.links -= 1
        if reason is not None:
            code, text = reason
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await socket.close(code, text[:120])

    async def _upward(
        self, socket: WebSocket, writer: asyncio.StreamWriter
    ) -> tuple[int, str] | None:
        """Client to coordinator; a reason to close, or None when the client left."""
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return None
            data = message.get("bytes")
            if data is None:
                self.refused += 1
                log.warning("gateway: refused a text message")
                return POLICY, "binary messages only: one tcp envelope frame each"
            problem = framing_error(data, self.max_frame)
            if problem:
                self.refused += 1
                log.warning("gateway: refused a message: %s", problem)
                return POLICY, problem
            writer.write(data)
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                return NO_COORDINATOR, "the coordinator closed the link"

    async def _downward(
        self, socket: WebSocket, reader: asyncio.StreamReader
    ) -> tuple[int, str] | None:
        """Coordinator to client, one frame per message."""
        while True:
            try:
                head = await reader.readexactly(LENGTH.size)
                (length,) = LENGTH.unpack(head)
                if length > self.max_frame:
                    return NO_COORDINATOR, "the coordinator sent an oversized frame"
                body = await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return 1000, "the coordinator closed the link"
            await socket.send_bytes(head + body)
