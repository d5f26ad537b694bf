"""A replicated coordinator: consensus underneath (Raft, PBFT, Fast Paxos), the coordinator on top.

Every replica runs a ``Raft`` (``protocol.consensus.raft``) and applies the
committed log to a ``DurableState`` (``protocol.consensus.state``): the memory
rows, what the bus still owes, the answers to writes. Only the leader runs a
``Coordinator``, and it runs it as a persisting one (``durable_memory``,
``durable_bus``, every memory reply held: ``hold_reads``), so that every answer
that says "done" waits for durability. Durability here is a quorum: after each
batch of work the coordinator's journals become one proposed log entry, the
replies that batch held are sealed under it (``Coordinator.seal``), and they
are released once the entry is committed. A batch that wrote nothing but held
replies (reads, answers from the de-duplication cache) waits for a read-index
round instead (a batch too large for one entry is split over several, and waits
for the last), so a deposed leader that does not know it yet answers nothing.
Batches are released in order. An answer that left a leader therefore reports
a state that a quorum holds and that every later leader starts from: nothing
acknowledged is lost, and memory histories are linearizable.

Leadership. A replica that wins an election does not serve at once: it waits
until its own first entry (Raft's empty entry of the new term) is committed and
applied, so that its state holds everything any earlier leader committed. Then
it builds its coordinator from the state, as a restarted coordinator is built
from SQLite (``protocol.durable.restarted``). A replica that stops leading drops its
coordinator, with every reply still held, and closes every agent's link.
A replica that does not serve answers a ``Hello`` (or any agent message) with
``Reject("not the leader: r2")`` (naming the leader it knows, if any) and closes
the link; an agent knows every replica (``Agent(fallbacks=...)``) and moves to
the leader named, else to the next, when its link closes.

Replicas talk in ``RaftMessage`` objects, or, with ``wire`` set, in
``Consensus`` frames (``protocol.consensus.wire``); a malformed one, or (Raft,
whose messages are not signed) one whose inner sender is not the replica the
link belongs to, is refused (``refused``) and that link closed.

``protocol="fast-paxos"`` runs it on Fast Paxos (``protocol.consensus.
fastpaxos``): its coordinator in the leader's place, ``FpMessage`` objects
(``protocol.consensus.fpwire`` frames with ``wire``), ``election_ticks`` as a
follower's patience. Only the serving replica proposes (the coordinator's
state lives there), so its fast rounds never collide in this use: what a fast
round buys is that every replica learns a value two message delays after it
was proposed, and what it costs is the larger quorum (see docs/design.md).

``protocol="pbft"`` runs the same coordinator on PBFT
(``protocol.consensus.pbft``) instead: the same contract, its primary in the
leader's place, ``PbftMessage`` objects (``Consensus`` frames of
``protocol.consensus.pbftwire`` with ``wire``), every replica's keys derived
from the replica ids (``cluster_keys``: a simulation's keys, not a
deployment's), ``election_ticks`` as its view-change patience. What its
signatures refused goes to ``refused`` too.

The driver's loop is the one of a persisting coordinator, with Raft's
contract: after handling a batch of messages or a timer, while ``ready()``
returns something, persist it (``Ready.persist`` says what storage then holds)
and call ``advance(ready, now)``; then send what ``drain()`` returns (to agents
and to other replicas alike) and close the links ``take_closures()`` names.
``on_timer`` ticks Raft every ``tick`` seconds (dropping ticks missed in a stall).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from protocol.codec import MalformedFrame
from protocol.consensus.fastpaxos import FastPaxos, FastPaxosConfig
from protocol.consensus.fpmessages import FpMessage
from protocol.consensus.fpwire import decode_fp_body, encode_fp
from protocol.consensus.log import Entry
from protocol.consensus.messages import ConsensusMessage, Persisted, RaftMessage, Ready, Role
from protocol.consensus.pbft import Pbft, PbftConfig
from protocol.consensus.pbftmessages import PbftMessage
from protocol.consensus.pbftwire import decode_pbft_body, encode_pbft
from protocol.consensus.raft import Raft, RaftConfig, Refusal
from protocol.consensus.signing import cluster_keys
from protocol.consensus.state import decode_batch, decode_state, encode_batches, encode_state
from protocol.consensus.wire import decode_raft_body, encode_raft
from protocol.coordinator import Coordinator
from protocol.durable import Answer, DurableState, restarted
from protocol.journal import BusEntry
from protocol.memory import Write
from protocol.messages import Consensus, Message, Reject, not_leader
from protocol.records import REPLICA_COUNTS, NodeEvent
from protocol.settings import ProtocolSettings

COMPACT_EVERY = 8192  # applied entries past the snapshot before a replica compacts
PROTOCOLS = ("raft", "pbft", "fast-paxos")
KEY_SEED = b"swarmtwin/pbft"


def pbft_config(config: RaftConfig) -> PbftConfig:
    """PBFT's settings from a scenario's: a backup's patience is ``election_ticks``."""
    return PbftConfig(view_change_ticks=config.election_ticks)


