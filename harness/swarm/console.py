"""A console agent of the harness's own on a live coordinator: status, memory, lists,
the bus and tasks, as any agent may.

``swarmtwin serve --coordinator HOST:PORT`` attaches the portal to a running tcp
coordinator, and the MCP server (``swarmtwin mcp``) attaches to one it started or
was pointed at. Each registers one agent of its own there (``CONSOLE`` for the
portal, ``harness.mcp``'s ``mcp-client``), a ``real.tcp.client.Bystander``: hello
with the token, heartbeats, acks, on first use and again whenever the link has
dropped. Its op ids start at the time in microseconds, so that a console that
comes back never reuses one: the coordinator de-duplicates by origin and op id.
A console that comes back also subscribes again to what it had subscribed to,
and keeps the deliveries and task results it had received.

Through it the caller asks for the coordinator's status (``StatusRequest``;
every part joined), reads and writes the memory store, lists topics,
namespaces and keys (``ListRequest``), publishes, sends direct messages and
broadcasts, subscribes and reads what was delivered (numbered from 1 in the
order received), and submits tasks and reads their results. Every call waits at
most ``TIMEOUT``; a coordinator that does not answer raises ``Unreachable``.
The agents' WebSocket gateway (``harness.portal.gateway``) connects to the same
address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from protocol.messages import (
    Accepted,
    Broadcast,
    Busy,
    Deliver,
    Direct,
    ListReply,
    ListWhat,
    MemReply,
    MemVerb,
    Message,
    Publish,
    Subscribe,
    TaskDone,
    TaskSubmit,
    Unsubscribe,
)
from protocol.payload import checksum
from protocol.settings import ProtocolSettings
from real.tcp.client import Bystander, RawConnection

T = TypeVar("T")

CONSOLE = "portal-console"
TIMEOUT = 5.0


class NotAttached(Exception):
    """No coordinator to speak to (the portal without ``--coordinator``, the MCP server
    before ``swarm_init``)."""


class Unreachable(Exception):
    """The coordinator did not answer (down, refusing, or too slow)."""


@dataclass(frozen=True)
class Coordinator:
    """Where the coordinator is: ``host:port`` over tcp, or, for one on an in-process
    hub, ``dial`` (a new connection each call, ``real.inproc.link.dial``)."""

    host: str
    port: int
    token: str
    dial: Callable[[], RawConnection] | None = field(default=None, compare=False)

    @property
    def address(self) -> str:
        return "in-process" if self.dial is not None else f"{self.host}:{self.port}"

    async def connect(self, name: str, first_id: int, timeout: float = 5.0) -> Bystander:
        """Register agent ``name`` here (``Bystander.register``); raises ``OSError``,
        ``RuntimeError`` (refused) or ``TimeoutError``."""
        return await Bystander.register(
            self.port,
            name,
            self.token,
            ProtocolSettings().heartbeat_interval,
            timeout,
            host=self.host,
            first_id=first_id,
            conn=None if self.dial is None else self.dial(),
        )

    @classmethod
    def parse(cls, address: str, token: str) -> Coordinator:
        """``HOST:PORT`` (``[::1]:PORT`` for IPv6); ``ValueError`` with what was expected."""
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--coordinator {address!r}: expected HOST:PORT, e.g. 127.0.0.1:7411")
        return cls(host.strip("[]"), int(port), token)


class Console:
    """A console agent on a live coordinator, connected on demand."""

    def __init__(self, coordinator: Coordinator | None, name: str = CONSOLE) -> None:
        self.coordinator = coordinator
        self.name = name
        self.patterns: set[str] = set()  # subscribed to, again after a reconnect
        self._client: Bystander | None = None
        self._lock = asyncio.Lock()

    async def _console(self) -> Bystander:
        if self.coordinator is None:
            raise NotAttached("not attached to a coordinator")
        async with self._lock:
            if self._client is None or self._client.conn.closed:
                where = self.coordinator
                # microseconds since the epoch: above every op id an earlier console
                # (this one's or another's) used, as the coordinator's dedup requires
                first = time.time_ns() // 1000
                try:
                    client = await where.connect(self.name, first, TIMEOUT)
                except (OSError, RuntimeError, TimeoutError) as exc:
                    raise Unreachable(
                        f"coordinator {where.address}: cannot register: {exc}"
                    ) from None
                old = self._client
                if old is not None:  # what the last link received stays readable
                    client.deliveries.extend(old.deliveries)
                    client.delivered += old.delivered
                    client.results.update(old.results)
                for pattern in sorted(self.patterns):
                    client.send(Subscribe(pattern))
                self._client = client
            return self._client

    async def _call(self, what: str, call: Callable[[Bystander], Awaitable[T]]) -> T:
        console = await self._console()
        try:
            return await call(console)
        except (TimeoutError, ConnectionError) as exc:
            raise Unreachable(f"no {what} from the coordinator: {exc!r}") from None

    async def status(self) -> dict[str, Any]:
        return await self._call("status", lambda c: c.status(TIMEOUT))

    async def memory(
        self, verb: MemVerb, namespace: str, key: str, value: bytes, expected_version: int
    ) -> MemReply:
        return await self._call(
            "memory reply",
            lambda c: c.memory(verb, namespace, key, value, expected_version, TIMEOUT),
        )

    async def listing(self, what: ListWhat, namespace: str = "") -> ListReply:
        return await self._call("list", lambda c: c.listing(what, namespace, TIMEOUT))

    async def _request(self, make: Callable[[int], Message]) -> tuple[int, Accepted | Busy]:
        """Send the bus or task request ``make(op_id)``; its op id and the answer."""

        async def send(client: Bystander) -> tuple[int, Accepted | Busy]:
            op_id = client.next_id()
            answer = await client.submit(make(op_id), op_id, TIMEOUT)
            assert isinstance(answer, Accepted | Busy)
            return op_id, answer

        return await self._call("answer", send)

    async def publish(self, topic: str, payload: bytes) -> tuple[int, Accepted | Busy]:
        return await self._request(lambda op: Publish(op, topic, payload, checksum(payload)))

    async def direct(self, dst: str, payload: bytes) -> tuple[int, Accepted | Busy]:
        return await self._request(lambda op: Direct(op, dst, payload, checksum(payload)))

    async def broadcast(self, payload: bytes) -> tuple[int, Accepted | Busy]:
        return await self._request(lambda op: Broadcast(op, payload, checksum(payload)))

    async def submit_task(self, capability: str, payload: bytes) -> tuple[int, Accepted | Busy]:
        return await self._request(
            lambda op: TaskSubmit(op, capability, payload, checksum(payload))
        )

    async def subscribe(self, pattern: str, on: bool = True) -> None:
        """Subscribe to ``pattern`` (``on``) or unsubscribe; the coordinator answers
        neither, so this returns once the request is on its way."""
        client = await self._console()
        if not client.send(Subscribe(pattern) if on else Unsubscribe(pattern)):
            raise Unreachable("the console's link closed before it could subscribe")
        if on:
            self.patterns.add(pattern)
        else:
            self.patterns.discard(pattern)

    def deliveries(self, after: int = 0, limit: int = 100) -> tuple[list[tuple[int, Deliver]], int]:
        """The deliveries numbered above ``after`` (at most ``limit``), and the number of
        the last one received; the oldest beyond ``KEPT`` are gone."""
        client = self._client
        if client is None:
            return [], 0
        first = client.delivered - len(client.deliveries) + 1
        kept = list(client.deliveries)
        start = max(after + 1, first)
        found = [(n, kept[n - first]) for n in range(start, start + limit) if n - first < len(kept)]
        return found, client.delivered

    def result(self, op_id: int) -> TaskDone | None:
        """The result of this console's task ``op_id``, if it has come (the last ``KEPT``)."""
        return None if self._client is None else self._client.results.get(op_id)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
