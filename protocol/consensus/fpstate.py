"""The state of one Fast Paxos replica (``protocol.consensus.fastpaxos``), and what every part uses.

``FpState`` holds what a replica knows: the ballot it promised and the one it
follows, its votes as an acceptor, the values it knows chosen and its tallies
as a learner, what it proposed, and its storage (``Persisted``, restored in
``__init__``). Voting and learning are here, as both phases use them. The
parts are its subclasses, each a module: phase 1 and leadership
(``fpballot.Ballots``), phase 2, the coordinator's tick and the driver's
interface (``fastpaxos.FastPaxos``). What one part needs of another is
declared here and raises until ``FastPaxos`` provides it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from protocol.consensus.fpmessages import (
    FKind,
    FpMessage,
    Value,
    Vote,
    ballot_of,
    classic_quorum,
    fast_quorum,
    loaded_vote,
)
from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.messages import HardState, Persisted, ReadState, Role
from protocol.consensus.outbox import Outbox


@dataclass(frozen=True, slots=True)
class FastPaxosConfig:
    election_ticks: int = 10  # a follower's patience with a silent coordinator
    heartbeat_ticks: int = 1
    retransmit_ticks: int = 2  # a proposal or 2a not chosen this long is sent again
    recover_ticks: int = 2  # a fast instance not chosen this long is recovered
    window: int = 256  # proposals in flight, at most
    fetch_max: int = 64  # chosen values sent per FETCH
    fast: bool = True  # False: classic Multi-Paxos only


class FpLog:
    """What is chosen (a prefix) and applied, as the replicated coordinator reads Raft's log."""

    def __init__(self, snap_index: int) -> None:
        self.snap_index = snap_index
        self.committed = snap_index
        self.applied = snap_index


