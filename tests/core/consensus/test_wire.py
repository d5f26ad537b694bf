"""Raft frames: every message survives the codec, and hostile bytes are refused cleanly."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import MalformedFrame, decode_frame, encode
from protocol.consensus.fpmessages import FKind, FpMessage, Value, Vote
from protocol.consensus.fpwire import decode_fp_body, encode_fp_body
from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.messages import Kind, RaftMessage
from protocol.consensus.pbftmessages import PbftMessage, PKind, authentic, request_digest, sign
from protocol.consensus.pbftwire import decode_pbft_body, encode_pbft_body
from protocol.consensus.signing import cluster_keys
from protocol.consensus.wire import decode_raft_body, encode_raft, encode_raft_body
from protocol.messages import Consensus
from tests.core.test_core_properties import FAST

counts = st.integers(0, 2**63 - 1)
ids = st.text(min_size=1, max_size=20)


@st.composite
def messages(draw: st.DrawFn) -> RaftMessage:
    index = draw(counts.filter(lambda i: i < 2**62))
    datas = draw(st.lists(st.binary(max_size=40), max_size=5))
    entries = tuple(Entry(draw(counts), index + i, data) for i, data in enumerate(datas, start=1))
    snapshot = draw(st.none() | st.builds(Snapshot, counts, counts, st.binary(max_size=40)))
    return RaftMessage(
        draw(st.sampled_from(list(Kind))),
        draw(ids),
        draw(ids),
        draw(counts),
        index,
        draw(counts),
        entries,
        draw(counts),
        draw(st.booleans()),
        draw(counts),
        snapshot,
        draw(counts),
    )


@given(messages())
@settings(FAST)
def test_every_message_decodes_to_itself(msg: RaftMessage) -> None:
    frame = encode(encode_raft(msg))
    carrier = decode_frame(frame)
    assert type(carrier) is Consensus
    assert decode_raft_body(carrier.body) == msg


@given(messages(), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4))
@settings(FAST)
def test_corrupted_frames_are_refused_as_malformed_and_nothing_else(
    msg: RaftMessage, flips: list[tuple[int, int]]
) -> None:
    """A valid body with a few bytes changed, or cut short, decodes to some message or is
    a ``MalformedFrame``: never another exception."""
    body = bytearray(encode_raft_body(msg))
    for at, byte in flips:
        body[at % len(body)] = byte
    for cut in (len(body), len(body) // 2):
        with contextlib.suppress(MalformedFrame):
            decode_raft_body(bytes(body[:cut]))


COUNT = [-1, 1.5, "x", None, True]
WRONG: dict[int, list[object]] = {  # values each position of the body must refuse
    0: [0, 10, "x", None, True],
    1: ["", None, 1, b"x", "a" * 256],
    2: ["", None, 1, b"x", "a" * 256],
    3: COUNT,
    4: COUNT,
    5: COUNT,
    6: [None, 5, [[1]], [[1, 1, "text"]], [[1, -1, b""]]],
    7: COUNT,
    8: [0, 1, None, "x"],
    9: COUNT,
    10: [5, [1, 2], [1, -2, b""], [1, 2, "text"]],
    11: COUNT,
}


@given(messages(), st.sampled_from([(at, i) for at, bad in WRONG.items() for i in range(len(bad))]))
@settings(FAST)
def test_a_field_of_the_wrong_type_is_refused(msg: RaftMessage, pick: tuple[int, int]) -> None:
    at, i = pick
    values = list(msgpack.unpackb(encode_raft_body(msg), use_list=False, raw=False))
    values[at] = WRONG[at][i]
    with pytest.raises(MalformedFrame):
        decode_raft_body(msgpack.packb(values, use_bin_type=True))


def test_entries_must_follow_on_from_the_index() -> None:
    body = msgpack.packb(
        [5, "r1", "r2", 2, 7, 1, [[2, 9, b""]], 0, False, 0, None, 0],
        use_bin_type=True,
    )
    with pytest.raises(MalformedFrame, match="follow on"):
        decode_raft_body(body)


def test_a_pbft_message_with_certificates_round_trips_and_garbage_is_refused() -> None:
    keys = cluster_keys(("r1", "r2", "r3", "r4"), b"wire")
    pre = sign(keys["r1"], PbftMessage(PKind.PRE_PREPARE, "r1", 0, 1, request_digest(b"x"), b"x"))
    prepares = tuple(
        sign(keys[n], PbftMessage(PKind.PREPARE, n, 0, 1, pre.digest)) for n in ("r2", "r3")
    )
    change = sign(
        keys["r2"],
        PbftMessage(PKind.VIEW_CHANGE, "r2", 1, 0, prepared=((pre, *prepares),), dst="r3"),
    )
    decoded = decode_pbft_body(encode_pbft_body(change))
    assert decoded == change and authentic(keys["r3"], decoded)
    state = sign(keys["r4"], PbftMessage(PKind.STATE, "r4", 0, 0, entries=(Entry(0, 1, b"x"),)))
    assert decode_pbft_body(encode_pbft_body(state)) == state
    for bad in (
        b"\xc1",
        msgpack.packb([1, "r1"]),
        msgpack.packb([99, "r1", "", 0, 0, b"", b"", [], [], [], b"s" * 64]),
        msgpack.packb([1, "r1", "", -1, 0, b"", b"", [], [], [], b"s" * 64]),
        msgpack.packb([1, "r1", "", 0, 0, b"short", b"", [], [], [], b"s" * 64]),
        msgpack.packb([1, "r1", "", 0, 0, b"", b"", [], [], [], b"s"]),
    ):
        with pytest.raises(MalformedFrame):
            decode_pbft_body(bad)
    deep = change
    for _ in range(4):
        deep = PbftMessage(PKind.NEW_VIEW, "r2", 1, proof=(deep,), sig=b"s" * 64)
    with pytest.raises(MalformedFrame):
        decode_pbft_body(encode_pbft_body(deep))


def test_a_fast_paxos_message_round_trips_and_garbage_is_refused() -> None:
    value = Value("r1", 4, b"batch")
    promise = FpMessage(
        FKind.PROMISE,
        "r2",
        4,
        dst="r1",
        index=3,
        commit=9,
        votes=(Vote(10, 4 << 16, value, fast=True), Vote(11, (4 << 16) + 1, Value("", 4))),
    )
    assert decode_fp_body(encode_fp_body(promise)) == promise
    snap = FpMessage(FKind.SNAPSHOT, "r1", 5, dst="r3", snapshot=Snapshot(64, 0, b"state"))
    assert decode_fp_body(encode_fp_body(snap)) == snap
    good = [5, "r1", "r2", 4, 262144, 10, 0, ["r1", 4, b"x"], [], True, False, None]
    assert decode_fp_body(msgpack.packb(good)).value == Value("r1", 4, b"x")
    for bad in (
        b"\xc1",
        msgpack.packb(good[:5]),
        msgpack.packb([99, *good[1:]]),
        msgpack.packb([*good[:3], -1, *good[4:]]),
        msgpack.packb([5, "", *good[2:]]),
        msgpack.packb([*good[:7], ["r1", 4, "text"], *good[8:]]),
        msgpack.packb([*good[:8], [[1, 2, "r1", 4, b"x"]], *good[9:]]),
        msgpack.packb([*good[:9], 1, *good[10:]]),
        msgpack.packb([*good[:11], [1, 0]]),
    ):
        with pytest.raises(MalformedFrame):
            decode_fp_body(bad)
