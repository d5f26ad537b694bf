"""Security checks: a publish flood cannot grow the coordinator's memory without bound.

How it works. A registered *sink* subscribes to ``flood.#`` and then never
reads its socket and never acks, but keeps heartbeating, so the coordinator
keeps it alive and owes it every delivery. A registered *flooder* then
publishes as fast as it can, for at most ``FLOOD_SECONDS`` and
``MAX_PUBLISHES``, in batches of ``BATCH`` frames, waiting only for its own
socket buffer to drain. While it runs, the coordinator child's RSS is
sampled every ``SAMPLE_INTERVAL`` with psutil. Two floods:

1. ``flood_memory_bounded``: publishes alternate between the sink's topic
   (the sink's credit window and backlog fill up, then every such publish
   must be answered ``Busy``) and a topic nobody subscribes to (each is
   accepted for zero recipients, which exercises the coordinator's
   de-duplication memory). The flooder reads its replies only to count them,
   by type code, so the coordinator is kept busy for the whole flood.
2. ``flood_unread_replies_bounded``: publishes to the sink's topic from a
   socket with a ``SMALL_RECEIVE_BUFFER`` and never reads a reply during the
   flood; the coordinator must stop reading a client that does not read
   (TCP backpressure) instead of buffering its replies. The replies are read
   and counted after the flood.

The growth criterion (``judge_growth``): the halves are of the flood as it ran
(``MAX_PUBLISHES`` ends it before ``FLOOD_SECONDS`` on a fast enough machine:
halves of ``FLOOD_SECONDS`` then left a second half with no sample and failed a
CI run); with ``baseline`` the RSS just
before the flood, ``first`` the highest RSS in the first half of the flood
and ``peak`` the highest over the whole flood, the total growth
``peak - baseline`` must stay under ``GROWTH_CAP`` and the late growth
``peak - first`` under ``max(LATE_SHARE * total, floor)``. Memory that grows
with every message grows about as much in the second half as in the first;
memory that is bounded levels off. The floor absorbs allocator steps:
``LATE_FLOOR`` for flood 1, ``UNREAD_LATE_FLOOR`` for flood 2, because the
coordinator holds up to ``real.tcp.framing.HIGH_WATER`` of unsent replies (plus
those of the turn it notices) for a client that does not read before it
stops reading it, and that one-off can land in either half. For flood 1 the
coordinator must also have answered at least ``MIN_LATE_ANSWERS`` publishes
in the second half, so a flat second half cannot come from a stalled flood,
and at least one ``Busy``. After each flood the bystander must be served.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from harness.certify.security.base import SecurityCheck, Target
from protocol.messages import WIRE_CODES, Accepted, Busy, Heartbeat, Hello, Publish, Welcome
from real.tcp.client import RawConnection, routed_frame
from real.tcp.framing import HIGH_WATER

MIB = 1 << 20
FLOOD_SECONDS = 2.5
MAX_PUBLISHES = 400_000
BATCH = 256
PAYLOAD = b"f" * 64
SAMPLE_INTERVAL = 0.05
GROWTH_CAP = 96 * MIB
LATE_SHARE = 0.1
# The floor for allocator steps. 1.5 MiB once failed a CI run with 1.71 MiB late growth,
# 13.8 bytes per late publish (pymalloc arenas and glibc heap growth come in steps of
# about 1 MiB). The leak this check found was about 170 bytes per publish: some 20 MiB
# in the second half, more than six times this floor.
LATE_FLOOR = 3.0 * MIB
UNREAD_LATE_FLOOR = LATE_FLOOR + 2 * HIGH_WATER
MIN_LATE_ANSWERS = 20_000
REPLY_READ_SECONDS = 1.0
REPLY_QUIET = 0.3
SMALL_RECEIVE_BUFFER = 4096
SINK_TOPIC = "flood.sink"
EMPTY_TOPIC = "nobody.listens"
HEADER = struct.Struct(">IBB")


@dataclass(frozen=True, slots=True)
class RssSample:
    """The coordinator's RSS ``at`` seconds into the flood; replies counted and
    publishes written by then."""

    at: float
    rss: int
    answered: int
    sent: int = 0


@dataclass(frozen=True, slots=True)
class GrowthVerdict:
    passed: bool
    total: int
    late: int
    text: str


def judge_growth(
    baseline: int, samples: Sequence[RssSample], duration: float, floor: float = LATE_FLOOR
) -> GrowthVerdict:
    """Whether RSS levelled off over a flood of ``duration`` seconds (see the module doc)."""
    if not samples:
        return GrowthVerdict(False, 0, 0, "no RSS samples")
    half = duration / 2
    first = max((s.rss for s in samples if s.at <= half), default=baseline)
    peak = max(max(s.rss for s in samples), first)
    total = max(0, peak - baseline)
    late = max(0, peak - max(first, baseline))
    allowed = max(LATE_SHARE * total, floor)
    passed = total <= GROWTH_CAP and late <= allowed
    text = (
        f"coordinator RSS {baseline / MIB:.1f} MiB before, {first / MIB:.1f} MiB at most in "
        f"the first half, {peak / MIB:.1f} MiB at most overall ({len(samples)} samples): "
        f"growth {total / MIB:.2f} MiB (cap {GROWTH_CAP / MIB:.0f}), of which "
        f"{late / MIB:.2f} MiB in the second half (allowed {allowed / MIB:.2f})"
    )
    return GrowthVerdict(passed, total, late, text)


class ReplyCounter:
    """Counts ``Accepted`` and ``Busy`` frames by type code, without decoding bodies."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.accepted = 0
        self.busy = 0
        self.other = 0

    @property
    def answered(self) -> int:
        return self.accepted + self.busy

    def feed(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        offset = 0
        end = len(buffer)
        while end - offset >= 6:
            length, _, id_len = HEADER.unpack_from(buffer, offset)
            if end - offset - 4 < length:
                break
            code = buffer[offset + 7 + id_len] if 3 + id_len < length else -1
            if code == WIRE_CODES[Accepted]:
                self.accepted += 1
            elif code == WIRE_CODES[Busy]:
                self.busy += 1
            else:
                self.other += 1
            offset += 4 + length
        del buffer[:offset]

    async def read(self, conn: RawConnection, seconds: float, quiet: float) -> None:
        """Count what arrives for up to ``seconds``, stopping after ``quiet`` s of silence."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(conn.reader.read(1 << 18), min(left, quiet))
            except TimeoutError:
                return
            except (ConnectionError, OSError):
                return
            if not chunk:
                return
            self.feed(chunk)


async def register(
    port: int, node: str, token: str, subscriptions: tuple[str, ...] = ()
) -> RawConnection:
    """A raw connection on which ``node`` has been welcomed (frames seen so far dropped)."""
    conn = await RawConnection.open(port)
    conn.send_msg(node, Hello(node, token, (), subscriptions))
    seen = await conn.read_until(lambda frames: any(isinstance(m, Welcome) for _, m in frames), 5.0)
    if not seen.matched:
        conn.close()
        raise RuntimeError(f"{node} was not welcomed: {[m for _, m in seen.frames]!r}")
    conn.frames.clear()
    return conn


class Sink:
    """A subscriber that heartbeats but never reads and never acks."""

    def __init__(self, conn: RawConnection, node: str, interval: float) -> None:
        self.conn = conn
        self.node = node
        self.task = asyncio.get_running_loop().create_task(self._beat(interval))

    async def _beat(self, interval: float) -> None:
        seq = 0
        while True:
            seq += 1
            self.conn.send_msg(self.node, Heartbeat(seq))
            await asyncio.sleep(interval)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.conn.abort()


@dataclass(frozen=True, slots=True)
class FloodOutcome:
    written: int
    unsent_bytes: int
    frame_bytes: int
    seconds: float
    baseline: int
    samples: tuple[RssSample, ...]
    counter: ReplyCounter

    @property
    def writes_stopped_at(self) -> float | None:
        """When the flooder's writes last advanced, if that was well before the end."""
        last = next((s.at for s in self.samples if s.sent >= self.written), None)
        return last if last is not None and last < self.seconds - 0.25 else None

    def answered_between(self, start: float, end: float) -> int:
        before = [s.answered for s in self.samples if s.at <= start]
        upto = [s.answered for s in self.samples if s.at <= end]
        return (upto[-1] if upto else 0) - (before[-1] if before else 0)


def _batch(node: str, first_op: int, topics: tuple[str, ...]) -> bytes:
    crc = zlib.crc32(PAYLOAD)
    return b"".join(
        routed_frame(node, Publish(op, topics[op % len(topics)], PAYLOAD, crc))
        for op in range(first_op, first_op + BATCH)
    )


async def flood(
    target: Target, node: str, topics: tuple[str, ...], read_during: bool
) -> FloodOutcome:
    """Publish as fast as possible for ``FLOOD_SECONDS``, sampling the coordinator's RSS.

    A flooder that does not read during the flood gets a ``SMALL_RECEIVE_BUFFER``
    so that its unread replies back up into the coordinator within the flood.
    """
    pid = target.server.pid
    assert pid is not None
    process = psutil.Process(pid)
    conn = await register(target.port, node, target.settings.token, ())
    sock = conn.writer.get_extra_info("socket")
    if not read_during and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)
    counter = ReplyCounter()
    reader = None
    if read_during:
        reader = asyncio.get_running_loop().create_task(
            counter.read(conn, FLOOD_SECONDS + 1.0, FLOOD_SECONDS + 1.0)
        )
    samples: list[RssSample] = []
    baseline = process.memory_info().rss
    started = time.monotonic()
    deadline = started + FLOOD_SECONDS

    async def sample() -> None:
        while True:
            at = time.monotonic() - started
            rss = process.memory_info().rss
            samples.append(RssSample(at, rss, counter.answered, written))
            await asyncio.sleep(SAMPLE_INTERVAL)

    written = 0
    sampler = asyncio.get_running_loop().create_task(sample())
    try:
        while written < MAX_PUBLISHES and (left := deadline - time.monotonic()) > 0:
            if not conn.send(_batch(node, written + 1, topics)):
                break
            written += BATCH
            await conn.drain(left)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    seconds = time.monotonic() - started
    transport = conn.writer.transport
    unsent = transport.get_write_buffer_size() if transport is not None else 0
    if reader is not None:  # stop reading all through; read what is left until quiet
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    await counter.read(conn, REPLY_READ_SECONDS, REPLY_QUIET)
    conn.abort()
    frame_bytes = len(routed_frame(node, Publish(1, topics[0], PAYLOAD, 0)))
    return FloodOutcome(written, unsent, frame_bytes, seconds, baseline, tuple(samples), counter)


