"""The tcp transport's wire envelope: routed and fan-out frames, pure bytes.

A worker connection multiplexes many agents, so every frame on it names the
agent it concerns. The envelope wraps a ``protocol.codec`` body::

    +----------------+---------+-------------+------------------+---------------+
    | length: u32 BE | 0x81    | id_len: u8  | node id (UTF-8)  | body: msgpack |
    +----------------+---------+-------------+------------------+---------------+

``length`` counts every byte after itself (version, id_len, node id, body)
and must lie in ``4 .. max_frame`` (1 MiB by default). The version byte
``0x81`` is ``0x80 | protocol.codec.VERSION``: the high bit marks a routed
frame, so a bare codec frame (version 1) sent to a tcp port is refused.
``id_len`` is 1..255 and the node id must be valid UTF-8. ``body`` is exactly
``protocol.codec.encode_body(msg)`` (``[type_code, field...]``) and is decoded
with ``protocol.codec.decode_body``, so the core's checks on every field apply.

The node id is the node at the *client* end of the link: the sender in
frames a client sends, the recipient in frames the server sends. The server
end's node id is implicit (the connection is to one coordinator), which keeps
the envelope the same when a coordinator later connects upward as a client.

A *fan-out frame* carries one body for several nodes on the same
connection, so a delivery to many agents of one worker is encoded, written
and decoded once::

    +----------------+------+----------+---------------------------+------+
    | length: u32 BE | 0x82 | count: u8| count x (id_len: u8, id)  | body |
    +----------------+------+----------+---------------------------+------+

``count`` is 2..255; each id follows the routed frame's rules. It decodes
to one ``(node_id, message)`` pair per id, all with the same message
object, in the order the ids are listed: exactly what ``count`` routed
frames with the same body would give. The server sends one for a run of
consecutive identical messages to several nodes of one connection (a fanned
out ``Deliver``); either end accepts them.

``RoutedDecoder.feed`` is incremental and never trusts a length before
checking it. Any bad frame raises ``MalformedEnvelope`` (a
``protocol.codec.MalformedFrame``) carrying the pairs decoded before it; the
stream is then out of sync and the link must be closed.

``FrameHeads`` builds frames for a sender: each frame as three pieces
(length, head, body), the head cached per node, so that a body shared by
many frames is never copied per frame. ``Outbox`` turns a core's output
into those frames, one buffer per link, so a driver's send path is one call
per loop turn and one write per link. ``real.tcp.framing`` moves the bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from mypy_extensions import mypyc_attr

from protocol.codec import (
    DEFAULT_MAX_FRAME,
    CodecUsageError,
    MalformedFrame,
    decode_body,
    encode_body,
)
from protocol.messages import Deliver, Message

ROUTED_VERSION = 0x81
FANOUT_VERSION = 0x82
MAX_FANOUT = 255
MAX_NODE_ID = 255
PREFIX = struct.Struct(">IBB")  # length, version, id_len
LENGTH = struct.Struct(">I")
_ID_CACHE_LIMIT = 4096

Routed = tuple[str, Message]


@mypyc_attr(allow_interpreted_subclasses=True)
class MalformedEnvelope(MalformedFrame):
    """A peer sent bytes that are not a valid routed frame.

    ``routed`` holds the ``(node_id, message)`` pairs that preceded the bad
    frame in the same ``feed`` call; ``node`` is the node id the bad frame
    named when its head was valid and only its body was not ("" otherwise),
    so the driver can answer that node with ``Error`` before it closes.
    """

    def __init__(self, reason: str, node: str = "") -> None:
        super().__init__(reason)
        self.routed: list[Routed] = []
        self.node = node


def node_id_bytes(node_id: str) -> bytes:
    """The envelope's encoding of ``node_id``; raises ``CodecUsageError`` if unfit."""
    raw = node_id.encode("utf-8")
    if not 1 <= len(raw) <= MAX_NODE_ID:
        raise CodecUsageError(f"node id must be 1..{MAX_NODE_ID} UTF-8 bytes: {node_id!r}")
    return raw


