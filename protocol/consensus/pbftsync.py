"""PBFT's checkpoints and state transfer (one part of ``protocol.consensus.pbft``).

Every ``checkpoint_every`` executed requests a replica signs a ``CHECKPOINT``
with its state digest (a hash chain of the executed requests' digests); 2f+1
matching ones make it stable, the low watermark moves up and what is below is
forgotten. A replica below a stable checkpoint, or stuck below the highest
number it heard of, sends ``FETCH``; the others answer ``STATE``: a snapshot
when it needs what they compacted, the executed entries after it, and their
stable checkpoint. It takes a snapshot or an entry once f+1 replicas sent the
same one (so at least one correct replica vouches), and a checkpoint on its
2f+1 signatures.
"""

from __future__ import annotations

from protocol.consensus.log import Snapshot
from protocol.consensus.pbftmessages import NO_DIGEST, PbftMessage, PKind, request_digest, sign, to
from protocol.consensus.pbftstate import PbftState
from protocol.consensus.pbftview import checkpoint_proven


class Sync(PbftState):
    def _checkpoint(self, seq: int) -> None:
        m = sign(
            self.keys, PbftMessage(PKind.CHECKPOINT, self.id, self.view, seq, self.digests[seq])
        )
        self._broadcast(m)
        self._on_checkpoint(m)

    def _on_checkpoint(self, m: PbftMessage) -> None:
        self.top = max(self.top, m.seq)
        if m.seq <= self.low:
            return
        votes = self.checkpoints.setdefault(m.seq, {})
        votes[m.src] = m
        agreeing = [v for v in votes.values() if v.digest == m.digest]
        if len(agreeing) >= self.quorum:
            self._stabilize(m.seq, m.digest, tuple(sorted(agreeing, key=lambda v: v.src)))

    def _stabilize(self, seq: int, digest: bytes, proof: tuple[PbftMessage, ...]) -> None:
        self.low, self.low_proof = seq, proof
        self.digests.setdefault(seq, digest)
        for old in [s for s in self.slots if s <= seq and s <= self.log.committed]:
            del self.slots[old]
        for old in [s for s in self.checkpoints if s <= seq]:
            del self.checkpoints[old]
        for old in [s for s in self.digests if s < min(seq, self.log.committed)]:
            del self.digests[old]
        self.next_seq = max(self.next_seq, seq + 1)
        if self.log.committed < seq:
            self._fetch()

    def _install(self, snapshot: Snapshot, digest: bytes) -> None:
        """Jump to a snapshot others vouched for: the application installs it (the next
        ready's ``snapshot``) and the entries after it follow."""
        index = snapshot.index
        self.snapshot_offers = {k: v for k, v in self.snapshot_offers.items() if k[0] > index}
        self._installed = self.snapshot = snapshot
        self.snapshot_digest = digest
        self.digests[index] = digest
        self.log.snap_index = self.log.committed = index
        self.log.terms[index] = 0
        for old in [i for i in self.kept if i <= index]:
            del self.kept[old]
        for old in [i for i in self.slots if i <= index]:
            del self.slots[old]
        self.next_seq = max(self.next_seq, index + 1)
        self._execute()  # what already committed above it here

    def _fetch(self) -> None:
        self._broadcast(
            sign(self.keys, PbftMessage(PKind.FETCH, self.id, self.view, self.log.committed))
        )

    def _on_fetch(self, m: PbftMessage) -> None:
        """Send what executed after ``m.seq``: our snapshot first if it needs what we
        compacted (``data``, with our state digest there in ``digest``)."""
        snapshot = self.snapshot if m.seq < self.log.snap_index else None
        first = max(m.seq, self.log.snap_index) + 1
        entries = tuple(self.kept[i] for i in range(first, self.log.committed + 1))
        if entries or snapshot is not None or self.low > m.seq:
            state = PbftMessage(
                PKind.STATE,
                self.id,
                self.view,
                first - 1,
                self.snapshot_digest if snapshot is not None else NO_DIGEST,
                snapshot.data if snapshot is not None else b"",
                proof=self.low_proof,
                entries=entries,
            )
            self._messages.append(to(sign(self.keys, state), m.src))

    def _on_state(self, m: PbftMessage) -> None:
        """Take an offered snapshot, then each offered entry, once f+1 replicas offered
        the same one."""
        if m.data and m.seq > self.log.committed:
            key = (m.seq, request_digest(m.data), m.digest)
            vouchers = self.snapshot_offers.setdefault(key, set())
            vouchers.add(m.src)
            if len(vouchers) >= self.f + 1:
                self._install(Snapshot(m.seq, 0, m.data), m.digest)
        for entry in m.entries:
            if entry.index <= self.log.committed:
                continue
            digest = request_digest(entry.data)
            vouchers = self.offers.setdefault(entry.index, {}).setdefault(digest, set())
            vouchers.add(m.src)
            self.offered[(entry.index, digest)] = entry
        progressed = False
        while (offers := self.offers.get(self.log.committed + 1)) is not None:
            vouched = [d for d, who in offers.items() if len(who) >= self.f + 1]
            if not vouched:
                break
            entry = self.offered[(self.log.committed + 1, vouched[0])]
            slot = self._slot(entry.index, entry.term)
            slot.view, slot.digest, slot.data = entry.term, vouched[0], entry.data
            slot.accepted = slot.committed = True
            self._dirty = min(self._dirty or entry.index, entry.index)
            del self.offers[entry.index]
            self._execute()
            progressed = True
        if progressed:
            self.offered = {k: e for k, e in self.offered.items() if k[0] > self.log.committed}
        if m.proof:  # the sender's stable checkpoint, proven by 2f+1 signatures
            seq, digest = m.proof[0].seq, m.proof[0].digest
            if seq > self.low and checkpoint_proven(self.keys, m.proof, seq, digest, self.quorum):
                self._stabilize(seq, digest, m.proof)

    def _catch_up(self) -> None:
        """Fetch what others executed when behind a stable checkpoint, or stuck below
        the highest number heard of since the last retransmission."""
        committed = self.log.committed
        if committed < self.low or (committed < self.top and committed == self._mark):
            self._fetch()
        self._mark = committed
