"""An in-memory cluster of PBFT replicas, a faulty network, a lying replica, and the checks.

Each replica's driver loop is ``flush``: take the ``Ready``, write it to the
replica's storage (a ``Persisted``), put its messages on the wire, record its
committed entries as executed, ``advance``. The wire (``lossywire``) is a list of messages in
flight; ``deliver`` takes them in a random order, losing or duplicating each
with the network's probabilities, and drops what crosses a partition or goes to
a crashed replica. ``crash`` forgets a replica, ``restart`` builds it again
from its storage.

One replica may be faulty (``liar``), in one of the ways ``LIES`` names: it
stays silent, equivocates (as primary, a different request to each backup, all
signed), sends wrong digests, or signs messages as another replica (which only
forging that replica's key could make pass). What it receives it handles as
a correct replica would; only what it sends is bent.

Clients: ``submit`` asks whichever replica leads to order a request
(``req-N``); a request not executed is asked again (``resubmit``), so one may
execute twice, as a retried client request does; one that waited too long is
announced to every replica (``Pbft.expect``), so a primary that ignores or
garbles it is suspected. The checks, run as the
cluster goes (``SafetyError``): no two correct replicas execute different
requests at one number, and a replica's executed sequence only grows.
"""

from __future__ import annotations

import random
from dataclasses import replace

from protocol.consensus.log import Entry
from protocol.consensus.messages import Persisted, Ready, Role
from protocol.consensus.pbft import Pbft, PbftConfig
from protocol.consensus.pbftmessages import PbftMessage, PKind, request_digest, sign
from protocol.consensus.signing import cluster_keys
from tests.core.consensus.lossywire import LossyWire

LIES = ("silent", "equivocate", "digest", "forge")
PATIENCE = 10  # rounds a client waits before it tells every replica of its request


class SafetyError(AssertionError):
    pass


