"""The wire codec: the one place where bytes become messages and back.

A frame is::

    +----------------+---------+-------------------------------+
    | length: u32 BE | version | body: msgpack array           |
    +----------------+---------+-------------------------------+

``length`` counts the version byte and the body. The body is a msgpack
array ``[type_code, field_1, field_2, ...]`` with the fields in the order the
message dataclass declares them. ``bytes`` fields are msgpack bin, strings
are msgpack str (UTF-8), tuples are arrays. ``StatusReply.components`` is
an array of ``[name, health, [[metric, value], ...]]`` arrays; every level
of it is checked (names, health states, finite numbers, no repeats).

Two kinds of error are kept apart. ``CodecUsageError`` means local misuse
(encoding something that is not a message, or a message larger than the
limit) and is a bug in the caller. ``MalformedFrame`` means a remote peer
sent bytes that are not a valid frame: wrong version, oversized length,
truncated or undecodable msgpack, unknown type, wrong arity or field types.
A driver that catches ``MalformedFrame`` refuses that peer and keeps serving
everyone else. Decoding never trusts a length before checking it against
``max_frame``, so a hostile length cannot make the decoder allocate.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import struct
from collections.abc import Callable
from typing import Any, cast

import msgpack
from mypy_extensions import mypyc_attr

from protocol.messages import (
    BY_TYPE,
    HEALTH_STATES,
    MAX_COMPONENT_NAME,
    MAX_METRIC_NAME,
    MAX_METRICS,
    TUPLE_ELEMENTS,
    WIRE_CODES,
    ComponentStatus,
    Message,
)

VERSION = 1
HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB: version byte plus body


# one packer for every body: ``msgpack.packb`` builds a new one per call (twice the cost);
# it resets itself after each ``pack``, a failed one included
_PACKER = msgpack.Packer(use_bin_type=True)


@mypyc_attr(allow_interpreted_subclasses=True)  # compiled, yet subclassed by the drivers
class CodecUsageError(Exception):
    """Local misuse of the codec (a bug on this side)."""


@mypyc_attr(allow_interpreted_subclasses=True)  # real.tcp.framing.MalformedEnvelope
class MalformedFrame(Exception):
    """A remote peer sent bytes that are not a valid frame.

    ``decoded`` holds the valid messages that preceded the bad frame in the
    same ``feed`` call, so a driver can still process them.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.decoded: list[Message] = []


def field_kinds(cls: type[Message]) -> tuple[tuple[str, str], ...]:
    """(name, kind) for each dataclass field of ``cls``: ``int``, ``float``,
    ``bool``, ``str``, ``bytes`` or ``tuple[<element>, ...]``, the same whether
    the class is compiled (runtime types) or not (annotation strings)."""
    kinds = []
    for f in dataclasses.fields(cls):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if kind.startswith("tuple"):
            kind = f"tuple[{TUPLE_ELEMENTS[f.name]}, ...]"
        kinds.append((f.name, kind))
    return tuple(kinds)


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "bytes": (bytes,),
}
_TUPLES: dict[str, type] = {"tuple[str, ...]": str, "tuple[int, ...]": int}
_KINDS: dict[int, tuple[tuple[str, str], ...]] = {
    code: field_kinds(cls) for code, cls in BY_TYPE.items()
}


def _fields_getter(names: tuple[str, ...]) -> Callable[[object], tuple[Any, ...]]:
    """A function returning a message's field values in order, as a tuple."""
    if len(names) == 1:
        name = names[0]
        return lambda msg: (getattr(msg, name),)
    return cast(Callable[[object], tuple[Any, ...]], operator.attrgetter(*names))


_CODE_OF: dict[type, int] = dict(WIRE_CODES)
_FIELDS: dict[int, Callable[[object], tuple[Any, ...]]] = {
    code: _fields_getter(tuple(name for name, _ in kinds)) for code, kinds in _KINDS.items()
}

COMPONENTS = "tuple[ComponentStatus, ...]"


def _as_float(value: Any) -> float:
    return float(value)


def _name(value: Any, limit: int) -> bool:
    return type(value) is str and 1 <= len(value) <= limit