def fast_paxos_config(config: RaftConfig) -> FastPaxosConfig:
    """Fast Paxos's settings from a scenario's: a follower's patience is ``election_ticks``."""
    return FastPaxosConfig(election_ticks=config.election_ticks)


@dataclass(slots=True)
class _Batch:
    """Replies the coordinator sealed as ``number``, released once ``entry`` is
    committed (or, when it wrote nothing, once read-index round ``context`` says so)."""

    number: int
    entry: Entry | None
    context: bytes = b""
    index: int = -1  # the read-index round's commit index, once confirmed
    asked: bool = False  # the read-index round started (a busy engine may refuse it)


class Replica:
    def __init__(
        self,
        node_id: str,
        replicas: tuple[str, ...],
        settings: ProtocolSettings,
        config: RaftConfig | None = None,
        tick: float = 0.05,
        stored: Persisted | None = None,
        compact_every: int = COMPACT_EVERY,
        wire: bool = False,
        protocol: str = "raft",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"no replicated coordinator on {protocol!r} (built: {PROTOCOLS})")
        self.id = node_id
        self.wire = wire
        self.refused: list[str] = []  # malformed or spoofed consensus input, for the log
        self.replicas = replicas
        self.settings = replace(settings, durable_bus=True)
        self.raft: Raft | Pbft | FastPaxos
        if protocol == "fast-paxos":
            self.raft = FastPaxos(
                node_id, replicas, fast_paxos_config(config or RaftConfig()), stored
            )
        elif protocol == "pbft":
            keys = cluster_keys(tuple(sorted(replicas)), KEY_SEED)[node_id]
            self.raft = Pbft(node_id, replicas, pbft_config(config or RaftConfig()), keys, stored)
        else:
            self.raft = Raft(node_id, replicas, config or RaftConfig(), stored)
        snapshot = stored.snapshot if stored is not None else None
        self.state = decode_state(snapshot.data) if snapshot and snapshot.data else DurableState()
        self.coordinator: Coordinator | None = None
        self.tick = tick
        self.compact_every = compact_every
        self.events: list[NodeEvent] = []
        self._next_tick: float | None = None
        self._out: list[tuple[str, Message | ConsensusMessage]] = []
        self._closures: list[str] = []
        self._batches: deque[_Batch] = deque()
        self._writes: list[Write] = []  # journals not yet proposed (Raft was busy)
        self._entries: list[BusEntry] = []
        self._answers: list[Answer] = []
        self._reads = 0
        self._term_served = 0  # the term this replica last served in
        self.counts = dict.fromkeys(REPLICA_COUNTS, 0)  # what it did, for the run's figures

    # -- the driver's interface ----------------------------------------------------------

    @property
    def serving(self) -> bool:
        return self.coordinator is not None

    @property
    def leader(self) -> str:
        """The replica this one believes leads ("" when it does not know)."""
        return self.raft.leader

    def start(self, now: float, first_tick: float | None = None) -> None:
        """Start ticking: the first tick ``first_tick`` after ``now`` (one tick by
        default). Replicas that are separate processes tick out of phase; a model
        that starts them at one instant spreads their first ticks to match."""
        self._next_tick = now + (self.tick if first_tick is None else first_tick)

    def receive(self, src: str, msg: Message | ConsensusMessage, now: float) -> None:
        if type(msg) is Consensus:
            if src not in self.replicas or not msg.body:
                return  # a stranger's, or a replica naming itself on a new link
            self.counts["frames"] += 1
            self.counts["frame_bytes"] += len(msg.body)
            decoded: ConsensusMessage
            try:
                if isinstance(self.raft, Pbft):
                    decoded = decode_pbft_body(msg.body)
                elif isinstance(self.raft, FastPaxos):
                    decoded = decode_fp_body(msg.body)
                else:
                    decoded = decode_raft_body(msg.body)
            except MalformedFrame as exc:
                self.refused.append(f"malformed consensus message from {src}: {exc}")
                self._closures.append(src)
                return
            if decoded.src != src and type(decoded) is not PbftMessage:  # (PBFT's are signed:
                # a replica may forward another's, as it does a NEW_VIEW)
                self.refused.append(f"{src} sent a consensus message as {decoded.src}")
                self._closures.append(src)
                return
            msg = decoded
        raft = self.raft
        if type(msg) is RaftMessage:
            if isinstance(raft, Raft):
                raft.step(msg)
        elif type(msg) is FpMessage:
            if isinstance(raft, FastPaxos):
                raft.step(msg)
        elif type(msg) is PbftMessage:
            if isinstance(raft, Pbft):
                raft.step(msg)
                if raft.refused:
                    self.refused.extend(raft.refused)
                    raft.refused = []
        elif self.coordinator is not None:
            self.coordinator.receive(src, msg, now)  # type: ignore[arg-type]
        else:
            leader = self.raft.leader if self.raft.leader != self.id else ""
            self._out.append((src, Reject(not_leader(leader))))
            self._closures.append(src)

    def link_closed(self, node: str) -> None:
        """The driver lost its link to replica ``node``: if it led, its lease is over
        (``Raft.leader_lost``), so an election starts without waiting out a whole
        election timeout."""
        if node == self.raft.leader and node != self.id:
            self.raft.leader_lost()

    def on_timer(self, now: float) -> None:
        """Tick Raft if a tick is due. Ticks missed while the process was stalled are
        dropped, as a Go ticker drops them: a burst of them on waking would expire
        election timeouts that the messages waiting to be read would have reset."""
        if self._next_tick is not None and now >= self._next_tick:
            self.raft.tick()
            self._next_tick += self.tick
            if self._next_tick <= now:
                self._next_tick = now + self.tick
        coordinator = self.coordinator
        if coordinator is not None:
            deadline = coordinator.next_deadline()
            if deadline is not None and now >= deadline:
                coordinator.on_timer(now)

    def next_deadline(self) -> float | None:
        deadlines = [self._next_tick]
        if self.coordinator is not None:
            deadlines.append(self.coordinator.next_deadline())
        times = [t for t in deadlines if t is not None]
        return min(times) if times else None

    def ready(self) -> Ready | None:
        """What to persist now (then ``advance``), or None."""
        self._propose()
        return self.raft.ready() if self.raft.has_ready() else None

    def persist(self, save: Callable[[Ready], None], now: float) -> int:
        """Raft's contract in one call: while there is a ready, ``save`` it to the
        driver's storage, then ``advance``. Returns how many readies were saved."""
        saved = 0
        counts = self.counts
        while (ready := self.ready()) is not None:
            save(ready)
            saved += 1
            if ready.changes_storage:
                counts["commits"] += 1
            counts["flush_bytes"] += ready.handled_bytes
            self.advance(ready, now)
        if saved:
            counts["flushes"] += 1
        return saved

    def advance(self, ready: Ready, now: float) -> None:
        """The driver persisted ``ready``: queue its messages, apply what it committed."""
        self._out.extend((m.dst, m) for m in ready.messages)
        if ready.snapshot is not None:
            self.state = decode_state(ready.snapshot.data)
        exact = isinstance(self.raft, Pbft)  # its replicas compact at the same numbers
        snapshot: tuple[int, bytes] | None = None
        self.counts["entries"] += len(ready.committed)
        for entry in ready.committed:
            if entry.data:
                self.state.apply(*decode_batch(entry.data))
            if exact and entry.index % self.compact_every == 0:
                snapshot = (entry.index, encode_state(self.state))
        self.raft.advance(ready)
        for read in ready.read_states:
            for batch in self._batches:
                if batch.context == read.context:
                    batch.index = read.index
        self._release(now)
        self._follow_role(now)
        log = self.raft.log
        if snapshot is not None:
            self.raft.compact(*snapshot)
        elif not exact and log.applied - log.snap_index >= self.compact_every:
            self.raft.compact(log.applied, encode_state(self.state))

    def drain(self) -> list[tuple[str, Message | ConsensusMessage]]:
        """What to send: to agents, and to replicas (as ``Consensus`` frames when
        ``wire`` is set, as ``RaftMessage`` objects otherwise)."""
        out = self._out
        self._out = []
        if self.wire:
            out = [(dst, _encoded(m)) for dst, m in out]
        if self.coordinator is not None:
            out.extend(self.coordinator.drain())
        return out

    def take_closures(self) -> list[str]:
        closures, self._closures = self._closures, []
        if self.coordinator is not None:
            closures.extend(self.coordinator.take_closures())
        return closures

    def take_events(self) -> list[NodeEvent]:
        events, self.events = self.events, []
        if self.coordinator is not None:
            events.extend(self.coordinator.take_events())
        return events

    # -- leading ---------------------------------------------------------------------------

    def _propose(self) -> None:
        """The coordinator's journals since the last call become one log entry, and the
        replies it held meanwhile a batch released when that entry commits."""
        coordinator = self.coordinator
        if coordinator is None:
            return
        for batch in self._batches:  # read rounds a busy engine refused: ask again
            if batch.entry is None and not batch.asked:
                batch.asked = self.raft.read_index(batch.context)
        self._writes.extend(coordinator.take_writes())
        self._entries.extend(coordinator.take_bus_journal())
        self._answers.extend(coordinator.take_answers())
        if self._writes or self._entries or self._answers:
            parts = encode_batches(self._writes, self._entries, self._answers)
            if not self.raft.can_take(len(parts)):
                return  # too much waits for a quorum: propose with the next batch
            entry: Entry | None = None
            for data in parts:
                proposed = self.raft.propose(data)
                assert not isinstance(proposed, Refusal)  # can_take said so
                entry = proposed
            self._writes, self._entries, self._answers = [], [], []
            self._batches.append(_Batch(coordinator.seal(), entry))  # released with the last
            return
        number = coordinator.seal()
        if number:  # replies held, nothing written: confirm leadership first
            self._reads += 1
            context = f"{self.raft.term}/{self._reads}".encode()
            batch = _Batch(number, None, context)
            self._batches.append(batch)
            batch.asked = self.raft.read_index(context)

    def _release(self, now: float) -> None:
        coordinator = self.coordinator
        if coordinator is None:
            return
        applied = self.raft.log.applied
        while self._batches:
            batch = self._batches[0]
            if batch.entry is not None:
                if applied < batch.entry.index:
                    break
                if not self.raft.holds(batch.entry):  # another request took its place
                    self._stop_serving(now)
                    return
            elif batch.index < 0 or applied < batch.index:
                break
            self._batches.popleft()
            coordinator.release(batch.number)

    def _follow_role(self, now: float) -> None:
        raft = self.raft
        leads = raft.role is Role.LEADER and raft.term == self._term_served
        if self.coordinator is not None and not leads:
            self._stop_serving(now)
        if self.coordinator is None and raft.may_serve():
            self._serve(now)

    def _serve(self, now: float) -> None:
        state = self.state
        rows = list(state.rows.values())
        coordinator = restarted(self.id, self.settings, (), rows, state.bus, state.recalled())
        coordinator.hold_reads = True
        self.coordinator = coordinator
        self._term_served = self.raft.term
        self.events.append(NodeEvent(now, "leader", self.id))

    def _stop_serving(self, now: float) -> None:
        coordinator = self.coordinator
        assert coordinator is not None
        self._closures.extend(
            node for node, session in coordinator.sessions.items() if not session.peer
        )
        self.coordinator = None
        self._batches.clear()
        self._writes, self._entries, self._answers = [], [], []
        self.events.append(NodeEvent(now, "deposed", self.id))


def _encoded(m: Message | ConsensusMessage) -> Message:
    if type(m) is RaftMessage:
        return encode_raft(m)
    if type(m) is PbftMessage:
        return encode_pbft(m)
    if type(m) is FpMessage:
        return encode_fp(m)
    return m  # type: ignore[return-value]  # an agent's message
