"""Seeded fuzz frames for a live tcp coordinator, grouped into connections.

How it works. ``fuzz_plan(seed, count, token)`` draws ``count`` frames from
one ``random.Random(seed)`` (nothing else is random: same seed, same bytes).
Each frame is one of:

- ``valid``: a well-formed routed frame of a message type chosen from
  ``protocol.messages.MESSAGE_TYPES`` (every type, including the ones only a
  coordinator sends), with ordinary field values;
- ``hostile``: a well-typed frame with hostile values: extreme ints (the
  signed and unsigned 64-bit limits, -1), NaN and infinities, very long or
  odd strings, big payloads, long tuples;
- ``wrong_shape``: a body of the right type code with fields of the wrong
  type (nil, maps, ext types, deep nesting, invalid UTF-8, bools for ints),
  the wrong number of fields, an unknown type code or a body that is not an
  array;
- ``bit_flip``, ``truncated``, ``extended``: a valid frame with bits flipped
  (the header included), cut short, or with bytes added inside its length;
- ``random_bytes``: bytes from the generator, sometimes after a plausible
  length header.

The envelope names the connection's own fuzz node, and now and then a
hostile node id (255 bytes, non-ASCII, or the id of the bystander agent
that is registered on another connection). Tokens in fuzzed frames are
never the coordinator's token, so fuzzing never registers anyone; instead
every other connection starts with a valid ``Hello`` for its node, so its
frames also reach the handlers of a registered agent.

Frames are grouped into connections with the server's own decoder
(``real.tcp.framing.RoutedDecoder``): a connection ends after the first frame
that leaves the stream malformed or incomplete (nothing after it would be
read), after a message carrying a token the coordinator checks (a wrong one
closes the link; a storage replica's requests do not count, ``STORE_REQUESTS``), or
after ``MAX_FRAMES_PER_CONNECTION`` frames. ``FuzzConnection.ending`` says
which, so the caller knows what the coordinator should do with it.
"""

from __future__ import annotations

import dataclasses
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol.codec import MalformedFrame, encode_body, field_kinds
from protocol.envelope import ROUTED_VERSION, RoutedDecoder, encode_routed, node_id_bytes
from protocol.messages import (
    MESSAGE_TYPES,
    WIRE_CODES,
    Hello,
    Message,
    QuorumRead,
    QuorumWrite,
)
from protocol.nodes import COORDINATOR_ID

MAX_FRAMES_PER_CONNECTION = 24
# a storage replica's requests carry a token the coordinator never reads: it refuses
# them as unexpected (an ``Error``) and keeps the link, as for any message it does not take
STORE_REQUESTS = (QuorumRead, QuorumWrite)
FUZZ_NODE_PREFIX = "fuzz-"
BYSTANDER_NODE = "bystander"
HOSTILE_INTS = (-1, 0, 2**31, 2**32 - 1, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1)
HOSTILE_FLOATS = (math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324)
KINDS = (
    ("valid", 20),
    ("hostile", 25),
    ("wrong_shape", 15),
    ("bit_flip", 15),
    ("truncated", 8),
    ("extended", 7),
    ("random_bytes", 10),
)
LENGTH = struct.Struct(">I")

# pre-packed msgpack items that never fit a declared field type
ODD_ITEMS = (
    b"\xc0",  # nil
    b"\x80",  # empty map
    b"\x81\xa1k\x01",  # {"k": 1}
    b"\xd4\x01\x00",  # fixext 1
    b"\xd6\xff\x00\x00\x00\x01",  # a msgpack timestamp
    b"\xa3\xff\xfe\xfd",  # a str that is not UTF-8
    b"\xc3",  # true where an int is due
    b"\xca\x7f\xc0\x00\x00",  # float32 NaN
    b"\x91" * 3000 + b"\x00",  # arrays nested 3000 deep
)


@dataclass(frozen=True, slots=True)
class FuzzFrame:
    """One fuzzed frame and what the coordinator's decoder makes of it."""

    kind: str
    data: bytes
    verdict: str  # "valid", "malformed" or "incomplete" in the connection's stream