def _metric(value: Any) -> bool:
    """A ``(name, value)`` pair: a metric name and a finite int or float (not a bool)."""
    if type(value) is not tuple or len(value) != 2 or not _name(value[0], MAX_METRIC_NAME):
        return False
    number = value[1]
    return type(number) is int or (type(number) is float and math.isfinite(number))


def _check_components(where: str, value: Any) -> tuple[ComponentStatus, ...]:
    """``StatusReply.components``: arrays of ``[name, health, [[metric, value], ...]]``
    with distinct component names, known health states and distinct metric names."""
    if type(value) is not tuple:
        raise MalformedFrame(f"{where}: expected an array of components")
    components = []
    names: set[str] = set()
    for item in value:
        if not isinstance(item, tuple) or len(item) != 3:  # a ComponentStatus, or decoded
            raise MalformedFrame(f"{where}: a component is not [name, health, metrics]")
        name, health, metrics = item
        if not _name(name, MAX_COMPONENT_NAME) or name in names:
            raise MalformedFrame(f"{where}: bad or repeated component name")
        if type(health) is not str or health not in HEALTH_STATES:
            raise MalformedFrame(f"{where}: {name}: health must be one of {HEALTH_STATES}")
        if type(metrics) is not tuple or len(metrics) > MAX_METRICS:
            raise MalformedFrame(f"{where}: {name}: expected at most {MAX_METRICS} metrics")
        if not all(_metric(m) for m in metrics) or len({m[0] for m in metrics}) < len(metrics):
            raise MalformedFrame(f"{where}: {name}: bad or repeated metric")
        names.add(name)
        components.append(ComponentStatus(name, health, metrics))
    return tuple(components)


def _check_field(type_name: str, field: str, value: Any, kind: str) -> Any:
    """Return ``value`` if it has the declared type, else raise ``MalformedFrame``."""
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        if not isinstance(value, scalar) or (kind != "bool" and isinstance(value, bool)):
            raise MalformedFrame(
                f"{type_name}.{field}: expected {kind}, got {type(value).__name__}"
            )
        return _as_float(value) if kind == "float" else value
    if kind == COMPONENTS:
        return _check_components(f"{type_name}.{field}", value)
    element = _TUPLES.get(kind)
    if element is None:
        raise CodecUsageError(f"unsupported field type {kind} in {type_name}.{field}")
    if type(value) is not tuple or any(type(item) is not element for item in value):
        raise MalformedFrame(f"{type_name}.{field}: expected {kind}")
    return value


def encode_body(msg: object) -> bytes:
    """The msgpack body of ``msg`` (no header).

    Field types are not re-checked here: this is the hot path for messages
    the core built itself. ``encode`` checks them. Anything that is not a
    protocol message is a ``CodecUsageError`` (the parameter is typed
    ``object`` so that the compiled core does not raise ``TypeError`` first).
    """
    code = _CODE_OF.get(type(msg))
    if code is None:
        raise CodecUsageError(f"not a protocol message: {msg!r}")
    values = [code, *_FIELDS[code](msg)]
    try:
        body: bytes = _PACKER.pack(values)
    except (OverflowError, TypeError, ValueError) as exc:
        raise CodecUsageError(f"cannot encode {type(msg).__name__}: {exc}") from None
    return body


def body_size(msg: object) -> int:
    """``len(encode_body(msg))``, counted without encoding (the model needs only
    the size: it charges each message by its bytes). msgpack's rules: an int
    takes 1, 2, 3, 5 or 9 bytes by its range, a float 9, a bool 1; a str or
    bytes a header of 1 to 5 bytes, then its UTF-8 or raw bytes; an array a
    header of 1, 3 or 5 bytes, then its elements."""
    code = _CODE_OF.get(type(msg))
    if code is None:
        raise CodecUsageError(f"not a protocol message: {msg!r}")
    values = _FIELDS[code](msg)
    size = _array_header(len(values) + 1) + 1
    for value in values:
        size += _value_size(value)
    return size


def _value_size(value: object) -> int:
    if isinstance(value, bool):  # before int: a bool is an int
        return 1
    if isinstance(value, int):
        return _int_size(value)
    if isinstance(value, str):
        n = len(value) if value.isascii() else len(value.encode("utf-8"))
        return n + (1 if n < 32 else 2 if n < 0x100 else 3 if n < 0x10000 else 5)
    if isinstance(value, bytes):
        n = len(value)
        return n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)
    if isinstance(value, float):
        return 9
    if isinstance(value, tuple):  # a field's tuple, or a ComponentStatus and its metrics
        size = _array_header(len(value))
        for item in value:
            size += _value_size(item)
        return size
    raise CodecUsageError(f"cannot size a {type(value).__name__}")


