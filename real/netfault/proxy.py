"""A frame-aware, fault-injecting loopback TCP proxy (in the spirit of toxiproxy).

How it works. ``FaultProxy.start`` listens on 127.0.0.1 (port 0). Each
accepted downstream connection gets one upstream connection to the target;
reading from the downstream socket is paused until the upstream one is open
(uvloop may deliver one read regardless; it is held and sent on connect). If
the upstream connection cannot be opened the downstream one is closed, and
the agent side reconnects with its backoff. The pair is a ``_Link`` with one ``_Pipe``
per direction.

A pipe forwards whole frames. It reads the ``u32`` big-endian length prefix
of ``real.tcp.framing`` (``LENGTH``) to find where each frame ends and nothing
else: versions, node ids and bodies are the endpoints' business. So it can
drop or hold back a frame without ever leaving a partial one on the stream.
A length above ``max_frame`` (default ``protocol.codec.DEFAULT_MAX_FRAME``)
means the stream is not framed as expected; the proxy does not buffer it but
switches that direction to pass-through, forwarding each later socket read
as one unit (still subject to the faults), so the endpoint sees the same
malformed bytes it would have seen without the proxy and refuses the link
itself. Bytes of an unfinished frame left at end of stream are forwarded the
same way (the endpoint then sees a truncated frame).

Faults, set with ``set_fault(delay, loss, partitioned)``, apply to every
connection of the proxy from the next frame on:

- ``partitioned``: every frame in both directions is dropped (frames already
  held back by a delay are dropped when their release time comes, if the
  partition still holds). Connections stay open, so ``clear`` lets traffic
  flow again on the same connection.
- ``loss``: each frame is dropped with that probability (a frame dropped by a
  partition draws nothing). Each direction of
  each connection draws from its own ``random.Random``, seeded from the
  proxy's ``rng`` when the connection is accepted, so with one seed the same
  frames are dropped however the two directions' reads interleave.
- ``delay``: each frame is held back ``delay`` seconds, and never released
  before the frame ahead of it in the same direction (lowering the delay
  cannot reorder frames). One loop timer per direction releases every due
  frame in one write. A frame is never released early, and at most about a
  millisecond late (``_TICK``; uvloop's timers have millisecond resolution).

With no fault set and nothing held back, a socket read is scanned for frame
boundaries and everything up to the last complete frame goes out in one
``write`` (the read's own bytes object when it holds whole frames only).

Backpressure: when a socket's write buffer passes its high-water mark, or a
direction holds more than ``real.tcp.framing.HIGH_WATER`` bytes for a delay, the
socket feeding it stops being read until the backlog drains.

Closing: when either side ends its stream, whatever that direction still
holds back is released on schedule and then both sockets are closed. The
other direction's held frames are discarded. ``FaultProxy.close`` stops
listening, closes every link, and aborts sockets that do not close within
``CLOSE_GRACE`` seconds.

``real.netfault.process.proxy_process_main`` runs several proxies in a child process,
driven over a pipe (see its docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import deque
from dataclasses import asdict, dataclass
from typing import cast

from protocol.codec import DEFAULT_MAX_FRAME
from protocol.envelope import LENGTH
from real.tcp.framing import HIGH_WATER

LOOPBACK = "127.0.0.1"
CLOSE_GRACE = 1.0
_PREFIX = LENGTH.size
_TICK = 0.001
_CONNECT = "connect"
_PEER_FULL = "peer-full"
_HELD_FULL = "held-full"


@dataclass(slots=True)
class ProxyStats:
    """Counters over every connection of one ``FaultProxy``.

    ``forwarded`` counts frames written on (pass-through units count as
    frames), ``bytes`` their bytes; ``delayed`` counts frames held back by a
    delay (they are also counted as forwarded or dropped when released).
    ``malformed`` counts directions that fell back to pass-through.
    """

    forwarded: int = 0
    dropped_loss: int = 0
    dropped_partition: int = 0
    delayed: int = 0
    bytes: int = 0
    connections: int = 0
    upstream_failures: int = 0
    malformed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Fault:
    """The fault state a proxy applies to every frame."""

    delay: float = 0.0
    loss: float = 0.0
    partitioned: bool = False

    @property
    def idle(self) -> bool:
        return self.delay == 0.0 and self.loss == 0.0 and not self.partitioned


class _Side(asyncio.Protocol):
    """One socket of a link: feeds what it reads into its outgoing pipe."""

    def __init__(self, link: _Link, downstream: bool) -> None:
        self.link = link
        self.downstream = downstream
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._blocks: set[str] = set()

    @property
    def pipe_out(self) -> _Pipe:
        return self.link.to_up if self.downstream else self.link.to_down

    @property
    def peer(self) -> _Side:
        return self.link.up if self.downstream else self.link.down

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.downstream:
            self.block(_CONNECT)
            self.link.connected_downstream()

    def data_received(self, data: bytes) -> None:
        if self._blocks:
            self._keep_paused()
        self.pipe_out.feed(data)

    def eof_received(self) -> bool:
        self.pipe_out.end()
        return True  # the link closes both sockets once the pipe is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.link.side_lost(self)

    def pause_writing(self) -> None:
        self.peer.block(_PEER_FULL)

    def resume_writing(self) -> None:
        self.peer.unblock(_PEER_FULL)

    def block(self, reason: str) -> None:
        """Stop reading this socket until every ``reason`` is lifted."""
        transport = self.transport
        if not self._blocks and transport is not None and not transport.is_closing():
            transport.pause_reading()
        self._blocks.add(reason)

    def _keep_paused(self) -> None:
        """Pause again: uvloop starts reading after ``connection_made`` regardless."""
        transport = self.transport
        if transport is not None and transport.is_reading() and not transport.is_closing():
            transport.pause_reading()

    def unblock(self, reason: str) -> None:
        if reason not in self._blocks:
            return
        self._blocks.discard(reason)
        transport = self.transport
        if not self._blocks and transport is not None and not transport.is_closing():
            transport.resume_reading()

    def write(self, data: bytes) -> bool:
        """Write ``data``; False when this socket can no longer be written."""
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return False
        transport.write(data)
        return True


class _Pipe:
    """One direction of a link: frames read from ``src`` are written to ``dst``."""

    def __init__(self, link: _Link, src: _Side, dst: _Side, rng: random.Random) -> None:
        self.link = link
        self.proxy = link.proxy
        self.stats = link.proxy.stats
        self.src = src
        self.dst = dst
        self.rng = rng
        self.max_frame = link.proxy.max_frame
        self.buffer = bytearray()
        self.raw = False
        self.ended = False
        self.held: deque[tuple[float, bytes]] = deque()
        self.held_bytes = 0
        self.last_release = 0.0
        self.pending: list[tuple[bytes, int]] = []
        self.timer: asyncio.TimerHandle | None = None

    # --- input -------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Forward every frame ``data`` completes; keep the rest for the next read."""
        if self.ended:
            return
        if self.raw:
            self._route([data])
            return
        buffer = self.buffer
        chunk: bytes | bytearray = data
        if buffer:
            buffer += data
            chunk = buffer
        if self.proxy.idle and not self.held:
            end, count, framed = self._scan(chunk)
            if count:
                if chunk is data:
                    self._write_now(data if end == len(data) else data[:end], count)
                else:
                    self._write_now(bytes(chunk[:end]), count)
        else:
            frames, end, framed = self._split(chunk)
            if frames:
                self._route(frames)
        if framed:
            self._keep(chunk, end)
        else:
            self._go_raw(chunk, end)

    def _scan(self, chunk: bytes | bytearray) -> tuple[int, int, bool]:
        """The offset after the last complete frame in ``chunk``, the frames before it,
        and False if a length from there on is out of range (the stream is not framed)."""
        offset = 0
        count = 0
        size = len(chunk)
        max_frame = self.max_frame
        unpack = LENGTH.unpack_from
        while size - offset >= _PREFIX:
            (length,) = unpack(chunk, offset)
            if length > max_frame:
                return offset, count, False
            following = offset + _PREFIX + length
            if following > size:
                break
            offset = following
            count += 1
        return offset, count, True

    def _split(self, chunk: bytes | bytearray) -> tuple[list[bytes], int, bool]:
        """Like ``_scan``, but with each complete frame as its own bytes."""
        frames: list[bytes] = []
        offset = 0
        size = len(chunk)
        max_frame = self.max_frame
        unpack = LENGTH.unpack_from
        with memoryview(chunk) as view:
            while size - offset >= _PREFIX:
                (length,) = unpack(chunk, offset)
                if length > max_frame:
                    return frames, offset, False
                following = offset + _PREFIX + length
                if following > size:
                    break
                frames.append(bytes(view[offset:following]))
                offset = following
        return frames, offset, True

    def _keep(self, chunk: bytes | bytearray, end: int) -> None:
        """Keep ``chunk[end:]`` (an unfinished frame) for the next read."""
        buffer = self.buffer
        if chunk is buffer:
            del buffer[:end]
        elif end < len(chunk):
            buffer += memoryview(chunk)[end:]

    def _go_raw(self, chunk: bytes | bytearray, offset: int) -> None:
        """The stream is not framed from ``offset`` on: pass every later byte through."""
        rest = bytes(chunk[offset:])
        self.buffer = bytearray()
        self.raw = True
        self.stats.malformed += 1
        self._route([rest])

    def end(self) -> None:
        """The source ended its stream: forward what is left, then close the link."""
        if self.ended:
            return
        if self.buffer:
            rest = bytes(self.buffer)
            self.buffer.clear()
            self._route([rest])
        self.ended = True
        self.finish()

    def finish(self) -> None:
        """Close the link once the source has ended and nothing is left to send."""
        if self.ended and not self.held and not self.pending:
            self.link.close()

    # --- faults ------------------------------------------------------------------------

    def _route(self, frames: list[bytes]) -> None:
        """Apply the proxy's current fault to ``frames`` (in order) and forward the rest."""
        fault = self.proxy.fault
        if fault.idle and not self.held:
            self._write_now(b"".join(frames), len(frames))
            return
        stats = self.stats
        if fault.partitioned:
            stats.dropped_partition += len(frames)
            return
        loss = fault.loss
        if loss > 0.0:
            draw = self.rng.random
            kept = [frame for frame in frames if draw() >= loss]
            stats.dropped_loss += len(frames) - len(kept)
            frames = kept
            if not frames:
                return
        if fault.delay == 0.0 and not self.held:
            self._write_now(b"".join(frames), len(frames))
            return
        loop = self.link.loop
        release = max(loop.time() + fault.delay, self.last_release)
        self.last_release = release
        if fault.delay > 0.0:
            stats.delayed += len(frames)
        for frame in frames:
            self.held.append((release, frame))
            self.held_bytes += len(frame)
        if self.held_bytes > HIGH_WATER:
            self.src.block(_HELD_FULL)
        if self.timer is None:
            self._arm()

    def _arm(self) -> None:
        """Wake up for the first held frame: never early, and at least one tick ahead
        (uvloop's timers truncate to whole milliseconds and would otherwise spin)."""
        loop = self.link.loop
        self.timer = loop.call_later(max(self.held[0][0] - loop.time(), _TICK), self._release)

    def _release(self) -> None:
        """Release every held frame whose time has come, in one write."""
        self.timer = None
        now = self.link.loop.time()
        held = self.held
        due: list[bytes] = []
        while held and held[0][0] <= now:
            frame = held.popleft()[1]
            self.held_bytes -= len(frame)
            due.append(frame)
        if due:
            if self.proxy.fault.partitioned:
                self.stats.dropped_partition += len(due)
            else:
                self._write_now(b"".join(due), len(due))
        if self.held_bytes <= HIGH_WATER // 2:
            self.src.unblock(_HELD_FULL)
        if held:
            self._arm()
        else:
            self.finish()

    def _write_now(self, data: bytes, frames: int) -> None:
        if not data:
            return
        dst = self.dst
        if dst.transport is None and not dst.lost:
            # Read before the upstream connection is open: sent once it is.
            self.pending.append((data, frames))
        elif dst.write(data):
            self.stats.forwarded += frames
            self.stats.bytes += len(data)

    def flush_pending(self) -> None:
        """Write what was read before ``dst`` connected."""
        pending, self.pending = self.pending, []
        for data, frames in pending:
            self._write_now(data, frames)

    def discard(self) -> None:
        """Drop whatever is held back (the link is closing)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.held.clear()
        self.held_bytes = 0
        self.buffer.clear()
        self.pending.clear()
        self.ended = True


class _Link:
    """A downstream connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.down = _Side(self, downstream=True)
        self.up = _Side(self, downstream=False)
        self.to_up = _Pipe(self, self.down, self.up, random.Random(proxy.rng.getrandbits(64)))
        self.to_down = _Pipe(self, self.up, self.down, random.Random(proxy.rng.getrandbits(64)))
        self.connector: asyncio.Task[None] | None = None
        self.closed = False

    def connected_downstream(self) -> None:
        self.proxy.links.add(self)
        self.proxy.stats.connections += 1
        self.connector = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        proxy = self.proxy
        try:
            await self.loop.create_connection(
                lambda: self.up, proxy.upstream_host, proxy.upstream_port
            )
        except OSError:
            proxy.stats.upstream_failures += 1
            self.close()
            return
        if self.closed:
            self.close_sockets()
            return
        self.to_up.flush_pending()
        self.down.unblock(_CONNECT)
        self.to_up.finish()  # the downstream side may have ended while we connected

    def side_lost(self, side: _Side) -> None:
        """A socket is gone: frames bound for it are dropped, what it sent goes on."""
        (self.to_down if side.downstream else self.to_up).discard()
        side.pipe_out.end()

    def close(self) -> None:
        """Close both sockets (idempotent); frames still held back are dropped."""
        if self.closed:
            return
        self.closed = True
        self.to_up.discard()
        self.to_down.discard()
        if self.connector is not None and not self.connector.done():
            self.connector.cancel()
        self.close_sockets()
        self.proxy.links.discard(self)

    def close_sockets(self) -> None:
        for side in (self.down, self.up):
            if side.transport is not None:
                side.transport.close()

    @property
    def gone(self) -> bool:
        """Both sockets are closed (or were never opened)."""
        return all(side.transport is None or side.lost for side in (self.down, self.up))


