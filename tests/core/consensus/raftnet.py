"""An in-memory cluster of Raft replicas, a faulty network between them, and its checks.

Each replica's driver loop is ``flush``: take the ``Ready``, write it to the
replica's storage (a ``Persisted``), put its messages on the wire, apply its
committed entries to a register store, ``advance``. The wire is a list of
messages in flight; ``deliver`` takes them in a random order (reordering),
losing or duplicating each with the network's probabilities, and drops what
crosses a partition or goes to a crashed replica. ``crash`` forgets a replica
(``torn`` first writes part of its next ``Ready``: a prefix of snapshot, entries,
hard state, sending nothing, as a crash in the middle of a write does);
``restart`` builds it again from storage. Replicas compact their logs every few
applied entries, so lagging replicas are brought up to date by snapshots.

The state machine is a store of versioned registers (as the memory store keeps
them): ``put k v`` makes ``k``'s version one more. Clients put through the
leader (acknowledged when the proposer applies their entry) and read through
read-index; every operation is recorded as a ``MemOp`` so the history can be
checked for linearizability (``full_history`` settles the fate of the operations
whose answer never came, from what the replicas applied).

Checks run as the cluster goes (``SafetyError``): at most one leader per term; a
leader's log holds every entry committed in an earlier term (leader
completeness); no two replicas apply different entries at one index.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.metrics.linearizable import MemOp, Verb
from protocol.consensus.log import Entry
from protocol.consensus.messages import Persisted, RaftMessage, Ready, Role
from protocol.consensus.raft import Raft, RaftConfig, Refusal

COMPACT_EVERY = 8  # applied entries past the snapshot before a replica compacts


class SafetyError(AssertionError):
    pass


@dataclass
class Registers:
    """The replicated state machine: key -> (version, value)."""

    values: dict[str, tuple[int, int]] = field(default_factory=dict)
    applied: list[bytes] = field(default_factory=list)  # every command, in order

    def apply(self, data: bytes) -> tuple[int, int]:
        self.applied.append(data)
        _, key, value = data.decode().split(" ")
        version = self.values.get(key, (0, 0))[0] + 1
        self.values[key] = (version, int(value))
        return version, int(value)

    def dump(self) -> bytes:
        return b"\n".join(self.applied)

    @classmethod
    def load(cls, data: bytes) -> Registers:
        registers = cls()
        for command in data.split(b"\n") if data else []:
            registers.apply(command)
        return registers


@dataclass
class Call:
    """A client operation waiting for its answer."""

    op: MemOp
    entry: Entry | None = None  # a put's proposed entry
    node: str = ""


class RaftNet:
    def __init__(
        self,
        size: int,
        seed: int,
        config: RaftConfig | None = None,
        loss: float = 0.0,
        dup: float = 0.0,
        compact_every: int = COMPACT_EVERY,
    ) -> None:
        self.ids = tuple(f"r{i}" for i in range(1, size + 1))
        self.config = config or RaftConfig()
        self.rng = random.Random(seed)
        self.loss = loss
        self.dup = dup
        self.compact_every = compact_every
        self.stored = {n: Persisted() for n in self.ids}
        self.nodes = {n: Raft(n, self.ids, self.config) for n in self.ids}
        self.state = {n: Registers() for n in self.ids}
        self.wire: list[RaftMessage] = []
        self.down: set[str] = set()
        self.held: set[str] = set()  # replicas whose readies wait (a slow disk)
        self.group: dict[str, int] = {}  # partition: replicas in different groups are cut
        self.time = 0
        self.leaders: dict[int, str] = {}
        self.committed_in: dict[int, int] = {}  # index -> the term whose leader committed it
        self.at: dict[int, tuple[int, bytes]] = {}  # index -> (term, data) applied somewhere
        self.calls: list[Call] = []
        self.history: list[MemOp] = []
        self.reads: dict[bytes, Call] = {}
        self.first_applied: dict[bytes, tuple[int, int]] = {}  # command -> (time, version)
        self.sent = 0
        self.log: list[str] = []  # what happened, for scripts
        self.trace = False  # log every message sent (scripts print them)
        self.mirror: Callable[[str, Ready], None] | None = None  # another storage, tested
        self.reorder = True  # deliver in a random order (scripts: in the order sent)
        self.links_close = True  # a crash tells the others their link to it closed

    # -- the drivers -------------------------------------------------------------------

    def flush(self, node_id: str) -> None:
        if node_id in self.held:
            return  # its driver has not written yet
        node = self.nodes[node_id]
        while node.has_ready():
            ready = node.ready()
            self.write(node_id, ready)
            for message in ready.messages:
                self.send(message)
            self.apply(node_id, ready)
            node.advance(ready)
            self.check_leader(node_id)
            if not node.has_ready():
                self.maybe_compact(node_id)

    def write(self, node_id: str, ready: Ready) -> None:
        """The replica's storage takes ``ready`` (and so does ``mirror``, if set)."""
        self.stored[node_id] = ready.persist(self.stored[node_id])
        if self.mirror is not None:
            self.mirror(node_id, ready)

    def apply(self, node_id: str, ready: Ready) -> None:
        node = self.nodes[node_id]
        if self.trace:
            self.log.extend(describe_ready(node_id, ready))
        if ready.snapshot is not None:
            self.state[node_id] = Registers.load(ready.snapshot.data)
        for entry in ready.committed:
            seen = self.at.setdefault(entry.index, (entry.term, entry.data))
            if seen != (entry.term, entry.data):
                raise SafetyError(f"{node_id} applied {entry} where {seen} was applied")
            if entry.data:
                version, value = self.state[node_id].apply(entry.data)
                self.first_applied.setdefault(entry.data, (self.time, version))
                self.answer_put(node_id, entry, version)
        for read in ready.read_states:
            call = self.reads.pop(read.context, None)
            if call is not None and node.log.applied >= read.index:
                self.answer_read(call, self.state[node_id])
            elif call is not None:
                self.reads[read.context] = call  # answered once applied (below)
                call.entry = Entry(0, read.index)
        for context, call in list(self.reads.items()):
            if call.node == node_id and call.entry and node.log.applied >= call.entry.index:
                del self.reads[context]
                self.answer_read(call, self.state[node_id])

    def maybe_compact(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.log.applied - node.log.snap_index >= self.compact_every:
            node.compact(node.log.applied, self.state[node_id].dump())  # stored by the next ready

    def send(self, message: RaftMessage) -> None:
        self.sent += 1
        lost = self.rng.random() < self.loss or self.cut(message.src, message.dst)
        if self.trace:
            self.log.append(describe(message) + (" (lost)" if lost else ""))
        if lost:
            return
        self.wire.append(message)
        if self.rng.random() < self.dup:
            self.wire.append(message)

    def cut(self, src: str, dst: str) -> bool:
        return dst in self.down or self.group.get(src, 0) != self.group.get(dst, 0)

    def deliver(self, share: float = 1.0) -> int:
        """Deliver a random ``share`` of what is on the wire, in random order."""
        if self.reorder:
            self.rng.shuffle(self.wire)
        count = len(self.wire) if share >= 1 else int(len(self.wire) * share)
        now, self.wire = self.wire[:count], self.wire[count:]
        for message in now:
            if self.cut(message.src, message.dst):
                continue
            self.nodes[message.dst].step(message)
            self.flush(message.dst)
        return len(now)

    def settle(self, rounds: int = 50) -> None:
        """Deliver until the wire is empty (bounded)."""
        for _ in range(rounds):
            if not self.wire:
                return
            self.deliver()

    def tick(self, nodes: tuple[str, ...] | None = None) -> None:
        self.time += 1
        for node_id in nodes or self.ids:
            if node_id not in self.down:
                self.nodes[node_id].tick()
                self.flush(node_id)

    def round(self, share: float = 1.0) -> None:
        """One tick of every live replica, then the wire."""
        self.tick()
        self.deliver(share)

    # -- faults ------------------------------------------------------------------------

    def crash(self, node_id: str, torn: bool = False, keep: int | None = None) -> None:
        """``node_id`` dies; ``torn``: in the middle of writing its next ready, of
        which storage keeps ``keep`` writes (None: a random number)."""
        if node_id in self.down:
            return
        node = self.nodes[node_id]
        if torn and node.has_ready():
            ready = node.ready()
            # storage writes the snapshot, then the entries, then the hard state:
            # the crash keeps a prefix of that
            has_snapshot = int(ready.snapshot is not None)
            writes = has_snapshot + len(ready.entries) + 1
            keep = self.rng.randrange(writes + 1) if keep is None else min(keep, writes)
            snapshot = ready.snapshot if keep > 0 else None
            entries = ready.entries[: max(keep - has_snapshot, 0)]
            hard = ready.hard_state if keep == writes else None
            partial = Ready(hard, snapshot, entries, (), (), (), ready.role, ready.leader)
            self.write(node_id, partial)
        self.down.add(node_id)
        self.held.discard(node_id)
        if self.links_close:  # as a tcp driver does: the dead replica's links close
            for other in self.ids:
                if other not in self.down and self.nodes[other].leader == node_id:
                    self.nodes[other].leader_lost()
                    self.flush(other)
        for call in self.calls:
            if call.node == node_id:
                call.node = ""  # its answer never comes: pending
        for context in [c for c, call in self.reads.items() if call.node == node_id]:
            del self.reads[context]

    def restart(self, node_id: str) -> None:
        if node_id not in self.down:
            return
        stored = self.stored[node_id]
        self.nodes[node_id] = Raft(node_id, self.ids, self.config, stored)
        self.state[node_id] = Registers.load(stored.snapshot.data if stored.snapshot else b"")
        self.down.discard(node_id)
        self.flush(node_id)

    def partition(self, *groups: tuple[str, ...]) -> None:
        self.group = {n: i for i, members in enumerate(groups) for n in members}

    def heal(self) -> None:
        self.group = {}

    # -- clients -----------------------------------------------------------------------

    def leader(self) -> str | None:
        """The live leader of the highest term, if any."""
        best = None
        for node_id in self.ids:
            node = self.nodes[node_id]
            live = node_id not in self.down and node.role is Role.LEADER
            if live and (best is None or node.term > self.nodes[best].term):
                best = node_id
        return best

    def put(self, client: str, key: str, value: int) -> bool:
        """Propose ``put key value`` at the leader; False when there is none (or it
        refused): then nothing was invoked."""
        node_id = self.leader()
        if node_id is None:
            return False
        entry = self.nodes[node_id].propose(f"put {key} {value}".encode())
        if isinstance(entry, Refusal):
            return False
        op = MemOp(client, "ns", key, Verb.PUT, float(self.time), checksum=value)
        self.calls.append(Call(op, entry, node_id))
        self.flush(node_id)
        return True

    def get(self, client: str, key: str) -> bool:
        node_id = self.leader()
        if node_id is None:
            return False
        context = f"{client}/{len(self.history)}/{len(self.calls)}".encode()
        call = Call(MemOp(client, "ns", key, Verb.GET, float(self.time)), None, node_id)
        self.calls.append(call)
        self.reads[context] = call
        if not self.nodes[node_id].read_index(context):
            return False
        self.flush(node_id)
        return True

    def answer_put(self, node_id: str, entry: Entry, version: int) -> None:
        for call in self.calls:
            if call.node == node_id and call.entry == entry and call.op.verb is Verb.PUT:
                self.finish(call, ok=True, version=version)

    def answer_read(self, call: Call, state: Registers) -> None:
        version, value = state.values.get(call.op.key, (0, 0))
        self.finish(call, ok=version > 0, version=version, read=value)  # absent: not ok

    def finish(self, call: Call, ok: bool, version: int, read: int = 0) -> None:
        op = call.op
        done = MemOp(
            op.client,
            op.namespace,
            op.key,
            op.verb,
            op.invoked,
            float(self.time),
            op.checksum,
            ok=ok,
            version=version,
            read=read,
        )
        self.history.append(done)
        self.calls.remove(call)

    def full_history(self) -> list[MemOp]:
        """Answered operations, and what is known of the ones never answered.

        Call it once every replica has applied everything committed. A put never
        answered whose command was never applied never took effect (nothing will
        commit it now), so it is left out; one that was applied took effect by the
        time a replica first applied it, with the version it made there, so it is
        answered then. A read never answered constrains nothing."""
        known = list(self.history)
        for call in self.calls:
            op = call.op
            applied = self.first_applied.get(f"put {op.key} {op.checksum}".encode())
            if op.verb is Verb.PUT and applied is not None:
                when, version = applied
                known.append(
                    MemOp(
                        op.client,
                        op.namespace,
                        op.key,
                        op.verb,
                        op.invoked,
                        float(when),
                        op.checksum,
                        ok=True,
                        version=version,
                    )
                )
        return known

    # -- checks ------------------------------------------------------------------------

    def check_leader(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.role is not Role.LEADER:
            return
        first = self.leaders.setdefault(node.term, node_id)
        if first != node_id:
            raise SafetyError(f"two leaders in term {node.term}: {first} and {node_id}")
        for index in range(node.log.snap_index + 1, node.log.committed + 1):
            self.committed_in.setdefault(index, node.term)
        # leader completeness: it holds every entry committed in an earlier term
        for index in range(node.log.snap_index + 1, max(self.committed_in, default=0) + 1):
            seen = self.at.get(index)
            earlier = self.committed_in.get(index, node.term) < node.term
            if earlier and seen and node.log.term(index) != seen[0]:
                raise SafetyError(f"leader {node_id} lacks committed entry {index}")

    def agree(self) -> None:
        """Replicas agree: each one's applied commands are a prefix of the longest."""
        runs = sorted((self.state[n].applied for n in self.ids), key=len)
        for run in runs:
            if run != runs[-1][: len(run)]:
                raise SafetyError("replicas applied different commands")


def describe(m: RaftMessage) -> str:
    """One message, as scripts print it."""
    text = f"{m.src}->{m.dst} {m.kind.name} term={m.term}"
    if m.kind.name in ("APPEND", "VOTE", "PRE_VOTE"):
        text += f" log={m.log_term}/{m.index}"
    if m.entries:
        text += " entries=" + ",".join(f"{e.term}/{e.index}" for e in m.entries)
    if m.commit:
        text += f" commit={m.commit}"
    if m.kind.name == "APPEND_RESP":
        text += f" index={m.index}"
    if m.reject:
        text += f" reject hint={m.hint}"
    if m.snapshot is not None:
        text += f" snapshot={m.snapshot.term}/{m.snapshot.index}"
    if m.context:
        text += f" read={m.context}"
    return text


def describe_ready(node_id: str, ready: Ready) -> list[str]:
    """What a ready installs, applies and lets read, as scripts print it."""
    lines = []
    if ready.snapshot is not None:
        lines.append(f"{node_id} installs snapshot {ready.snapshot.term}/{ready.snapshot.index}")
    if ready.committed:
        first, last = ready.committed[0], ready.committed[-1]
        lines.append(f"{node_id} applies {first.term}/{first.index}..{last.term}/{last.index}")
    for read in ready.read_states:
        lines.append(f"{node_id} may read {read.context.decode()} at {read.index}")
    return lines


def describe_node(node: Raft, down: bool) -> str:
    if down:
        return f"{node.id}: down"
    lead = node.leader or "-"
    log = node.log
    return (
        f"{node.id}: {node.role.name.lower()} term={node.term} vote={node.vote or '-'} "
        f"lead={lead} last={log.last_index()} commit={log.committed} applied={log.applied} "
        f"snap={log.snap_index}"
    )


__all__ = ["RaftNet", "Registers", "SafetyError", "describe", "describe_node", "describe_ready"]
