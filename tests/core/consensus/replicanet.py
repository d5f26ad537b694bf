"""An in-memory replicated coordinator: Raft (or PBFT) replicas, agents, a lossy network, crashes.

``ReplicaCluster`` is the core tests' ``Cluster`` (a manual clock, messages on a
heap with loss, duplication and delay) with the coordinator replaced by
replicas (``protocol.consensus.replica.Replica``). Each replica's driver loop
is the one a real driver runs: after every message or timer, while ``ready()``
returns something, write it to the replica's storage (a ``Persisted``) and
``advance``; then send what ``drain()`` returns and close the links
``take_closures()`` names. An agent knows every replica (its ``fallbacks``);
when its link closes (the replica closed it, or died, or refused the
connection), it fails over to the next and says hello there.

``isolate(node)`` cuts a replica off from the others (agents still reach it)
until ``heal()``. ``crash(node)`` kills a replica (what is on the wire to it is lost, its agents'
links close); ``restart(node)`` builds it again from its storage. A link that
closes takes what was in flight on it along (an agent that comes back to the
same replica later does so on a new connection).
"""

from __future__ import annotations

import heapq

from protocol.agent import Agent
from protocol.consensus.messages import Persisted, RaftMessage
from protocol.consensus.raft import RaftConfig
from protocol.consensus.replica import Replica
from protocol.coordinator import Coordinator
from protocol.messages import Message
from protocol.settings import ProtocolSettings
from tests.cluster import Cluster, Faults

TICK = 0.01  # seconds per Raft tick: elections in 0.1-0.2 s, heartbeats every 10 ms


class ReplicaCluster(Cluster):
    def __init__(
        self,
        settings: ProtocolSettings,
        faults: Faults,
        seed: int,
        size: int = 3,
        compact_every: int = 64,
        wire: bool = True,
        protocol: str = "raft",
    ) -> None:
        super().__init__(settings, faults, seed)
        self.wire = wire  # replicas exchange encoded Consensus frames
        self.protocol = protocol
        self.ids = tuple(f"r{i}" for i in range(1, size + 1))
        self.config = RaftConfig(election_ticks=10, heartbeat_ticks=1)
        self.compact_every = compact_every
        self.stored = {n: Persisted() for n in self.ids}
        self.replicas: dict[str, Replica] = {}
        self.dead: set[str] = set()
        self.cut: set[str] = set()  # replicas cut off from the other replicas
        self.waiting: set[str] = set()  # agents whose every replica was dead
        for node in self.ids:
            self._start(node)

    def _start(self, node: str) -> None:
        replica = Replica(
            node,
            self.ids,
            self.settings,
            self.config,
            TICK,
            self.stored[node],
            self.compact_every,
            wire=self.wire,
            protocol=self.protocol,
        )
        self.replicas[node] = replica
        replica.start(self.now)

    def add_agent(
        self,
        node_id: str,
        capabilities: tuple[str, ...] = (),
        subscriptions: tuple[str, ...] = (),
        vouched_by: str = "",
        coordinator: str = "",
    ) -> Agent:
        first = coordinator or self.ids[0]
        others = tuple(n for n in self.ids if n != first)
        agent = Agent(node_id, first, self.settings, capabilities, subscriptions, fallbacks=others)
        self.agents[node_id] = agent
        agent.start(self.now)
        self._flush(node_id, agent)
        return agent

    # -- the drivers --------------------------------------------------------------------

    def node(self, node_id: str) -> Coordinator | Agent:
        replica = self.replicas.get(node_id)
        return replica if replica is not None else self.agents[node_id]  # type: ignore[return-value]

    def _flush(self, src: str, node: Coordinator | Agent) -> None:
        if not isinstance(node, Replica):
            super()._flush(src, node)
            return
        if src in self.dead:
            return
        while (ready := node.ready()) is not None:
            self.stored[src] = ready.persist(self.stored[src])
            node.advance(ready, self.now)
        for dst, msg in node.drain():
            self._send(src, dst, msg)  # type: ignore[arg-type]
        for agent_id in node.take_closures():
            agent = self.agents.get(agent_id)
            if agent is not None and agent.coordinator == src:
                self._refused(agent_id)

    def _send(self, src: str, dst: str, msg: Message) -> None:
        if src in self.cut and dst in self.ids or dst in self.cut and src in self.ids:
            return  # a partition between replicas (agents still reach every replica)
        if dst in self.dead:
            if src in self.agents and self.agents[src].coordinator == dst:
                self._refused(src)  # a refused connection: the agent tries the next one
            return
        super()._send(src, dst, msg)

    def _refused(self, name: str) -> None:
        """``name``'s link closed: what was in flight on it is gone; it fails over."""
        self._wire = [
            item
            for item in self._wire
            if not (name in item[2:4] and (item[2] in self.ids or item[3] in self.ids))
        ]
        heapq.heapify(self._wire)
        agent = self.agents[name]
        for _ in agent.coordinators:
            if agent.fail_over() not in self.dead:
                self.waiting.discard(name)
                agent.start(self.now)
                self._flush(name, agent)
                return
        self.waiting.add(name)  # tries again when one restarts

    def _next_timer(self) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        for node_id in [*self.replicas, *self.agents]:
            if node_id in self.dead:
                continue
            deadline = self.node(node_id).next_deadline()
            if deadline is not None and (best is None or deadline < best[0]):
                best = (deadline, node_id)
        return best

    def run_until(self, end: float) -> None:
        self._wire = [item for item in self._wire if item[3] not in self.dead]
        heapq.heapify(self._wire)
        super().run_until(end)

    # -- faults -------------------------------------------------------------------------

    def crash(self, node: str) -> None:
        self.dead.add(node)
        del self.replicas[node]
        for name, replica in self.replicas.items():  # their links to it close, as on tcp
            replica.link_closed(node)
            self._flush(name, replica)  # type: ignore[arg-type]
        self._wire = [item for item in self._wire if item[3] != node]
        heapq.heapify(self._wire)
        for name, agent in self.agents.items():
            if agent.coordinator == node:
                self._refused(name)

    def isolate(self, node: str) -> None:
        """Cut replica ``node`` off from the other replicas (not from agents)."""
        self.cut.add(node)

    def heal(self) -> None:
        self.cut.clear()

    def restart(self, node: str) -> None:
        self.dead.discard(node)
        self._start(node)
        for name in sorted(self.waiting):
            self._refused(name)

    # -- state --------------------------------------------------------------------------

    def serving(self) -> Replica | None:
        live = [r for r in self.replicas.values() if r.serving]
        return max(live, key=lambda r: r.raft.term) if live else None

    def settled(self) -> bool:
        leader = self.serving()
        return leader is not None and all(
            a.registered and a.coordinator == leader.id for a in self.agents.values()
        )

    def quiet(self) -> bool:
        leader = self.serving()
        if leader is None or not self.settled():
            return False
        coordinator = leader.coordinator
        assert coordinator is not None
        return (
            all(agent.pending == 0 for agent in self.agents.values())
            and not (coordinator.tasks or coordinator.unassigned or coordinator._done_pending)
            and all(
                s.alive and not s.inflight and not s.backlog for s in coordinator.sessions.values()
            )
        )

    def wait(self, condition: str, limit: float = 30.0) -> None:
        start = self.now
        while not getattr(self, condition)():
            assert self.now - start < limit, f"the replicas are not {condition}"
            self.run_until(self.now + 0.05)


__all__ = ["RaftMessage", "ReplicaCluster"]
