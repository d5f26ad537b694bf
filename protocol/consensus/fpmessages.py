"""What Fast Paxos replicas say to each other, their rounds and quorums, and a vote on disk.

Every replica is a proposer, an acceptor and a learner (``protocol.consensus.
fastpaxos``). A *ballot* belongs to the replica ``voters[ballot mod n]``; it
wins it in phase 1 and coordinates it. Each instance (log index) runs its own
Paxos in the rounds of that ballot: a round is ``(ballot, k)``, one integer
``ballot << 16 | k``. Round ``k = 0`` is the ballot's first: *fast* when the
ballot is a fast one (any proposer's value goes straight to the acceptors),
classic otherwise (only the coordinator's). Rounds ``k >= 1`` are classic: the
coordinator's recovery of an instance whose fast round collided, or its
re-proposal of what phase 1 found.

Quorums, as Lamport gives them (Fast Paxos, 2006): a classic quorum is a
majority, ``n // 2 + 1``; a fast quorum is the smallest size ``q`` with
``2q + classic > 2n``, so that any two fast quorums and one classic quorum
share an acceptor: n = 3: 2 and 3; n = 5: 3 and 4; n = 7: 4 and 6.

Kinds (``FKind``); the fields a kind does not use keep their defaults:

- ``PREPARE`` (phase 1a): promise ``ballot``; report your votes above ``index``
  (my chosen prefix); ``fast`` says the ballot's mode.
- ``PROMISE`` (phase 1b): I promise ``ballot``; ``votes`` are mine above the
  asked index (chosen ones too, in the round they were chosen in); ``commit``
  my chosen prefix, ``index`` my snapshot's index. With ``reject`` set: I
  promised ``ballot``, higher than yours.
- ``ACCEPT`` (phase 2a, the coordinator): vote ``value`` at ``index`` in ``round``.
- ``PROPOSE`` (fast round, any proposer): vote ``value`` at ``index`` in
  ``ballot``'s fast round.
- ``VOTED`` (phase 2b, to every learner): I voted ``value`` at ``index`` in
  ``round``; ``fast`` when the round is a fast one (its quorum is the fast one).
- ``BEAT`` (the coordinator, each heartbeat): ``ballot`` is mine and alive;
  ``commit`` my chosen prefix; fast proposals are open from ``index``.
- ``FETCH``: send me what was chosen above ``index``.
- ``CHOSEN``: ``votes`` were chosen (at their index, in their round).
- ``SNAPSHOT``: my state up to ``snapshot.index`` (you are behind my compaction).

A value is the proposer's: ``Value(origin, ballot, data)``, its data with who
proposed it in which ballot, so a proposer can tell its own value from another
with the same bytes (``FastPaxos.holds``). The coordinator's no-op, which fills
an instance that phase 1 found empty, has no origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import msgpack

from protocol.consensus.log import Entry, Snapshot

ROUND_BITS = 16


class FKind(IntEnum):
    PREPARE = 1
    PROMISE = 2
    ACCEPT = 3
    PROPOSE = 4
    VOTED = 5
    BEAT = 6
    FETCH = 7
    CHOSEN = 8
    SNAPSHOT = 9


@dataclass(frozen=True, slots=True)
class Value:
    origin: str  # the proposer ("" for the coordinator's no-op)
    ballot: int  # the ballot it was proposed in
    data: bytes = b""


NO_OP = Value("", 0, b"")


@dataclass(frozen=True, slots=True)
class Vote:
    """An acceptor's vote (or a chosen value) at ``index`` in ``round``."""

    index: int
    round: int
    value: Value
    fast: bool = False  # cast in a fast round (whose quorum is the fast one)


@dataclass(frozen=True, slots=True)
class FpMessage:
    kind: FKind
    src: str
    ballot: int
    dst: str = ""
    round: int = 0
    index: int = 0
    commit: int = 0
    value: Value = NO_OP
    votes: tuple[Vote, ...] = ()
    fast: bool = False
    reject: bool = False
    snapshot: Snapshot | None = None


def round_of(ballot: int, k: int = 0) -> int:
    return ballot << ROUND_BITS | k


def ballot_of(round_: int) -> int:
    return round_ >> ROUND_BITS


def classic_quorum(n: int) -> int:
    return n // 2 + 1


def fast_quorum(n: int) -> int:
    return (2 * n - classic_quorum(n)) // 2 + 1


def pick(reports: dict[str, Vote], n: int) -> Value | None:
    """The value a coordinator must propose at one instance, given a classic
    quorum's reports (acceptor -> its highest vote there) (Lamport's rule O4):
    None when nobody voted (any value is safe); the value voted in the highest
    round ``k`` when only one was; after a collision in fast round ``k``, the one
    value that a fast quorum may have chosen (``count + n - |Q| >= fast quorum``),
    if there is one; otherwise any of them (the most voted, ties to the smallest,
    so that every coordinator picks alike)."""
    if not reports:
        return None
    k = max(v.round for v in reports.values())
    top = [v for v in reports.values() if v.round == k]
    counts: dict[Value, int] = {}
    for vote in top:
        counts[vote.value] = counts.get(vote.value, 0) + 1
    if len(counts) == 1:
        return top[0].value
    if any(vote.fast for vote in top):
        unseen = n - len(reports)
        possible = [v for v, c in counts.items() if c + unseen >= fast_quorum(n)]
        if possible:
            return possible[0]  # at most one (the quorum sizes see to it)
    return min(counts, key=lambda v: (-counts[v], v.origin, v.ballot, v.data))


# -- a vote on disk: an Entry whose term is the round ---------------------------------------

_PACKER = msgpack.Packer(use_bin_type=True)


def stored_vote(vote: Vote, chosen: bool) -> Entry:
    value = vote.value
    data: bytes = _PACKER.pack([value.origin, value.ballot, value.data, vote.fast, chosen])
    return Entry(vote.round, vote.index, data)


def loaded_vote(entry: Entry) -> tuple[Vote, bool]:
    """A vote stored by ``stored_vote`` (the replica's own storage: trusted)."""
    origin, ballot, data, fast, chosen = msgpack.unpackb(entry.data, raw=False)
    return Vote(entry.index, entry.term, Value(origin, ballot, data), bool(fast)), bool(chosen)