def encode_routed(node_id: bytes, body: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One routed frame: ``node_id`` (from ``node_id_bytes``) plus a codec body."""
    length = 2 + len(node_id) + len(body)
    if length > max_frame:
        raise CodecUsageError(f"frame of {length} bytes exceeds max_frame {max_frame}")
    return PREFIX.pack(length, ROUTED_VERSION, len(node_id)) + node_id + body


class RoutedDecoder:
    """Incremental decoder: ``feed`` bytes, get whole ``(node_id, message)`` pairs."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._broken = False
        self._ids: dict[bytes, str] = {}

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame waiting for more input."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Routed]:
        """Add ``data`` and return every pair it completes."""
        if self._broken:
            raise MalformedEnvelope("stream already refused")
        buffer = self._buffer
        buffer += data
        routed: list[Routed] = []
        try:
            offset = self._decode_frames(buffer, routed)
        except MalformedFrame as exc:
            self._broken = True
            buffer.clear()
            error = MalformedEnvelope(
                str(exc), exc.node if isinstance(exc, MalformedEnvelope) else ""
            )
            error.routed = routed
            error.decoded = [msg for _, msg in routed]
            raise error from None
        del buffer[:offset]
        return routed

    def _decode_frames(self, buffer: bytearray, routed: list[Routed]) -> int:
        """Append each complete frame in ``buffer`` to ``routed``; return bytes used."""
        offset = 0
        end = len(buffer)
        max_frame = self.max_frame
        unpack = LENGTH.unpack_from
        while end - offset >= 4:
            (length,) = unpack(buffer, offset)
            if length < 4 or length > max_frame:
                raise MalformedEnvelope(f"frame length {length} outside 4..{max_frame}")
            if end - offset - 4 < length:
                break
            version = buffer[offset + 4]
            if version == FANOUT_VERSION:
                offset = self._decode_fanout(buffer, offset, offset + 4 + length, routed)
                continue
            if version != ROUTED_VERSION:
                raise MalformedEnvelope(f"unsupported version {version}")
            id_len = buffer[offset + 5]
            body_at = offset + 6 + id_len
            frame_end = offset + 4 + length
            if id_len == 0 or body_at >= frame_end:
                raise MalformedEnvelope(f"node id length {id_len} does not fit the frame")
            node = self._node_id(bytes(buffer[offset + 6 : body_at]))
            try:
                msg = decode_body(bytes(buffer[body_at:frame_end]))
            except MalformedEnvelope:
                raise
            except MalformedFrame as exc:
                raise MalformedEnvelope(str(exc), node) from None
            routed.append((node, msg))
            offset = frame_end
        return offset

    def _decode_fanout(
        self, buffer: bytearray, offset: int, frame_end: int, routed: list[Routed]
    ) -> int:
        """Append the pairs of the fan-out frame at ``offset``; return its end."""
        count = buffer[offset + 5]
        if count < 2:
            raise MalformedEnvelope(f"fan-out frame with {count} node ids")
        at = offset + 6
        nodes = []
        for _ in range(count):
            if at >= frame_end:
                raise MalformedEnvelope("fan-out node ids do not fit the frame")
            id_len = buffer[at]
            end = at + 1 + id_len
            if id_len == 0 or end >= frame_end:
                raise MalformedEnvelope(f"node id length {id_len} does not fit the frame")
            nodes.append(self._node_id(bytes(buffer[at + 1 : end])))
            at = end
        msg = decode_body(bytes(buffer[at:frame_end]))
        routed.extend((node, msg) for node in nodes)
        return frame_end

    def _node_id(self, raw: bytes) -> str:
        node = self._ids.get(raw)
        if node is None:
            try:
                node = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedEnvelope("node id is not UTF-8") from None
            if len(self._ids) < _ID_CACHE_LIMIT:
                self._ids[raw] = node
        return node


class FrameHeads:
    """Frames for one sender, as ``(length, head, body)`` pieces to join on write.

    The head (version, id length, id) of a routed frame is cached per node,
    up to ``_ID_CACHE_LIMIT`` nodes. Raises ``CodecUsageError`` for a frame
    over ``max_frame`` or a node id the envelope cannot carry.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._heads: dict[str, bytes] = {}

    def _head(self, node_id: str) -> bytes:
        head = self._heads.get(node_id)
        if head is None:
            raw = node_id_bytes(node_id)
            head = bytes((ROUTED_VERSION, len(raw))) + raw
            if len(self._heads) < _ID_CACHE_LIMIT:
                self._heads[node_id] = head
        return head

    def routed(self, node_id: str, body: bytes) -> tuple[bytes, bytes, bytes]:
        """One routed frame of ``body`` about ``node_id``."""
        head = self._heads.get(node_id) or self._head(node_id)
        length = len(head) + len(body)
        if length > self.max_frame:
            raise CodecUsageError(f"frame of {length} bytes exceeds max_frame {self.max_frame}")
        return LENGTH.pack(length), head, body

    def fanout(self, node_ids: list[str], body: bytes) -> tuple[bytes, bytes, bytes]:
        """One fan-out frame of ``body`` for ``node_ids`` (2..255 of them)."""
        count = len(node_ids)
        if not 2 <= count <= MAX_FANOUT:
            raise CodecUsageError(f"a fan-out frame names 2..{MAX_FANOUT} nodes, not {count}")
        heads = self._heads
        ids = b"".join([(heads.get(node) or self._head(node))[1:] for node in node_ids])
        head = bytes((FANOUT_VERSION, count)) + ids  # each routed head less its version byte
        length = len(head) + len(body)
        if length > self.max_frame:
            raise CodecUsageError(f"frame of {length} bytes exceeds max_frame {self.max_frame}")
        return LENGTH.pack(length), head, body


class Outbox:
    """Routed frames waiting to be written, one buffer per link.

    A driver keys links by any hashable object. ``stage`` takes a core's
    output, ``(destination, message)`` pairs, and a map from node id to the
    link that carries it: each message is encoded once, and a run of pairs
    carrying the same ``Deliver`` (the core routes an op to all its
    recipients together) becomes one fan-out frame per link that carries two
    or more of its recipients, so every node still sees its messages in
    order. ``stage_from`` takes one node's output, all about that node on one
    link. ``take`` hands a link's frames over as one ``bytes`` to write.

    A destination with no link is skipped: the message is lost with the link,
    and the protocol resends what it must. A message the codec refuses, or a
    frame over ``max_frame``, is dropped and described in ``errors`` for the
    driver to log.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.heads = FrameHeads(max_frame)
        self.errors: list[str] = []
        self._parts: dict[object, list[bytes]] = {}
        self._frames: dict[object, int] = {}

    def links(self) -> list[object]:
        """The links with frames waiting, in the order they were first staged."""
        return list(self._parts)

    def take(self, link: object) -> tuple[bytes, int]:
        """``link``'s waiting frames as one ``bytes``, and how many frames they are."""
        parts = self._parts.pop(link, None)
        frames = self._frames.pop(link, 0)
        return (b"".join(parts) if parts else b""), frames

    def discard(self, link: object) -> None:
        """Forget ``link``'s waiting frames (it closed)."""
        self._parts.pop(link, None)
        self._frames.pop(link, None)

    def _append(self, link: object, pieces: tuple[bytes, bytes, bytes]) -> None:
        parts = self._parts.get(link)
        if parts is None:
            self._parts[link] = list(pieces)
            self._frames[link] = 1
        else:
            parts.extend(pieces)
            self._frames[link] += 1

    def stage(self, out: list[tuple[str, Message]], routes: dict[str, Any]) -> int:
        """Frame ``out`` onto the links ``routes`` names: body bytes staged."""
        size = 0
        i, n = 0, len(out)
        while i < n:
            dst, msg = out[i]
            j = i + 1
            if type(msg) is Deliver:
                while j < n and out[j][1] is msg:
                    j += 1
            try:
                body = encode_body(msg)
            except CodecUsageError as exc:
                self.errors.append(f"dropped a {type(msg).__name__} to {dst!r}: {exc}")
                i = j
                continue
            if j == i + 1:
                link = routes.get(dst)
                if link is not None:
                    size += self._routed(link, [dst], body)
            else:
                by_link: dict[object, list[str]] = {}
                for k in range(i, j):
                    node = out[k][0]
                    link = routes.get(node)
                    if link is not None:
                        nodes = by_link.get(link)
                        if nodes is None:
                            by_link[link] = [node]
                        else:
                            nodes.append(node)
                for link, nodes in by_link.items():
                    size += self._routed(link, nodes, body)
            i = j
        return size

    def stage_from(self, link: object, node: str, out: list[tuple[str, Message]]) -> int:
        """Frame one node's output onto ``link``, each frame about ``node``."""
        size = 0
        for _, msg in out:
            try:
                body = encode_body(msg)
                self._append(link, self.heads.routed(node, body))
            except CodecUsageError as exc:
                self.errors.append(f"{node}: dropped a {type(msg).__name__}: {exc}")
                continue
            size += len(body)
        return size

    def _routed(self, link: object, nodes: list[str], body: bytes) -> int:
        """``body`` for ``nodes`` on ``link``, in fan-out frames of at most
        ``MAX_FANOUT`` nodes: body bytes staged (0 if the frame is refused)."""
        heads = self.heads
        try:
            if len(nodes) == 1:
                self._append(link, heads.routed(nodes[0], body))
            else:
                for start in range(0, len(nodes), MAX_FANOUT):
                    chunk = nodes[start : start + MAX_FANOUT]
                    if len(chunk) == 1:
                        self._append(link, heads.routed(chunk[0], body))
                    else:
                        self._append(link, heads.fanout(chunk, body))
        except CodecUsageError as exc:
            self.errors.append(f"dropped a frame to {nodes[0]!r} and {len(nodes) - 1} more: {exc}")
            return 0
        return len(body)