def _flood_text(outcome: FloodOutcome) -> str:
    counter = outcome.counter
    unsent_frames = outcome.unsent_bytes // max(1, outcome.frame_bytes)
    return (
        f"{outcome.written:,} publishes handed to the socket in {outcome.seconds:.2f} s "
        f"({unsent_frames:,} of them still in the client's buffer at the end); "
        f"{counter.accepted:,} Accepted and {counter.busy:,} Busy came back"
    )


async def flood_checks(target: Target) -> list[SecurityCheck]:
    sink_conn = await register(target.port, "flood-sink", target.settings.token, ("flood.#",))
    sink = Sink(sink_conn, "flood-sink", target.settings.heartbeat_interval)
    try:
        return [await _memory_flood(target), await _unread_flood(target)]
    finally:
        await sink.close()


async def _memory_flood(target: Target) -> SecurityCheck:
    outcome = await flood(target, "flooder-1", (SINK_TOPIC, EMPTY_TOPIC), read_during=True)
    duration = outcome.seconds  # MAX_PUBLISHES can end it before FLOOD_SECONDS
    verdict = judge_growth(outcome.baseline, outcome.samples, duration)
    half = duration / 2
    early = outcome.answered_between(-1.0, half)
    late = outcome.answered_between(half, duration + 1.0)
    per_publish = verdict.late / late if late else float("inf")
    pushed = late >= MIN_LATE_ANSWERS and outcome.counter.busy > 0
    served, seen = await target.still_serves()
    detail = (
        f"{_flood_text(outcome)} ({early:,} answered in the first half, {late:,} in the "
        f"second: {per_publish:.1f} bytes of late growth per late publish); "
        f"{verdict.text}; after: {seen}"
    )
    return SecurityCheck(
        "flood_memory_bounded",
        verdict.passed and pushed and served,
        detail,
        "A registered client published as fast as it could, alternating between the topic "
        "of a subscriber that never reads or acks and a topic with no subscriber, reading "
        "its replies only to count them, while psutil sampled the coordinator's RSS every "
        f"{SAMPLE_INTERVAL * 1000:.0f} ms; pass when RSS growth in the second half is at "
        f"most max({LATE_SHARE:.0%} of the total, {LATE_FLOOR / MIB:.1f} MiB), the total "
        f"is under {GROWTH_CAP / MIB:.0f} MiB, at least {MIN_LATE_ANSWERS:,} publishes "
        "were answered in the second half, some with Busy, and the bystander is served "
        "afterwards.",
    )


