"""The wire codec: round trips, the streaming decoder and hostile input.

The rule under test: whatever bytes a peer sends, the decoder returns
messages or raises ``MalformedFrame``, never anything else, and never
buffers more than ``max_frame`` for one frame. Local misuse raises
``CodecUsageError``.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import struct
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from native.select import STATE
from protocol import messages as m
from protocol.codec import (
    DEFAULT_MAX_FRAME,
    VERSION,
    CodecUsageError,
    FrameDecoder,
    MalformedFrame,
    body_size,
    decode_body,
    decode_frame,
    encode,
    encode_body,
    encode_many,
    field_kinds,
)
from protocol.messages import BY_TYPE, MESSAGE_TYPES, TUPLE_ELEMENTS, WIRE_CODES
from tests.codec_helpers import (
    CODES,
    FAST,
    FIELD_STRATEGIES,
    SAMPLE,
    STREAM,
    any_message,
    frame,
    packed,
    strategy_for,
)

# --- the message table ----------------------------------------------------------------

SAMPLES = {"int": 1, "float": 1.0, "bool": True, "str": "a", "bytes": b""} | {
    kind: () for kind in ("tuple[str, ...]", "tuple[int, ...]", "tuple[ComponentStatus, ...]")
}


def test_type_codes_are_stable_and_unique() -> None:
    assert {cls.__name__: WIRE_CODES[cls] for cls in MESSAGE_TYPES} == CODES
    assert len(BY_TYPE) == len(MESSAGE_TYPES) == len(CODES)
    assert all(0 <= code <= 127 for code in CODES.values())  # one-byte positive fixint


def test_every_field_type_has_a_strategy() -> None:
    for cls in MESSAGE_TYPES:
        for name, kind in field_kinds(cls):
            assert kind in FIELD_STRATEGIES, (cls.__name__, name, kind)


def test_the_tuple_element_table_matches_the_annotations_in_the_source() -> None:
    """A compiled class keeps only ``tuple`` as a field's type, so the codec reads
    element types from ``TUPLE_ELEMENTS``; it must say what the source says."""
    source = (Path(__file__).resolve().parents[2] / "protocol" / "messages.py").read_text()
    annotated: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name in CODES:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    text = ast.unparse(item.annotation)
                    if text.startswith("tuple["):
                        annotated[item.target.id] = text
    assert annotated == {name: f"tuple[{e}, ...]" for name, e in TUPLE_ELEMENTS.items()}


def test_messages_are_frozen_and_slotted() -> None:
    for cls in MESSAGE_TYPES:
        instance = cls(*(SAMPLES[kind] for _, kind in field_kinds(cls)))
        assert not hasattr(instance, "__dict__"), cls
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, cls
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(instance, dataclasses.fields(cls)[0].name, None)


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_round_trip_every_message_type(cls: type, data: st.DataObject) -> None:
    msg = data.draw(strategy_for(cls))
    wire = encode(msg)
    decoded = decode_frame(wire)
    assert type(decoded) is cls and decoded == msg
    for name, kind in field_kinds(cls):  # same Python types too (floats stay floats)
        assert type(getattr(decoded, name)) is type(getattr(msg, name)) or (
            kind == "float" and type(getattr(decoded, name)) is float
        )


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
@FAST
@given(data=st.data())
def test_body_size_is_the_length_of_the_encoded_body(cls: type, data: st.DataObject) -> None:
    msg = data.draw(strategy_for(cls))
    assert body_size(msg) == len(encode_body(msg))


LENGTHS = st.sampled_from([0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000])


@FAST
@given(
    text=LENGTHS,
    blob=LENGTHS,
    ids=st.sampled_from([0, 15, 16, 65535, 65536]),
    number=st.integers(-(2**63), 2**64 - 1),
    wide=st.booleans(),
)
def test_body_size_at_every_msgpack_boundary(
    text: int, blob: int, ids: int, number: int, wide: bool
) -> None:
    """Each header size of str, bin and array, every int range, UTF-8 wider than its
    characters."""
    origin = ("é" if wide else "a") * text
    for msg in (
        m.Deliver(number, 1, origin, -number // 2, origin[:40], b"x" * blob, number),
        m.Ack(tuple(range(ids))),
        m.Busy(number, float(text)),
    ):
        assert body_size(msg) == len(encode_body(msg)), type(msg).__name__


def test_body_size_refuses_what_is_not_a_message() -> None:
    with pytest.raises(CodecUsageError):
        body_size(object())


def test_frame_layout_byte_by_byte() -> None:
    wire = encode(SAMPLE)
    (length,) = struct.unpack(">I", wire[:4])
    assert length == len(wire) - 4  # the length counts the version byte and the body
    assert wire[4] == VERSION == 1
    assert msgpack.unpackb(wire[5:]) == [12, 7, "swarm.t3.events", b"hello", 0x3610A686]
    assert wire[5:] == encode_body(SAMPLE)


def test_worked_example_in_docs_is_exact() -> None:
    """The hex in docs/protocol.md; a change here is a wire format change."""
    expected = bytes.fromhex(
        "00000020"  # length 32
        "01"  # version
        "95"  # fixarray of 5
        "0c"  # type 12: Publish
        "07"  # op_id 7
        "af"
        + b"swarm.t3.events".hex()  # fixstr of 15
        + "c405"
        + b"hello".hex()  # bin8 of 5
        + "ce3610a686"  # uint32 checksum
    )
    assert encode(SAMPLE) == expected
    assert decode_frame(expected) == SAMPLE


def test_int_accepted_for_float_field_and_returned_as_float() -> None:
    msg = decode_frame(frame(packed(2, "a", 8, 1)))
    assert msg == m.Welcome("a", 8, 1.0) and type(msg.heartbeat_interval) is float


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -0.0])
def test_special_floats_survive(value: float) -> None:
    decoded = decode_frame(encode(m.Busy(1, value)))
    assert repr(decoded.retry_after) == repr(value)


def test_decode_body_alone() -> None:
    assert decode_body(encode_body(SAMPLE)) == SAMPLE


# --- the streaming decoder ----------------------------------------------------------------


def test_split_at_every_byte_boundary() -> None:
    data = encode_many(STREAM)
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(data[:cut])
        got += decoder.feed(data[cut:])
        assert got == STREAM, cut
        assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    data = encode_many(STREAM)
    decoder = FrameDecoder()
    got = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
        assert decoder.buffered <= max(len(encode(x)) for x in STREAM)
    assert got == STREAM and decoder.buffered == 0


def test_partial_frame_is_buffered_not_returned() -> None:
    wire = encode(SAMPLE)
    decoder = FrameDecoder()
    assert decoder.feed(wire[:-1]) == []
    assert decoder.buffered == len(wire) - 1
    assert decoder.feed(wire[-1:]) == [SAMPLE]
    assert decoder.feed(b"") == []


@FAST
@given(st.lists(any_message, max_size=12), st.lists(st.integers(1, 64), min_size=1))
def test_concatenated_frames_in_random_chunks(msgs: list, sizes: list[int]) -> None:
    data = encode_many(msgs)
    decoder = FrameDecoder()
    got, offset, i = [], 0, 0
    while offset < len(data):
        size = sizes[i % len(sizes)]
        got += decoder.feed(data[offset : offset + size])
        offset, i = offset + size, i + 1
    assert got == msgs and decoder.buffered == 0


def test_frame_of_exactly_max_frame_is_accepted() -> None:
    limit = 200
    reason = "r" * (limit - 5)  # version, fixarray, type code, str8 header (2): 5 + 195
    wire = encode(m.Reject(reason), max_frame=limit)
    assert struct.unpack(">I", wire[:4])[0] == limit
    assert FrameDecoder(limit).feed(wire) == [m.Reject(reason)]
    with pytest.raises(MalformedFrame):
        FrameDecoder(limit - 1).feed(wire)
    with pytest.raises(CodecUsageError):
        encode(m.Reject(reason), max_frame=limit - 1)


# --- hostile input -------------------------------------------------------------------


def refused(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> MalformedFrame:
    decoder = FrameDecoder(max_frame)
    with pytest.raises(MalformedFrame) as info:
        decoder.feed(data)
    with pytest.raises(MalformedFrame):  # and the stream stays refused
        decoder.feed(encode(SAMPLE))
    assert decoder.buffered == 0
    return info.value


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version(version: int) -> None:
    assert "version" in str(refused(frame(encode_body(SAMPLE), version)))


@pytest.mark.parametrize("length", [0, 1])
def test_length_too_small_is_refused_from_the_header_alone(length: int) -> None:
    assert "length" in str(refused(struct.pack(">I", length)))


@pytest.mark.parametrize("length", [DEFAULT_MAX_FRAME + 1, 2**32 - 1])
def test_length_over_max_frame_is_refused_before_the_body_arrives(length: int) -> None:
    assert "length" in str(refused(struct.pack(">I", length)))  # header only, no body yet


def test_custom_max_frame() -> None:
    wire = encode(m.Publish(1, "t", b"x" * 100, 0))
    refused(wire, max_frame=64)
    assert FrameDecoder(len(wire) - 4).feed(wire) != []


def test_truncated_msgpack_inside_a_complete_frame() -> None:
    body = encode_body(SAMPLE)
    for cut in range(len(body)):
        refused(frame(body[:cut]))


def test_trailing_bytes_inside_a_frame() -> None:
    refused(frame(encode_body(SAMPLE) + b"\x00"))


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb({"type": 12}),
        msgpack.packb(12),
        msgpack.packb("Publish"),
        msgpack.packb(None),
        msgpack.packb(b"\x0c"),
        msgpack.packb([]),
        msgpack.packb({1: 2}),  # not even a str key
    ],
    ids=["map", "int", "str", "nil", "bin", "empty-array", "int-key-map"],
)
def test_valid_msgpack_that_is_not_a_message_array(body: bytes) -> None:
    refused(frame(body))


@pytest.mark.parametrize("code", [0, 7, 19, 99, 127, -1, 2**40, "12", 12.0, True, None, b"\x0c"])
def test_unknown_type_code(code: object) -> None:
    assert "unknown message type" in str(refused(frame(packed(code, 1))))


@pytest.mark.parametrize(
    "values",
    [
        (4,),  # Heartbeat without seq
        (4, 1, 2),  # Heartbeat with an extra field
        (12, 1, "t", b"p"),  # Publish without checksum
        (30, 1, 1, "ns", "k", b"v"),  # MemRequest without expected_version (defaults travel too)
    ],
)
def test_wrong_arity(values: tuple) -> None:
    assert "fields" in str(refused(frame(packed(*values))))


@pytest.mark.parametrize(
    "values",
    [
        (12, 1, "t", "payload as str", 0),  # str where bytes expected
        (12, 1, b"t", b"p", 0),  # bytes where str expected
        (4, True),  # bool where int expected
        (31, 1, 1, 1, b"", ""),  # int where bool expected
        (4, 1.0),  # float where int expected
        (16, 1, "0.5"),  # str where float expected
        (16, 1, True),  # bool where float expected
        (18, [1, "2"]),  # tuple[int, ...] with a str in it
        (18, [1, True]),  # tuple[int, ...] with a bool in it
        (18, 5),  # scalar where a tuple is expected
        (1, "a", "tok", ["gpu", 1], []),  # tuple[str, ...] with an int in it
        (1, "a", "tok", [["nested"]], []),
        (4, None),
        (4, {"seq": 1}),
    ],
)
def test_wrong_field_types(values: tuple) -> None:
    assert "expected" in str(refused(frame(packed(*values))))


def test_invalid_utf8_in_a_string() -> None:
    body = b"\x92\x28" + b"\xa2\xff\xfe"  # [40, <str of 2 invalid bytes>]
    refused(frame(body))


def test_ext_type_and_timestamp() -> None:
    refused(frame(packed(4, msgpack.ExtType(5, b"xx"))))
    refused(frame(b"\x92\x04\xd6\xff\x00\x00\x00\x01"))  # a msgpack timestamp as seq


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_arrays(depth: int) -> None:
    body = b"\x92\x12" + b"\x91" * depth + b"\x01"  # [Ack, [[[...[1]...]]]]
    refused(frame(body))


def test_huge_declared_container_in_a_small_frame() -> None:
    refused(frame(b"\xdd\xff\xff\xff\xff"))  # array32 claiming 4 billion items
    refused(frame(b"\x92\x28\xdb\xff\xff\xff\xff"))  # str32 claiming 4 GiB


def test_malformed_frame_keeps_the_messages_before_it() -> None:
    good = encode_many([SAMPLE, m.Heartbeat(3)])
    decoder = FrameDecoder()
    with pytest.raises(MalformedFrame) as info:
        decoder.feed(good + frame(packed(99)) + encode(m.Heartbeat(4)))
    assert info.value.decoded == [SAMPLE, m.Heartbeat(3)]


def test_messages_from_earlier_feeds_are_not_repeated_in_decoded() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode(SAMPLE)) == [SAMPLE]
    with pytest.raises(MalformedFrame) as info:
        decoder.feed(struct.pack(">I", 0))
    assert info.value.decoded == []


def test_decode_frame_wants_exactly_one_frame() -> None:
    wire = encode(SAMPLE)
    assert decode_frame(wire) == SAMPLE
    for bad in (b"", wire[:-1], wire + wire, wire + b"\x00"):
        with pytest.raises(MalformedFrame):
            decode_frame(bad)


# --- local misuse ----------------------------------------------------------------------


class NotAMessage:
    TYPE = 4  # pretends to be a Heartbeat

    seq = 1


@pytest.mark.parametrize(
    "thing",
    [object(), {"seq": 1}, [4, 1], None, NotAMessage(), m.Heartbeat, "Heartbeat"],
    ids=["object", "dict", "list", "None", "impostor", "class", "str"],
)
def test_encoding_a_non_message_is_a_usage_error(thing: object) -> None:
    with pytest.raises(CodecUsageError):
        encode(thing)  # type: ignore[arg-type]
    with pytest.raises(CodecUsageError):
        encode_body(thing)  # type: ignore[arg-type]


def test_encoding_an_oversized_message_is_a_usage_error() -> None:
    with pytest.raises(CodecUsageError, match="max_frame"):
        encode(m.Publish(1, "t", b"x" * DEFAULT_MAX_FRAME, 0))
    with pytest.raises(CodecUsageError):
        encode(SAMPLE, max_frame=10)
    with pytest.raises(CodecUsageError):
        encode_many([SAMPLE, m.Publish(2, "t", b"x" * 100, 0)], max_frame=64)


def test_usage_error_and_malformed_frame_are_distinct() -> None:
    assert not issubclass(CodecUsageError, MalformedFrame)
    assert not issubclass(MalformedFrame, CodecUsageError)


@pytest.mark.parametrize(
    "build",
    [
        lambda: m.Publish(1, "t", "not bytes", 0),  # type: ignore[arg-type]
        lambda: m.Publish(1, b"t", b"p", 0),  # type: ignore[arg-type]
        lambda: m.Heartbeat(True),
        lambda: m.Heartbeat(1.5),  # type: ignore[arg-type]
        lambda: m.MemReply(1, 1, 1, b"", ""),  # type: ignore[arg-type]
        lambda: m.Hello("a", "tok", ["gpu"]),  # type: ignore[arg-type]
        lambda: m.Ack((1, "2")),  # type: ignore[arg-type]
        lambda: m.Heartbeat(2**64),
        lambda: m.Heartbeat(-(2**63) - 1),
    ],
    ids=[
        "str-payload",
        "bytes-topic",
        "bool-seq",
        "float-seq",
        "int-ok",
        "list-caps",
        "str-in-ack",
        "int-overflow",
        "int-underflow",
    ],
)
def test_encode_refuses_ill_typed_messages(build: Callable[[], m.Message]) -> None:
    """Local misuse, caught before a peer would refuse the frame (found by this
    suite). Compiled, a message class refuses a wrong scalar type itself, or
    converts it (a bool in an int field becomes an int): either way no
    ill-typed value reaches the wire."""
    try:
        msg = build()
    except TypeError:
        assert STATE.compiled, "only the compiled classes check types when built"
        return
    if STATE.compiled and msg == m.Heartbeat(1):
        assert type(msg.seq) is int and decode_frame(encode(msg)) == msg
        return
    with pytest.raises(CodecUsageError):
        encode(msg)


def test_enum_fields_encode_as_plain_ints() -> None:
    """The core builds messages with IntEnum values (``DeliveryKind``, ``MemVerb``)."""
    deliver = m.Deliver(1, m.DeliveryKind.TASK, "o", 2, "gpu", b"x", 3)
    request = m.MemRequest(4, m.MemVerb.CAS, "ns", "k", b"v", 1)
    for msg in (deliver, request):
        wire = encode(msg)
        decoded = decode_frame(wire)
        assert decoded == msg
    assert type(decode_frame(encode(deliver)).kind) is int
    assert encode(deliver) == encode(m.Deliver(1, 4, "o", 2, "gpu", b"x", 3))


def test_docs_worked_example_matches_the_codec() -> None:
    """docs/protocol.md's hex dump is what the codec produces."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
    text = doc.read_text(encoding="utf-8")
    section = text[text.index("## 4. Worked example") :]
    block = section.split("```")[1]
    assert bytes.fromhex(" ".join(block.split())) == encode(SAMPLE)
    hello = m.Hello("agent-1", "swarmtwin-dev-token", ("gpu",), ("swarm.*.events",))
    for msg in (m.Ack((1, 2, 300)), hello):
        assert encode(msg).hex(" ") in " ".join(section.split()), msg
