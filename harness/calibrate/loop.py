"""Calibration figures about the event loop: the hop (c) and wake-up lateness (e).

(c) **Hop delay.** ``inproc``: the latency of one ``asyncio.Queue`` handoff
    on one event loop (put, then the waiting consumer task resumes), one
    item at a time. ``tcp``: a ping-pong of a framed ``Heartbeat`` over
    127.0.0.1 with asyncio streams between two processes, each round trip
    after an idle gap so that the echo process is asleep, as the real
    coordinator and workers often are at light load; each sample is
    ``(RTT - the echo side's decode+encode time) / 2``. (Both ends on one
    loop, as measured before, gave 8 us median; across processes it is
    10 us, with a p95 of 29 us against 11.)
(e) **Wake-up lateness.** Sleep until a target time, sleeping again while
    early, as the real replay loop does, in three bands of requested wait.

Both run on the loop the real driver uses (uvloop when installed).
(f) **The kernel's time slice**, ``measure_timeslice``: how long a busy
    process stalls while others hold the cores (``sim.engine.Engine._sliced``).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import random
import time
from collections.abc import Coroutine
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from protocol.codec import HEADER, FrameDecoder, encode
from protocol.messages import Heartbeat
from real.clock import new_event_loop
from sim.calibration import WakeBand
from sim.distribution import Distribution

WAKE_SHORTEST = 0.00002
WAKE_BANDS = ((0.0005, 0.0005), (0.001, 0.001), (math.inf, 0.005))  # (band's limit, longest wait)
T = TypeVar("T")
HOP_GAP = (0.0002, 0.002)  # s, idle time before each cross-process round trip (uniform)
ACROSS_SAMPLES = 3000  # cross-process round trips: about 3.5 s with their gaps


# --- (c): the hop --------------------------------------------------------------------------


async def _queue_handoffs(count: int) -> list[float]:
    """One-way ``asyncio.Queue`` handoff latency on one loop, one item at a time."""
    queue: asyncio.Queue[tuple[int, asyncio.Future[None]]] = asyncio.Queue()
    samples: list[float] = []

    async def consume() -> None:
        for _ in range(count):
            sent, reply = await queue.get()
            samples.append((time.perf_counter_ns() - sent) / 1e9)
            reply.set_result(None)

    consumer = asyncio.create_task(consume())
    loop = asyncio.get_running_loop()
    for _ in range(count):
        reply: asyncio.Future[None] = loop.create_future()
        queue.put_nowait((time.perf_counter_ns(), reply))
        await reply
    await consumer
    return samples


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(HEADER.size)
    (length,) = HEADER.unpack(header)
    return header + await reader.readexactly(length)


def _echo_process(conn: Connection) -> None:
    """The echo end of ``_tcp_ping_pong_across``, in a process of its own: sends its port,
    echoes framed messages until the peer closes, then sends its decode+encode times."""
    service: list[int] = []

    async def main() -> None:
        done = asyncio.get_running_loop().create_future()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = FrameDecoder()
            try:
                while True:
                    frame = await _read_frame(reader)
                    start = time.perf_counter_ns()
                    (msg,) = decoder.feed(frame)
                    writer.write(encode(msg))
                    service.append(time.perf_counter_ns() - start)
            except asyncio.IncompleteReadError:
                writer.close()
                done.set_result(None)

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        await done
        server.close()

    loop = new_event_loop(use_uvloop=True)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    conn.send(service)


async def _ping_across(port: int, count: int, seed: int) -> list[int]:
    """Round trips to the echo process, each after an idle gap (``HOP_GAP``)."""
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rtts = []
    for seq in range(count):
        await asyncio.sleep(rng.uniform(*HOP_GAP))
        frame = encode(Heartbeat(seq))
        start = time.perf_counter_ns()
        writer.write(frame)
        await _read_frame(reader)
        rtts.append(time.perf_counter_ns() - start)
    writer.close()
    await writer.wait_closed()
    return rtts


def _tcp_ping_pong_across(count: int, seed: int = 1) -> list[float]:
    """``(RTT - echo service) / 2`` for framed ``Heartbeat`` round trips over 127.0.0.1
    between two processes, each round trip after an idle gap, as between the tcp
    transport's coordinator and worker processes at light load."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    echo = context.Process(target=_echo_process, args=(child,), daemon=True)
    echo.start()
    try:
        port = parent.recv()
        rtts = _run_on_loop(_ping_across(port, count, seed))
        service: list[int] = parent.recv()
    finally:
        echo.join(timeout=10)
        if echo.is_alive():
            echo.kill()
    return [max(rtt - cost, 0) / 2 / 1e9 for rtt, cost in zip(rtts, service, strict=True)]


