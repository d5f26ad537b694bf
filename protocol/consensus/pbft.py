"""PBFT (Castro and Liskov), one replica, as a sans-IO state machine with Raft's contract.

This module holds the normal case and the driver's interface; the replica's
state is ``protocol.consensus.pbftstate``, checkpoints and state transfer
``pbftsync``, view changes ``pbftchange`` (their proofs ``pbftview``), the
messages ``pbftmessages`` and ``pbftwire``.

n = 3f+1 replicas tolerate f that fail arbitrarily: crash, stay silent, or lie.
The driver's contract is Raft's (``protocol.consensus.raft``): ``step(message)``
for each message received, ``tick()`` at a fixed interval, ``propose(data)`` on
the primary, and while ``has_ready()``: persist the ``Ready`` (its hard state
and entries), send its messages, apply its committed entries, ``advance``.
Every message is signed by its sender (``protocol.consensus.signing``); one
whose signature does not hold is dropped and counted in ``refused``.

Normal case. The primary of view v is ``replicas[v mod n]``. It gives each
request the next number and sends a signed ``PRE_PREPARE``. A backup accepts
it if it is the primary's, in its view, within the watermarks (above the last
stable checkpoint ``low``, at most ``window`` above it), its digest is the
request's, and it has accepted no other request for that number in that view.
It then persists it and sends ``PREPARE`` to all. A request is *prepared* at a
replica once it holds the pre-prepare and 2f matching prepares from other
replicas; it sends ``COMMIT``, and the request is *committed* there once 2f+1
matching commits arrived. Requests are executed (handed out as committed
entries) in number order. Equivocation is harmless: two different requests
cannot both gather 2f+1 prepares for one number in one view, as any two
quorums share a correct replica. A backup that sees the primary equivocate,
or receives a pre-prepare whose digest is wrong, drops it (an equivocation
also starts a view change at once).

Checkpoints. Every ``checkpoint_every`` executed requests a replica signs
``CHECKPOINT`` with its state digest, a hash chain of the executed requests'
digests. 2f+1 matching ones make the checkpoint *stable*: the low watermark
moves up and everything below it is forgotten. A replica that finds itself
below a stable checkpoint fetches what it missed (``FETCH``): the others send
their executed entries after its last (``STATE``), and it takes an entry once
f+1 replicas sent the same one, so at least one correct replica vouches.

View change. A backup suspects the primary when it hears nothing from it
(``BEAT`` or a pre-prepare) for ``view_change_ticks``, or when a request it
accepted, or a client said it sent (``expect``), is not executed that long. It
stops taking part in view v and sends
``VIEW_CHANGE`` for v+1 with its stable checkpoint and proof, and a
certificate for every request prepared at it above (``protocol.consensus.
pbftview``). A replica that sees f+1 replicas ask for views above its own
joins the smallest of them; one that asked alone waits (its timer runs only
once 2f+1 asked), catching up on executed requests meanwhile, and enters the
view the others are in once one of them forwards its ``NEW_VIEW``. The primary
of v+1, with 2f+1 valid view changes,
sends ``NEW_VIEW``: them, and the pre-prepares ``plan_new_view`` makes of
them; a backup checks every proof, computes the plan again, and enters the
view only if it matches. A view change that does not end within its timeout
moves on to the next view, each timeout twice the last. Retransmission: every
``retransmit_ticks`` a replica sends again its part of what is not yet
committed (and a view change under way), so lost messages cost time, not
progress.

The replicated coordinator's view of it mirrors Raft's: ``term`` is the view,
``role`` is ``LEADER`` for the primary of a view in effect, ``leader`` names
that primary ("" while views change), ``log`` says what is committed and
applied and in which view (``term(i)``). A new primary first proposes a null
request, so it serves once everything before is executed. ``read_index``
orders a read as a null request: the read may be answered once it executes.

Persistence. ``hard_state`` holds in ``term`` the highest view this replica
asked for, in ``commit`` the executed count, and in ``vote`` the view in
effect and the state digest there (``"view:hex"``). ``entries`` are the
requests it accepted, each at its number with the view it was accepted in. A
replica started again from its storage knows the requests it accepted (it
never accepts another for the same number and view) and those executed, and
gets the rest from the others.

Liveness needs the correct replicas to keep up. A replica that gave up on a
view alone (it lost too much, or was cut off) takes no part in ordering until
the others move to a later view; it still catches up on what executes. With
another replica faulty, that is two of four, more than PBFT tolerates: the
others may wait for it until a view change (``tests/core/consensus/test_pbft.py``
runs loss without a liar, and a liar without loss, for that reason).
"""

