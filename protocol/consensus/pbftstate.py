"""The state of one PBFT replica (``protocol.consensus.pbft``), and the helpers every part uses.

``PbftState`` holds what a replica knows: its view, the slots of the numbers
above its last stable checkpoint, what it executed, the checkpoints, view
changes and offers it collected. It is built from storage (``Persisted``,
``_restore``). The parts of the protocol are its subclasses, each a module:
the normal case and the driver's interface (``pbft.Pbft``), checkpoints and
state transfer (``pbftsync.Sync``), view changes (``pbftchange.ViewChange``).
What one part needs of another is declared here and raises until the class
that puts them together (``Pbft``) provides it.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.messages import HardState, Persisted, ReadState, Role
from protocol.consensus.outbox import Outbox
from protocol.consensus.pbftmessages import NO_DIGEST, PbftMessage, chain, request_digest, to
from protocol.consensus.signing import Keys


@dataclass(frozen=True, slots=True)
class PbftConfig:
    checkpoint_every: int = 32  # executed requests between checkpoints
    window: int = 256  # numbers a primary may run ahead of the last stable checkpoint
    view_change_ticks: int = 10  # a backup's patience with a silent or stuck primary
    heartbeat_ticks: int = 1  # a primary's BEAT interval
    retransmit_ticks: int = 4  # how often what is not committed is sent again


class Slot:
    """What one replica knows of one number in its current view."""

    __slots__ = (
        "view",
        "digest",
        "data",
        "pre",
        "accepted",
        "prepares",
        "commits",
        "certificate",
        "committed",
        "age",
        "reminded",
    )

    def __init__(self, view: int) -> None:
        self.view = view
        self.digest = NO_DIGEST
        self.data = b""
        self.pre: PbftMessage | None = None  # the signed pre-prepare
        self.accepted = False  # a pre-prepare accepted (or, after a restart, persisted)
        self.prepares: dict[str, PbftMessage] = {}
        self.commits: dict[str, PbftMessage] = {}
        self.certificate: tuple[PbftMessage, ...] = ()  # prepared, in the highest view
        self.committed = False
        self.age = 0  # ticks since accepted, while not committed
        self.reminded: dict[str, int] = {}  # replica -> tick we last sent it our commit


class PbftLog:
    """What is committed and applied, as the replicated coordinator reads Raft's log."""

    def __init__(self, snap_index: int) -> None:
        self.snap_index = snap_index
        self.committed = snap_index
        self.applied = snap_index
        self.terms: dict[int, int] = {}  # number -> the view its request executed in

    def term(self, index: int) -> int | None:
        return self.terms.get(index)


