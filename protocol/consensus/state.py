"""What a replicated coordinator replicates: its durable state, and its encoding.

A coordinator that persists (``Coordinator(durable_memory=True)`` with
``durable_bus``) hands its driver, after each batch of work, the memory writes
and bus journal entries that batch produced (``take_writes``,
``take_bus_journal``, ``take_answers``): exactly what a restarted coordinator
needs (``protocol.durable``). A replicated coordinator makes each such batch one
log entry (``encode_batches``); every replica applies the committed batches to a
``protocol.durable.DurableState``: the memory store's live rows, the bus journal
folded into what is still owed, and the answers to writes, so that a new leader
answers a client's retry of a write the old one applied, rather than apply it
twice. A replica that becomes the leader builds its coordinator from that
state, as a restarted coordinator does from SQLite. ``encode_state`` is a
snapshot of it.

Encoding: msgpack. A batch is ``[writes, entries, answers]``, split by
``encode_batches`` over several log entries when it is larger than
``MAX_ENTRY_BYTES`` (frames between replicas are at most 1 MiB); a write is
``[namespace, key, version, value or nil]``; a bus entry is ``[tag, fields...]``
with a ``Deliver`` as its codec body (``protocol.codec``); an answer is
``[origin, op_id, version]``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from protocol.codec import decode_body, encode_body
from protocol.durable import Answer, DurableState
from protocol.journal import (
    BusEntry,
    DeliveryDone,
    Member,
    Neighbour,
    PendingDelivery,
    PendingTask,
    Subscribed,
    TaskFinished,
)
from protocol.memory import Write
from protocol.messages import Deliver, MemReply

MAX_ENTRY_BYTES = 256 * 1024  # a batch larger than this is split over several log entries
_PACKER = msgpack.Packer(use_bin_type=True)

_TAGS: dict[type, int] = {
    Member: 1,
    Subscribed: 2,
    PendingDelivery: 3,
    DeliveryDone: 4,
    PendingTask: 5,
    TaskFinished: 6,
    Neighbour: 7,
}


def _entry(entry: BusEntry) -> list[Any]:
    tag = _TAGS[type(entry)]
    if type(entry) is PendingDelivery:
        return [tag, entry.node, encode_body(entry.deliver)]
    if type(entry) is Member:
        return [tag, entry.node, list(entry.capabilities), list(entry.subscriptions)]
    if type(entry) is Neighbour:
        return [tag, entry.node, list(entry.patterns), list(entry.members), entry.present]
    if type(entry) is Subscribed:
        return [tag, entry.node, entry.pattern, entry.on]
    if type(entry) is DeliveryDone:
        return [tag, entry.node, entry.msg_id]
    if type(entry) is PendingTask:
        return [tag, entry.origin, entry.op_id, entry.capability, entry.payload, entry.checksum]
    assert type(entry) is TaskFinished
    return [tag, entry.origin, entry.op_id]


def _unentry(values: list[Any]) -> BusEntry:
    tag, *rest = values
    if tag == 1:
        return Member(rest[0], tuple(rest[1]), tuple(rest[2]))
    if tag == 2:
        return Subscribed(*rest)
    if tag == 3:
        deliver = decode_body(rest[1])
        assert type(deliver) is Deliver
        return PendingDelivery(rest[0], deliver)
    if tag == 4:
        return DeliveryDone(*rest)
    if tag == 5:
        return PendingTask(*rest)
    if tag == 6:
        return TaskFinished(*rest)
    return Neighbour(rest[0], tuple(rest[1]), tuple(rest[2]), rest[3])


def _answers(answers: list[Answer]) -> list[list[Any]]:
    return [[origin, reply.op_id, reply.version] for origin, reply in answers]


def _unanswers(values: list[list[Any]]) -> list[Answer]:
    return [(origin, MemReply(op_id, True, version, b"")) for origin, op_id, version in values]


def encode_batches(
    writes: list[Write],
    entries: list[BusEntry],
    answers: list[Answer],
    limit: int = MAX_ENTRY_BYTES,
) -> list[bytes]:
    """The batch as one or more encoded parts of at most about ``limit`` bytes each
    (an item larger than that is a part of its own), in order: applying the parts
    in order is applying the batch."""
    pack = _PACKER.pack
    items = [
        *((0, pack(list(w))) for w in writes),
        *((1, pack(_entry(e))) for e in entries),
        *((2, pack(a)) for a in _answers(answers)),
    ]
    parts: list[bytes] = []
    chunk: list[list[bytes]] = [[], [], []]
    size = 0
    for kind, body in items:
        if size + len(body) > limit and size:
            parts.append(_join(chunk))
            chunk, size = [[], [], []], 0
        chunk[kind].append(body)
        size += len(body)
    if size or not parts:
        parts.append(_join(chunk))
    return parts


def _join(chunk: list[list[bytes]]) -> bytes:
    header = _PACKER.pack_array_header
    data: bytes = header(3) + b"".join(header(len(part)) + b"".join(part) for part in chunk)
    return data


def decode_batch(data: bytes) -> tuple[list[Write], list[BusEntry], list[Answer]]:
    writes, entries, answers = msgpack.unpackb(data, raw=False)
    return [Write(*w) for w in writes], [_unentry(e) for e in entries], _unanswers(answers)


def encode_state(state: DurableState) -> bytes:
    bus = state.bus
    owed = [PendingDelivery(node, d) for (_, node), d in sorted(bus.deliveries.items())]
    entries: list[BusEntry] = [*bus.members.values(), *bus.neighbours.values(), *owed]
    entries.extend(bus.tasks.values())
    data: bytes = msgpack.packb(
        [
            [list(w) for w in state.rows.values()],
            [_entry(e) for e in entries],
            _answers(state.recalled()),
            bus.high_water,
            state.batches,
        ],
        use_bin_type=True,
    )
    return data


def decode_state(data: bytes) -> DurableState:
    rows, entries, answers, high_water, batches = msgpack.unpackb(data, raw=False)
    state = DurableState()
    state.apply([Write(*w) for w in rows], [_unentry(e) for e in entries], _unanswers(answers))
    state.bus.high_water = max(state.bus.high_water, high_water)
    state.batches = batches
    return state
