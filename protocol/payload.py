"""Deterministic payloads and their end-to-end checksums.

A payload for operation ``op_id`` of ``size`` bytes is the op id's 8 bytes
repeated and cut to size, so any node can rebuild or check it without shared
state. The checksum is CRC-32, computed by the sender and verified by the
final receiver, so corruption anywhere on the path shows up as a record with
``intact=False``.
"""

from __future__ import annotations

import zlib


def make_payload(op_id: int, size: int) -> bytes:
    """``size`` bytes derived from ``op_id``."""
    unit = op_id.to_bytes(8, "little", signed=False)
    repeats = size // 8 + 1
    return (unit * repeats)[:size]


def checksum(payload: bytes) -> int:
    """CRC-32 of ``payload``."""
    return zlib.crc32(payload)