class FpState(Outbox):
    log: FpLog
    _messages: list[FpMessage]

    def __init__(
        self,
        node_id: str,
        replicas: tuple[str, ...],
        config: FastPaxosConfig | None = None,
        stored: Persisted | None = None,
    ) -> None:
        stored = stored or Persisted()
        self.id = node_id
        self.voters = tuple(sorted(replicas))
        self.n = len(self.voters)
        self.peers = tuple(v for v in self.voters if v != node_id)
        self.classic, self.fastq = classic_quorum(self.n), fast_quorum(self.n)
        self.config = config = config or FastPaxosConfig()
        self.refused: list[str] = []
        self.snapshot = stored.snapshot
        self.log = FpLog(stored.snapshot.index if stored.snapshot else 0)
        self.promised = stored.hard_state.term
        self.votes: dict[int, Vote] = {}  # the acceptor's vote at each instance
        self.chosen: dict[int, Vote] = {}  # chosen values known, in the round they were
        for entry in stored.entries:
            if entry.index > self.log.snap_index:
                vote, chosen = loaded_vote(entry)
                self.votes[vote.index] = vote
                if chosen or vote.index <= stored.hard_state.commit:
                    self.chosen[vote.index] = vote
                self.promised = max(self.promised, ballot_of(vote.round))
        # ballots and leadership
        self.current = 0  # the ballot of the coordinator followed (or this one's)
        self.leader_id = ""
        self.leading = False
        self.tenure = 0  # the ballot this replica's unbroken leadership began in
        self.fast = False  # the current ballot's mode
        self.start = 0  # fast proposals are open from this index (current ballot)
        self.preparing: int | None = None
        self.prep_fast = False
        self.promises: dict[str, FpMessage] = {}
        self.seen = self.promised  # the highest ballot heard of
        self.ticks = self.elapsed = self.prep_elapsed = self.won_at = 0
        self.heard = dict.fromkeys(self.peers, 0)  # peer -> the tick it was last heard
        self.leader_commit = self.prev_commit = 0
        # instances in flight
        self.tallies: dict[int, dict[int, dict[str, Vote]]] = {}  # i -> round -> acceptor
        self.accepts: dict[int, Vote] = {}  # the coordinator's 2a, until chosen
        self.ages: dict[int, int] = {}  # the coordinator: ticks an instance waited
        self.proposals: dict[int, tuple[Vote, int]] = {}  # mine: (vote, tick proposed)
        self.next_index = max([self.log.snap_index, *self.votes]) + 1
        self._opened = -1
        self._opening: Entry | None = None
        self._reads: list[tuple[int, bytes, Value]] = []
        self._read_states: list[ReadState] = []
        self._messages: list[FpMessage] = []
        self._dirty = 0  # persist votes from this index on (0: none)
        self._compacted: Snapshot | None = None
        self._installed: Snapshot | None = None
        self._advance_commit()
        self._saved = self.hard_state()
        self._soft = (self.role, self.leader)

    @property
    def term(self) -> int:
        return self.tenure if self.leading else self.current

    @property
    def role(self) -> Role:
        if self.leading:
            return Role.LEADER
        return Role.CANDIDATE if self.preparing is not None else Role.FOLLOWER

    @property
    def leader(self) -> str:
        return self.leader_id

    def primary(self, ballot: int) -> str:
        return self.voters[ballot % self.n]

    def hard_state(self) -> HardState:
        return HardState(self.promised, "", self.log.committed)

    def _reports(self, above: int) -> tuple[Vote, ...]:
        held = sorted(i for i in {*self.votes, *self.chosen} if i > above)
        return tuple(self._report(i) for i in held)

    def _report(self, index: int) -> Vote:
        """This acceptor's vote at ``index``, or the chosen value if chosen in a round
        as high (every vote above the round a value was chosen in is that value)."""
        vote, chosen = self.votes.get(index), self.chosen.get(index)
        if chosen is None or (vote is not None and vote.round > chosen.round):
            assert vote is not None
            return vote
        return chosen

    def _cast(self, vote: Vote) -> None:
        """Vote (once per round and index, never below a vote cast) and tell every learner."""
        mine = self.votes.get(vote.index)
        if mine is not None and mine.round >= vote.round:
            if mine.round == vote.round:
                self._broadcast(self._voted(mine))  # it was lost, perhaps: again
            return
        self.votes[vote.index] = vote
        self._dirty = min(self._dirty or vote.index, vote.index)
        self.next_index = max(self.next_index, vote.index + 1)
        self._broadcast(self._voted(vote))
        self._tally(self.id, vote)

    def _voted(self, vote: Vote) -> FpMessage:
        ballot = ballot_of(vote.round)
        return FpMessage(
            FKind.VOTED,
            self.id,
            ballot,
            round=vote.round,
            index=vote.index,
            value=vote.value,
            fast=vote.fast,
        )

    def _tally(self, src: str, vote: Vote) -> None:
        index = vote.index
        if index <= self.log.committed or index in self.chosen:
            return
        self.next_index = max(self.next_index, index + 1)
        votes = self.tallies.setdefault(index, {}).setdefault(vote.round, {})
        votes[src] = vote
        same = sum(1 for v in votes.values() if v.value == vote.value)
        if same >= (self.fastq if vote.fast else self.classic):
            self._choose(vote)
            return
        if self.leading and vote.fast and ballot_of(vote.round) == self.current:
            counts: dict[Value, int] = {}
            for v in votes.values():
                counts[v.value] = counts.get(v.value, 0) + 1
            lost = max(counts.values()) + self.n - len(votes) < self.fastq
            if lost and len(votes) >= self.classic and index not in self.accepts:
                self._recover(index, votes)  # a collision: no value can win the fast round

    def _choose(self, vote: Vote) -> None:
        index = vote.index
        if index <= self.log.committed or index in self.chosen:
            return
        self.chosen[index] = vote
        mine = self.votes.get(index)
        if mine is None or mine.value != vote.value:  # (a vote for it is on disk already,
            # and the commit index will say it was chosen)
            self._dirty = min(self._dirty or index, index)
        self.next_index = max(self.next_index, index + 1)
        for table in (self.tallies, self.accepts, self.ages, self.proposals):
            table.pop(index, None)
        self._advance_commit()

    def _advance_commit(self) -> None:
        log = self.log
        while log.committed + 1 in self.chosen:
            log.committed += 1
        while self._reads and self._reads[0][0] <= log.committed:
            index, context, value = self._reads.pop(0)
            chosen = self.chosen.get(index)  # (None: a snapshot came past it, unchecked)
            if chosen is not None and chosen.value == value:  # else another took its place
                self._read_states.append(ReadState(index, context))

    def _forget(self, index: int) -> None:
        self.log.snap_index = index
        for table in (
            self.votes,
            self.chosen,
            self.tallies,
            self.accepts,
            self.ages,
            self.proposals,
        ):
            for old in [i for i in table if i <= index]:
                del table[old]
        self.next_index = max(self.next_index, index + 1)

    def _to(self, dst: str, m: FpMessage) -> None:
        if dst != self.id:
            self._messages.append(replace(m, dst=dst))

    def _broadcast(self, m: FpMessage) -> None:
        self._messages.extend(replace(m, dst=peer) for peer in self.peers)

    # -- provided by the parts (``FastPaxos`` puts them together) -----------------------

    def _recover(self, index: int, votes: dict[str, Vote]) -> None:
        raise NotImplementedError

    def _step_down(self) -> None:
        raise NotImplementedError
