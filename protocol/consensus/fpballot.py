"""Phase 1 and leadership of a Fast Paxos replica (``protocol.consensus.fastpaxos``).

A replica that hears no coordinator for its election timeout (longer the
further it stands after the last coordinator in the replica order) takes its
next ballot and sends ``PREPARE``; an acceptor promises unless it still hears
a live coordinator, and reports its votes above the candidate's chosen prefix;
with a majority of promises the candidate coordinates (``_win``): it proposes
what rule O4 picks at every index reported, a no-op where nothing was, and
opens fast proposals above. ``BEAT``s keep followers with it; a stale
coordinator is told the ballot promised (``PROMISE`` with ``reject``).
"""

from __future__ import annotations

from dataclasses import replace

from protocol.consensus.fpmessages import NO_OP, FKind, FpMessage, Vote, pick, round_of
from protocol.consensus.fpstate import FpState


class Ballots(FpState):
    def _rank(self) -> int:
        """How far after the last coordinator this replica stands (0: next in line;
        before any, the replica order itself: the first replica goes first)."""
        if not self.current:
            return self.voters.index(self.id)
        last = self.voters.index(self.primary(self.current))
        return (self.voters.index(self.id) - last - 1) % self.n

    def _timeout(self) -> int:
        ticks = self.config.election_ticks
        return ticks + self._rank() * max(1, ticks // 2)

    def _live(self) -> int:
        """Acceptors heard within an election timeout, this one included (each presumed
        alive when this replica starts)."""
        window = self.config.election_ticks
        return 1 + sum(1 for p in self.peers if self.ticks - self.heard[p] <= window)

    def _prepare(self) -> None:
        base = max(self.promised, self.seen, self.current, self.preparing or 0) + 1
        mine = self.voters.index(self.id)
        ballot = base + (mine - base) % self.n
        self.preparing, self.prep_elapsed, self.promised = ballot, 0, ballot
        self.prep_fast = self.config.fast and self._live() >= self.fastq
        if not self.leading:
            self.leader_id = ""
        own = FpMessage(FKind.PROMISE, self.id, ballot, votes=self._reports(self.log.committed))
        self.promises = {self.id: own}
        prepare = FpMessage(
            FKind.PREPARE, self.id, ballot, index=self.log.committed, fast=self.prep_fast
        )
        self._broadcast(prepare)
        if len(self.promises) >= self.classic:
            self._win()

    def _sticky(self, candidate: str) -> bool:
        """True while this replica hears a live coordinator other than ``candidate``."""
        leader = self.leader_id
        if not leader or leader == candidate:
            return False
        return self.leading or self.elapsed < self.config.election_ticks

    def _on_prepare(self, m: FpMessage) -> None:
        if m.ballot < self.promised:
            self._to(m.src, FpMessage(FKind.PROMISE, self.id, self.promised, reject=True))
            return
        if m.ballot > self.promised:
            if self._sticky(m.src):
                return
            self.promised = m.ballot
            if self.leading or self.preparing is not None:
                self._step_down()
        reply = FpMessage(
            FKind.PROMISE,
            self.id,
            m.ballot,
            index=self.log.snap_index,
            commit=self.log.committed,
            votes=self._reports(m.index),
        )
        self._to(m.src, reply)

    def _on_promise(self, m: FpMessage) -> None:
        if m.reject:
            if self.preparing is not None and m.ballot > self.preparing:
                if self.leading:
                    self._prepare()  # above it, keeping the leadership
                else:
                    self.preparing, self.elapsed = None, 0
            elif self.leading and self.preparing is None and m.ballot > self.current:
                self._prepare()  # an acceptor promised higher: bring it along
            return
        if self.preparing != m.ballot:
            return
        if m.index > self.log.committed:  # it compacted what this one has not learned
            self.preparing, self.elapsed = None, 0
            self._to(
                m.src,
                FpMessage(FKind.FETCH, self.id, m.ballot, index=self.log.committed, commit=m.index),
            )
            return
        self.promises[m.src] = m
        if len(self.promises) >= self.classic:
            self._win()

    def _win(self) -> None:
        ballot = self.preparing
        assert ballot is not None
        committed = self.log.committed
        reports: dict[int, dict[str, Vote]] = {}
        for promise in self.promises.values():
            for vote in promise.votes:
                if vote.index > committed:
                    reports.setdefault(vote.index, {})[promise.src] = vote
        top = max([committed, *reports, self.next_index - 1])  # no gap left below
        # what it proposed itself and nobody reported (its own acceptor had promised
        # the new ballot first, say): where no vote was reported any value is safe, so
        # its own is proposed again rather than a no-op, and its replies still hold
        pending = {i: v.value for i, v in self.accepts.items() if v.value.origin == self.id}
        pending.update((i, vote.value) for i, (vote, _) in self.proposals.items())
        if not self.leading:
            self.tenure = ballot
            pending = {}
        self.leading, self.current, self.leader_id = True, ballot, self.id
        self.fast, self.preparing, self.won_at = self.prep_fast, None, self.ticks
        self.accepts, self.ages, self.proposals, self.tallies = {}, {}, {}, {}
        self.start = top + 1
        self.next_index = max(self.next_index, self.start)
        for index in range(committed + 1, top + 1):
            if index not in self.chosen:
                value = pick(reports.get(index, {}), self.n)
                if value is None:
                    value = pending.get(index) or replace(NO_OP, ballot=ballot)
                self._send_accept(Vote(index, round_of(ballot, 1), value))
        self._beat()
        if not self.may_serve():
            self._opened = -1  # the opening may be lost with the old ballot: open again
        self.campaign()

    def _step_down(self) -> None:
        if self.leading:
            self.leader_id = ""
        self.leading, self.tenure, self.preparing = False, 0, None
        self.accepts, self.ages, self.proposals = {}, {}, {}

    def _follow(self, src: str, ballot: int) -> None:
        """``src`` coordinates ``ballot`` (it sent a BEAT or a 2a in it)."""
        if ballot > self.current:
            if self.leading:
                self._step_down()
            self.current = ballot
            self.proposals = {}  # proposed in an older ballot: nobody votes for them now
        if self.preparing is not None and self.preparing <= ballot:
            self.preparing = None
        if ballot == self.current:
            self.leader_id, self.elapsed = src, 0

    def _on_beat(self, m: FpMessage) -> None:
        if m.ballot < self.current:
            self._to(m.src, FpMessage(FKind.PROMISE, self.id, self.current, reject=True))
            return
        self._follow(m.src, m.ballot)
        self.fast, self.start = m.fast, m.index
        behind = self.log.committed < self.prev_commit  # behind for a whole beat
        self.prev_commit, self.leader_commit = self.leader_commit, m.commit
        ask = self.prev_commit if behind else 0
        self._to(
            m.src, FpMessage(FKind.FETCH, self.id, m.ballot, index=self.log.committed, commit=ask)
        )
        if m.ballot < self.promised:  # promised a candidate's higher ballot: say so
            self._to(m.src, FpMessage(FKind.PROMISE, self.id, self.promised, reject=True))

    def _beat(self) -> None:
        self._broadcast(
            FpMessage(
                FKind.BEAT,
                self.id,
                self.current,
                index=self.start,
                commit=self.log.committed,
                fast=self.fast,
            )
        )

    # -- provided by ``FastPaxos`` ------------------------------------------------------------

    def campaign(self) -> None:
        raise NotImplementedError

    def may_serve(self) -> bool:
        raise NotImplementedError

    def _send_accept(self, vote: Vote) -> None:
        raise NotImplementedError