def _run_on_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end on a new loop of the kind the real driver uses."""
    loop = new_event_loop(use_uvloop=True)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def loop_name() -> str:
    loop = new_event_loop(use_uvloop=True)
    name = type(loop).__module__.split(".")[0]
    loop.close()
    return name


def measure_hop(transport: str, count: int) -> Distribution:
    """The hop-delay distribution for ``transport`` (warm-up samples dropped)."""
    warmup = max(count // 10, 100)
    loop = loop_name()
    if transport == "inproc":
        samples = _run_on_loop(_queue_handoffs(count + warmup))[warmup:]
        method = (
            f"one-way asyncio.Queue handoff on one {loop} event loop: put_nowait() stamped "
            f"with perf_counter_ns(), read when the waiting consumer task resumes; one item "
            f"in flight at a time; {count} samples after {warmup} warm-up"
        )
    elif transport == "tcp":
        count = min(count, ACROSS_SAMPLES)  # each round trip waits out its idle gap
        warmup = max(count // 10, 100)
        samples = _tcp_ping_pong_across(count + warmup)[warmup:]
        low, high = HOP_GAP
        method = (
            f"ping-pong of a framed Heartbeat over 127.0.0.1 with asyncio streams between two "
            f"processes, each on a {loop} event loop, each round trip after {low * 1e3:g} to "
            f"{high * 1e3:g} ms idle (the other process asleep, as between the coordinator and "
            f"a worker at light load); each sample is (RTT - echo side's decode+encode) / 2; "
            f"{count} samples after {warmup} warm-up"
        )
    else:
        raise ValueError(f"unknown transport {transport!r}")
    return Distribution.from_samples(samples, method)


# --- (e): wake-up lateness ---------------------------------------------------------------


async def _wakeups(
    count: int, low: float, high: float, seed: int, min_sleep: float = 0.0
) -> list[float]:
    """Lateness of sleeping until ``low`` to ``high`` s ahead, re-sleeping while early.

    Each sleep lasts at least ``min_sleep``, as the tcp agent workers' replay
    loop sleeps (``real.tcp.workers.LOOP_RESOLUTION``) so as not to spin.
    """
    rng = random.Random(seed)
    clock = time.perf_counter
    samples = []
    for _ in range(count):
        target = clock() + rng.uniform(low, high)
        while (wait := target - clock()) > 0:
            await asyncio.sleep(max(wait, min_sleep))
        samples.append(clock() - target)
    return samples


def measure_wakeup(count: int, seed: int = 1, min_sleep: float = 0.0) -> tuple[WakeBand, ...]:
    """Wake-up lateness of the real driver's event loop, per band of requested wait."""
    loop = loop_name()
    bands = []
    low = WAKE_SHORTEST
    for below, high in WAKE_BANDS:
        method = (
            f"lateness of a timed wake-up on one {loop} event loop: sleep until a target "
            f"{low * 1e3:g} to {high * 1e3:g} ms ahead (uniform), sleeping again while early"
            + (
                f" and for at least {min_sleep * 1e3:g} ms, as real.tcp.workers' replay loop does"
                if min_sleep
                else ", as real.inproc.hub's replay loop does"
            )
            + f"; {count} samples on an idle loop"
        )
        samples = _run_on_loop(_wakeups(count, low, high, seed, min_sleep))
        bands.append(WakeBand(below, Distribution.from_samples(samples, method)))
        low = high
    return tuple(bands)


# --- the kernel's time slice -------------------------------------------------------------

SLICE_SPIN_SECONDS = 2.0
STALL_FLOOR = 50e-6  # s: a gap in a spinning loop longer than this is a stall


def _spin(seconds: float, conn: Connection) -> None:
    """Spin on the clock for ``seconds``; send every gap longer than ``STALL_FLOOR``."""
    clock = time.perf_counter
    gaps = []
    last = clock()
    end = last + seconds
    while last < end:
        now = clock()
        if now - last > STALL_FLOOR:
            gaps.append(now - last)
        last = now
    conn.send(gaps)


def measure_timeslice(cores: int) -> tuple[float, str]:
    """How long a busy process waits for a core when one process more than the machine
    has cores is busy: ``cores + 1`` processes spin on the clock for
    ``SLICE_SPIN_SECONDS``, and each gap in a process's progress is a stall while
    another held its core. The median stall is the kernel's slice (4 ms on the
    development VM: its scheduler switches busy processes at its tick)."""
    context = multiprocessing.get_context("spawn")
    pipes = [context.Pipe() for _ in range(cores + 1)]
    spinners = [
        context.Process(target=_spin, args=(SLICE_SPIN_SECONDS, child), daemon=True)
        for _, child in pipes
    ]
    for process in spinners:
        process.start()
    gaps = sorted(gap for parent, _ in pipes for gap in parent.recv())
    for process in spinners:
        process.join(timeout=10)
    if not gaps:
        return 0.0, f"{cores + 1} processes spinning on {cores} cores never stalled"
    median = gaps[len(gaps) // 2]
    p95 = gaps[int(0.95 * (len(gaps) - 1))]
    stalled = sum(gaps) / ((cores + 1) * SLICE_SPIN_SECONDS)
    method = (
        f"{cores + 1} processes spinning on the clock for {SLICE_SPIN_SECONDS:g} s on {cores} "
        f"core(s); {len(gaps)} stalls longer than {STALL_FLOOR * 1e6:g} us, median "
        f"{median * 1e3:.2f} ms (p95 {p95 * 1e3:.2f} ms), {stalled:.0%} of the time stalled; "
        "the median is the slice"
    )
    return median, method
