"""A replica of a replicated coordinator behind the tcp server.

``CoordinatorServer`` drives one core through what a ``Coordinator`` offers;
``ReplicaCore`` offers the same on a ``protocol.consensus.replica.Replica``, so
one server, one admission and one outbox serve both. What differs:

- persistence: instead of the coordinator's journals, the flush runs Raft's
  contract (``persist``): while the replica has a ``Ready``, write it to the
  replica's SQLite file (``real.tcp.raftstore``) in one transaction, then
  ``advance``; only then are its messages sent;
- links to the other replicas: the server opens one connection to each of
  them (``real.tcp.uplink.Uplinks``, as a tree node does to its ancestors),
  naming itself on it, and sends its ``Consensus`` frames there; the frames
  the others send arrive on the connections they opened, bound to their ids;
  a replica's link closing changes nothing (Raft retries on its own);
- agents: only the leader's coordinator knows them; while this replica does
  not serve, every agent message is refused with ``Reject("not the leader")``
  and its link closed.

``ReplicaPlace`` is where a server sits: its id, every replica's id, the other
replicas' addresses (filled in once every replica listens), its storage file
and its tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.consensus.messages import Persisted, Ready
from protocol.consensus.raft import RaftConfig
from protocol.consensus.replica import Replica
from protocol.messages import Message
from protocol.records import NodeEvent
from protocol.sessions import CoordinatorStats
from protocol.settings import ProtocolSettings
from real.tcp.raftstore import RaftStore

DEFAULT_TICK = 0.05  # seconds per Raft tick: heartbeats every 50 ms, elections in 0.5-1 s


@dataclass(slots=True)
class ReplicaPlace:
    node_id: str
    replicas: tuple[str, ...]
    store_path: str | None = None  # None: in memory (lost with the process)
    tick: float = DEFAULT_TICK
    config: RaftConfig = field(default_factory=RaftConfig)
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)  # the others'
    protocol: str = "raft"  # or "pbft"


class ReplicaCore:
    """The server's coordinator, for a replica."""

    parent = ""  # never a tree node

    def __init__(self, place: ReplicaPlace, settings: ProtocolSettings) -> None:
        self.place = place
        self.store = RaftStore(place.store_path) if place.store_path else None
        stored = self.store.load() if self.store is not None else Persisted()
        self._memory = stored  # the storage of a replica without a file
        self.replica = Replica(
            place.node_id,
            place.replicas,
            settings,
            place.config,
            place.tick,
            stored,
            wire=True,
            protocol=place.protocol,
        )
        self._closures: list[str] = []
        self._idle = CoordinatorStats()

    @property
    def counts(self) -> dict[str, int]:
        """What the replica did, for the server's report (``raft_`` and a
        ``protocol.records.REPLICA_COUNTS`` name)."""
        return {f"raft_{name}": value for name, value in self.replica.counts.items()}

    @property
    def stats(self) -> CoordinatorStats:
        coordinator = self.replica.coordinator
        return coordinator.stats if coordinator is not None else self._idle

    def start(self, now: float) -> None:
        self.replica.start(now)

    def persist(self, now: float) -> None:
        """Raft's contract: write every ready, then let the replica act on it."""
        self.replica.persist(self._save, now)

    def _save(self, ready: Ready) -> None:
        if self.store is not None:
            self.store.save(ready)
        else:
            self._memory = ready.persist(self._memory)

    def knows(self, node: str) -> bool:
        """The leader's coordinator's answer. A replica that does not serve takes
        every agent as known, so the agents of one link are all refused with
        ``Reject("not the leader")``, not by the admission's cap on unregistered ids."""
        coordinator = self.replica.coordinator
        if coordinator is None:
            return node not in self.place.replicas
        return coordinator.knows(node)

    def receive(self, src: str, msg: Message, now: float) -> None:
        self.replica.receive(src, msg, now)

    def on_timer(self, now: float) -> None:
        self.replica.on_timer(now)

    def next_deadline(self) -> float | None:
        return self.replica.next_deadline()

    def link_closed(self, node: str, now: float) -> None:
        coordinator = self.replica.coordinator
        if node in self.place.replicas:
            self.replica.link_closed(node)
        elif coordinator is not None:
            coordinator.link_closed(node, now)

    def peer_malformed(self, node: str, reason: str) -> None:
        coordinator = self.replica.coordinator
        if coordinator is not None and node not in self.place.replicas:
            coordinator.peer_malformed(node, reason)
        else:
            self._closures.append(node)

    def drain(self) -> list[tuple[str, Message]]:
        return self.replica.drain()  # type: ignore[return-value]  # wire: no RaftMessage

    def take_closures(self) -> list[str]:
        closures, self._closures = self._closures, []
        return closures + self.replica.take_closures()

    def take_events(self) -> list[NodeEvent]:
        return self.replica.take_events()

    def take_refusals(self) -> list[str]:
        refused, self.replica.refused = self.replica.refused, []
        return refused

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
