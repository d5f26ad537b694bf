"""The replicated state's encoding: every journal entry, write and answer survives it."""

from __future__ import annotations

from protocol.consensus.state import (
    DurableState,
    decode_batch,
    decode_state,
    encode_batches,
    encode_state,
)
from protocol.journal import (
    DeliveryDone,
    Member,
    Neighbour,
    PendingDelivery,
    PendingTask,
    Subscribed,
    TaskFinished,
)
from protocol.memory import Write
from protocol.messages import Deliver, DeliveryKind, MemReply

DELIVER = Deliver(7, int(DeliveryKind.PUBLISH), "a1", 3, "t.x", b"\x00payload", 12345)
ENTRIES = [
    Member("a1", ("c1",), ("t.#",)),
    Member("a2", (), ()),
    Subscribed("a2", "t.*", True),
    PendingDelivery("a2", DELIVER),
    PendingTask("a1", 4, "c1", b"work", 99),
    Neighbour("c9", ("p",), ("a9",), True),
    DeliveryDone("a2", 7),
    TaskFinished("a1", 4),
    PendingTask("a1", 5, "c1", b"more", 98),
]
WRITES = [Write("ns", "k", 1, b"v"), Write("ns", "gone", 2, None)]
ANSWERS = [("a1", MemReply(9, True, 1, b""))]


def test_a_batch_decodes_to_what_was_encoded() -> None:
    [part] = encode_batches(WRITES, ENTRIES, ANSWERS)
    writes, entries, answers = decode_batch(part)
    assert writes == WRITES
    assert entries == ENTRIES
    assert answers == ANSWERS


def test_a_large_batch_is_split_into_parts_that_apply_to_the_same_state() -> None:
    many = [PendingDelivery(f"a{i}", DELIVER) for i in range(500)] + ENTRIES
    parts = encode_batches(WRITES * 50, many, ANSWERS, limit=4096)
    assert len(parts) >= 4 and all(len(p) < 4096 + 200 for p in parts)
    whole, pieces = DurableState(), DurableState()
    whole.apply(WRITES * 50, many, ANSWERS)
    for part in parts:
        pieces.apply(*decode_batch(part))
    assert pieces.rows == whole.rows and pieces.bus.deliveries == whole.bus.deliveries
    assert pieces.bus.tasks == whole.bus.tasks and pieces.recalled() == whole.recalled()
    assert encode_batches([], [], []) and decode_batch(encode_batches([], [], [])[0]) == (
        [],
        [],
        [],
    )


def test_a_snapshot_of_the_state_restores_the_same_state() -> None:
    state = DurableState()
    state.apply(WRITES, ENTRIES, ANSWERS)
    state.apply([Write("ns", "k", 2, b"w")], [PendingDelivery("a1", DELIVER)], [])
    again = decode_state(encode_state(state))
    assert again.rows == state.rows == {("ns", "k"): Write("ns", "k", 2, b"w")}
    assert again.bus.members == state.bus.members
    assert again.bus.neighbours == state.bus.neighbours
    assert again.bus.deliveries == state.bus.deliveries
    assert again.bus.tasks == state.bus.tasks
    assert again.bus.next_msg_id() == state.bus.next_msg_id() == 8
    assert again.recalled() == state.recalled() == ANSWERS
    assert again.batches == state.batches == 2
