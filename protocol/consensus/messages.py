"""What Raft replicas say to each other, and what a replica hands its driver.

A ``RaftMessage`` is one of nine kinds (``Kind``); the fields a kind does not
use stay at their defaults. ``Ready`` is everything a replica has produced
since the driver's last ``advance``, in the order the driver must act on it:
persist ``hard_state``, ``snapshot``, ``entries`` and ``compacted``
(``Ready.persist`` says what storage holds after it); then send ``messages``;
then apply ``snapshot`` (when there is one) and ``committed`` to the state
machine; ``read_states`` say which reads may now be answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from protocol.consensus.fpmessages import FpMessage
from protocol.consensus.log import Entry, Snapshot, after_snapshot
from protocol.consensus.pbftmessages import PbftMessage


class Kind(IntEnum):
    PRE_VOTE = 1  # would you vote for me at ``term``? (nobody's term changes)
    PRE_VOTE_RESP = 2
    VOTE = 3  # vote for me at ``term``; my log ends at (``index``, ``log_term``)
    VOTE_RESP = 4
    APPEND = 5  # ``entries`` follow (``index``, ``log_term``); commit up to ``commit``
    APPEND_RESP = (
        6  # matched up to ``index``, or (``reject``) not at ``index``: mine ends at ``hint``
    )
    HEARTBEAT = 7  # commit up to ``commit``; ``context`` numbers the read-index round
    HEARTBEAT_RESP = 8  # echoes ``context``
    SNAPSHOT = 9  # my state up to ``snapshot.index`` replaces your log


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


@dataclass(frozen=True, slots=True)
class RaftMessage:
    kind: Kind
    src: str
    dst: str
    term: int
    index: int = 0
    log_term: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    hint: int = 0
    snapshot: Snapshot | None = None
    context: int = 0


ConsensusMessage = RaftMessage | PbftMessage | FpMessage  # what a ready's messages are


@dataclass(frozen=True, slots=True)
class HardState:
    """What a replica persists besides its log: its term, its vote in it, its commit."""

    term: int = 0
    vote: str = ""
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read asked with ``context`` may be answered once ``index`` is applied."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Persisted:
    """What a replica's storage holds: enough to start it again after a crash."""

    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class Ready:
    hard_state: HardState | None  # None: unchanged
    snapshot: Snapshot | None  # persist it, then install it in the state machine
    entries: tuple[Entry, ...]  # persist, replacing stored entries from entries[0].index
    messages: tuple[ConsensusMessage, ...]
    committed: tuple[Entry, ...]  # apply in order
    read_states: tuple[ReadState, ...]
    role: Role
    leader: str  # "" when unknown
    compacted: Snapshot | None = None  # the application's own snapshot: persist it, drop
    # the entries up to its index

    @property
    def changes_storage(self) -> bool:
        """True when storage must change (a transaction): new entries, a snapshot, or
        a hard state or compaction to write. A ready of messages alone changes none."""
        return bool(self.entries) or any(
            change is not None for change in (self.hard_state, self.snapshot, self.compacted)
        )

    @property
    def stored_bytes(self) -> int:
        """The bytes of data this ready writes: its entries' and snapshots'."""
        size = sum(len(entry.data) for entry in self.entries)
        for snapshot in (self.snapshot, self.compacted):
            if snapshot is not None:
                size += len(snapshot.data)
        return size

    @property
    def handled_bytes(self) -> int:
        """The bytes this ready stores plus the committed entry bytes it applies: the
        work of a flush that grows with its size (``Replica.counts``)."""
        return self.stored_bytes + sum(len(entry.data) for entry in self.committed)

    def persist(self, stored: Persisted) -> Persisted:
        """``stored`` with this ready's state written over it: what storage holds after it."""
        entries = list(stored.entries)
        snapshot = stored.snapshot
        if self.snapshot is not None:
            entries = after_snapshot(entries, self.snapshot)
            snapshot = self.snapshot
        if self.entries:
            first = self.entries[0].index
            entries = [e for e in entries if e.index < first] + list(self.entries)
        if self.compacted is not None and (
            snapshot is None or snapshot.index < self.compacted.index
        ):
            snapshot = self.compacted
            entries = [e for e in entries if e.index > snapshot.index]
        return Persisted(self.hard_state or stored.hard_state, snapshot, tuple(entries))
