"""What a PBFT or Fast Paxos replica hands its driver: one way of building its ``Ready``.

Both keep Raft's driver contract (``protocol.consensus.raft``) without Raft's
log: what they must persist is whatever changed from the lowest number marked
``_dirty`` on (each says how, ``_unstable``), and the committed entries to
apply are those between ``log.applied`` and ``log.committed`` (``_committed_
entry``). ``Outbox`` keeps the rest once: the messages and read states
produced since the last ready, a snapshot installed or taken, the hard state
last saved and the role and leader last reported (a change of either is a
ready of its own, as in Raft: etcd's soft state).
"""

from __future__ import annotations

from typing import Protocol

from protocol.consensus.fpmessages import FpMessage
from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.messages import HardState, ReadState, Ready, Role
from protocol.consensus.pbftmessages import PbftMessage


class AppliedLog(Protocol):
    applied: int
    committed: int


class Outbox:
    log: AppliedLog
    _messages: list[PbftMessage] | list[FpMessage]
    _read_states: list[ReadState]
    _dirty: int  # persist from this number on (0: nothing)
    _compacted: Snapshot | None
    _installed: Snapshot | None
    _saved: HardState
    _soft: tuple[Role, str]

    @property
    def role(self) -> Role:
        raise NotImplementedError

    @property
    def leader(self) -> str:
        raise NotImplementedError

    def hard_state(self) -> HardState:
        raise NotImplementedError

    def _unstable(self) -> tuple[Entry, ...]:
        """What to persist from ``_dirty`` on (storage replaces its entries from the
        first one's index)."""
        raise NotImplementedError

    def _committed_entry(self, index: int) -> Entry:
        raise NotImplementedError

    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._read_states
            or self._dirty
            or self._compacted is not None
            or self._installed is not None
            or self.hard_state() != self._saved
            or self.log.applied < self.log.committed
            or (self.role, self.leader) != self._soft
        )

    def ready(self) -> Ready:
        entries = self._unstable() if self._dirty else ()
        installed = self._installed
        first = max(self.log.applied, installed.index if installed else 0) + 1
        committed = tuple(self._committed_entry(i) for i in range(first, self.log.committed + 1))
        state = self.hard_state()
        ready = Ready(
            hard_state=state if state != self._saved else None,
            snapshot=installed,
            entries=entries,
            messages=tuple(self._messages),
            committed=committed,
            read_states=tuple(self._read_states),
            role=self.role,
            leader=self.leader,
            compacted=self._compacted,
        )
        self._messages.clear()
        self._read_states = []
        self._dirty = 0
        self._compacted = self._installed = None
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver persisted ``ready``, sent its messages, applied its entries."""
        self._soft = (ready.role, ready.leader)
        if ready.hard_state is not None:
            self._saved = ready.hard_state
        if ready.snapshot is not None:
            self.log.applied = max(self.log.applied, ready.snapshot.index)
        if ready.committed:
            self.log.applied = ready.committed[-1].index
