"""Clients of a live tcp coordinator: a raw connection and a registered agent.

The security checks (``harness.certify.security``) use both to attack a live
coordinator and to prove it still serves others; the portal
(``harness.swarm.console``) uses the registered agent as its console: the live
status, and memory reads and writes.

How it works. ``RawConnection`` is one loopback connection that writes
whatever bytes it is given (valid routed frames or garbage) and reads what
the coordinator answers with a ``real.tcp.framing.RoutedDecoder``, always under a
deadline: ``read_until`` stops at a predicate, at end of stream or at the
timeout, and says which. It never raises for what the server does (a reset,
an undecodable answer); the outcome is data for the caller to judge.

``Bystander`` is a well-behaved registered agent on its own connection: it
says ``Hello`` with the right token, heartbeats every ``heartbeat_interval``,
acks every ``Deliver`` and ``TaskDone``, keeps the last ``KEPT`` of each, and
answers requests through futures. ``serve_once`` is one round of service: a ``Probe``, a memory
``PUT`` and a ``GET`` of the value just written, each with a deadline. The
security checks call it after every attack to prove that the coordinator
still serves legitimate clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from protocol.codec import MalformedFrame, encode_body
from protocol.envelope import Routed, RoutedDecoder, encode_routed, node_id_bytes
from protocol.messages import (
    Accepted,
    Ack,
    Busy,
    Deliver,
    Heartbeat,
    Hello,
    ListReply,
    ListRequest,
    ListWhat,
    MemReply,
    MemRequest,
    MemVerb,
    Message,
    Probe,
    ProbeReply,
    Publish,
    StatusReply,
    StatusRequest,
    TaskDone,
    TaskDoneAck,
    Welcome,
)
from protocol.status import StatusParts

HOST = "127.0.0.1"
READ_CHUNK = 1 << 16
CONNECT_TIMEOUT = 3.0
KEPT = 10_000  # deliveries and task results a Bystander keeps (the oldest go first)


def routed_frame(node: str, msg: Message) -> bytes:
    """One valid routed frame carrying ``msg`` about ``node``."""
    return encode_routed(node_id_bytes(node), encode_body(msg))


@dataclass(slots=True)
class ReadOutcome:
    """What ``RawConnection.read_until`` saw."""

    frames: list[Routed]
    closed: bool  # the server ended the stream (EOF or reset)
    matched: bool  # the predicate was met
    garbled: str = ""  # the server's bytes did not decode (never expected)


class ByteWriter(Protocol):
    """What ``RawConnection`` writes to: an ``asyncio.StreamWriter``, or another byte
    stream shaped like one (``harness.portal.wsclient``: the WebSocket gateway)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    def can_write_eof(self) -> bool: ...
    def write_eof(self) -> None: ...
    def get_extra_info(self, name: str) -> Any: ...
    @property
    def transport(self) -> Any: ...  # has ``abort()``, or is None


