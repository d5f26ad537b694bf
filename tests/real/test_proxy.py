"""The fault-injecting proxy (``real.netfault.proxy``): whole frames, seeded loss,
partitions, delay.

Each test runs an echo server and a ``FaultProxy`` in front of it on one event
loop in this process, and talks routed frames (``real.tcp.framing``) through the
proxy; replies are decoded with ``RoutedDecoder``, which refuses any corrupt
or partial frame. The last tests run ``proxy_process_main`` in a spawned
child process. Timing checks are lower bounds only.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from protocol.codec import encode_body
from protocol.envelope import RoutedDecoder, encode_routed, node_id_bytes
from protocol.messages import Publish
from real.clock import new_event_loop
from real.netfault.proxy import FaultProxy
from real.tcp.children import ChildProcesses
from real.tcp.framing import PipeChannel

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
NODE = node_id_bytes("agent-1")
TEST_TIMEOUT = 20.0


def run(coro_fn: Callable[[], Awaitable[T]], use_uvloop: bool = True) -> T:
    loop = new_event_loop(use_uvloop)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(), TEST_TIMEOUT))
    finally:
        loop.close()


def frame(op_id: int, size: int = 16) -> bytes:
    payload = random.Random(op_id).randbytes(size)
    msg = Publish(op_id, "t", payload, zlib.crc32(payload))
    return encode_routed(NODE, encode_body(msg))


class Echo:
    """A loopback server that writes back every byte it reads."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task[object]] = []
        self.got: list[bytearray] = []
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        task = asyncio.current_task()
        if task is not None:
            self.handlers.append(task)
        got = bytearray()
        self.got.append(got)
        try:
            while data := await reader.read(1 << 16):
                got += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=5.0)


class Client:
    """A connection through the proxy that sends frames and decodes the echoes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = RoutedDecoder()
        self.received: list[Publish] = []

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_some(self, timeout: float) -> int:
        """Read and decode for up to ``timeout`` seconds or until EOF; frames received."""
        before = len(self.received)
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 18), timeout)
        except TimeoutError:
            return 0
        if not data:
            raise EOFError
        for node, msg in self.decoder.feed(data):
            assert node == "agent-1"
            assert isinstance(msg, Publish)
            assert zlib.crc32(msg.payload) == msg.checksum
            self.received.append(msg)
        return len(self.received) - before

    async def until(self, op_id: int, timeout: float = 5.0) -> None:
        """Read until the frame with ``op_id`` has arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not any(msg.op_id == op_id for msg in self.received):
            left = deadline - loop.time()
            assert left > 0, f"frame {op_id} never arrived"
            await self.read_some(left)

    @property
    def ids(self) -> list[int]:
        return [msg.op_id for msg in self.received]

    def close(self) -> None:
        self.writer.close()


async def setup(seed: int = 1) -> tuple[Echo, FaultProxy, Client]:
    echo = Echo()
    port = await echo.start()
    proxy = FaultProxy(LOOPBACK, port, random.Random(seed))
    client = await Client.open(await proxy.start())
    return echo, proxy, client


async def teardown(echo: Echo, proxy: FaultProxy, client: Client) -> None:
    client.close()
    await proxy.close()
    await echo.close()


@pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_frames_pass_intact_and_in_order(use_uvloop: bool) -> None:
    sizes = [0, 1, 16, 4000, 70_000, 900_000] + [
        random.Random(i).randrange(3000) for i in range(400)
    ]

    async def main() -> None:
        echo, proxy, client = await setup()
        # All at once, then one frame dribbled a byte at a time.
        await client.send(b"".join(frame(i, size) for i, size in enumerate(sizes)))
        last = frame(len(sizes), 300)
        for i in range(len(last)):
            await client.send(last[i : i + 1])
        await client.until(len(sizes))
        assert client.ids == list(range(len(sizes) + 1))
        assert [len(msg.payload) for msg in client.received[:-1]] == sizes
        stats = proxy.stats
        assert stats.forwarded == 2 * (len(sizes) + 1)
        assert stats.dropped_loss == stats.dropped_partition == stats.delayed == 0
        assert stats.connections == 1 and stats.malformed == 0
        await teardown(echo, proxy, client)

    run(main, use_uvloop)


