"""The tcp transport's asyncio glue around the envelope (``protocol.envelope``).

``FramedLink`` wraps an asyncio ``StreamReader``/``StreamWriter``:
``read_batch`` returns every frame of one socket read, ``send`` buffers an
encoded frame and ``flush`` hands the whole buffer to the transport in one
``write`` (one syscall per event-loop turn and link). ``PipeChannel`` lets
a coroutine await objects from a ``multiprocessing`` pipe without blocking
the event loop (sends stay blocking: a large result is written whole while
the other side reads it).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from protocol.codec import DEFAULT_MAX_FRAME
from protocol.envelope import FrameHeads, MalformedEnvelope, Routed, RoutedDecoder

READ_SIZE = 1 << 18
HIGH_WATER = 1 << 20


class FramedLink:
    """One TCP connection carrying routed frames, with batched writes."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_frame = max_frame
        self.decoder = RoutedDecoder(max_frame)
        self._out: list[bytes] = []
        self._frames = 0
        self._heads = FrameHeads(max_frame)
        self.closed = False
        self.frames_in = 0
        self.frames_out = 0

    @property
    def peer(self) -> str:
        name = self.writer.get_extra_info("peername")
        return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)

    async def read_batch(self) -> list[Routed] | None:
        """The frames completed by the next socket read; None at end of stream.

        Raises ``MalformedEnvelope`` for a bad frame and for a stream that ends
        inside a frame (a truncated frame).
        """
        data = await self.reader.read(READ_SIZE)
        if not data:
            if self.decoder.buffered:
                raise MalformedEnvelope(f"truncated frame: {self.decoder.buffered} bytes")
            return None
        routed = self.decoder.feed(data)
        self.frames_in += len(routed)
        return routed

    def send(self, node_id: str, body: bytes) -> None:
        """Buffer one frame about ``node_id``; ``flush`` writes the buffer.

        Raises ``CodecUsageError`` if the frame exceeds ``max_frame``.
        """
        if self.closed:
            return
        self._out += self._heads.routed(node_id, body)
        self._frames += 1

    def send_fanout(self, node_ids: list[str], body: bytes) -> None:
        """Buffer one fan-out frame of ``body`` for ``node_ids`` (2..255 of them).

        Raises ``CodecUsageError`` if the frame exceeds ``max_frame``.
        """
        if self.closed:
            return
        self._out += self._heads.fanout(node_ids, body)
        self._frames += 1

    def write(self, data: bytes, frames: int) -> None:
        """Hand ``frames`` frames built elsewhere (``protocol.envelope.Outbox``)
        to the transport, after anything ``send`` buffered."""
        if self._out:
            self.flush()
        if not data or self.closed or self.writer.transport.is_closing():
            return  # the peer is gone: lost with the link, retransmission covers it
        self.frames_out += frames
        self.writer.write(data)

    def flush(self) -> None:
        """Hand every buffered frame to the transport in one write."""
        out = self._out
        if not out or self.closed or self.writer.transport.is_closing():
            # The peer is gone: what was buffered is lost with the link, and the
            # protocol's retransmission covers it when the peer reconnects.
            out.clear()
            self._frames = 0
            return
        self.frames_out += self._frames
        self._frames = 0
        self.writer.write(b"".join(out))
        out.clear()

    @property
    def congested(self) -> bool:
        """True when the transport holds more than ``HIGH_WATER`` unsent bytes."""
        transport = self.writer.transport
        return transport is not None and transport.get_write_buffer_size() > HIGH_WATER

    async def backpressure(self) -> None:
        """Wait until the transport's buffer is below its low-water mark."""
        if self.congested and not self.closed:
            try:
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                self.close()

    def half_close(self, linger: float) -> None:
        """Close politely: end our side (FIN, after what was written), write nothing
        more, and close the socket ``linger`` seconds later (idempotent).

        Closing a socket whose peer is still sending (its next frames unread here)
        makes the kernel answer with a reset, and a reset can destroy what we wrote
        last (a ``Reject``, an ``Error``) before the peer reads it. Until the
        linger ends the peer gets our last frames and the end of the stream."""
        if self.closed:
            return
        self.closed = True
        self._out.clear()
        writer = self.writer
        try:
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (OSError, RuntimeError):
            writer.close()
            return
        asyncio.get_running_loop().call_later(linger, writer.close)

    def close(self) -> None:
        """Close the connection (idempotent); anything buffered is dropped."""
        self._out.clear()
        if not self.closed:
            self.closed = True
            self.writer.close()

    async def wait_closed(self, timeout: float = 1.0) -> None:
        """Wait for the close to finish; a peer that stopped reading is cut off."""
        try:
            await asyncio.wait_for(self.writer.wait_closed(), timeout)
        except TimeoutError:
            transport = self.writer.transport
            if transport is not None:
                transport.abort()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def open_link(host: str, port: int, max_frame: int = DEFAULT_MAX_FRAME) -> FramedLink:
    """Connect to a tcp coordinator and wrap the stream."""
    reader, writer = await asyncio.open_connection(host, port, limit=READ_SIZE)
    return FramedLink(reader, writer, max_frame)


class PipeChannel:
    """Await objects from a ``multiprocessing`` pipe on the running event loop.

    A loop reader callback receives each object as soon as the pipe is
    readable and queues it; ``get`` returns it, or None once the other end
    has closed. ``send`` is the pipe's own (small messages do not block).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.eof = False
        self.loop.add_reader(conn.fileno(), self._readable)
        # uvloop (libuv) switches a watched fd to non-blocking mode, which would
        # make ``Connection.send`` of a large object fail half-written. The loop
        # only polls the fd for readiness, so blocking mode is safe to restore.
        os.set_blocking(conn.fileno(), True)

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._items.append(self.conn.recv())
        except (EOFError, OSError):
            self.eof = True
            self.loop.remove_reader(self.conn.fileno())
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self, timeout: float | None = None) -> Any:
        """The next object; None at end of stream; ``TimeoutError`` after ``timeout``."""
        deadline = None if timeout is None else self.loop.time() + timeout
        while not self._items and not self.eof:
            self._waiter = self.loop.create_future()
            left = None if deadline is None else max(0.0, deadline - self.loop.time())
            await asyncio.wait_for(self._waiter, left)
        return self._items.popleft() if self._items else None

    def take_all(self) -> list[Any]:
        """Every object received so far, without waiting."""
        items = list(self._items)
        self._items.clear()
        return items

    def send(self, obj: object) -> bool:
        """Send ``obj``; False when the other end is gone."""
        try:
            self.conn.send(obj)
        except (OSError, ValueError):
            return False
        return True

    def close(self) -> None:
        if not self.eof:
            self.eof = True
            self.loop.remove_reader(self.conn.fileno())
        self.conn.close()
