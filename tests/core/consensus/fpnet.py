"""An in-memory cluster of Fast Paxos replicas, a faulty network, proposers, and the checks.

Each replica's driver loop is ``flush``: take the ``Ready``, write it to the
replica's storage (a ``Persisted``), put its messages on the wire, apply its
committed entries, ``advance``; every ``compact_every`` applied entries it
compacts (the snapshot is the list of what it applied). The wire is a list of
messages in flight (``lossywire``); ``deliver`` takes them in a random order, losing or
duplicating each with the network's probabilities, and drops what crosses a
partition or goes to a crashed replica. ``crash`` forgets a replica (``torn``:
in the middle of writing its next ready, keeping a prefix of the writes);
``restart`` builds it again from its storage.

Proposers: with ``proposers="any"``, ``submit`` hands each request to a random
replica that can propose (any of them in a fast ballot), so requests collide
at an index and the coordinator must recover it; with ``"leader"``, to the
coordinator only, as the replicated coordinator does. A request not applied
``PATIENCE`` rounds after it was proposed is proposed again (so one may apply
twice, as a retried client request does).

The checks, as the cluster goes (``SafetyError``): no two replicas apply
different values at one index, a replica applies indexes in order, and at most
one replica coordinates each ballot.
"""

from __future__ import annotations

import random

import msgpack

from protocol.consensus.fastpaxos import FastPaxos, FastPaxosConfig
from protocol.consensus.fpmessages import FpMessage
from protocol.consensus.log import Entry
from protocol.consensus.messages import Persisted, Ready
from protocol.consensus.raft import Refusal
from tests.core.consensus.lossywire import LossyWire

PATIENCE = 12  # rounds a request waits before it is proposed again


class SafetyError(AssertionError):
    pass


class FpNet(LossyWire):
    def __init__(
        self,
        size: int = 3,
        seed: int = 0,
        config: FastPaxosConfig | None = None,
        loss: float = 0.0,
        duplicate: float = 0.0,
        proposers: str = "any",
        compact_every: int = 8,
    ) -> None:
        super().__init__()
        self.ids = tuple(f"r{i}" for i in range(1, size + 1))
        self.config = config or FastPaxosConfig(election_ticks=6)
        self.rng = random.Random(seed)
        self.loss, self.duplicate = loss, duplicate
        self.proposers = proposers
        self.compact_every = compact_every
        self.stored = {n: Persisted() for n in self.ids}
        self.nodes: dict[str, FastPaxos] = {}
        self.applied: dict[str, list[Entry]] = {}
        self.decided: dict[int, tuple[int, bytes]] = {}  # index -> (ballot, data), first seen
        self.coordinators: dict[int, str] = {}  # ballot -> who coordinated it
        self.requests = 0
        self.pending: dict[bytes, int] = {}  # request -> rounds since last proposed
        self.collisions = 0  # recoveries seen (coordinated, after a fast round)
        for node in self.ids:
            self._start(node)

    def _start(self, node: str) -> None:
        stored = self.stored[node]
        self.nodes[node] = FastPaxos(node, self.ids, self.config, stored)
        snap = stored.snapshot
        kept = msgpack.unpackb(snap.data) if snap is not None and snap.data else []
        self.applied[node] = [Entry(t, i, d) for t, i, d in kept]

    # -- the drivers ------------------------------------------------------------------------

    def flush(self, node_id: str) -> None:
        node = self.nodes[node_id]
        while node.has_ready():
            ready = node.ready()
            self.stored[node_id] = ready.persist(self.stored[node_id])
            self.wire.extend(m for m in ready.messages if isinstance(m, FpMessage))
            self._apply(node_id, ready)
            node.advance(ready)
            if node.leading:
                seen = self.coordinators.setdefault(node.current, node_id)
                if seen != node_id:
                    raise SafetyError(f"{seen} and {node_id} both coordinate {node.current}")
            self.collisions += sum(
                1 for m in ready.messages if m.kind.name == "ACCEPT" and m.round & 0xFFFF == 1
            )
            log = node.log
            if log.applied - log.snap_index >= self.compact_every:
                done = [[e.term, e.index, e.data] for e in self.applied[node_id]]
                node.compact(log.applied, msgpack.packb(done))

    def _apply(self, node_id: str, ready: Ready) -> None:
        done = self.applied[node_id]
        if ready.snapshot is not None:
            kept = msgpack.unpackb(ready.snapshot.data)
            done[:] = [Entry(t, i, d) for t, i, d in kept]
            for entry in done:
                self._agree(node_id, entry)
        for entry in ready.committed:
            last = done[-1].index if done else 0
            if entry.index != last + 1:
                raise SafetyError(f"{node_id} applied {entry.index} after {last}")
            done.append(entry)
            self._agree(node_id, entry)
            self.pending.pop(entry.data, None)

    def _agree(self, node_id: str, entry: Entry) -> None:
        value = (entry.term, entry.data)
        first = self.decided.setdefault(entry.index, value)
        if first != value:
            raise SafetyError(f"{node_id} applied {value} at {entry.index}, another {first}")

    # -- faults -----------------------------------------------------------------------------

    def crash(self, node_id: str, torn: bool = False) -> None:
        node = self.nodes[node_id]
        if torn and node.has_ready():
            ready = node.ready()  # storage keeps a prefix of its writes; nothing was sent
            keep = self.rng.randrange(len(ready.entries) + 2)
            entries = ready.entries[:keep]
            hard = ready.hard_state if keep > len(ready.entries) else None
            partial = Ready(hard, ready.snapshot, entries, (), (), (), ready.role, ready.leader)
            self.stored[node_id] = partial.persist(self.stored[node_id])
        self.dead.add(node_id)

    def restart(self, node_id: str) -> None:
        self.dead.discard(node_id)
        self._start(node_id)
        self.flush(node_id)

    # -- proposers --------------------------------------------------------------------------

    def coordinator(self) -> str | None:
        leading = [n for n in self.ids if n not in self.dead and self.nodes[n].leading]
        return max(leading, key=lambda n: self.nodes[n].current, default=None)

    def submit(self) -> None:
        self.requests += 1
        data = f"req-{self.requests}".encode()
        self.pending[data] = 0
        self._propose(data)

    def resubmit(self) -> None:
        for data in list(self.pending):
            self.pending[data] += 1
            if self.pending[data] >= PATIENCE:
                self.pending[data] = 0
                self._propose(data)

    def _propose(self, data: bytes) -> None:
        if self.proposers == "leader":
            chosen = self.coordinator()
            candidates = [chosen] if chosen is not None else []
        else:
            candidates = [n for n in self.ids if n not in self.dead]
            self.rng.shuffle(candidates)
        for node_id in candidates:
            if not isinstance(self.nodes[node_id].propose(data), Refusal):
                self.flush(node_id)
                return

    def done(self) -> bool:
        """Every request applied at every live replica."""
        wanted = {f"req-{i}".encode() for i in range(1, self.requests + 1)}
        return not self.pending and all(
            wanted <= {e.data for e in self.applied[n]} for n in self.ids if n not in self.dead
        )
