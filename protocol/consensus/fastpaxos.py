"""Fast Paxos (Lamport, 2006) for a replicated log, one replica, with Raft's driver contract.

This module holds phase 2, the coordinator's tick and the driver's interface;
the replica's state, voting and learning are ``protocol.consensus.fpstate``,
phase 1 and leadership ``fpballot``, rounds, quorums, messages and rule O4
``fpmessages``, the wire ``fpwire``.

Every replica is a proposer, an acceptor and a learner; each log index is an
instance of its own. The driver's contract is Raft's
(``protocol.consensus.raft``): ``step(message)``, ``tick()``, ``propose(data)``,
and while ``has_ready()``: persist the ``Ready`` (promises and votes go to disk
before the messages that announce them), send its messages, apply its
committed entries, ``advance``.

Phase 1, once per ballot. A replica that hears no coordinator for its election
timeout (longer the further it stands after the last coordinator in the
replica order, so the next in line goes first) takes its next ballot and sends
``PREPARE``. An acceptor promises the highest ballot it saw, unless it still
hears a live coordinator (so a replica coming back from a partition does not
depose a working one), and reports its votes above the candidate's chosen
prefix. With a classic quorum of promises the candidate coordinates: for every
instance a promise reported, it proposes (in classic round ``(ballot, 1)``)
the value rule O4 picks, or a no-op; fast proposals open above them, and
heartbeats (``BEAT``) say from where. A candidate behind a promiser's snapshot
fetches it first.

Phase 2, fast. In a fast ballot any proposer sends its value straight to every
acceptor (``PROPOSE``), at the next index it knows of; an acceptor votes for the
first value it gets at each index in the ballot's fast round and tells every
learner (``VOTED``). A value is chosen once a fast quorum voted for it in one
round: two message delays from the proposer. When proposals collide (two
proposers took one index) or too few acceptors answer, the coordinator recovers
the instance (coordinated recovery): the fast round's votes from a classic
quorum serve as that quorum's phase 1 for the next round, rule O4 picks the
value, and the coordinator proposes it in classic round ``(ballot, 1)``. A
proposer whose value lost an index proposes it again at another (the
replicated coordinator instead stops serving: ``holds``).

Classic mode. Fast rounds need a fast quorum alive (with 3 replicas, all 3). A
coordinator that hears fewer acceptors than that switches to a classic ballot
(phase 1 again, under the same leadership: ``term`` does not change), in which
only it proposes, at a classic quorum; once every acceptor has been heard for
a while it switches back. A coordinator that hears less than a classic quorum
steps down (check-quorum); followers answer every ``BEAT`` (``FETCH``), asking
for what was chosen that they have not learned.

The replicated coordinator's view of it mirrors Raft's: ``term`` is the ballot
the leadership began in, ``role`` ``LEADER`` for the coordinator, ``leader``
names it, ``log`` says what is chosen and applied. A new coordinator first
proposes a null entry and serves once it is applied (``may_serve``);
``read_index`` orders a read as a null entry of its own.

Persistence. ``hard_state.term`` is the ballot promised, ``commit`` the chosen
prefix; ``entries`` hold the acceptor's votes (``fpmessages.stored_vote``: the
round as the term), and the chosen values it did not vote for, flagged (a
chosen value stands in for the acceptor's own vote: any quorum's rule O4 picks
it anyway); a vote at or below the commit index is the chosen value.
"""

from __future__ import annotations

from protocol.consensus.fpballot import Ballots
from protocol.consensus.fpmessages import FKind, FpMessage, Value, Vote, pick, round_of, stored_vote
from protocol.consensus.fpstate import FastPaxosConfig, FpLog
from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.raft import Refusal

__all__ = ["FastPaxos", "FastPaxosConfig", "FpLog"]