class PbftState(Outbox):
    log: PbftLog
    _messages: list[PbftMessage]

    def __init__(
        self,
        node_id: str,
        replicas: tuple[str, ...],
        config: PbftConfig,
        keys: Keys,
        stored: Persisted | None = None,
    ) -> None:
        stored = stored or Persisted()
        self.id = node_id
        self.voters = tuple(sorted(replicas))
        self.peers = tuple(v for v in self.voters if v != node_id)
        self.f = (len(self.voters) - 1) // 3
        self.quorum = 2 * self.f + 1
        self.config = config
        self.keys = keys
        self.refused: list[str] = []  # what faulty replicas did, for the log
        snap = stored.snapshot.index if stored.snapshot is not None else 0
        self.log = PbftLog(snap)
        hard = stored.hard_state
        installed, _, digest_hex = hard.vote.partition(":")
        self.view = int(installed or 0)
        # the view asked for, while views change (kept across a restart: a replica that
        # asked for a view takes no part in earlier ones)
        self.changing: int | None = hard.term if hard.term > self.view else None
        # the last stable checkpoint: after a restart, none proven (until the next one)
        self.low = 0
        self.low_proof: tuple[PbftMessage, ...] = ()
        self.digests: dict[int, bytes] = {0: NO_DIGEST}
        self.slots: dict[int, Slot] = {}
        self.kept: dict[int, Entry] = {}  # executed entries since the snapshot, for FETCH
        self.checkpoints: dict[int, dict[str, PbftMessage]] = {}
        self.view_changes: dict[int, dict[str, PbftMessage]] = {}
        self.offers: dict[int, dict[bytes, set[str]]] = {}  # number -> digest -> vouchers
        self.offered: dict[tuple[int, bytes], Entry] = {}
        # snapshots offered: (index, data digest, state digest) -> vouchers
        self.snapshot_offers: dict[tuple[int, bytes, bytes], set[str]] = {}
        self.snapshot = stored.snapshot  # the latest, for a replica that needs it
        self.snapshot_digest = NO_DIGEST
        self._installed: Snapshot | None = None  # vouched for: to install
        self.next_seq = snap + 1
        self.top = 0  # the highest number heard of (a beat, a pre-prepare, a checkpoint)
        self._mark = -1  # what was executed at the last retransmission
        self.elapsed = 0
        self.attempts = 0
        self.ticks = 0
        self._new_view: PbftMessage | None = None  # the NEW_VIEW of the view we are in
        self._opened = -1  # the last view this replica opened as its primary
        self._opening: Entry | None = None  # the null request it opened that view with
        self._told: dict[str, int] = {}  # replica -> tick we last sent it our NEW_VIEW
        self.expected: dict[bytes, int] = {}  # requests clients said wait: digest -> ticks
        self.ahead: dict[str, int] = {}  # replica -> the latest view it was heard working in
        self._reads: list[tuple[int, bytes]] = []
        self._read_states: list[ReadState] = []
        self._messages: list[PbftMessage] = []
        self._dirty = 0  # persist accepted entries from this number on (0: none)
        self._compacted: Snapshot | None = None
        self._restore(stored, hard.commit, bytes.fromhex(digest_hex))
        self._saved = self.hard_state()
        self._soft = (self.role, self.leader)

    def _restore(self, stored: Persisted, commit: int, digest: bytes) -> None:
        """Executed entries count as committed again; the others as accepted."""
        committed = max(commit, self.log.snap_index)
        for entry in stored.entries:
            if entry.index <= self.log.snap_index:
                continue
            slot = self._slot(entry.index, entry.term)
            slot.view, slot.digest, slot.data = entry.term, request_digest(entry.data), entry.data
            slot.accepted = True
            slot.committed = entry.index <= committed
            if slot.committed:
                self.kept[entry.index] = entry
        self.log.committed = self.log.snap_index
        if committed:
            self.digests[committed] = digest
        if committed > self.log.snap_index:
            self.log.committed = committed
            known = self.digests.get(self.log.snap_index)  # known from the start only
            for index in range(self.log.snap_index + 1, committed + 1):
                slot = self.slots[index]
                self.log.terms[index] = slot.view
                if known is not None:
                    known = self.digests[index] = chain(known, slot.digest)
        self.next_seq = max([self.log.committed, *self.slots]) + 1

    # -- what the replicated coordinator reads -----------------------------------------

    @property
    def term(self) -> int:
        return self.view

    @property
    def role(self) -> Role:
        if self.changing is None and self.primary(self.view) == self.id:
            return Role.LEADER
        return Role.CANDIDATE if self.changing is not None else Role.FOLLOWER

    @property
    def leader(self) -> str:
        return "" if self.changing is not None else self.primary(self.view)

    def primary(self, view: int) -> str:
        return self.voters[view % len(self.voters)]

    def hard_state(self) -> HardState:
        """``term``: the highest view asked for; ``vote``: the view in effect and the
        state digest at ``commit``, as ``"view:hex"``."""
        target = self.view if self.changing is None else self.changing
        committed = self.log.committed
        digest = self.digests.get(committed, NO_DIGEST).hex()
        return HardState(target, f"{self.view}:{digest}", committed)

    def _slot(self, seq: int, view: int) -> Slot:
        slot = self.slots.get(seq)
        if slot is None:
            slot = self.slots[seq] = Slot(view)
        elif slot.view != view and not slot.committed:
            slot.view, slot.pre, slot.accepted = view, None, False
            slot.prepares, slot.commits, slot.age = {}, {}, 0
        return slot

    def _execute(self) -> None:
        """Hand out, in number order, every committed request not yet handed out."""
        log = self.log
        while (slot := self.slots.get(log.committed + 1)) is not None and slot.committed:
            seq = log.committed + 1
            self.digests[seq] = chain(self.digests[log.committed], slot.digest)
            self.kept[seq] = Entry(slot.view, seq, slot.data)
            self.expected.pop(slot.digest, None)
            log.terms[seq] = slot.view
            log.committed = seq
            while self._reads and self._reads[0][0] <= seq:
                index, context = self._reads.pop(0)
                self._read_states.append(ReadState(index, context))

    def _broadcast(self, m: PbftMessage) -> None:
        self._messages.extend(to(m, peer) for peer in self.peers)

    # -- provided by the parts (``Pbft`` puts them together) ---------------------------

    def campaign(self) -> None:
        raise NotImplementedError

    def _accept(self, pre: PbftMessage) -> None:
        raise NotImplementedError

    def _start_view_change(self, view: int) -> None:
        raise NotImplementedError

    def _stabilize(self, seq: int, digest: bytes, proof: tuple[PbftMessage, ...]) -> None:
        raise NotImplementedError