async def _unread_flood(target: Target) -> SecurityCheck:
    outcome = await flood(target, "flooder-2", (SINK_TOPIC,), read_during=False)
    verdict = judge_growth(outcome.baseline, outcome.samples, outcome.seconds, UNREAD_LATE_FLOOR)
    pushed = outcome.counter.busy > 0
    served, seen = await target.still_serves()
    stopped = outcome.writes_stopped_at
    if stopped is None:
        stall = "the flooder's writes kept advancing to the end"
    else:
        stall = (
            f"the flooder's writes stopped advancing at {stopped:.2f} s: the coordinator "
            "stopped reading a client that did not read its replies"
        )
    detail = (
        f"{_flood_text(outcome)} in the {REPLY_READ_SECONDS:.0f} s of reading after the "
        f"flood (a lower bound: the client's {SMALL_RECEIVE_BUFFER} B receive buffer slows "
        f"them); {stall}; {verdict.text}; after: {seen}"
    )
    return SecurityCheck(
        "flood_unread_replies_bounded",
        verdict.passed and pushed and served,
        detail,
        "A registered client with a 4 KiB receive buffer published to the topic of a "
        "subscriber that never reads or acks, as fast as its socket allowed, without "
        "reading any reply until the flood was over, while psutil sampled the "
        "coordinator's RSS; same growth criterion except that the second half may add "
        f"{UNREAD_LATE_FLOOR / MIB:.1f} MiB (the coordinator buffers up to "
        f"{HIGH_WATER / MIB:.0f} MiB of unsent replies to a connection, plus what it "
        "encoded in the turn it noticed, before it stops reading that connection), at "
        "least one Busy must have come back and the bystander must be served afterwards.",
    )