class FastPaxos(Ballots):
    """One Fast Paxos replica (the module docstring); its state is ``FpState``'s."""

    def _unstable(self) -> tuple[Entry, ...]:
        """Votes and chosen values from ``_dirty`` on."""
        held = sorted(i for i in {*self.votes, *self.chosen} if i >= self._dirty)
        return tuple(stored_vote(self._report(i), i in self.chosen) for i in held)

    def _committed_entry(self, index: int) -> Entry:
        value = self.chosen[index].value
        return Entry(value.ballot, index, value.data)

    def can_take(self, count: int) -> bool:
        busy = len(self.proposals) + len(self.accepts)
        return self.leading and self.preparing is None and busy + count <= self.config.window

    def propose(self, data: bytes) -> Entry | Refusal:
        """Propose ``data`` at the next index: straight to the acceptors in a fast
        ballot (any replica that knows one), through the coordinator's classic round
        otherwise (the coordinator only)."""
        if self.leading:
            if not self.can_take(1):
                return Refusal.BUSY
        elif not (self.fast and self.leader_id and self.current == self.promised):
            return Refusal.NOT_LEADER
        ballot = self.current
        index = max(self.next_index, self.start, self.log.committed + 1)
        self.next_index = index + 1
        value = Value(self.id, ballot, data)
        if self.fast:
            vote = Vote(index, round_of(ballot), value, fast=True)
            self.proposals[index] = (vote, self.ticks)
            m = FpMessage(FKind.PROPOSE, self.id, ballot, index=index, value=value)
            self._broadcast(m)
            self._on_propose(m)
        else:
            self._send_accept(Vote(index, round_of(ballot), value))
        return Entry(ballot, index, data)

    def read_index(self, context: bytes) -> bool:
        """Order a read as a null entry: it may be answered once that is applied."""
        entry = self.propose(b"")
        if isinstance(entry, Refusal):
            return False
        self._reads.append((entry.index, context, Value(self.id, entry.term, b"")))
        return True

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application's state after applying up to ``index`` replaces those values."""
        snapshot = self._compacted = self.snapshot = Snapshot(index, 0, data)
        self._forget(index)
        return snapshot

    def campaign(self) -> None:
        """Start phase 1 now; a coordinator opens its leadership with a null entry."""
        if self.leading:
            if self._opened != self.tenure:
                self._opened = self.tenure
                opening = self.propose(b"")
                self._opening = opening if isinstance(opening, Entry) else None
        elif self.preparing is None:
            self._prepare()

    def holds(self, entry: Entry) -> bool:
        """True when the value chosen at ``entry.index`` is this replica's ``entry``."""
        chosen = self.chosen.get(entry.index)
        return chosen is not None and chosen.value == Value(self.id, entry.term, entry.data)

    def may_serve(self) -> bool:
        opening = self._opening
        return (
            self.leading
            and opening is not None
            and self.log.applied >= opening.index
            and self.holds(opening)
        )

    def leader_lost(self) -> None:
        """The driver saw the coordinator's link close: the next in line starts now."""
        if self.leading or not self.leader_id:
            return
        self.heard[self.leader_id] = -self.config.election_ticks
        self.leader_id = ""
        self.elapsed = self.config.election_ticks
        if self._rank() == 0 and self.preparing is None:
            self._prepare()

    def tick(self) -> None:
        self.ticks += 1
        self.elapsed += 1
        config = self.config
        if self.preparing is not None:
            self.prep_elapsed += 1
            if self.prep_elapsed >= config.election_ticks:
                self._prepare()  # again, in a higher ballot
        if self.leading:
            if self.ticks % config.heartbeat_ticks == 0:
                self._beat()
            self._lead()
        elif self.preparing is None and self.elapsed >= self._timeout():
            self._prepare()
        for index, (vote, at) in sorted(self.proposals.items()):
            if self.ticks - at >= config.retransmit_ticks:
                self.proposals[index] = (vote, self.ticks)
                self._broadcast(
                    FpMessage(FKind.PROPOSE, self.id, self.current, index=index, value=vote.value)
                )

    def step(self, m: FpMessage) -> None:
        if m.src not in self.peers:
            self.refused.append(f"{m.kind.name} from {m.src}, not a replica")
            return
        self.heard[m.src] = self.ticks
        self.seen = max(self.seen, m.ballot)
        kind = m.kind
        if kind is FKind.PROPOSE:
            self._on_propose(m)
        elif kind is FKind.VOTED:
            self._tally(m.src, Vote(m.index, m.round, m.value, m.fast))
        elif kind is FKind.ACCEPT:
            self._on_accept(m)
        elif kind is FKind.BEAT:
            self._on_beat(m)
        elif kind is FKind.FETCH:
            self._on_fetch(m)
        elif kind is FKind.CHOSEN:
            for vote in m.votes:
                self._choose(vote)
        elif kind is FKind.PREPARE:
            self._on_prepare(m)
        elif kind is FKind.PROMISE:
            self._on_promise(m)
        elif kind is FKind.SNAPSHOT:
            self._on_snapshot(m)

    def _on_propose(self, m: FpMessage) -> None:
        index, ballot = m.index, m.ballot
        if index <= self.log.snap_index:
            return
        known = self.chosen.get(index)
        if known is not None:
            if m.src != self.id:
                self._to(m.src, FpMessage(FKind.CHOSEN, self.id, self.current, votes=(known,)))
            return
        if ballot != self.promised or ballot != self.current or not self.fast:
            return  # the proposer sends it again once it knows the ballot
        if index < self.start:
            return
        self._cast(Vote(index, round_of(ballot), m.value, fast=True))

    def _on_accept(self, m: FpMessage) -> None:
        if m.ballot < self.promised:
            self._to(m.src, FpMessage(FKind.PROMISE, self.id, self.promised, reject=True))
            return
        if m.ballot > self.promised:
            self.promised = m.ballot
        self._follow(m.src, m.ballot)
        index = m.index
        if index <= self.log.snap_index:
            return
        known = self.chosen.get(index)
        if known is not None:
            self._to(m.src, FpMessage(FKind.CHOSEN, self.id, self.current, votes=(known,)))
            return
        self._cast(Vote(index, m.round, m.value))

    def _send_accept(self, vote: Vote) -> None:
        """The coordinator's 2a: to every acceptor, this one first."""
        self.accepts[vote.index] = vote
        self.ages.setdefault(vote.index, 0)
        m = FpMessage(
            FKind.ACCEPT,
            self.id,
            self.current,
            round=vote.round,
            index=vote.index,
            value=vote.value,
        )
        self._broadcast(m)
        self._on_accept(m)

    def _recover(self, index: int, votes: dict[str, Vote]) -> None:
        """Coordinated recovery: the fast round's votes are the next round's phase 1."""
        value = pick(votes, self.n)
        assert value is not None
        self._send_accept(Vote(index, max(v.round for v in votes.values()) + 1, value))

    def _lead(self) -> None:
        """The coordinator's tick: check-quorum, the ballot's mode, waiting instances."""
        config = self.config
        live = self._live()
        if live < self.classic:
            self._step_down()
            return
        if self.preparing is None:
            fast = config.fast and live >= self.fastq
            settled = self.ticks - self.won_at >= 4 * config.election_ticks
            if fast != self.fast and (not fast or settled):
                self._prepare()
                return
        fast_round = round_of(self.current)
        waiting = {*self.accepts, *self.proposals, *self.tallies}
        for index in sorted(waiting):
            age = self.ages[index] = self.ages.get(index, 0) + 1
            accept = self.accepts.get(index)
            if accept is not None:
                if age % config.retransmit_ticks == 0:
                    self._broadcast(
                        FpMessage(
                            FKind.ACCEPT,
                            self.id,
                            self.current,
                            round=accept.round,
                            index=index,
                            value=accept.value,
                        )
                    )
            else:
                votes = self.tallies.get(index, {}).get(fast_round, {})
                if age >= config.recover_ticks and len(votes) >= self.classic:
                    self._recover(index, votes)
            if age >= 2 * config.election_ticks and self.preparing is None:
                self._prepare()  # stuck: phase 1 again settles every instance
                return
        self._fill(waiting)

    def _fill(self, waiting: set[int]) -> None:
        """Indexes below the highest one known that nobody proposed at (a proposer
        skipped them, or its proposal was lost with it) would stop the log: after
        ``recover_ticks`` the coordinator proposes a no-op there, in the fast round
        (where it may collide, and is recovered) or in its classic one."""
        last = min(self.next_index - 1, self.log.committed + self.config.window)
        for index in range(self.log.committed + 1, last + 1):
            if index in waiting or index in self.chosen:
                continue
            age = self.ages[index] = self.ages.get(index, 0) + 1
            if age < self.config.recover_ticks:
                continue
            value = Value("", self.current, b"")
            if self.fast and index >= self.start:
                vote = Vote(index, round_of(self.current), value, fast=True)
                self.proposals[index] = (vote, self.ticks)
                m = FpMessage(FKind.PROPOSE, self.id, self.current, index=index, value=value)
                self._broadcast(m)
                self._on_propose(m)
            else:
                self._send_accept(Vote(index, round_of(self.current), value))

    def _on_fetch(self, m: FpMessage) -> None:
        if m.commit <= m.index:
            return  # a heartbeat's answer, asking for nothing
        if m.index < self.log.snap_index and self.snapshot is not None:
            self._to(
                m.src, FpMessage(FKind.SNAPSHOT, self.id, self.current, snapshot=self.snapshot)
            )
            return
        last = min(m.commit, m.index + self.config.fetch_max, self.log.committed)
        votes = tuple(self.chosen[i] for i in range(m.index + 1, last + 1) if i in self.chosen)
        if votes:
            self._to(m.src, FpMessage(FKind.CHOSEN, self.id, self.current, votes=votes))

    def _on_snapshot(self, m: FpMessage) -> None:
        snapshot = m.snapshot
        if snapshot is None or snapshot.index <= self.log.committed:
            return
        self._installed = self.snapshot = snapshot
        self._forget(snapshot.index)
        self.log.committed = snapshot.index
        self._dirty = snapshot.index + 1  # storage drops every vote: keep those above
        self._advance_commit()