def _int_size(value: int) -> int:
    if value >= 0:
        if value < 0x80:
            return 1
        return 2 if value < 0x100 else 3 if value < 0x10000 else 5 if value < 0x100000000 else 9
    if value >= -32:
        return 1
    if value >= -0x80:
        return 2
    return 3 if value >= -0x8000 else 5 if value >= -0x80000000 else 9


def _array_header(n: int) -> int:
    return 1 if n < 16 else 3 if n < 0x10000 else 5


def check_types(msg: object) -> None:
    """Raise ``CodecUsageError`` unless every field has its declared wire type."""
    code = _CODE_OF.get(type(msg))
    if code is None:
        raise CodecUsageError(f"not a protocol message: {msg!r}")
    name = type(msg).__name__
    for field, kind in _KINDS[code]:
        try:
            _check_field(name, field, getattr(msg, field), kind)
        except MalformedFrame as exc:
            raise CodecUsageError(str(exc)) from None


def encode(msg: object, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One complete frame for ``msg``, after checking its field types."""
    check_types(msg)
    body = encode_body(msg)
    length = len(body) + 1
    if length > max_frame:
        raise CodecUsageError(f"frame of {length} bytes exceeds max_frame {max_frame}")
    return HEADER.pack(length) + bytes((VERSION,)) + body


def encode_many(msgs: list[object], max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Frames for several messages, concatenated."""
    return b"".join(encode(msg, max_frame) for msg in msgs)


def decode_body(body: bytes) -> Message:
    """Turn a frame body (after the version byte) into a message."""
    try:
        values = msgpack.unpackb(body, use_list=False, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedFrame(f"undecodable msgpack body: {type(exc).__name__}") from None
    if type(values) is not tuple or not values:
        raise MalformedFrame("body is not a non-empty msgpack array")
    code = values[0]
    cls = BY_TYPE.get(code) if type(code) is int else None
    if cls is None:
        raise MalformedFrame(f"unknown message type {code!r}")
    kinds = _KINDS[code]
    if len(values) != len(kinds) + 1:
        raise MalformedFrame(f"{cls.__name__}: expected {len(kinds)} fields, got {len(values) - 1}")
    name = cls.__name__
    fields = [
        _check_field(name, fname, value, kind)
        for (fname, kind), value in zip(kinds, values[1:], strict=True)
    ]
    return cls(*fields)


class FrameDecoder:
    """Incremental decoder for a byte stream: ``feed`` bytes, get whole messages.

    After a ``MalformedFrame`` the stream is out of sync and the decoder
    refuses further input; the driver should close the connection.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._broken = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded (a partial frame)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Add ``data`` and return every message completed by it."""
        if self._broken:
            raise MalformedFrame("stream already refused")
        self._buffer += data
        messages: list[Message] = []
        buffer = self._buffer
        offset = 0
        end = len(buffer)
        try:
            while end - offset >= 4:
                (length,) = HEADER.unpack_from(buffer, offset)
                if length < 2 or length > self.max_frame:
                    raise MalformedFrame(f"frame length {length} outside 2..{self.max_frame}")
                if end - offset - 4 < length:
                    break
                version = buffer[offset + 4]
                if version != VERSION:
                    raise MalformedFrame(f"unsupported version {version}")
                body = bytes(buffer[offset + 5 : offset + 4 + length])
                messages.append(decode_body(body))
                offset += 4 + length
        except MalformedFrame as exc:
            self._broken = True
            self._buffer.clear()
            exc.decoded = messages
            raise
        del buffer[:offset]
        return messages


def decode_frame(frame: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Message:
    """Decode exactly one complete frame; trailing or missing bytes are malformed."""
    decoder = FrameDecoder(max_frame)
    messages = decoder.feed(frame)
    if len(messages) != 1 or decoder.buffered:
        raise MalformedFrame("expected exactly one complete frame")
    return messages[0]
