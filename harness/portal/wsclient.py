"""A client of the agents' WebSocket gateway (``/ws/agent``) shaped like a tcp connection.

``open_ws(url)`` returns a ``real.tcp.client.RawConnection`` whose bytes travel
through the gateway instead of a tcp socket, so that everything written for a
tcp link (the security checks' attacks, ``Bystander``) runs against the
gateway unchanged.

How it works. Writes go into a byte buffer, which is cut into frames of the tcp
envelope (the 4-byte big-endian length, then that many bytes), and each whole
frame is sent as one binary WebSocket message, as ``docs/protocol.md`` asks of a
client. Bytes that cannot be a frame (a length outside ``4..max_frame``) are sent
as they stand, in one message, for the gateway to refuse; so is an incomplete
frame left in the buffer at ``write_eof`` (the tcp half-close: the stream ends
there). Messages are sent in order by a task that runs while there are any;
``drain`` waits until all are sent; ``close`` drops the connection at once.
Every binary message received is fed to an ``asyncio.StreamReader``, and the
WebSocket's close ends that stream, as a tcp connection's EOF does.
"""

from __future__ import annotations

import asyncio
import collections

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from protocol.codec import DEFAULT_MAX_FRAME
from protocol.envelope import LENGTH
from real.tcp.client import CONNECT_TIMEOUT, RawConnection


class FrameWriter:
    """An ``asyncio.StreamWriter`` look-alike that sends one message per frame."""

    def __init__(self, socket: ClientConnection, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.socket = socket
        self.max_frame = max_frame
        self.buffer = bytearray()
        self.outbox: collections.deque[bytes] = collections.deque()
        self.sender: asyncio.Task[None] | None = None  # runs while the outbox has messages
        self.closed = False

    @property
    def transport(self) -> FrameWriter:
        return self  # ``abort`` drops the connection at once

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError("the WebSocket is closed")
        buffer = self.buffer
        buffer += data
        while len(buffer) >= LENGTH.size:
            (length,) = LENGTH.unpack_from(buffer)
            if length < 4 or length > self.max_frame:  # not a frame: let the gateway judge
                self._post(bytes(buffer))
                buffer.clear()
                return
            end = LENGTH.size + length
            if len(buffer) < end:
                return
            self._post(bytes(buffer[:end]))
            del buffer[:end]

    def get_extra_info(self, name: str) -> None:
        return None  # no socket of its own to tune

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """The stream ends: whatever is left (part of a frame) goes as it is."""
        if self.buffer and not self.closed:
            self._post(bytes(self.buffer))
            self.buffer.clear()

    async def drain(self) -> None:
        if self.sender is not None:
            await asyncio.shield(self.sender)
        if self.closed:
            raise ConnectionError("the WebSocket is closed")

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        """Drop the connection (the gateway sees the client go, as a tcp server sees a reset)."""
        self.closed = True
        self.outbox.clear()
        transport = self.socket.transport
        if transport is not None:
            transport.abort()

    def abort(self) -> None:
        self.close()

    def _post(self, message: bytes) -> None:
        self.outbox.append(message)
        if self.sender is None:
            self.sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        try:
            while self.outbox and not self.closed:
                await self.socket.send(self.outbox.popleft())
        except (WebSocketException, OSError):
            self.closed = True
        finally:
            self.sender = None


async def _pump(
    socket: ClientConnection, reader: asyncio.StreamReader, writer: FrameWriter
) -> None:
    """Every binary message into ``reader``; its end when the WebSocket closes."""
    try:
        async for message in socket:
            if isinstance(message, bytes):
                reader.feed_data(message)
    except (WebSocketException, OSError):
        pass
    finally:
        writer.closed = True
        reader.feed_eof()


async def open_ws(
    url: str, timeout: float = CONNECT_TIMEOUT, max_frame: int = DEFAULT_MAX_FRAME
) -> RawConnection:
    """A ``RawConnection`` through the gateway at ``url`` (``ws://127.0.0.1:8089/ws/agent``)."""
    socket = await asyncio.wait_for(
        connect(url, max_size=max_frame + LENGTH.size, open_timeout=timeout), timeout
    )
    reader = asyncio.StreamReader()
    writer = FrameWriter(socket, max_frame)
    pump = asyncio.get_running_loop().create_task(_pump(socket, reader, writer))
    conn = RawConnection(reader, writer)
    conn.helpers = [pump]
    return conn