class RawConnection:
    """One loopback connection that may send anything."""

    def __init__(self, reader: asyncio.StreamReader, writer: ByteWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = RoutedDecoder()
        self.frames: list[Routed] = []
        self.closed = False
        self.garbled = ""
        self.helpers: list[asyncio.Task[None]] = []  # tasks that carry its bytes, if any

    @classmethod
    async def open(
        cls, port: int, timeout: float = CONNECT_TIMEOUT, host: str = HOST
    ) -> RawConnection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer)

    def send(self, data: bytes) -> bool:
        """Queue ``data``; False if the connection is already gone."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
        except (ConnectionError, OSError, RuntimeError):
            return False
        return True

    def send_msg(self, node: str, msg: Message) -> bool:
        return self.send(routed_frame(node, msg))

    async def drain(self, timeout: float) -> bool:
        """Wait until the written bytes left for the kernel; False on timeout or error."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except (TimeoutError, ConnectionError, OSError, RuntimeError):
            return False
        return True

    def half_close(self) -> None:
        """Send EOF (no more bytes from us) and keep reading."""
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if self.writer.can_write_eof():
                self.writer.write_eof()

    async def _read_chunk(self, timeout: float) -> bytes | None:
        """One chunk; ``b""`` at end of stream; None on timeout."""
        try:
            return await asyncio.wait_for(self.reader.read(READ_CHUNK), timeout)
        except TimeoutError:
            return None
        except (ConnectionError, OSError):
            return b""

    async def read_until(
        self, done: Callable[[list[Routed]], bool] | None, timeout: float
    ) -> ReadOutcome:
        """Read frames until ``done(frames)`` is true, the stream ends, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if done is not None and done(self.frames):
                return ReadOutcome(list(self.frames), False, True, self.garbled)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            chunk = await self._read_chunk(left)
            if chunk is None:
                break
            if not chunk:
                self.closed = True
                break
            if not self.garbled:
                try:
                    self.frames.extend(self.decoder.feed(chunk))
                except MalformedFrame as exc:
                    self.garbled = str(exc)
        matched = done is not None and done(self.frames)
        return ReadOutcome(list(self.frames), self.closed, matched, self.garbled)

    async def read_until_closed(self, timeout: float) -> ReadOutcome:
        return await self.read_until(None, timeout)

    def close(self) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            self.writer.close()

    def abort(self) -> None:
        transport = self.writer.transport
        if transport is not None:
            transport.abort()


@dataclass(frozen=True, slots=True)
class ServiceResult:
    """One round of service for the bystander."""

    served: bool
    seconds: float
    detail: str


class Bystander:
    """A legitimate registered agent that keeps asking the coordinator for service."""

    def __init__(
        self,
        conn: RawConnection,
        node: str,
        heartbeat_interval: float,
        token: str = "",
        first_id: int = 1,
    ) -> None:
        self.conn = conn
        self.node = node
        self.token = token
        self.statuses: dict[int, tuple[StatusParts, asyncio.Future[dict[str, Any]]]] = {}
        self.heartbeat_interval = heartbeat_interval
        self.welcomed: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()
        self.waiting: dict[tuple[type, int], asyncio.Future[Message]] = {}
        self.deliveries: deque[Deliver] = deque(maxlen=KEPT)
        self.delivered = 0  # every delivery handled, kept or not
        self.results: OrderedDict[int, TaskDone] = OrderedDict()  # by op id, the last KEPT
        self.other: list[Message] = []
        self.rounds = 0
        # op ids must never repeat for one node id, across its sessions too: the
        # coordinator de-duplicates by (origin, op_id) and would answer a reused one
        # from memory without running it. A node id that comes back starts higher.
        self._next_id = first_id
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def register(
        cls,
        port: int,
        node: str,
        token: str,
        heartbeat_interval: float,
        timeout: float = 5.0,
        host: str = HOST,
        first_id: int = 1,
        conn: RawConnection | None = None,
    ) -> Bystander:
        """Connect (or use ``conn``), say hello and wait for ``Welcome``; raises
        ``RuntimeError`` if refused."""
        if conn is None:
            conn = await RawConnection.open(port, host=host)
        self = cls(conn, node, heartbeat_interval, token, first_id)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._read_loop()))
        conn.send_msg(node, Hello(node, token))
        try:
            await asyncio.wait_for(asyncio.shield(self.welcomed), timeout)
        except (TimeoutError, ConnectionError) as exc:
            await self.close()
            raise RuntimeError(f"bystander {node!r} was not welcomed: {exc!r}") from None
        self._tasks.append(loop.create_task(self._heartbeat_loop()))
        return self

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _read_loop(self) -> None:
        conn = self.conn
        try:
            while True:
                chunk = await conn.reader.read(READ_CHUNK)
                if not chunk:
                    break
                self._handle(conn.decoder.feed(chunk))
        except (ConnectionError, OSError, MalformedFrame):
            pass
        conn.closed = True
        lost = ConnectionError("the coordinator closed the bystander's link")
        if not self.welcomed.done():
            self.welcomed.set_exception(lost)
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(lost)
        for _, status in self.statuses.values():
            if not status.done():
                status.set_exception(lost)

    def _handle(self, frames: list[Routed]) -> None:
        acks: list[int] = []
        for _, msg in frames:
            if isinstance(msg, Welcome):
                if not self.welcomed.done():
                    self.welcomed.set_result(msg)
            elif isinstance(msg, Deliver):
                self.deliveries.append(msg)
                self.delivered += 1
                acks.append(msg.msg_id)
            elif isinstance(msg, TaskDone):
                self.results[msg.op_id] = msg
                if len(self.results) > KEPT:
                    self.results.popitem(last=False)
                self.conn.send_msg(self.node, TaskDoneAck(msg.op_id))
            elif isinstance(msg, ProbeReply):
                self._answer(ProbeReply, msg.probe_id, msg)
            elif isinstance(msg, MemReply | Accepted | Busy):
                self._answer(type(msg), msg.op_id, msg)
            elif isinstance(msg, ListReply):
                self._answer(ListReply, msg.request_id, msg)
            elif isinstance(msg, StatusReply) and msg.request_id in self.statuses:
                parts, future = self.statuses[msg.request_id]
                whole = parts.add(msg)
                if whole is not None and not future.done():
                    future.set_result(whole)
            elif len(self.other) < 1000:
                self.other.append(msg)
        if acks:
            self.conn.send_msg(self.node, Ack(tuple(acks)))

    def _answer(self, kind: type, key: int, msg: Message) -> None:
        future = self.waiting.pop((kind, key), None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def _heartbeat_loop(self) -> None:
        seq = 0
        while not self.conn.closed:
            seq += 1
            self.conn.send_msg(self.node, Heartbeat(seq))
            await asyncio.sleep(self.heartbeat_interval)

    async def request(self, msg: Message, reply_type: type, key: int, timeout: float) -> Message:
        """Send ``msg`` and wait for the reply of ``reply_type`` carrying ``key``."""
        if self.conn.closed:
            raise ConnectionError("the bystander's link is closed")
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[(reply_type, key)] = future
        self.conn.send_msg(self.node, msg)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.waiting.pop((reply_type, key), None)

    async def get(self, namespace: str, key: str, timeout: float) -> MemReply:
        op_id = self.next_id()
        reply = await self.request(
            MemRequest(op_id, MemVerb.GET, namespace, key), MemReply, op_id, timeout
        )
        assert isinstance(reply, MemReply)
        return reply

    async def memory(
        self,
        verb: MemVerb,
        namespace: str,
        key: str,
        value: bytes = b"",
        expected_version: int = 0,
        timeout: float = 3.0,
    ) -> MemReply:
        """One memory operation, and its reply."""
        op_id = self.next_id()
        msg = MemRequest(op_id, verb, namespace, key, value, expected_version)
        reply = await self.request(msg, MemReply, op_id, timeout)
        assert isinstance(reply, MemReply)
        return reply

    async def listing(self, what: ListWhat, namespace: str = "", timeout: float = 5.0) -> ListReply:
        """Topics, namespaces or one namespace's keys (``ListRequest``)."""
        request_id = self.next_id()
        msg = ListRequest(request_id, self.token, what, namespace)
        reply = await self.request(msg, ListReply, request_id, timeout)
        assert isinstance(reply, ListReply)
        return reply

    async def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The coordinator's status (``protocol.status.status_dict``), every part joined."""
        if self.conn.closed:
            raise ConnectionError("the bystander's link is closed")
        request_id = self.next_id()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.statuses[request_id] = (StatusParts(request_id), future)
        self.conn.send_msg(self.node, StatusRequest(request_id, self.token))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.statuses.pop(request_id, None)

    async def publish(self, topic: str, timeout: float) -> Message:
        """Publish and wait for the ``Accepted`` (or ``Busy``) answer."""
        op_id = self.next_id()
        return await self.submit(Publish(op_id, topic, b"bystander", 0), op_id, timeout)

    async def submit(self, msg: Message, op_id: int, timeout: float) -> Message:
        """Send a bus or task request (``msg``, carrying ``op_id``) and wait for the
        coordinator's ``Accepted`` or ``Busy``."""
        if self.conn.closed:
            raise ConnectionError("the bystander's link is closed")
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        for kind in (Accepted, Busy):
            self.waiting[(kind, op_id)] = future
        self.conn.send_msg(self.node, msg)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            for kind in (Accepted, Busy):
                self.waiting.pop((kind, op_id), None)

    def send(self, msg: Message) -> bool:
        """Send ``msg`` (one that has no answer: ``Subscribe``, ``Unsubscribe``)."""
        return not self.conn.closed and self.conn.send_msg(self.node, msg)

    async def serve_once(self, timeout: float = 3.0) -> ServiceResult:
        """A probe, a memory put and a get of the value just put, each within ``timeout``."""
        started = time.perf_counter()
        self.rounds += 1
        value = f"round-{self.rounds}".encode()
        try:
            probe_id = self.next_id()
            reply = await self.request(Probe(probe_id), ProbeReply, probe_id, timeout)
            op_id = self.next_id()
            put = MemRequest(op_id, MemVerb.PUT, "security", self.node, value)
            written = await self.request(put, MemReply, op_id, timeout)
            read = await self.get("security", self.node, timeout)
        except (TimeoutError, ConnectionError, OSError) as exc:
            seconds = time.perf_counter() - started
            what = type(exc).__name__
            return ServiceResult(False, seconds, f"no service after {seconds:.3f} s ({what})")
        seconds = time.perf_counter() - started
        ok = (
            isinstance(reply, ProbeReply)
            and isinstance(written, MemReply)
            and written.ok
            and read.ok
            and read.value == value
        )
        detail = f"probe, put and get answered in {seconds * 1000:.1f} ms"
        if not ok:
            detail = f"wrong answers: {reply!r}, {written!r}, {read!r}"
        return ServiceResult(ok, seconds, detail)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.conn.close()
