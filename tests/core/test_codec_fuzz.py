"""Codec fuzzing: random bytes, mutated valid frames and type-confused bodies.

Whatever a peer sends, the decoder returns messages or raises
``MalformedFrame``, never any other exception.
"""

from __future__ import annotations

import dataclasses
import math
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import messages as m
from protocol.codec import (
    VERSION,
    FrameDecoder,
    MalformedFrame,
    decode_frame,
    encode,
    field_kinds,
)
from protocol.messages import MESSAGE_TYPES, WIRE_CODES
from tests.codec_helpers import FAST, INT, STREAM, frame, packed, strategy_for

# --- fuzzing -------------------------------------------------------------------------


def assert_decodes_or_refuses(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder(4096)
    try:
        for i in range(0, len(data), chunk):
            for msg in decoder.feed(data[i : i + chunk]):
                assert type(msg) in MESSAGE_TYPES
                assert repr(decode_frame(encode(msg))) == repr(msg)  # well-typed: re-encodes
    except MalformedFrame as exc:
        assert all(type(x) in MESSAGE_TYPES for x in exc.decoded)


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if action == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif action == 1 and buf:  # replace a byte with an interesting one
            buf[rng.randrange(len(buf))] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0xC1, 0xDD, 0xDB))
        elif action == 2:  # insert bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 5))
        elif action == 3:  # delete a range
            del buf[pos : pos + rng.randint(1, 5)]
        elif action == 4:  # truncate
            del buf[pos:]
        else:  # rewrite the first header with a random plausible length
            buf[:4] = struct.pack(">I", rng.randrange(0, 64))
    return bytes(buf)


def test_fuzz_random_bytes() -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        data = rng.randbytes(rng.randint(0, 64))
        if rng.random() < 0.7:  # make most of them get past the header check
            data = struct.pack(">I", len(data) + 1) + bytes((VERSION,)) + data
        assert_decodes_or_refuses(data, rng.randint(1, 16))


def test_fuzz_mutated_valid_frames() -> None:
    rng = random.Random(4321)
    valid = [encode(msg) for msg in STREAM] + [
        encode(m.Deliver(3, 1, "o", 9, "t.x", b"payload", 77)),
        encode(m.TaskResult(4, "o", 9, b"r", 5)),
        encode(m.MemReply(1, True, 3, b"v", "")),
        encode(m.Welcome("n", 256, 0.5)),
    ]
    for _ in range(5000):
        data = b"".join(rng.sample(valid, rng.randint(1, 3)))
        assert_decodes_or_refuses(mutate(rng, data), rng.randint(1, 32))


@settings(FAST, max_examples=300)
@given(st.binary(max_size=128), st.integers(1, 32))
def test_fuzz_hypothesis_bytes(data: bytes, chunk: int) -> None:
    assert_decodes_or_refuses(frame(data), chunk)
    assert_decodes_or_refuses(data, chunk)


FIELD_EXAMPLES = {
    "str": "s",
    "int": 1,
    "float": 0.5,
    "bool": False,
    "bytes": b"",
    "tuple[str, ...]": ["a"],
    "tuple[int, ...]": [1],
    "tuple[ComponentStatus, ...]": [["c", "ok", [["m", 1]]]],
}


# One value of every msgpack kind, and which declared field types accept it.
REPRESENTATIVES: list[tuple[object, set[str]]] = [
    (None, set()),
    (True, {"bool"}),
    (0, {"int", "float"}),
    (-1, {"int", "float"}),
    (2**64 - 1, {"int", "float"}),
    (1.5, {"float"}),
    (math.nan, {"float"}),
    ("s", {"str"}),
    ("", {"str"}),
    (b"b", {"bytes"}),
    ([], {"tuple[str, ...]", "tuple[int, ...]", "tuple[ComponentStatus, ...]"}),
    ([1], {"tuple[int, ...]"}),
    (["s"], {"tuple[str, ...]"}),
    ([True], set()),
    ([b"b"], set()),
    ([[1]], set()),
    ({}, set()),
    ({"k": 1}, set()),
]


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda c: c.__name__)
def test_every_field_against_every_msgpack_kind(cls: type) -> None:
    fields = field_kinds(cls)
    valid = [FIELD_EXAMPLES[kind] for _, kind in fields]
    assert type(decode_frame(frame(packed(WIRE_CODES[cls], *valid)))) is cls
    for index, (name, kind) in enumerate(fields):
        for value, accepted_by in REPRESENTATIVES:
            values = list(valid)
            values[index] = value
            data = frame(packed(WIRE_CODES[cls], *values))
            if kind in accepted_by:
                assert type(decode_frame(data)) is cls
            else:
                with pytest.raises(MalformedFrame, match=f"{cls.__name__}.{name}"):
                    decode_frame(data)


msgpack_values = st.recursive(
    st.none() | st.booleans() | INT | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@st.composite
def type_confused_bodies(draw: st.DrawFn) -> bytes:
    """A valid message's values with one replaced by an arbitrary msgpack value."""
    cls = draw(st.sampled_from(MESSAGE_TYPES))
    msg = draw(strategy_for(cls))
    values = [getattr(msg, f.name) for f in dataclasses.fields(cls)]
    index = draw(st.integers(0, len(values)))
    odd = st.sampled_from([value for value, _ in REPRESENTATIVES]) | msgpack_values
    values[index : index + 1] = [draw(odd)]  # replace one, or append one
    return packed(WIRE_CODES[cls], *values)


@settings(FAST, max_examples=300)
@given(type_confused_bodies(), st.integers(1, 32))
def test_fuzz_type_confusion(body: bytes, chunk: int) -> None:
    assert_decodes_or_refuses(frame(body), chunk)