def test_bulk_transfer_under_backpressure() -> None:
    count = 1500

    async def main() -> None:
        echo, proxy, client = await setup()
        # A delay makes the proxy hold back more than its high-water mark.
        proxy.set_fault(0.02, 0.0, False)

        async def send_all() -> None:
            for start in range(0, count, 100):
                await client.send(b"".join(frame(i, 10_000) for i in range(start, start + 100)))

        sender = asyncio.get_running_loop().create_task(send_all())
        await client.until(count - 1, timeout=15.0)
        await sender
        assert client.ids == list(range(count))
        await teardown(echo, proxy, client)

    run(main)


def _lossy_run(seed: int, count: int = 300) -> tuple[list[int], dict[str, int]]:
    async def main() -> tuple[list[int], dict[str, int]]:
        echo, proxy, client = await setup(seed)
        proxy.set_fault(0.0, 0.5, False)
        # Sent in several writes, so reads in both directions interleave.
        for start in range(0, count, 37):
            await client.send(b"".join(frame(i, 500) for i in range(start, min(count, start + 37))))
            await client.read_some(0.001)
        await asyncio.sleep(0.05)
        proxy.clear()
        await client.send(frame(count))  # ordered behind every survivor, both ways
        await client.until(count)
        stats = proxy.stats.as_dict()
        await teardown(echo, proxy, client)
        return client.ids[:-1], stats

    return run(main)


def test_loss_drops_whole_frames_reproducibly() -> None:
    ids, stats = _lossy_run(seed=11)
    # Each frame survives both directions with probability 1/4.
    assert 20 < len(ids) < 150
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert stats["dropped_loss"] > 0
    # Every frame that did not come back was dropped once, in one direction.
    assert stats["dropped_loss"] == 300 - len(ids)
    again, _ = _lossy_run(seed=11)
    assert again == ids
    other, _ = _lossy_run(seed=12)
    assert other != ids


def test_partition_drops_everything_until_clear() -> None:
    async def main() -> None:
        echo, proxy, client = await setup()
        await client.send(frame(0))
        await client.until(0)
        proxy.set_fault(0.0, 0.0, True)
        await client.send(b"".join(frame(i) for i in range(1, 21)))
        assert await client.read_some(0.2) == 0
        assert proxy.stats.dropped_partition == 20
        proxy.clear()
        await client.send(b"".join(frame(i) for i in range(21, 31)))
        await client.until(30)
        assert client.ids == [0, *range(21, 31)]
        assert proxy.stats.connections == 1
        await teardown(echo, proxy, client)

    run(main)


def test_partition_drops_frames_already_held_back() -> None:
    async def main() -> None:
        echo, proxy, client = await setup()
        proxy.set_fault(0.1, 0.0, False)
        await client.send(frame(0))
        await asyncio.sleep(0.02)
        proxy.set_fault(0.1, 0.0, True)
        assert await client.read_some(0.3) == 0
        assert proxy.stats.dropped_partition == 1
        proxy.clear()
        await client.send(frame(1))
        await client.until(1)
        assert client.ids == [1]
        await teardown(echo, proxy, client)

    run(main)


def test_delay_adds_latency_and_keeps_order() -> None:
    async def main() -> None:
        echo, proxy, client = await setup()
        proxy.set_fault(0.1, 0.0, False)
        started = time.perf_counter()
        await client.send(frame(0))
        await client.until(0)
        # 100 ms each way.
        assert time.perf_counter() - started >= 0.19
        # Frames sent after the delay is lowered never overtake earlier ones.
        for i in range(1, 41):
            if i == 20:
                proxy.set_fault(0.0, 0.0, False)
            await client.send(frame(i))
            await asyncio.sleep(0.002)
        await client.until(40)
        assert client.ids == list(range(41))
        assert proxy.stats.delayed >= 20  # frame 0 both ways, frames 1..19 upstream
        await teardown(echo, proxy, client)

    run(main)


def test_upstream_refused_closes_downstream() -> None:
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            dead_port = probe.getsockname()[1]
        proxy = FaultProxy(LOOPBACK, dead_port, random.Random(0))
        client = await Client.open(await proxy.start())
        await client.send(frame(0))
        with pytest.raises((EOFError, ConnectionError)):
            await client.read_some(5.0)
        assert proxy.stats.upstream_failures == 1
        client.close()
        await proxy.close()

    run(main)


def test_either_side_closing_closes_the_other() -> None:
    async def main() -> None:
        echo, proxy, client = await setup()
        await client.send(frame(0))
        await client.until(0)
        # The server closes: the client sees end of stream.
        for writer in echo.writers:
            writer.close()
        with pytest.raises((EOFError, ConnectionError)):
            await client.read_some(5.0)
        client.close()
        # The client closes: the server's handler sees end of stream and returns.
        client = await Client.open(proxy.port)
        await client.send(frame(1))
        await client.until(1)
        client.writer.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while proxy.links and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert not proxy.links
        await teardown(echo, proxy, client)

    run(main)


