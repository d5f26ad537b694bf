"""A tree node's links up the tree: the connections a coordinator opens to its ancestors.

How it works. A coordinator of a tree on tcp is a ``real.tcp.server.CoordinatorServer``
like the root: its children and its agents connect to it, and the server
routes by the node id each frame names (``real.tcp.admission``). What it
sends *up* has no such connection: the core addresses its parent (or, while
it re-attaches, a grandparent) by node id, and ``TreePlace.addresses`` says
where each ancestor listens. ``Uplinks.split`` takes the core's output for an
ancestor out of what the server routes; the first message for an ancestor
opens an ``Uplink`` to it (messages wait in ``pending`` while it connects),
and its frames are staged on the server's ``Outbox`` with ``stage_from``, so
they are written with everything else at the server's flush, each frame
naming this node (the parent's server binds that id to the connection).

What the ancestor sends back names this node; the uplink's reader hands it
to the core as coming from the ancestor (``receive(ancestor, ...)``), in
slices like a server connection, and schedules the flush. A connection that
cannot be opened within ``CONNECT_TIMEOUT``, ends, resets or carries a
malformed frame is the ancestor's link closing: ``link_closed(ancestor)``,
on which the core re-parents (``protocol.failover``) and addresses the next
ancestor, which opens the next uplink. A closure the core asks for
(``take_closures``) closes the uplink the same way.

``TreePlace`` is where one server sits: its node id, its ancestors (parent
first, from ``protocol.topology.ancestries``) and their addresses. The
addresses may be filled in after the server listens (the run driver learns
every port first, then tells each node to join: ``CoordinatorServer.join``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from protocol.coordinator import Coordinator
from protocol.envelope import MalformedEnvelope, Outbox, Routed
from protocol.messages import Message
from real.tcp.framing import FramedLink, open_link

CONNECT_TIMEOUT = 2.0
log = logging.getLogger("swarmtwin.server")


@dataclass(slots=True)
class TreePlace:
    """Where one coordinator server sits in a tree."""

    node_id: str
    chain: tuple[str, ...]  # parent, grandparent, ..., the root; () for the root
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)  # ancestor -> host, port

    @property
    def parent(self) -> str:
        return self.chain[0] if self.chain else ""


class Host(Protocol):
    """What an ``Uplinks`` needs of its server."""

    coordinator: Coordinator
    outbox: Outbox

    def schedule_flush(self) -> None: ...
    def receive_from(self, src: str, frames: list[Routed]) -> None: ...
    def now(self) -> float: ...


class Uplink:
    """One connection to an ancestor (``link`` is None while it connects)."""

    __slots__ = ("node", "link", "pending", "task", "lost")

    def __init__(self, node: str) -> None:
        self.node = node
        self.link: FramedLink | None = None
        self.pending: list[tuple[str, Message]] = []
        self.task: asyncio.Task[None] | None = None
        self.lost = False


class Uplinks:
    """A server's uplinks, by ancestor."""

    def __init__(self, host: Host, place: TreePlace, event: Callable[[str], None]) -> None:
        self.host = host
        self.place = place
        self.event = event
        self.ups: dict[str, Uplink] = {}
        self.closing = False
        self.opened = 0  # connections opened, for the report
        self.refused = 0  # connections that could not be opened

    def split(self, out: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
        """Stage ``out``'s messages for ancestors on their uplinks; return the rest."""
        addresses = self.place.addresses
        if not addresses or not any(dst in addresses for dst, _ in out):
            return out
        rest: list[tuple[str, Message]] = []
        up: dict[str, list[tuple[str, Message]]] = {}
        for pair in out:
            if pair[0] in addresses:
                up.setdefault(pair[0], []).append(pair)
            else:
                rest.append(pair)
        for node, msgs in up.items():
            uplink = self.ups.get(node)
            if uplink is None:
                uplink = self._open(node)
            if uplink.link is None:
                uplink.pending.extend(msgs)
            else:
                self.host.outbox.stage_from(uplink, self.place.node_id, msgs)
        return rest

    def _open(self, node: str) -> Uplink:
        uplink = Uplink(node)
        self.ups[node] = uplink
        if not self.closing:
            uplink.task = asyncio.get_running_loop().create_task(self._run(uplink))
        return uplink

    async def _run(self, uplink: Uplink) -> None:
        host, port = self.place.addresses[uplink.node]
        try:
            link = await asyncio.wait_for(open_link(host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self.refused += 1
            self._lost(uplink, f"cannot connect to {uplink.node} at {host}:{port}: {exc!r}")
            return
        if self.closing or uplink.lost:
            link.close()
            return
        self.opened += 1
        uplink.link = link
        if uplink.pending:
            pending, uplink.pending = uplink.pending, []
            self.host.outbox.stage_from(uplink, self.place.node_id, pending)
            self.host.schedule_flush()
        why = f"link to {uplink.node} closed"
        try:
            while not link.closed:
                batch = await link.read_batch()
                if batch is None:
                    break
                self.host.receive_from(uplink.node, batch)
                await link.backpressure()
        except MalformedEnvelope as exc:
            why = f"malformed input from {uplink.node}: {exc}"
        except (ConnectionError, OSError) as exc:
            why = f"link to {uplink.node} lost: {exc!r}"
        self._lost(uplink, why)

    def close(self, node: str) -> None:
        """Close the uplink to ``node`` (the core asked: ``take_closures``)."""
        uplink = self.ups.get(node)
        if uplink is not None:
            self._lost(uplink, f"closed the link to {node}")

    def _lost(self, uplink: Uplink, why: str) -> None:
        """The ancestor's link closed: tell the core (once), which re-parents."""
        if uplink.lost:
            return
        uplink.lost = True
        if self.ups.get(uplink.node) is uplink:
            del self.ups[uplink.node]
        self.host.outbox.discard(uplink)
        if uplink.link is not None:
            uplink.link.close()
        if uplink.task is not None and uplink.task is not asyncio.current_task():
            uplink.task.cancel()
        if self.closing:
            return
        self.event(why)
        try:
            self.host.coordinator.link_closed(uplink.node, self.host.now())
        except Exception:  # a core bug must not take the server down with it
            log.exception("coordinator.link_closed failed for %s", uplink.node)
        self.host.schedule_flush()

    def shutdown(self) -> None:
        """Close every uplink (the server stops); the core is not told."""
        self.closing = True
        for uplink in self.ups.values():
            if uplink.link is not None:
                uplink.link.close()
            if uplink.task is not None:
                uplink.task.cancel()

    async def wait_closed(self) -> None:
        """Wait for the uplinks' tasks to end after ``shutdown``."""
        tasks = [u.task for u in self.ups.values() if u.task is not None]
        self.ups.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
