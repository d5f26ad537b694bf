"""Fast Paxos messages on the wire: the body of a ``Consensus`` frame between its replicas.

Like Raft's (``protocol.consensus.wire``), a Fast Paxos message travels as the
one field of a ``Consensus`` message (wire code 90), encoded as the msgpack
array::

    [kind, src, dst, ballot, round, index, commit, value, votes, fast, reject, snapshot]

``kind`` is ``protocol.consensus.fpmessages.FKind`` (1 to 9); ``value`` is
``[origin, ballot, data]``; ``votes`` an array of at most ``MAX_ITEMS``
``[index, round, origin, ballot, data, fast]``; ``snapshot`` nil or ``[index,
term, data]``; ``fast`` and ``reject`` booleans; numbers non-negative
integers; ``src`` a node id of 1 to 255 characters, ``dst`` and ``origin`` at
most 255 (the no-op's origin is empty). Anything else is a ``MalformedFrame``,
and the replica closes that link.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol.codec import MalformedFrame
from protocol.consensus.fpmessages import FKind, FpMessage, Value, Vote
from protocol.consensus.log import Snapshot
from protocol.messages import Consensus

FIELDS = 12
MAX_ITEMS = 4096
MAX_ID = 255
_KINDS = {int(kind): kind for kind in FKind}
_PACKER = msgpack.Packer(use_bin_type=True)


def encode_fp_body(m: FpMessage) -> bytes:
    value = m.value
    snapshot = m.snapshot
    body: bytes = _PACKER.pack(
        [
            int(m.kind),
            m.src,
            m.dst,
            m.ballot,
            m.round,
            m.index,
            m.commit,
            [value.origin, value.ballot, value.data],
            [
                [v.index, v.round, v.value.origin, v.value.ballot, v.value.data, v.fast]
                for v in m.votes
            ],
            m.fast,
            m.reject,
            None if snapshot is None else [snapshot.index, snapshot.term, snapshot.data],
        ]
    )
    return body


def encode_fp(m: FpMessage) -> Consensus:
    """``m`` as the protocol message that carries it."""
    return Consensus(encode_fp_body(m))


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise MalformedFrame(f"FpMessage.{what}: expected a non-negative integer")
    return value


def _bytes(value: Any, what: str) -> bytes:
    if type(value) is not bytes:
        raise MalformedFrame(f"FpMessage.{what}: expected bytes")
    return value


def _flag(value: Any, what: str) -> bool:
    if type(value) is not bool:
        raise MalformedFrame(f"FpMessage.{what}: expected a boolean")
    return value


def _id(value: Any, what: str, empty: bool) -> str:
    if type(value) is not str or len(value) > MAX_ID or (not value and not empty):
        raise MalformedFrame(f"FpMessage.{what}: expected a node id of at most {MAX_ID} chars")
    return value


def _value(item: Any, what: str) -> Value:
    if type(item) is not tuple or len(item) != 3:
        raise MalformedFrame(f"FpMessage.{what}: expected [origin, ballot, data]")
    origin = _id(item[0], f"{what}.origin", empty=True)
    return Value(origin, _count(item[1], f"{what}.ballot"), _bytes(item[2], f"{what}.data"))


def _vote(item: Any) -> Vote:
    if type(item) is not tuple or len(item) != 6:
        raise MalformedFrame(
            "FpMessage.votes: a vote is not [index, round, origin, ballot, data, fast]"
        )
    value = _value(item[2:5], "votes.value")
    return Vote(
        _count(item[0], "votes.index"),
        _count(item[1], "votes.round"),
        value,
        _flag(item[5], "votes.fast"),
    )


def decode_fp_body(body: bytes) -> FpMessage:
    """A ``Consensus`` body that must hold a Fast Paxos message."""
    try:
        values = msgpack.unpackb(body, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedFrame(f"undecodable msgpack body: {type(exc).__name__}") from None
    if type(values) is not tuple or len(values) != FIELDS:
        raise MalformedFrame(f"not a Fast Paxos message (an array of {FIELDS})")
    kind = _KINDS.get(values[0]) if type(values[0]) is int else None
    if kind is None:
        raise MalformedFrame(f"FpMessage.kind: unknown kind {values[0]!r}")
    votes = values[8]
    if type(votes) is not tuple or len(votes) > MAX_ITEMS:
        raise MalformedFrame(f"FpMessage.votes: expected an array of at most {MAX_ITEMS}")
    snapshot = values[11]
    if snapshot is not None:
        if type(snapshot) is not tuple or len(snapshot) != 3:
            raise MalformedFrame("FpMessage.snapshot: expected nil or [index, term, data]")
        snapshot = Snapshot(
            _count(snapshot[0], "snapshot.index"),
            _count(snapshot[1], "snapshot.term"),
            _bytes(snapshot[2], "snapshot.data"),
        )
    return FpMessage(
        kind,
        _id(values[1], "src", empty=False),
        _count(values[3], "ballot"),
        dst=_id(values[2], "dst", empty=True),
        round=_count(values[4], "round"),
        index=_count(values[5], "index"),
        commit=_count(values[6], "commit"),
        value=_value(values[7], "value"),
        votes=tuple(_vote(v) for v in votes),
        fast=_flag(values[9], "fast"),
        reject=_flag(values[10], "reject"),
        snapshot=snapshot,
    )
