"""The availability prober of a tcp run: probes and one status request, each over a
connection of its own.

``TcpProber`` drives ``protocol.prober.Prober`` (what to send when, and what the
replies mean) as node ``probe-0`` on its own loopback connection to the
coordinator (the root of a tree): a ``Probe`` every ``plan.probe_interval`` until
the plan's duration, and at ``plan.status_at`` one ``StatusRequest`` with the
plan's token, sent as ``STATUS_NODE`` over a second connection so that the
status's parts never queue ahead of a probe's reply (with replicas it goes over
the probes' connection, which follows the leader). A connection lost to a
crashed coordinator is reopened at the next probe; a probe that finds no
coordinator, or goes out on a connection that turns out dead, stays unanswered
(the prober records it so). With a replicated coordinator the prober acts as a
client: a replica that does not lead refuses with the leader's name, if it knows
it, and closes the link; the prober moves to that leader (or, without a name or
when a replica dies, to the next replica) and sends again the probes still
within their deadline (``Prober.retry``). After the last probe it waits
``LAST_REPLY_WAIT`` for late replies, so a slow answer counts as late rather than
lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any

from protocol.codec import MalformedFrame, encode_body
from protocol.messages import Reject, leader_hint
from protocol.nodes import PROBER_ID as PROBER
from protocol.plan import Plan
from protocol.prober import Prober as CoreProber
from protocol.prober import retry_pause
from real.clock import RunClock
from real.tcp.framing import FramedLink, open_link
from real.tcp.server import DEFAULT_HOST

LAST_REPLY_WAIT = 1.0  # how long the prober waits for replies to its last probes
STATUS_NODE = "probe-status"  # the status request's node, on a connection of its own
STATUS_REDIRECT_WAIT = 0.2  # with replicas: how long a status request waits before the next


class TcpProber:
    """Sends ``protocol.prober.Prober``'s probes and status request as node
    ``probe-0`` over its own connection, and hands it the replies.

    A lost connection (a crashed coordinator) is reopened at the next probe;
    a probe that finds no coordinator, or goes out on a connection that turns
    out dead, stays unanswered.
    """

    def __init__(
        self,
        port: int,
        plan: Plan,
        clock: RunClock,
        fallbacks: tuple[int, ...] = (),
        replicas: Mapping[str, int] | None = None,
        host: str = DEFAULT_HOST,
    ) -> None:
        self.host = host  # where the coordinator listens (loopback unless told)
        self.port = port
        self.ports = (port, *fallbacks)  # a replicated coordinator's: round the replicas
        self.replicas = dict(replicas or {})  # replica id: port, to follow a leader's name
        self.plan = plan
        self.clock = clock
        self.core = CoreProber(plan)
        self.link: FramedLink | None = None
        self.status_link: FramedLink | None = None  # one coordinator: the status's own
        self._readers: set[asyncio.Task[None]] = set()
        self._hint: int | None = None  # the port of the leader a refusal named
        self._sending = asyncio.Lock()  # one connection at a time

    async def run(self) -> None:
        """Probe from run time 0 until the plan's duration; ask for the status in
        between, at ``plan.status_at`` (before a probe due at the same time)."""
        core = self.core
        status_at = core.status_at
        try:
            while (at := core.next_probe_at()) is not None:
                if status_at is not None and status_at <= at:
                    await self._ask_status(status_at)
                    status_at = None
                await self._sleep_until(at)
                sent = await self._deliver(encode_body(core.probe(self.clock.now())))
                if not sent and len(self.ports) > 1:
                    self._spawn(self._retry(retry_pause(False)))  # a dead replica: the next
            if status_at is not None:
                await self._ask_status(status_at)
            await self._last_replies(LAST_REPLY_WAIT)
        finally:
            self.close()

    async def _sleep_until(self, at: float) -> None:
        wait = at - self.clock.now()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _last_replies(self, limit: float) -> None:
        """Wait (at most ``limit`` s) for replies to probes still unanswered, so a slow
        last reply counts as late rather than lost."""
        deadline = self.clock.now() + limit
        while self.clock.now() < deadline and self.link is not None and not self.link.closed:
            if self.core.settled:
                return
            await asyncio.sleep(0.01)

    async def _ask_status(self, at: float) -> None:
        """Ask for the status; with replicas, ask the next one while the one asked
        refuses as not the leader (it closes the link: the port moves on)."""
        await self._sleep_until(at)
        if len(self.ports) == 1:
            await self._ask_status_apart()
            return
        for _ in self.ports:
            port = self.port
            await self._deliver(encode_body(self.core.status_request()))
            if len(self.ports) == 1:
                return
            deadline = self.clock.now() + STATUS_REDIRECT_WAIT
            core = self.core
            while self.clock.now() < deadline and self.port == port:
                if core.status is not None or core.status_refused is not None:
                    return
                await asyncio.sleep(0.01)
            if self.port == port:
                return  # slow, not refused: a late reply still counts

    async def _ask_status_apart(self) -> None:
        """Ask one coordinator for the status as ``STATUS_NODE`` over a connection of
        its own. On the probes' connection a probe's reply queued behind the parts
        sent before it: a 50,000-agent status is 51 parts of about 100 KB, and
        probes answered in time were read more than 50 ms late. A request that
        finds no coordinator is never answered, as on the probes' connection."""
        try:
            link = await asyncio.wait_for(open_link(self.host, self.port), self.plan.probe_interval)
        except (OSError, TimeoutError):
            return
        self.status_link = link
        self._spawn(self._read(link))
        try:
            link.send(STATUS_NODE, encode_body(self.core.status_request()))
            link.flush()
        except (OSError, RuntimeError):  # the connection died under us: unanswered
            link.close()

    async def _deliver(self, body: bytes) -> bool:
        """Send ``body`` as ``probe-0``, reconnecting first if the link is down; what
        finds no coordinator, or goes out on a dead connection, is never answered.
        False when no connection could be opened (the port has moved on)."""
        async with self._sending:
            if self.link is None or self.link.closed:
                try:
                    self.link = await asyncio.wait_for(
                        open_link(self.host, self.port), self.plan.probe_interval
                    )
                except (OSError, TimeoutError):
                    self._next_port()
                    return False  # the coordinator is unreachable: no answer
                self._spawn(self._read(self.link))
            try:
                self.link.send(PROBER, body)
                self.link.flush()
            except (OSError, RuntimeError):  # the connection died under us: unanswered
                self.link.close()
            return True

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _retry(self, pause: float) -> None:
        """The replica refused or died: send the probes still in time to where the
        port moved, after ``pause``, and on while no connection opens, pausing
        ``retry_pause`` between (``Prober.retry`` bounds it)."""
        while True:
            if pause > 0:
                await asyncio.sleep(pause)
            probes = self.core.retry(self.clock.now())
            if not probes:
                return
            for probe in probes:
                if not await self._deliver(encode_body(probe)):
                    break
            else:
                return
            pause = retry_pause(False)

    async def _read(self, link: FramedLink) -> None:
        while True:
            try:
                batch = await link.read_batch()
            except (ConnectionError, OSError, MalformedFrame):
                batch = None
            if batch is None:
                link.close()
                if link is self.link:
                    named = self._hint is not None
                    self._next_port()
                    if len(self.ports) > 1:
                        self._spawn(self._retry(retry_pause(named)))
                return
            now = self.clock.now()
            for _, msg in batch:
                if not self.core.receive(msg, now) and type(msg) is Reject:
                    self._hint = self.replicas.get(leader_hint(msg.reason) or "")

    def _next_port(self) -> None:
        """A replicated coordinator's replica closed the link (it does not lead, or it
        died) or would not open one: go to the leader it named, else the next replica."""
        hint, self._hint = self._hint, None
        if hint is not None and hint != self.port:
            self.port = hint
            return
        ports = self.ports
        self.port = ports[(ports.index(self.port) + 1) % len(ports)]

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        if self.status_link is not None:
            self.status_link.close()
        for reader in list(self._readers):
            reader.cancel()