from __future__ import annotations

from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.messages import Ready, Role
from protocol.consensus.pbftchange import ViewChange
from protocol.consensus.pbftmessages import (
    NO_DIGEST,
    PbftMessage,
    PKind,
    authentic,
    request_digest,
    sign,
    to,
)
from protocol.consensus.pbftstate import PbftConfig, PbftLog, Slot
from protocol.consensus.pbftsync import Sync
from protocol.consensus.raft import Refusal

__all__ = ["Pbft", "PbftConfig", "PbftLog", "Slot"]


class Pbft(Sync, ViewChange):
    """One PBFT replica (the module docstring); its state is ``PbftState``'s."""

    # -- the driver's interface ----------------------------------------------------------

    def _unstable(self) -> tuple[Entry, ...]:
        """The accepted requests from ``_dirty`` on, executed ones from ``kept`` (a
        checkpoint may have dropped their slots)."""
        first = self._dirty
        accepted = {s: Entry(v.view, s, v.data) for s, v in self.slots.items() if v.accepted}
        accepted.update((i, e) for i, e in self.kept.items() if i >= first)
        return tuple(accepted[i] for i in sorted(accepted) if i >= first)

    def _committed_entry(self, index: int) -> Entry:
        return self.kept[index]

    def advance(self, ready: Ready) -> None:
        every = self.config.checkpoint_every
        for entry in ready.committed:
            if entry.index % every == 0 and entry.index in self.digests:
                self._checkpoint(entry.index)
        super().advance(ready)

    def propose(self, data: bytes) -> Entry | Refusal:
        if self.role is not Role.LEADER:
            return Refusal.NOT_LEADER
        if not self.can_take(1):
            return Refusal.BUSY
        seq = self.next_seq
        self.next_seq += 1
        pre = sign(
            self.keys,
            PbftMessage(PKind.PRE_PREPARE, self.id, self.view, seq, request_digest(data), data),
        )
        self._accept(pre)
        self._broadcast(pre)
        return Entry(self.view, seq, data)

    def can_take(self, count: int) -> bool:
        return (
            self.role is Role.LEADER and self.next_seq + count - 1 <= self.low + self.config.window
        )

    def read_index(self, context: bytes) -> bool:
        """Order a read as a null request: it may be answered once that executes."""
        entry = self.propose(b"")
        if isinstance(entry, Refusal):
            return False
        self._reads.append((entry.index, context))
        return True

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application's state after executing up to ``index`` replaces the entries
        up to it. Correct replicas compact at the same numbers (multiples of one
        interval), so a lagging replica can take a snapshot f+1 of them sent alike."""
        snapshot = Snapshot(index, 0, data)
        for old in [i for i in self.kept if i <= index]:
            del self.kept[old]
        self.log.snap_index = index
        self._compacted = self.snapshot = snapshot
        self.snapshot_digest = self.digests.get(index, NO_DIGEST)
        return snapshot

    def campaign(self) -> None:
        """The primary of a view in effect opens it with a null request (once): it
        serves once that executes, so after everything earlier. (Raft's name: the
        replicated coordinator calls it at the start, and a new primary on entering.)"""
        if self.role is Role.LEADER and self._opened != self.view:
            self._opened = self.view
            opening = self.propose(b"")
            self._opening = opening if isinstance(opening, Entry) else None

    def holds(self, entry: Entry) -> bool:
        """True when what executed at ``entry.index`` is ``entry`` (a proposal of a
        primary whose view ended may have been replaced by another request there)."""
        kept = self.kept.get(entry.index)
        return kept is not None and kept.term == entry.term and kept.data == entry.data

    def may_serve(self) -> bool:
        """The primary's opening null request executed, so everything before it did."""
        opening = self._opening
        return (
            self.role is Role.LEADER
            and opening is not None
            and opening.term == self.view
            and self.log.applied >= opening.index
            and self.holds(opening)
        )

    def expect(self, data: bytes) -> None:
        """A client says it asked for ``data`` and got no answer (PBFT's client sends
        its request to every replica then): unless it executes within
        ``view_change_ticks``, this backup suspects the primary."""
        self.expected.setdefault(request_digest(data), 0)

    def leader_lost(self) -> None:
        """The driver saw the primary's link close: suspect it now."""
        if self.changing is None and self.primary(self.view) != self.id:
            self._start_view_change(self.view + 1)

    def tick(self) -> None:
        self.ticks += 1
        self.elapsed += 1
        config = self.config
        retransmit = self.ticks % config.retransmit_ticks == 0
        if self.changing is not None:
            # the timer runs once 2f+1 asked for the view (a replica alone waits)
            asking = len(self.view_changes.get(self.changing, {}))
            if asking < self.quorum:
                self.elapsed = 0
            if self.elapsed >= config.view_change_ticks << min(self.attempts, 6):
                self.attempts += 1
                self._start_view_change(self.changing + 1)
            elif retransmit:
                own = self.view_changes.get(self.changing, {}).get(self.id)
                if own is not None:
                    self._broadcast(own)
                self._retransmit()  # what it said in the old view still counts there
            return
        if self.role is Role.LEADER:
            self.campaign()
            self.top = max(self.top, self.next_seq - 1)
            if self.ticks % config.heartbeat_ticks == 0:
                beat = PbftMessage(PKind.BEAT, self.id, self.view, self.next_seq - 1)
                self._broadcast(sign(self.keys, beat))
        else:
            patience = config.view_change_ticks
            stuck = any(
                s.accepted and not s.committed and s.age >= patience for s in self.slots.values()
            ) or any(waited >= patience for waited in self.expected.values())
            for digest in self.expected:
                self.expected[digest] += 1
            if stuck or self.elapsed >= config.view_change_ticks:
                self._start_view_change(self.view + 1)
                return
        for slot in self.slots.values():
            if slot.accepted and not slot.committed:
                slot.age += 1
        if retransmit:
            self._retransmit()

    def step(self, m: PbftMessage) -> None:
        if m.src not in self.peers or not authentic(self.keys, m):
            self.refused.append(f"{m.kind.name} from {m.src} without its signature")
            return
        kind = m.kind
        if kind is PKind.VIEW_CHANGE:
            self._on_view_change(m)
        elif kind is PKind.NEW_VIEW:
            self._on_new_view(m)
        elif kind is PKind.CHECKPOINT:
            self._on_checkpoint(m)
        elif kind is PKind.FETCH:
            self._on_fetch(m)
        elif kind is PKind.STATE:
            self._on_state(m)
        elif self.changing is None and m.view == self.view:
            if kind is PKind.PRE_PREPARE:
                self._on_pre_prepare(m)
            elif kind is PKind.BEAT:
                if m.src == self.primary(self.view):
                    self.elapsed = 0
                    self.top = max(self.top, m.seq)
            elif kind is PKind.PREPARE:
                self._on_vote(m, prepare=True)
            elif kind is PKind.COMMIT:
                self._on_vote(m, prepare=False)
        else:
            self._elsewhere(m)

    def _elsewhere(self, m: PbftMessage) -> None:
        """A normal-case message from another view, or while views change here. Work
        goes on where this replica is not: catch up on what executes there, and once
        f+1 replicas (one of them correct) were heard working in later views, ask for
        the earliest of those (whose ``NEW_VIEW`` a replica in it then forwards)."""
        if m.kind is PKind.BEAT and m.src == self.primary(m.view) and m.view >= self.view:
            self.top = max(self.top, m.seq)
        if m.view < self.view:
            self._tell_view(m.src)  # it works in a view the others left: show it the way
        if m.view <= self.view:
            return
        self.ahead[m.src] = max(self.ahead.get(m.src, 0), m.view)
        target = self.view if self.changing is None else self.changing
        later = sorted(v for v in self.ahead.values() if v > target)
        if len(later) >= self.f + 1:
            self.ahead = {}
            self._start_view_change(later[-(self.f + 1)])

    # -- normal case -----------------------------------------------------------------------

    def _on_pre_prepare(self, m: PbftMessage) -> None:
        self.top = max(self.top, m.seq)
        if m.src != self.primary(self.view):
            self.refused.append(f"pre-prepare from {m.src}, not the primary of view {m.view}")
            return
        if not self.low < m.seq <= self.low + self.config.window:
            return
        if request_digest(m.data) != m.digest:
            self.refused.append(f"pre-prepare {m.view}/{m.seq} from {m.src}: wrong digest")
            return
        slot = self.slots.get(m.seq)
        if slot is not None and slot.committed:
            self._remind(slot, m)
            return
        if slot is not None and slot.view == m.view and slot.accepted:
            if slot.digest != m.digest:
                self.refused.append(f"{m.src} equivocated at {m.view}/{m.seq}")
                self._start_view_change(self.view + 1)
            elif slot.pre is None:
                slot.pre = m  # the one accepted before a restart, signed again
                self._check(m.seq, slot)
            return
        self.elapsed = 0
        self._accept(m)

    def _accept(self, pre: PbftMessage) -> None:
        slot = self._slot(pre.seq, pre.view)
        if slot.committed:
            if pre.digest == slot.digest and pre.view > slot.view:
                self._vouch(pre)  # a new view proposes again what executed here
            return
        slot.digest, slot.data, slot.pre, slot.accepted, slot.age = (
            pre.digest,
            pre.data,
            pre,
            True,
            0,
        )
        self._dirty = min(self._dirty or pre.seq, pre.seq)
        if pre.src != self.id:
            prepare = PbftMessage(PKind.PREPARE, self.id, pre.view, pre.seq, pre.digest)
            prepare = sign(self.keys, prepare)
            slot.prepares[self.id] = prepare
            self._broadcast(prepare)
        self._check(pre.seq, slot)

    def _remind(self, slot: Slot, m: PbftMessage) -> None:
        """``m.src`` still works on a number executed here: send it our commit (at most
        once per retransmission interval, so two replicas that both executed it answer
        each other's reminders once, not forever)."""
        if m.view != self.view or m.digest != slot.digest:
            return
        last = slot.reminded.get(m.src)
        if last is not None and self.ticks - last < self.config.retransmit_ticks:
            return
        slot.reminded[m.src] = self.ticks
        own = slot.commits.get(self.id)
        if own is None or own.view != m.view:
            own = sign(self.keys, PbftMessage(PKind.COMMIT, self.id, m.view, m.seq, m.digest))
            slot.commits[self.id] = own
        self._messages.append(to(own, m.src))

    def _vouch(self, pre: PbftMessage) -> None:
        """Prepare and commit, in ``pre``'s view, a request that executed here already."""
        for kind in (PKind.PREPARE, PKind.COMMIT):
            if kind is PKind.COMMIT or pre.src != self.id:
                m = PbftMessage(kind, self.id, pre.view, pre.seq, pre.digest)
                self._broadcast(sign(self.keys, m))

    def _on_vote(self, m: PbftMessage, prepare: bool) -> None:
        if not self.low < m.seq <= self.low + self.config.window:
            return
        done = self.slots.get(m.seq)
        if done is not None and done.committed:
            self._remind(done, m)
            return
        slot = self._slot(m.seq, m.view)
        votes = slot.prepares if prepare else slot.commits
        if prepare and m.src == self.primary(m.view):
            return  # the primary's pre-prepare stands for its prepare
        if m.src not in votes:
            votes[m.src] = m
            self._check(m.seq, slot)

    def _check(self, seq: int, slot: Slot) -> None:
        """Send COMMIT once prepared; mark committed once 2f+1 commits match."""
        pre = slot.pre
        if not slot.accepted or slot.committed:
            return
        prepared = bool(slot.certificate) and slot.certificate[0].view == slot.view
        if pre is not None and not prepared:
            matching = [p for p in slot.prepares.values() if p.digest == slot.digest]
            matching = [p for p in matching if p.src != pre.src]
            if len(matching) >= 2 * self.f:
                slot.certificate = (pre, *sorted(matching, key=lambda p: p.src)[: 2 * self.f])
                commit = PbftMessage(PKind.COMMIT, self.id, slot.view, seq, slot.digest)
                commit = sign(self.keys, commit)
                slot.commits[self.id] = commit
                self._broadcast(commit)
        # 2f+1 matching commits: f+1 correct replicas prepared it, so it is the only
        # request that can execute at this number (even if it did not prepare here)
        agreeing = sum(1 for c in slot.commits.values() if c.digest == slot.digest)
        if agreeing >= self.quorum:
            slot.committed = True
            self._execute()

    def _retransmit(self) -> None:
        for _seq, slot in sorted(self.slots.items()):
            if slot.committed or slot.view != self.view:
                continue
            if slot.pre is not None and slot.pre.src == self.id:
                self._broadcast(slot.pre)
            for votes in (slot.prepares, slot.commits):
                own = votes.get(self.id)
                if own is not None:
                    self._broadcast(own)
        self._catch_up()
