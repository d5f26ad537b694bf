"""Raft, one replica, as a sans-IO state machine shaped like etcd's raft.

The driver calls ``step(message)`` for each message received, ``tick()`` at a
fixed interval, ``propose(data)`` and ``read_index(context)`` for clients, and
``ready()`` whenever ``has_ready()``. It persists what the ``Ready`` holds, then
sends its messages, then applies its committed entries, and calls ``advance``.
Messages leave only after what they vouch for is on disk (a vote, an appended
entry), so a replica that crashes before ``advance`` has said nothing it could
forget. After a crash it starts again from its storage (``Persisted``).

Elections. A follower that hears no leader for its election timeout (between
``election_ticks`` and twice that, the jitter a hash of its id and term) first
asks for *pre-votes* at the next term without raising its own; only with a
quorum of them does it raise its term and ask for votes, so a replica cut off
by a partition cannot disrupt the cluster when it returns. A replica grants a
(pre-)vote only to a log at least as up to date as its own, and (check-quorum)
ignores requests while it hears from a live leader. A leader that has not heard
from a quorum within an election timeout steps down, so a partitioned leader
stops serving.

Replication. A new leader appends an empty entry of its term; an entry is
committed once a quorum has persisted it and it is of the leader's term (older
entries commit with it). Followers are probed, then pipelined
(``protocol.consensus.progress``); those behind the leader's snapshot get the
snapshot. ``propose`` refuses when not the leader (``Refusal.NOT_LEADER``, the
client follows ``leader``), and when ``max_uncommitted`` entries already wait
for a quorum (``Refusal.BUSY``: refuse early rather than queue without bound).

Reads (read-index). A leader records its commit index for the read, once an
entry of its own term is committed, and confirms with a round of heartbeats
that it is still the leader; when a quorum answers, a ``ReadState`` says the
read may be served once that index is applied. A single replica confirms at
once.

Snapshots. ``compact(index, data)`` replaces the applied entries up to
``index`` by the application's state; the next ``Ready`` hands the driver the
snapshot to persist (``compacted``). A driver that starts a replica again installs
the stored snapshot in its state machine itself; the replica then hands it the
committed entries after it.

Entries with empty ``data`` are the leaders' no-ops: the application skips them.

A change of role or of the leader known is a ready of its own, even with
nothing to persist or send (etcd's soft state): a leader that steps down on a
tick (check-quorum) tells its driver at once, which stops serving.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

from protocol.consensus.log import Entry, RaftInvariantError, RaftLog, Snapshot
from protocol.consensus.messages import (
    HardState,
    Kind,
    Persisted,
    RaftMessage,
    ReadState,
    Ready,
    Role,
)
from protocol.consensus.progress import Progress


@dataclass(frozen=True, slots=True)
class RaftConfig:
    election_ticks: int = 10  # a follower's patience, in ticks (jittered up to twice)
    heartbeat_ticks: int = 1  # a leader's heartbeat interval, in ticks
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries: int = 64  # per append message
    max_bytes: int = 512 * 1024  # entry data per append message (at least one entry goes)
    max_inflight: int = 256  # appends out to one follower before it must answer
    max_uncommitted: int = 4096  # entries waiting for a quorum before proposals are refused


class Refusal(Enum):
    NOT_LEADER = "not the leader"
    BUSY = "too many entries waiting for a quorum"


@dataclass(slots=True)
class _Read:
    index: int
    context: bytes
    round: int
    acks: set[str]


class Raft:
    def __init__(
        self,
        node_id: str,
        voters: tuple[str, ...],
        config: RaftConfig = RaftConfig(),
        stored: Persisted | None = None,
    ) -> None:
        stored = stored or Persisted()
        if node_id not in voters:
            raise RaftInvariantError(f"{node_id} is not one of the voters {voters}")
        self.id = node_id
        self.voters = tuple(sorted(voters))
        self.peers = tuple(v for v in self.voters if v != node_id)
        self.config = config
        self.log = RaftLog(stored.snapshot, list(stored.entries), stored.hard_state.commit)
        self.term = stored.hard_state.term
        self.vote = stored.hard_state.vote
        if self.log.last_term() > self.term:
            # a torn write kept entries of a term whose hard state it lost: that term
            # was reached, and this replica did not vote in it (a vote is persisted
            # before it is sent, in an earlier write than any entry of its term)
            self.term, self.vote = self.log.last_term(), ""
        self.role = Role.FOLLOWER
        self.leader = ""
        self.elapsed = 0  # ticks since the last election timeout reset
        self.beat_elapsed = 0
        self.timeout = 0
        self.votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self.reads: list[_Read] = []
        self.waiting_reads: list[bytes] = []  # asked before an entry of this term committed
        self.read_round = 0
        self.elections = 0  # campaigns started, for the jitter
        self._messages: list[RaftMessage] = []
        self._read_states: list[ReadState] = []
        self._saved = HardState(self.term, self.vote, self.log.committed)
        self._soft = (self.role, self.leader)  # as the driver last saw them (a ready's)
        self._snapshot: Snapshot | None = None  # a leader's, to persist and install
        self._compacted: Snapshot | None = None  # our own, to persist
        self._reset_timeout()

    # -- the driver's interface ----------------------------------------------------------

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._read_states
            or self._snapshot is not None
            or self._compacted is not None
            or self.hard_state() != self._saved
            or self.log.stable < self.log.last_index()
            or self.log.applied < self.log.committed
            or (self.role, self.leader) != self._soft
        )

    def ready(self) -> Ready:
        state = self.hard_state()
        ready = Ready(
            hard_state=state if state != self._saved else None,
            snapshot=self._snapshot,
            entries=tuple(self.log.unstable()),
            messages=tuple(self._messages),
            committed=tuple(self.log.to_apply()),
            read_states=tuple(self._read_states),
            role=self.role,
            leader=self.leader,
            compacted=self._compacted,
        )
        self._compacted = None
        self._messages = []
        self._read_states = []
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver persisted, sent and applied ``ready``."""
        self._soft = (ready.role, ready.leader)
        if ready.hard_state is not None:
            self._saved = ready.hard_state
        if ready.snapshot is not None and ready.snapshot is self._snapshot:
            self._snapshot = None
        if ready.entries:
            last = ready.entries[-1]
            if self.log.term(last.index) == last.term:
                self.log.stable = max(self.log.stable, last.index)
        if ready.committed:
            self.log.applied = max(self.log.applied, ready.committed[-1].index)
        if self.role is Role.LEADER and ready.entries and self._maybe_commit():
            self._broadcast_append()

    def tick(self) -> None:
        self.elapsed += 1
        if self.role is Role.LEADER:
            self.beat_elapsed += 1
            if self.elapsed >= self.config.election_ticks:
                self.elapsed = 0
                if self.config.check_quorum and not self._quorum_active():
                    self._become_follower(self.term, "")
                    return
            if self.beat_elapsed >= self.config.heartbeat_ticks:
                self.beat_elapsed = 0
                self._broadcast_heartbeat()
        elif self.elapsed >= self.timeout:
            self.elapsed = 0
            self._campaign(pre=self.config.pre_vote)

    def leader_lost(self) -> None:
        """The driver saw the leader's link close (its process died, most likely).
        Its lease ends now: this follower grants pre-votes and campaigns soon, in an
        order every survivor computes alike: the replicas but the lost leader, ranked
        by a hash of their id and the term. The first campaigns at its next tick,
        each next one ``election_ticks // survivors`` ticks later, so two survivors
        that saw the same link close in the same tick do not split the vote (a
        random wait collided one time in ``election_ticks``). Safe if the leader
        lives on: a pre-vote wins only where a quorum also stopped hearing it."""
        if self.role is Role.FOLLOWER and self.leader:
            lost, self.leader = self.leader, ""
            survivors = sorted((v for v in self.voters if v != lost), key=self._rank_key)
            rank = survivors.index(self.id) if self.id in survivors else len(survivors)
            gap = max(1, self.config.election_ticks // max(1, len(survivors)))
            self.elapsed = max(self.elapsed, self.timeout - 1 - rank * gap)

    def _rank_key(self, node: str) -> bytes:
        return hashlib.blake2b(f"{node}/{self.term}".encode(), digest_size=8).digest()

    def campaign(self) -> None:
        """Start an election now (tests, and an operator's leadership transfer)."""
        if self.role is not Role.LEADER:
            self._campaign(pre=self.config.pre_vote)

    def propose(self, data: bytes) -> Entry | Refusal:
        """Append ``data`` if this replica leads: the entry it will be committed as,
        if it is (another entry at that index means it was lost: propose again)."""
        if self.role is not Role.LEADER:
            return Refusal.NOT_LEADER
        if self.log.last_index() - self.log.committed >= self.config.max_uncommitted:
            return Refusal.BUSY
        entry = Entry(self.term, self.log.last_index() + 1, data)
        self.log.append(entry)
        for peer in self.peers:
            self._send_append(peer, empty=False)
        return entry  # a lone replica commits it once persisted (advance)

    def holds(self, entry: Entry) -> bool:
        """True when the log holds ``entry`` (same index, same term: the same entry)."""
        return self.log.term(entry.index) == entry.term

    def may_serve(self) -> bool:
        """A leader whose own first entry is committed and applied: its state holds
        everything any earlier leader committed."""
        log = self.log
        return (
            self.role is Role.LEADER
            and log.term(log.committed) == self.term
            and log.applied == log.committed
        )

    def can_take(self, count: int) -> bool:
        """Would ``count`` more proposals be taken (this replica leads, and they fit
        under ``max_uncommitted``)?"""
        waiting = self.log.last_index() - self.log.committed
        return self.role is Role.LEADER and waiting + count <= self.config.max_uncommitted

    def read_index(self, context: bytes) -> bool:
        """Ask to serve a linearizable read; False when not the leader. A
        ``ReadState`` with ``context`` comes back in a later ``Ready``."""
        if self.role is not Role.LEADER:
            return False
        if self.log.term(self.log.committed) != self.term:
            self.waiting_reads.append(context)  # this term has committed nothing yet
        else:
            self._start_read(context)
        return True

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application's state after applied entry ``index`` replaces the entries up
        to it; the next ``Ready`` carries the snapshot to persist (``compacted``)."""
        self._compacted = self.log.compact(index, data)
        return self._compacted

    # -- messages ------------------------------------------------------------------------

    def step(self, m: RaftMessage) -> None:
        if m.dst != self.id or m.src not in self.peers:
            return  # not for this replica, or from a stranger
        if m.term > self.term:
            if m.kind in (Kind.VOTE, Kind.PRE_VOTE) and self._in_lease():
                return  # a live leader is heard: do not help unseat it
            if m.kind is Kind.PRE_VOTE or (m.kind is Kind.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes change nobody's term
            elif m.kind in (Kind.APPEND, Kind.HEARTBEAT, Kind.SNAPSHOT):
                self._become_follower(m.term, m.src)
            else:
                self._become_follower(m.term, "")
        elif m.term < self.term:
            if m.kind in (Kind.APPEND, Kind.HEARTBEAT) and (
                self.config.check_quorum or self.config.pre_vote
            ):
                # a stale leader: tell it the term, or it would never step down
                self._send(Kind.APPEND_RESP, m.src)
            elif m.kind is Kind.PRE_VOTE:
                self._send(Kind.PRE_VOTE_RESP, m.src, reject=True)
            return
        if m.kind in (Kind.VOTE, Kind.PRE_VOTE):
            self._on_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def _on_vote_request(self, m: RaftMessage) -> None:
        pre = m.kind is Kind.PRE_VOTE
        can_vote = (
            self.vote == m.src
            or (not self.vote and not self.leader)
            or (pre and m.term > self.term)
        )
        granted = can_vote and self.log.up_to_date(m.index, m.log_term)
        kind = Kind.PRE_VOTE_RESP if pre else Kind.VOTE_RESP
        if not granted:
            self._send(kind, m.src, reject=True)
            return
        if not pre:
            self.vote = m.src
            self.elapsed = 0
        # a granted pre-vote answers at the asked term, so the candidate counts it
        self._messages.append(RaftMessage(kind, self.id, m.src, m.term))

    def _step_leader(self, m: RaftMessage) -> None:
        progress = self.progress[m.src]
        progress.active = True
        if m.kind is Kind.APPEND_RESP:
            if m.reject:
                if progress.refused(m.index, m.hint):
                    self._send_append(m.src, empty=True)
                return
            was_paused = progress.paused
            if progress.acked(m.index):
                if self._maybe_commit():
                    self._broadcast_append()
                elif was_paused:
                    self._send_append(m.src, empty=True)
            while self._send_append(m.src, empty=False):
                pass
        elif m.kind is Kind.HEARTBEAT_RESP:
            self._on_beat_answer(m, progress)

    def _on_beat_answer(self, m: RaftMessage, progress: Progress) -> None:
        behind = progress.match < self.log.last_index()
        if progress.stalled():
            progress.probe()
        progress.beat()
        if behind:  # a probe (an empty one finds where the follower's log ends)
            self._send_append(m.src, empty=not progress.replicating)
        if m.context and self.reads:
            for read in self.reads:
                if read.round <= m.context:
                    read.acks.add(m.src)
            while self.reads and len(self.reads[0].acks) >= self.quorum:
                read = self.reads.pop(0)
                self._read_states.append(ReadState(read.index, read.context))

    def _step_candidate(self, m: RaftMessage) -> None:
        if m.kind in (Kind.APPEND, Kind.HEARTBEAT, Kind.SNAPSHOT):
            self._become_follower(m.term, m.src)
            self._step_follower(m)
            return
        wanted = Kind.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else Kind.VOTE_RESP
        if m.kind is not wanted:
            return
        self.votes.setdefault(m.src, not m.reject)
        granted = sum(self.votes.values())
        if granted >= self.quorum:
            if self.role is Role.PRE_CANDIDATE:
                self._campaign(pre=False)
            else:
                self._become_leader()
        elif len(self.votes) - granted >= self.quorum:
            self._become_follower(self.term, "")

    def _step_follower(self, m: RaftMessage) -> None:
        if m.kind not in (Kind.APPEND, Kind.HEARTBEAT, Kind.SNAPSHOT):
            return
        self.elapsed = 0
        self.leader = m.src
        if m.kind is Kind.APPEND:
            self._on_append(m)
        elif m.kind is Kind.HEARTBEAT:
            self.log.commit_to(m.commit)
            self._messages.append(
                RaftMessage(Kind.HEARTBEAT_RESP, self.id, m.src, self.term, context=m.context)
            )
        else:
            self._on_snapshot(m)

    def _on_append(self, m: RaftMessage) -> None:
        if m.index < self.log.committed:
            self._send(Kind.APPEND_RESP, m.src, index=self.log.committed)
            return
        last = self.log.try_append(m.index, m.log_term, m.entries)
        if last is None:
            self._send(Kind.APPEND_RESP, m.src, index=m.index, reject=True)
            return
        self.log.commit_to(min(m.commit, last))
        self._send(Kind.APPEND_RESP, m.src, index=last)

    def _on_snapshot(self, m: RaftMessage) -> None:
        snapshot = m.snapshot
        if snapshot is None or snapshot.index <= self.log.committed:
            self._send(Kind.APPEND_RESP, m.src, index=self.log.committed)
            return
        if self.log.term(snapshot.index) == snapshot.term:
            self.log.commit_to(snapshot.index)  # the log already holds it: fast-forward
        else:
            self.log.restore(snapshot)
            self._snapshot = snapshot
        self._send(Kind.APPEND_RESP, m.src, index=snapshot.index)

    # -- roles -----------------------------------------------------------------------------

    def _become_follower(self, term: int, leader: str) -> None:
        if term > self.term:
            self.term = term
            self.vote = ""
        self.role = Role.FOLLOWER
        self.leader = leader
        self.elapsed = 0
        self.progress = {}
        self.reads = []
        self.waiting_reads = []
        self._reset_timeout()

    def _campaign(self, pre: bool) -> None:
        self.elections += 1
        if pre:
            self.role = Role.PRE_CANDIDATE
            term = self.term + 1
            kind = Kind.PRE_VOTE
        else:
            self.role = Role.CANDIDATE
            self.term += 1
            self.vote = self.id
            term = self.term
            kind = Kind.VOTE
        self.leader = ""
        self.votes = {self.id: True}
        self.elapsed = 0
        self._reset_timeout()
        if self.quorum == 1:
            if pre:
                self._campaign(pre=False)
            else:
                self._become_leader()
            return
        for peer in self.peers:
            self._messages.append(
                RaftMessage(
                    kind,
                    self.id,
                    peer,
                    term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                )
            )

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self.elapsed = 0
        self.beat_elapsed = 0
        last = self.log.last_index()
        self.progress = {p: Progress(next=last + 1) for p in self.peers}
        self.reads = []
        self.waiting_reads = []
        self.log.append(Entry(self.term, last + 1))  # commits what earlier terms left
        for peer in self.peers:
            self._send_append(peer, empty=True)

    # -- the leader's work -----------------------------------------------------------------

    def _send_append(self, peer: str, empty: bool) -> bool:
        """Send ``peer`` what it lacks (an empty append only if ``empty``): False when
        nothing was sent."""
        progress = self.progress[peer]
        if progress.blocked(self.config.max_inflight):
            return False
        prev = progress.next - 1
        prev_term = self.log.term(prev)
        if prev_term is None:  # compacted away: the snapshot instead
            self._messages.append(
                RaftMessage(Kind.SNAPSHOT, self.id, peer, self.term, snapshot=self.log.snapshot)
            )
            progress.sent_snapshot(self.log.snap_index)
            return False
        entries = self.log.slice(progress.next, progress.next + self.config.max_entries)
        size = 0
        for count, entry in enumerate(entries):
            size += len(entry.data)
            if size > self.config.max_bytes and count:
                entries = entries[:count]
                break
        if not entries and not empty:
            return False
        self._messages.append(
            RaftMessage(
                Kind.APPEND,
                self.id,
                peer,
                self.term,
                index=prev,
                log_term=prev_term,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        progress.sent(entries[-1].index if entries else prev)
        return bool(entries)

    def _broadcast_append(self) -> None:
        for peer in self.peers:
            self._send_append(peer, empty=True)

    def _broadcast_heartbeat(self) -> None:
        for peer in self.peers:
            progress = self.progress[peer]
            self._messages.append(
                RaftMessage(
                    Kind.HEARTBEAT,
                    self.id,
                    peer,
                    self.term,
                    commit=min(progress.match, self.log.committed),
                    context=self.read_round,
                )
            )

    def _maybe_commit(self) -> bool:
        matches = sorted(
            [self.log.stable] + [p.match for p in self.progress.values()], reverse=True
        )
        index = matches[self.quorum - 1]
        if index <= self.log.committed or self.log.term(index) != self.term:
            return False
        self.log.commit_to(index)
        waiting, self.waiting_reads = self.waiting_reads, []
        for context in waiting:
            self._start_read(context)
        return True

    def _start_read(self, context: bytes) -> None:
        if self.quorum == 1:
            self._read_states.append(ReadState(self.log.committed, context))
            return
        self.read_round += 1
        self.reads.append(_Read(self.log.committed, context, self.read_round, {self.id}))
        self._broadcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = 1 + sum(p.active for p in self.progress.values())
        for progress in self.progress.values():
            progress.active = False
        return active >= self.quorum

    # -- helpers ---------------------------------------------------------------------------

    def _in_lease(self) -> bool:
        return (
            self.config.check_quorum
            and self.leader != ""
            and self.elapsed < self.config.election_ticks
        )

    def _reset_timeout(self) -> None:
        spread = self.config.election_ticks
        key = f"{self.id}/{self.term}/{self.elections}".encode()
        jitter = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % spread
        self.timeout = self.config.election_ticks + jitter

    def _send(self, kind: Kind, dst: str, index: int = 0, reject: bool = False) -> None:
        hint = self.log.last_index() if reject else 0
        self._messages.append(
            RaftMessage(kind, self.id, dst, self.term, index=index, reject=reject, hint=hint)
        )
