"""The portal's link to a live coordinator: its status, its memory store, its agents' gateway.

``swarmtwin serve --coordinator HOST:PORT`` attaches the portal to a running
tcp coordinator (one started with ``swarmtwin coordinator``, say). ``SystemLink``
registers one agent of its own there, ``CONSOLE`` (a ``real.tcp.client.Bystander``:
hello with the token, heartbeats, acks), on first use and again whenever the link
has dropped (its op ids start at the time in microseconds, so that a console
that comes back never reuses one: the coordinator de-duplicates by origin and
op id). Through it the portal asks for the coordinator's status
(``StatusRequest``; every part joined) and reads and writes the memory store, as
any agent may, and lists its topics, namespaces and keys (``ListRequest``). The
agents' WebSocket gateway (``harness.portal.gateway``)
connects to the same address.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from protocol.messages import ListReply, ListWhat, MemReply, MemVerb
from protocol.settings import ProtocolSettings
from real.tcp.client import Bystander

CONSOLE = "portal-console"
TIMEOUT = 5.0


class NotAttached(Exception):
    """The portal was started without ``--coordinator``."""


class Unreachable(Exception):
    """The coordinator did not answer (down, refusing, or too slow)."""


@dataclass(frozen=True)
class Coordinator:
    host: str
    port: int
    token: str

    @classmethod
    def parse(cls, address: str, token: str) -> Coordinator:
        """``HOST:PORT`` (``[::1]:PORT`` for IPv6); ``ValueError`` with what was expected."""
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--coordinator {address!r}: expected HOST:PORT, e.g. 127.0.0.1:7411")
        return cls(host.strip("[]"), int(port), token)


class SystemLink:
    """The console agent on a live coordinator, connected on demand."""

    def __init__(self, coordinator: Coordinator | None) -> None:
        self.coordinator = coordinator
        self._client: Bystander | None = None
        self._lock = asyncio.Lock()

    async def _console(self) -> Bystander:
        if self.coordinator is None:
            raise NotAttached("the portal is not attached to a coordinator: serve --coordinator")
        async with self._lock:
            if self._client is None or self._client.conn.closed:
                where = self.coordinator
                heartbeat = ProtocolSettings().heartbeat_interval
                # microseconds since the epoch: above every op id an earlier console
                # (this portal's or another's) used, as the coordinator's dedup requires
                first = time.time_ns() // 1000
                try:
                    self._client = await Bystander.register(
                        where.port,
                        CONSOLE,
                        where.token,
                        heartbeat,
                        TIMEOUT,
                        host=where.host,
                        first_id=first,
                    )
                except (OSError, RuntimeError, TimeoutError) as exc:
                    raise Unreachable(
                        f"coordinator {where.host}:{where.port}: cannot register: {exc}"
                    ) from None
            return self._client

    async def status(self) -> dict[str, Any]:
        console = await self._console()
        try:
            return await console.status(TIMEOUT)
        except (TimeoutError, ConnectionError) as exc:
            raise Unreachable(f"no status from the coordinator: {exc!r}") from None

    async def memory(
        self, verb: MemVerb, namespace: str, key: str, value: bytes, expected_version: int
    ) -> MemReply:
        console = await self._console()
        try:
            return await console.memory(verb, namespace, key, value, expected_version, TIMEOUT)
        except (TimeoutError, ConnectionError) as exc:
            raise Unreachable(f"no memory reply from the coordinator: {exc!r}") from None

    async def listing(self, what: ListWhat, namespace: str = "") -> ListReply:
        console = await self._console()
        try:
            return await console.listing(what, namespace, TIMEOUT)
        except (TimeoutError, ConnectionError) as exc:
            raise Unreachable(f"no list from the coordinator: {exc!r}") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
