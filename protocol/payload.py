"""Deterministic payloads and their end-to-end checksums.

A payload for operation ``op_id`` of ``size`` bytes is the op id's 8 bytes
repeated and cut to size, so any node can rebuild or check it without shared
state. The checksum is CRC-32, computed by the sender and verified by the
final receiver, so corruption anywhere on the path shows up as a record with
``intact=False``.

A task's payload may start with the work its handler is to do: ``WORK_MAGIC``
then the microseconds as 4 unsigned big-endian bytes (``WORK_BYTES`` in all).
The built-in handler works (waits, as an agent waits on a model or a tool) that
long before it answers. The rest is the filler above. A payload that does not
start with the magic asks for no work.
"""

from __future__ import annotations

import zlib

WORK_MAGIC = b"\xffwk:"
WORK_BYTES = len(WORK_MAGIC) + 4
MAX_WORK = ((1 << 32) - 1) / 1_000_000  # seconds: the largest work a task payload names


def make_payload(op_id: int, size: int) -> bytes:
    """``size`` bytes derived from ``op_id``."""
    unit = op_id.to_bytes(8, "little", signed=False)
    repeats = size // 8 + 1
    return (unit * repeats)[:size]


def checksum(payload: bytes) -> int:
    """CRC-32 of ``payload``."""
    return zlib.crc32(payload)


def task_payload(op_id: int, size: int, work: float) -> bytes:
    """A task's ``size`` bytes: its ``work`` (seconds, rounded to the microsecond)
    first, then the filler of ``make_payload``. Without work, or below ``WORK_BYTES``
    bytes, the payload is the filler alone."""
    if size < WORK_BYTES or work <= 0:
        return make_payload(op_id, size)
    micros = round(min(max(work, 0.0), MAX_WORK) * 1_000_000)
    head = WORK_MAGIC + micros.to_bytes(WORK_BYTES - len(WORK_MAGIC), "big")
    return head + make_payload(op_id, size - WORK_BYTES)


def task_work(payload: bytes) -> float:
    """The seconds of work a task payload asks for (0 if it does not say)."""
    if len(payload) < WORK_BYTES or not payload.startswith(WORK_MAGIC):
        return 0.0
    return int.from_bytes(payload[len(WORK_MAGIC) : WORK_BYTES], "big") / 1_000_000
