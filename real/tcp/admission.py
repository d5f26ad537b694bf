"""Which connections a coordinator server admits, and which node ids each may speak for.

A mixin of ``real.tcp.server.CoordinatorServer``, kept apart so the server's
module stays about moving frames. ``ServerLimits`` holds the limits, ``Peer``
is one connection and the node ids bound to it.

- At most ``max_connections`` connections are open at once; one more is
  closed as soon as it is accepted (``_admits``), before anything is read.
- The first frame naming a node id binds it to the connection (``_bind``).
  A node bound to another open connection stays there, except that a
  ``Hello`` may take over a binding the coordinator never registered (at a
  storage replica: a request with the shared token, ``_takes_over``).
- A connection may bind at most ``max_nodes_per_connection`` ids, and at
  most ``max_unregistered_ids`` that the coordinator had not registered
  when they were bound (``_may_bind_unregistered``). Probes and status
  requests need no registration, so without this cap one connection could
  bind millions of ids; a prober needs one, and a worker's agents stop
  counting once their ``Hello`` is accepted. Past either cap the
  connection is refused as for malformed input.
- A sweep every ``sweep_interval`` closes connections that bound no id
  within ``hello_timeout`` or were silent for ``idle_timeout`` (at least
  four heartbeat intervals).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from protocol.coordinator import Coordinator
from protocol.messages import Hello, Message
from real.tcp.framing import FramedLink

log = logging.getLogger("swarmtwin.server")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Connection hygiene limits."""

    hello_timeout: float = 5.0
    idle_timeout: float = 30.0
    max_nodes_per_connection: int = 65536
    max_unregistered_ids: int = 16
    max_connections: int = 4096
    sweep_interval: float = 1.0


class Peer:
    """One client connection and the node ids bound to it."""

    __slots__ = ("link", "nodes", "unregistered", "opened", "last_read", "refused")

    def __init__(self, link: FramedLink) -> None:
        self.link = link
        self.nodes: set[str] = set()
        self.unregistered: set[str] = set()  # bound before the coordinator knew them
        self.opened = time.monotonic()
        self.last_read = self.opened
        self.refused = False


class Admission:
    """Connection and node-id admission over the server's tables."""

    coordinator: Coordinator
    limits: ServerLimits
    routes: dict[str, Peer]
    peers: set[Peer]
    loop: asyncio.AbstractEventLoop
    _idle_timeout: float
    _sweeper: asyncio.TimerHandle

    def refuse(self, peer: Peer, reason: str) -> None:
        raise NotImplementedError  # the server's

    def _close_peer(self, peer: Peer) -> None:
        raise NotImplementedError  # the server's

    def _event(self, text: str) -> None:
        raise NotImplementedError  # the server's

    def _admits(self) -> bool:
        """Whether one more connection may open (``max_connections``)."""
        if len(self.peers) < self.limits.max_connections:
            return True
        self._event(f"refused a connection: {len(self.peers)} open, the limit")
        return False

    def _bind(self, peer: Peer, node: str, msg: Message) -> bool:
        """Bind ``node`` to ``peer``; False (and ``peer`` refused) if it may not speak for it.

        The core trusts that every frame naming a node comes over that node's
        own link, so a node bound to another open connection stays there,
        except that a ``Hello`` may take over a binding the coordinator never
        registered (a squatter's or a prober's id). That a known node must
        start a new link with ``Hello`` is the core's rule (``link_closed``).
        """
        if peer.refused:
            return False
        owner = self.routes.get(node)
        if owner is not None and not self._takes_over(node, msg):
            self.refuse(peer, f"node {node!r} is bound to another connection")
            return False
        if owner is not None:
            owner.nodes.discard(node)
            owner.unregistered.discard(node)
        if len(peer.nodes) >= self.limits.max_nodes_per_connection:
            self.refuse(peer, "too many node ids on one connection")
            return False
        if not self.coordinator.knows(node) and not self._may_bind_unregistered(peer, node):
            return False
        self.routes[node] = peer
        peer.nodes.add(node)
        return True

    def _takes_over(self, node: str, msg: Message) -> bool:
        """Whether ``msg`` may move ``node``'s binding from another connection to its
        own: a ``Hello`` for a node the coordinator never registered; at a storage
        replica, which has no registration, a request that carries the shared
        token (``StoreCore.takes_over``), so an id squatted without the token is
        taken back by its agent, and the squatter's link refused at its next frame."""
        takes_over = getattr(self.coordinator, "takes_over", None)
        if takes_over is not None:
            return bool(takes_over(node, msg))
        return type(msg) is Hello and not self.coordinator.knows(node)

    def _may_bind_unregistered(self, peer: Peer, node: str) -> bool:
        """Count ``node`` against ``max_unregistered_ids``; refuse ``peer`` past it.

        Ids that have registered since they were bound (a worker's agents
        after their ``Hello``) stop counting; they are pruned only at the
        limit, so the check costs O(1) per bind amortized.
        """
        limit = self.limits.max_unregistered_ids
        unregistered = peer.unregistered
        if len(unregistered) >= limit:
            knows = self.coordinator.knows
            unregistered.difference_update([n for n in unregistered if knows(n)])
            if len(unregistered) >= limit:
                self.refuse(peer, f"more than {limit} unregistered node ids on one connection")
                return False
        unregistered.add(node)
        return True

    def _close_idle(self) -> None:
        """Close connections that never bound a node, or went silent."""
        limits = self.limits
        now = time.monotonic()
        for peer in list(self.peers):
            if not peer.nodes and now - peer.opened > limits.hello_timeout:
                self._event(f"closed {peer.link.peer}: no hello within {limits.hello_timeout} s")
                self._close_peer(peer)
            elif now - peer.last_read > self._idle_timeout:
                self._event(f"closed {peer.link.peer}: silent for {self._idle_timeout} s")
                self._close_peer(peer)

    def _sweep(self) -> None:
        """``_close_idle``, re-armed even if closing a connection failed."""
        try:
            self._close_idle()
        except Exception:
            log.exception("connection sweep failed")
        self._sweeper = self.loop.call_later(self.limits.sweep_interval, self._sweep)
