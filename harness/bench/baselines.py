"""Raw baselines that ``make bench`` divides swarmtwin's figures by.

Each one is measured in the same process and run as the figure it
normalises, so the ratio cancels most of the machine's speed and noise:

- ``queue_baseline``: a bare ``asyncio.Queue`` producer and consumer.
- ``stream_baseline``: framed msgpack messages one way over a loopback TCP
  connection in one process: a u32 length prefix and a bare msgpack array
  of the same shape as a ``Deliver``, packed and unpacked with msgpack
  directly (no message classes, no validation), so it is the floor that
  the real codec and transport are compared against.
- ``simpy_baseline``: a trivial SimPy model, one timeout, one ``Store.put``
  and one ``get`` per message.

Every loop is bounded by a message count.
"""

from __future__ import annotations

import asyncio
import time

import msgpack
import simpy

from protocol.codec import HEADER
from real.clock import new_event_loop


def queue_baseline(messages: int = 300_000) -> float:
    """Messages per second through one bare ``asyncio.Queue``."""

    async def main() -> float:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1024)

        async def produce() -> None:
            for i in range(messages):
                await queue.put(i)

        async def consume() -> None:
            for _ in range(messages):
                await queue.get()

        start = time.perf_counter()
        await asyncio.gather(produce(), consume())
        return messages / (time.perf_counter() - start)

    return _run(main())


def stream_baseline(messages: int = 200_000, size: int = 64, batch: int = 256) -> float:
    """Framed msgpack messages per second, one way, over loopback TCP."""

    async def main() -> float:
        done = asyncio.Event()
        received = 0

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            buffer = bytearray()
            while received < messages:
                data = await reader.read(1 << 16)
                if not data:
                    break
                buffer += data
                received += _unframe(buffer)
            done.set()
            writer.close()

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.perf_counter()
        for first in range(0, messages, batch):
            count = min(batch, messages - first)
            frames = [
                _frame([17, first + i, 1, "agent-00001", first + i, "t", b"x" * size, 0])
                for i in range(count)
            ]
            writer.write(b"".join(frames))
            await writer.drain()
        await asyncio.wait_for(done.wait(), timeout=60)
        elapsed = time.perf_counter() - start
        writer.close()
        server.close()
        await server.wait_closed()
        return messages / elapsed

    return _run(main())


def _frame(values: list[object]) -> bytes:
    body = msgpack.packb(values, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def _unframe(buffer: bytearray) -> int:
    """Unpack every whole frame at the front of ``buffer``; return how many."""
    offset = 0
    count = 0
    while len(buffer) - offset >= 4:
        (length,) = HEADER.unpack_from(buffer, offset)
        if len(buffer) - offset - 4 < length:
            break
        msgpack.unpackb(bytes(buffer[offset + 4 : offset + 4 + length]))
        offset += 4 + length
        count += 1
    del buffer[:offset]
    return count


def simpy_baseline(messages: int = 200_000) -> float:
    """Messages per wall-clock second through a trivial SimPy model."""
    env = simpy.Environment()
    store: simpy.Store = simpy.Store(env)

    def producer(env: simpy.Environment) -> object:
        for i in range(messages):
            yield env.timeout(0.001)
            yield store.put(i)

    def consumer(env: simpy.Environment) -> object:
        for _ in range(messages):
            yield store.get()

    env.process(producer(env))
    env.process(consumer(env))
    start = time.perf_counter()
    env.run()
    return messages / (time.perf_counter() - start)


def _run(coro: object) -> float:
    loop = new_event_loop()
    try:
        return float(loop.run_until_complete(coro))  # type: ignore[arg-type]
    finally:
        loop.close()