class FaultProxy:
    """A loopback TCP proxy that forwards whole frames and injects faults into them."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        rng: random.Random,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.rng = rng
        self.max_frame = max_frame
        self.fault = Fault()
        self.idle = True
        self.stats = ProxyStats()
        self.links: set[_Link] = set()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen on 127.0.0.1, an ephemeral port, and return the port."""
        if self._server is not None:
            return self.port
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Link(self).down, LOOPBACK, 0, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def set_fault(self, delay: float, loss: float, partitioned: bool) -> None:
        """Apply this fault to every frame from now on, in every connection."""
        if not (math.isfinite(delay) and delay >= 0.0):
            raise ValueError(f"delay must be a finite number of seconds >= 0: {delay!r}")
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must lie in 0..1: {loss!r}")
        self.fault = Fault(float(delay), float(loss), bool(partitioned))
        self.idle = self.fault.idle

    def clear(self) -> None:
        """No fault: frames pass as they come."""
        self.set_fault(0.0, 0.0, False)

    async def close(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        loop = asyncio.get_running_loop()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self.links)
        for link in links:
            link.close()
        deadline = loop.time() + CLOSE_GRACE
        while any(not link.gone for link in links) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for link in links:
            for side in (link.down, link.up):
                if side.transport is not None and not side.lost:
                    side.transport.abort()
        self.links.clear()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), CLOSE_GRACE)