class PbftNet(LossyWire):
    def __init__(
        self,
        size: int = 4,
        seed: int = 0,
        config: PbftConfig | None = None,
        loss: float = 0.0,
        duplicate: float = 0.0,
        liar: str = "",
        lie: str = "",
    ) -> None:
        super().__init__()
        self.ids = tuple(f"r{i}" for i in range(1, size + 1))
        self.config = config or PbftConfig(checkpoint_every=4, window=16, view_change_ticks=6)
        self.rng = random.Random(seed)
        self.keys = cluster_keys(self.ids, f"pbftnet/{seed}".encode())
        self.loss, self.duplicate = loss, duplicate
        self.liar, self.lie = liar, lie
        self.stored = {n: Persisted() for n in self.ids}
        self.nodes: dict[str, Pbft] = {}
        self.executed: dict[str, list[Entry]] = {n: [] for n in self.ids}
        self.requests = 0
        self.pending: dict[bytes, str] = {}  # request data -> its id, until executed
        self.waited: dict[bytes, int] = {}  # request data -> rounds it waited
        for node in self.ids:
            self._start(node)

    def _start(self, node: str) -> None:
        self.nodes[node] = Pbft(node, self.ids, self.config, self.keys[node], self.stored[node])

    @property
    def correct(self) -> tuple[str, ...]:
        return tuple(n for n in self.ids if n != self.liar)

    # -- the drivers ------------------------------------------------------------------------

    def flush(self, node_id: str) -> None:
        node = self.nodes[node_id]
        while node.has_ready():
            ready = node.ready()
            self.stored[node_id] = ready.persist(self.stored[node_id])
            for m in ready.messages:
                assert isinstance(m, PbftMessage)
                for bent in self._bend(node_id, m):
                    self.wire.append(bent)
            self._execute(node_id, ready)
            node.advance(ready)
            stored = self.stored[node_id]
            have = {e.index for e in stored.entries}
            commit = stored.hard_state.commit
            snap = stored.snapshot.index if stored.snapshot else 0
            missing = set(range(snap + 1, commit + 1)) - have
            if missing:
                raise SafetyError(
                    f"{node_id} stored commit {commit} without {sorted(missing)[:5]}"
                    f" after a ready of {[e.index for e in ready.entries]}, hs {ready.hard_state}"
                    f" low {node.low} slots {sorted(node.slots)[:8]}"
                )

    def _execute(self, node_id: str, ready: Ready) -> None:
        done = self.executed[node_id]
        for entry in ready.committed:
            if done and entry.index != done[-1].index + 1:
                start = self.nodes[node_id].log.snap_index
                if entry.index != start + 1:
                    raise SafetyError(f"{node_id} executed {entry.index} after {done[-1].index}")
            done.append(entry)
            if node_id in self.correct:
                self._agree(node_id, entry)
                self.pending.pop(entry.data, None)

    def _agree(self, node_id: str, entry: Entry) -> None:
        for other in self.correct:
            mine = self.executed[other]
            position = entry.index - 1
            if other != node_id and len(mine) > position:
                theirs = mine[position]
                if theirs.index == entry.index and theirs.data != entry.data:
                    raise SafetyError(
                        f"{node_id} and {other} executed different requests at {entry.index}"
                    )

    def _bend(self, src: str, m: PbftMessage) -> list[PbftMessage]:
        """What the liar sends instead of ``m`` (a correct replica sends ``m``)."""
        if src != self.liar or not self.lie:
            return [m]
        keys = self.keys[src]
        if self.lie == "silent":
            return []
        if self.lie == "equivocate" and m.kind is PKind.PRE_PREPARE:
            data = m.data + f"/for-{m.dst}".encode()
            other = replace(m, data=data, digest=request_digest(data), sig=b"")
            return [replace(sign(keys, other), dst=m.dst)]
        if self.lie == "digest" and m.kind in (PKind.PRE_PREPARE, PKind.PREPARE, PKind.COMMIT):
            wrong = replace(m, digest=request_digest(m.digest + b"x"), sig=b"")
            return [replace(sign(keys, wrong), dst=m.dst)]
        if self.lie == "forge":
            victim = next(n for n in self.ids if n not in (src, m.dst))
            return [replace(m, src=victim)]  # its own signature, someone else's name
        return [m]

    # -- faults -----------------------------------------------------------------------------

    def crash(self, node_id: str) -> None:
        self.dead.add(node_id)

    def restart(self, node_id: str) -> None:
        self.dead.discard(node_id)
        self._start(node_id)
        self.executed[node_id] = []  # it executes again from its storage

    # -- clients ----------------------------------------------------------------------------

    def primary(self) -> str | None:
        """The live replica that leads in the highest view, if one does (the client
        cannot tell a lying one)."""
        leading = [n for n in self.ids if n not in self.dead and self.nodes[n].role is Role.LEADER]
        return max(leading, key=lambda n: self.nodes[n].view, default=None)

    def submit(self) -> None:
        self.requests += 1
        self.pending[f"req-{self.requests}".encode()] = f"req-{self.requests}"
        self.resubmit()

    def resubmit(self) -> None:
        """Ask the primary to order every request not executed yet (once per round);
        tell every replica of a request that waited ``PATIENCE`` rounds, as a PBFT
        client sends a request to all when the primary does not answer."""
        for data in self.pending:
            self.waited[data] = waited = self.waited.get(data, 0) + 1
            if waited % PATIENCE == 0:
                for node_id in self.ids:
                    if node_id not in self.dead:
                        self.nodes[node_id].expect(data)
        leader = self.primary()
        if leader is None:
            return
        node = self.nodes[leader]
        queued = {e.data for e in self.executed[leader]}
        queued |= {s.data for s in node.slots.values() if s.accepted}
        for data in list(self.pending):
            if data not in queued and node.can_take(1):
                node.propose(data)
        self.flush(leader)

    def done(self) -> bool:
        """Every request executed at every live correct replica."""
        return not self.pending and all(
            {f"req-{i}".encode() for i in range(1, self.requests + 1)}
            <= {e.data for e in self.executed[n]}
            for n in self.correct
            if n not in self.dead
        )