def test_what_a_closing_client_sent_still_arrives() -> None:
    async def main() -> None:
        echo, proxy, client = await setup()
        # Sent at once, before the upstream connection can be open; the half
        # frame at the end reaches the server as the truncated frame it is.
        whole, half = frame(0), frame(1)[:10]
        await client.send(whole + half)
        client.close()
        # A frame held back by a delay is released before the link closes.
        proxy.set_fault(0.05, 0.0, False)
        second = await Client.open(proxy.port)
        await second.send(frame(2))
        second.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while (len(echo.handlers) < 2 or not all(t.done() for t in echo.handlers)) and (
            loop.time() < deadline
        ):
            await asyncio.sleep(0.01)
        assert sorted(bytes(got) for got in echo.got) == sorted([whole + half, frame(2)])
        assert not proxy.links
        await teardown(echo, proxy, client)

    run(main)


def test_unframed_stream_passes_through() -> None:
    async def main() -> None:
        echo, proxy, client = await setup()
        await client.send(frame(0))
        await client.until(0)
        junk = b"\xff\xff\xff\xff" + bytes(range(200))
        await client.send(junk)
        got = b""
        while len(got) < len(junk):
            got += await asyncio.wait_for(client.reader.read(1 << 16), 5.0)
        assert got == junk
        assert proxy.stats.malformed == 2
        await teardown(echo, proxy, client)

    run(main)


def test_set_fault_refuses_nonsense() -> None:
    proxy = FaultProxy(LOOPBACK, 1, random.Random(0))
    for delay, loss in [(-1.0, 0.0), (float("nan"), 0.0), (0.0, 1.5), (0.0, -0.1)]:
        with pytest.raises(ValueError):
            proxy.set_fault(delay, loss, False)
    proxy.set_fault(0.5, 0.25, True)
    proxy.clear()
    assert proxy.idle


def _spawn(port: int, count: int) -> tuple[subprocess.Popen[bytes], PipeChannel]:
    """A proxy process started the way the tcp driver starts it (no multiprocessing
    helper processes left behind)."""
    child = ChildProcesses().start("proxy", "proxy", port, count, 5)
    return child.process, child.channel


def _join(process: subprocess.Popen[bytes]) -> int | None:
    try:
        return process.wait(10.0)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5.0)


def test_proxy_process_obeys_its_pipe() -> None:
    async def main() -> None:
        echo = Echo()
        process, channel = _spawn(await echo.start(), 2)
        try:
            kind, ports = await channel.get(timeout=TEST_TIMEOUT)
            assert kind == "ready" and len(ports) == 2
            channel.send(("fault", 1, 0.0, 0.0, True))
            channel.send(("fault", 7, 0.0, 0.0, True))
            assert (await channel.get(timeout=5.0))[0] == "error"
            channel.send("stats")  # a barrier: commands are obeyed in order
            assert (await channel.get(timeout=5.0))[0] == "stats"
            clear = await Client.open(ports[0])
            cut = await Client.open(ports[1])
            await clear.send(b"".join(frame(i) for i in range(10)))
            await cut.send(b"".join(frame(i) for i in range(10)))
            await clear.until(9)
            assert await cut.read_some(0.2) == 0
            channel.send(("clear", 1))
            channel.send("stats")
            assert (await channel.get(timeout=5.0))[0] == "stats"
            await cut.send(frame(10))
            await cut.until(10)
            assert cut.ids == [10]
            channel.send("stop")
            kind, stats = await channel.get(timeout=5.0)
            assert kind == "stats"
            assert stats[0]["forwarded"] == 20 and stats[0]["dropped_partition"] == 0
            assert stats[1]["dropped_partition"] == 10 and stats[1]["forwarded"] == 2
            clear.close()
            cut.close()
        finally:
            channel.close()
            await echo.close()
        assert await asyncio.to_thread(_join, process) == 0

    run(main)


def test_proxy_process_exits_when_parent_goes() -> None:
    async def main() -> None:
        echo = Echo()
        process, channel = _spawn(await echo.start(), 1)
        try:
            kind, _ = await channel.get(timeout=TEST_TIMEOUT)
            assert kind == "ready"
        finally:
            channel.close()
            await echo.close()
        assert await asyncio.to_thread(_join, process) == 0

    run(main)
