"""Raft messages on the wire: the frames replicas exchange.

A frame is the protocol's frame (``protocol.codec``: a 4-byte big-endian length,
the version byte, a msgpack body); the body of a Raft message is the array::

    [90, kind, src, dst, term, index, log_term, entries, commit, reject, hint,
     snapshot, context]

``90`` says "Raft message" (no agent message uses it); ``kind`` is
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

from protocol.codec import DEFAULT_MAX_FRAME, HEADER, VERSION, CodecUsageError, MalformedFrame
from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.messages import Kind, RaftMessage

RAFT_CODE = 90
MAX_ENTRIES = 4096  # per message (a leader sends at most RaftConfig.max_entries)
MAX_ID = 255
_KINDS = {int(kind): kind for kind in Kind}
_PACKER = msgpack.Packer(use_bin_type=True)


def encode_raft_body(msg: RaftMessage) -> bytes:
    snapshot = msg.snapshot
    body: bytes = _PACKER.pack(
        [
            RAFT_CODE,
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


def encode_raft(msg: RaftMessage, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One complete frame for ``msg``."""
    body = encode_raft_body(msg)
    length = len(body) + 1
    if length > max_frame:
        raise CodecUsageError(f"raft frame of {length} bytes exceeds max_frame {max_frame}")
    return HEADER.pack(length) + bytes((VERSION,)) + body


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
    """A frame body (after the version byte) that must hold a Raft message."""
    try:
        values = msgpack.unpackb(body, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedFrame(f"undecodable msgpack body: {type(exc).__name__}") from None
    if type(values) is not tuple or len(values) != 13 or values[0] != RAFT_CODE:
        raise MalformedFrame(f"not a Raft message (an array of 13 starting {RAFT_CODE})")
    kind = _KINDS.get(values[1]) if type(values[1]) is int else None
    if kind is None:
        raise MalformedFrame(f"RaftMessage.kind: unknown kind {values[1]!r}")
    if type(values[9]) is not bool:
        raise MalformedFrame("RaftMessage.reject: expected a boolean")
    index = _count(values[5], "index")
    return RaftMessage(
        kind,
        _node(values[2], "src"),
        _node(values[3], "dst"),
        _count(values[4], "term"),
        index,
        _count(values[6], "log_term"),
        _entries(values[7], index),
        _count(values[8], "commit"),
        values[9],
        _count(values[10], "hint"),
        _snapshot(values[11]),
        _count(values[12], "context"),
    )
