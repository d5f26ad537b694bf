"""Raft messages on the wire: the frames replicas exchange.

Replicas exchange ordinary protocol frames (``protocol.codec``), each holding a
``Consensus`` message (wire code 90) whose one field, ``body``, is a Raft
message encoded as the msgpack array::

    [kind, src, dst, term, index, log_term, entries, commit, reject, hint,
     snapshot, context]

``kind`` is
``protocol.consensus.messages.Kind`` (1 to 9); ``entries`` is an array of
``[term, index, data]`` with consecutive indexes starting at ``index + 1``;
``snapshot`` is nil or ``[index, term, data]``; ``reject`` is a boolean and
every other number a non-negative integer. Node ids are 1 to 255 characters.

Decoding trusts nothing: anything else (another type, a wrong arity, a negative
or non-integer number, an unknown kind, entries out of order, more than
``MAX_ENTRIES`` entries) is a ``MalformedFrame``, which a driver answers by
closing that replica's link and logging it, as it does for an agent.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol.codec import MalformedFrame
from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.messages import Kind, RaftMessage
from protocol.messages import Consensus

FIELDS = 12
MAX_ENTRIES = 4096  # per message (a leader sends at most RaftConfig.max_entries)
MAX_ID = 255
_KINDS = {int(kind): kind for kind in Kind}
_PACKER = msgpack.Packer(use_bin_type=True)


def encode_raft_body(msg: RaftMessage) -> bytes:
    snapshot = msg.snapshot
    body: bytes = _PACKER.pack(
        [
            int(msg.kind),
            msg.src,
            msg.dst,
            msg.term,
            msg.index,
            msg.log_term,
            [[e.term, e.index, e.data] for e in msg.entries],
            msg.commit,
            msg.reject,
            msg.hint,
            None if snapshot is None else [snapshot.index, snapshot.term, snapshot.data],
            msg.context,
        ]
    )
    return body


def encode_raft(msg: RaftMessage) -> Consensus:
    """``msg`` as the protocol message that carries it."""
    return Consensus(encode_raft_body(msg))


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise MalformedFrame(f"RaftMessage.{what}: expected a non-negative integer")
    return value


def _node(value: Any, what: str) -> str:
    if type(value) is not str or not 1 <= len(value) <= MAX_ID:
        raise MalformedFrame(f"RaftMessage.{what}: expected a node id of 1 to {MAX_ID} chars")
    return value


def _data(value: Any, what: str) -> bytes:
    if type(value) is not bytes:
        raise MalformedFrame(f"RaftMessage.{what}: expected bytes")
    return value


def _entries(value: Any, prev: int) -> tuple[Entry, ...]:
    if type(value) is not tuple or len(value) > MAX_ENTRIES:
        raise MalformedFrame(f"RaftMessage.entries: expected an array of at most {MAX_ENTRIES}")
    entries = []
    for at, item in enumerate(value, start=prev + 1):
        if type(item) is not tuple or len(item) != 3:
            raise MalformedFrame("RaftMessage.entries: an entry is not [term, index, data]")
        term, index = _count(item[0], "entries.term"), _count(item[1], "entries.index")
        if index != at:
            raise MalformedFrame("RaftMessage.entries: indexes do not follow on from index")
        entries.append(Entry(term, index, _data(item[2], "entries.data")))
    return tuple(entries)


def _snapshot(value: Any) -> Snapshot | None:
    if value is None:
        return None
    if type(value) is not tuple or len(value) != 3:
        raise MalformedFrame("RaftMessage.snapshot: expected nil or [index, term, data]")
    return Snapshot(
        _count(value[0], "snapshot.index"),
        _count(value[1], "snapshot.term"),
        _data(value[2], "snapshot.data"),
    )


def decode_raft_body(body: bytes) -> RaftMessage:
    """A ``Consensus`` body that must hold a Raft message."""
    try:
        values = msgpack.unpackb(body, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedFrame(f"undecodable msgpack body: {type(exc).__name__}") from None
    if type(values) is not tuple or len(values) != FIELDS:
        raise MalformedFrame(f"not a Raft message (an array of {FIELDS})")
    kind = _KINDS.get(values[0]) if type(values[0]) is int else None
    if kind is None:
        raise MalformedFrame(f"RaftMessage.kind: unknown kind {values[0]!r}")
    if type(values[8]) is not bool:
        raise MalformedFrame("RaftMessage.reject: expected a boolean")
    index = _count(values[4], "index")
    return RaftMessage(
        kind,
        _node(values[1], "src"),
        _node(values[2], "dst"),
        _count(values[3], "term"),
        index,
        _count(values[5], "log_term"),
        _entries(values[6], index),
        _count(values[7], "commit"),
        values[8],
        _count(values[9], "hint"),
        _snapshot(values[10]),
        _count(values[11], "context"),
    )
