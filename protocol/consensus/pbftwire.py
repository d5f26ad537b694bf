"""PBFT messages on the wire: the body of a ``Consensus`` frame between PBFT replicas.

Like Raft's (``protocol.consensus.wire``), a PBFT message travels as the one
field of a ``Consensus`` message (wire code 90), encoded as the msgpack array::

    [kind, src, dst, view, seq, digest, data, proof, prepared, entries, sig]

``kind`` is ``protocol.consensus.pbftmessages.PKind`` (1 to 9); ``proof`` is an
array of nested messages (each itself such an array), ``prepared`` an array of
arrays of nested messages, ``entries`` an array of ``[term, index, data]``;
``digest`` is empty or 32 bytes, ``sig`` 64 bytes (an Ed25519 signature);
numbers are non-negative integers and node ids 1 to 255 characters. A nested
message's ``dst`` is empty (it was addressed to nobody in particular). Nesting
goes at most ``MAX_DEPTH`` deep (a new view holds view changes, which hold
certificates), and a message holds at most ``MAX_ITEMS`` nested messages or
entries in each array.

Decoding trusts nothing: anything else is a ``MalformedFrame``, and the
replica closes that link. Whether a message is *true* (its signature, its
certificates) is the protocol's business (``Pbft.step``), not the decoder's.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol.codec import MalformedFrame
from protocol.consensus.log import Entry
from protocol.consensus.pbftmessages import PbftMessage, PKind
from protocol.messages import Consensus

FIELDS = 11
MAX_DEPTH = 3
MAX_ITEMS = 4096
MAX_ID = 255
_KINDS = {int(kind): kind for kind in PKind}
_PACKER = msgpack.Packer(use_bin_type=True)


def _array(m: PbftMessage) -> list[Any]:
    return [
        int(m.kind),
        m.src,
        m.dst,
        m.view,
        m.seq,
        m.digest,
        m.data,
        [_array(n) for n in m.proof],
        [[_array(n) for n in certificate] for certificate in m.prepared],
        [[e.term, e.index, e.data] for e in m.entries],
        m.sig,
    ]


def encode_pbft_body(m: PbftMessage) -> bytes:
    body: bytes = _PACKER.pack(_array(m))
    return body


def encode_pbft(m: PbftMessage) -> Consensus:
    """``m`` as the protocol message that carries it."""
    return Consensus(encode_pbft_body(m))


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise MalformedFrame(f"PbftMessage.{what}: expected a non-negative integer")
    return value


def _bytes(value: Any, what: str, sizes: tuple[int, ...] | None = None) -> bytes:
    if type(value) is not bytes or (sizes is not None and len(value) not in sizes):
        raise MalformedFrame(
            f"PbftMessage.{what}: expected bytes" + (f" of {sizes}" if sizes else "")
        )
    return value


def _items(value: Any, what: str) -> tuple[Any, ...]:
    if type(value) is not tuple or len(value) > MAX_ITEMS:
        raise MalformedFrame(f"PbftMessage.{what}: expected an array of at most {MAX_ITEMS}")
    return value


def _message(values: Any, depth: int) -> PbftMessage:
    if depth > MAX_DEPTH:
        raise MalformedFrame(f"PbftMessage: nested more than {MAX_DEPTH} deep")
    if type(values) is not tuple or len(values) != FIELDS:
        raise MalformedFrame(f"not a PBFT message (an array of {FIELDS})")
    kind = _KINDS.get(values[0]) if type(values[0]) is int else None
    if kind is None:
        raise MalformedFrame(f"PbftMessage.kind: unknown kind {values[0]!r}")
    src, dst = values[1], values[2]
    if type(src) is not str or not 1 <= len(src) <= MAX_ID:
        raise MalformedFrame(f"PbftMessage.src: expected a node id of 1 to {MAX_ID} chars")
    if type(dst) is not str or len(dst) > MAX_ID:
        raise MalformedFrame(f"PbftMessage.dst: expected a node id of at most {MAX_ID} chars")
    entries = []
    for item in _items(values[9], "entries"):
        if type(item) is not tuple or len(item) != 3:
            raise MalformedFrame("PbftMessage.entries: an entry is not [term, index, data]")
        term, index = _count(item[0], "entries.term"), _count(item[1], "entries.index")
        entries.append(Entry(term, index, _bytes(item[2], "entries.data")))
    return PbftMessage(
        kind,
        src,
        _count(values[3], "view"),
        _count(values[4], "seq"),
        _bytes(values[5], "digest", (0, 32)),
        _bytes(values[6], "data"),
        tuple(_message(n, depth + 1) for n in _items(values[7], "proof")),
        tuple(
            tuple(_message(n, depth + 1) for n in _items(c, "prepared[]"))
            for c in _items(values[8], "prepared")
        ),
        tuple(entries),
        dst,
        _bytes(values[10], "sig", (64,)),
    )


def decode_pbft_body(body: bytes) -> PbftMessage:
    """A ``Consensus`` body that must hold a PBFT message."""
    try:
        values = msgpack.unpackb(body, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedFrame(f"undecodable msgpack body: {type(exc).__name__}") from None
    return _message(values, 0)