@dataclass(frozen=True, slots=True)
class FuzzConnection:
    """The frames sent on one connection, in order."""

    node: str
    registered: bool  # starts with a valid Hello carrying the coordinator's token
    frames: tuple[FuzzFrame, ...]
    ending: str  # "malformed", "incomplete", "token" (ends with a token message) or "open"

    @property
    def valid_frames(self) -> int:
        return sum(1 for f in self.frames if f.verdict == "valid")


def fuzz_plan(seed: int, count: int, token: str) -> tuple[FuzzConnection, ...]:
    """``count`` fuzzed frames from ``random.Random(seed)``, grouped into connections."""
    rng = random.Random(seed)
    connections: list[FuzzConnection] = []
    frames: list[FuzzFrame] = []
    decoder = RoutedDecoder()
    node, registered = _node_for(seed, 0), False
    for _ in range(count):
        kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        target = node if rng.random() >= 0.05 else _hostile_node(rng)
        data, carries_token = _make(kind, rng, target, token)
        verdict = _verdict(decoder, data)
        frames.append(FuzzFrame(kind, data, verdict))
        ending = verdict if verdict != "valid" else ("token" if carries_token else "")
        if ending or len(frames) >= MAX_FRAMES_PER_CONNECTION:
            connections.append(FuzzConnection(node, registered, tuple(frames), ending or "open"))
            frames, decoder = [], RoutedDecoder()
            node, registered = _node_for(seed, len(connections)), len(connections) % 2 == 1
    if frames:
        connections.append(FuzzConnection(node, registered, tuple(frames), "open"))
    return tuple(connections)


def plan_bytes(plan: tuple[FuzzConnection, ...]) -> bytes:
    """Every frame of ``plan`` in order (to compare plans)."""
    return b"".join(f.data for conn in plan for f in conn.frames)


def hello_frame(node: str, token: str) -> bytes:
    return encode_routed(node_id_bytes(node), encode_body(Hello(node, token)))


def _node_for(seed: int, index: int) -> str:
    return f"{FUZZ_NODE_PREFIX}{seed % 100_000}-{index}"


def _hostile_node(rng: random.Random) -> str:
    return rng.choice(
        (
            "n" * 255,
            "é" * 127,
            BYSTANDER_NODE,
            COORDINATOR_ID,
            "\x00",
            "🙂 ☃",
        )
    )


def _verdict(decoder: RoutedDecoder, data: bytes) -> str:
    """What the connection's decoder makes of the stream once ``data`` is added."""
    try:
        decoder.feed(data)
    except MalformedFrame:
        return "malformed"
    return "incomplete" if decoder.buffered else "valid"


def _make(kind: str, rng: random.Random, node: str, token: str) -> tuple[bytes, bool]:
    """(frame bytes, whether it is a message that carries a token)."""
    if kind == "random_bytes":
        raw = rng.randbytes(rng.randint(1, 96))
        if rng.random() < 0.5:
            raw = LENGTH.pack(rng.randint(0, 64)) + raw
        return raw, False
    cls = rng.choice(MESSAGE_TYPES)
    values = _field_values(cls, rng, token, hostile=kind == "hostile")
    carries_token = cls not in STORE_REQUESTS and any(
        f.name == "token" for f in dataclasses.fields(cls)
    )
    if kind in ("valid", "hostile"):
        body = _pack([WIRE_CODES[cls], *values], use_bin_type=True)
        return _frame(node, body), carries_token
    if kind == "wrong_shape":
        return _frame(node, _wrong_shape(rng, WIRE_CODES[cls], values)), False
    frame = _frame(node, _pack([WIRE_CODES[cls], *values], use_bin_type=True))
    return _damage(kind, rng, frame), False


def _pack(value: Any, use_bin_type: bool = True) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=use_bin_type)
    return packed


def _frame(node: str, body: bytes) -> bytes:
    raw = node.encode("utf-8")
    return LENGTH.pack(2 + len(raw) + len(body)) + bytes((ROUTED_VERSION, len(raw))) + raw + body


def _field_values(cls: type[Message], rng: random.Random, token: str, hostile: bool) -> list[Any]:
    values = []
    for name, kind in field_kinds(cls):
        if name == "token":
            values.append(_wrong_token(rng, token))
        else:
            values.append(_value(kind, rng, hostile))
    return values


def _wrong_token(rng: random.Random, token: str) -> str:
    guess = rng.choice(("", "x", token[:-1], token + "x", token.upper(), "🙂" * 40))
    return guess if guess != token else token + "!"


def _value(kind: str, rng: random.Random, hostile: bool) -> Any:
    """A value of the declared wire type ``kind``; extreme ones when ``hostile``."""
    if kind == "int":
        return rng.choice(HOSTILE_INTS) if hostile else rng.randint(0, 1000)
    if kind == "float":
        return rng.choice(HOSTILE_FLOATS) if hostile else rng.random()
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "str":
        return _text(rng, hostile)
    if kind == "bytes":
        size = rng.choice((0, 1, 4096, 65536)) if hostile else rng.randint(0, 64)
        return rng.randbytes(size)
    if kind == "tuple[str, ...]":
        items = rng.choice((0, 1, 300)) if hostile else rng.randint(0, 2)
        return [_text(rng, hostile and rng.random() < 0.1) for _ in range(items)]
    if kind == "tuple[int, ...]":
        items = rng.choice((0, 1, 5000)) if hostile else rng.randint(0, 3)
        pool = HOSTILE_INTS if hostile else (1, 2, 3, 99)
        return [rng.choice(pool) for _ in range(items)]
    return []  # a structured tuple type: the empty tuple is always well typed


def _text(rng: random.Random, hostile: bool) -> str:
    if not hostile:
        return rng.choice(("fuzz.a", "fuzz.*.b", "fuzz.#", "fuzz-ns", "k1", "gpu", ""))
    return rng.choice(
        (
            "x" * 60_000,
            "a." * 2000 + "b",
            "#",
            "*.#",
            "a..b",
            "é🙂\u202e",
            "\x00" * 16,
            ".",
            "*" * 300,
        )
    )


def _wrong_shape(rng: random.Random, code: int, values: list[Any]) -> bytes:
    """A body that cannot decode into the message it claims to be."""
    choice = rng.randrange(5)
    if choice == 0 and values:  # one field replaced by an item of the wrong type
        items = [_pack(v, use_bin_type=True) for v in values]
        items[rng.randrange(len(items))] = rng.choice(ODD_ITEMS)
        return _array([_pack(code), *items])
    if choice == 1:  # one field too many or too few
        extra = values + [1] if rng.random() < 0.5 or not values else values[:-1]
        return _pack([code, *extra], use_bin_type=True)
    if choice == 2:  # an unknown or ill-typed type code
        bad_code = rng.choice((0, 99, 255, -1, 2**40, 12.0, "12", True))
        return _pack([bad_code, *values], use_bin_type=True)
    if choice == 3:  # not an array at all
        return rng.choice((b"\x80", b"\x90", b"\xc0", b"\x0c", _pack({"type": code})))
    return _array([_pack(code), rng.choice(ODD_ITEMS)])


def _array(items: list[bytes]) -> bytes:
    count = len(items)
    head = bytes((0x90 | count,)) if count < 16 else b"\xdc" + struct.pack(">H", count)
    return head + b"".join(items)


def _damage(kind: str, rng: random.Random, frame: bytes) -> bytes:
    """A valid ``frame`` with bits flipped, cut short, or extended inside its length."""
    buf = bytearray(frame)
    if kind == "bit_flip":
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(buf))
            buf[at] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if kind == "truncated":
        cut = rng.randint(1, len(buf) - 1)
        if rng.random() < 0.5:  # the header still promises the whole frame
            return bytes(buf[:cut])
        body = buf[4:cut] if cut > 4 else buf[4:5]
        return LENGTH.pack(len(body)) + bytes(body)  # the length says it is whole
    extra = rng.randbytes(rng.randint(1, 16))
    return LENGTH.pack(len(buf) - 4 + len(extra)) + bytes(buf[4:]) + extra
