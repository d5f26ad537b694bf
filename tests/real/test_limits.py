"""Limits that keep one client from growing the coordinator's memory without bound.

Each was found by measuring a live coordinator (the security checks in
``harness.certify.security.limits`` and ``harness.certify.security.quota`` now cover them): core
tests for the subscription limit, the memory quotas, reads that are not
remembered and the bounded topic cache; server tests (``CoordinatorServer``
on this process's event loop, raw sockets) for the output budget of a read,
the cap on unregistered node ids per connection and the connection cap. The
last test checks that every committed scenario stays far below the defaults.
"""

from __future__ import annotations

import asyncio
import glob
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

import protocol.topics as topics
from harness.certify.security.flood import register
from harness.scenario.compile import build_agents
from harness.scenario.schema import MemoryStream, load_scenario
from protocol.coordinator import Coordinator
from protocol.envelope import Routed
from protocol.memory import MemoryStore, Write
from protocol.messages import (
    Error,
    Hello,
    MemReply,
    MemRequest,
    MemVerb,
    Probe,
    ProbeReply,
    Reject,
    Subscribe,
    Unsubscribe,
    Welcome,
)
from protocol.settings import ProtocolSettings
from protocol.topics import SubscriptionIndex
from real.clock import new_event_loop
from real.tcp.admission import ServerLimits
from real.tcp.client import RawConnection, routed_frame
from real.tcp.framing import HIGH_WATER
from real.tcp.server import OUTPUT_BUDGET, SLICE_FRAMES, CoordinatorServer

T = TypeVar("T")
SETTINGS = ProtocolSettings()
TOKEN = SETTINGS.token
GET, PUT, CAS, DELETE = MemVerb.GET, MemVerb.PUT, MemVerb.CAS, MemVerb.DELETE
VALUE = 16384
ROOT = Path(__file__).resolve().parents[2]


def coordinator(settings: ProtocolSettings = SETTINGS, durable: bool = False) -> Coordinator:
    core = Coordinator("coord", settings, durable_memory=durable)
    core.receive("a", Hello("a", TOKEN), 0.0)
    core.drain()
    return core


# --- subscriptions per agent ------------------------------------------------------------


def test_subscribes_beyond_max_subscriptions_get_an_error_naming_the_limit() -> None:
    core = coordinator(replace(SETTINGS, max_subscriptions=3))
    for i in range(5):
        core.receive("a", Subscribe(f"p{i}"), 1.0)
    errors = [m for _, m in core.drain() if isinstance(m, Error)]
    assert len(errors) == 2
    assert all("max_subscriptions 3" in e.reason for e in errors)
    assert core.subscriptions.patterns_of("a") == ("p0", "p1", "p2")
    core.receive("a", Subscribe("p1"), 1.0)  # one it has: not a new pattern
    core.receive("a", Unsubscribe("p0"), 1.0)
    core.receive("a", Subscribe("p9"), 1.0)  # room again
    assert core.drain() == []
    assert core.subscriptions.patterns_of("a") == ("p1", "p2", "p9")


def test_a_hello_with_more_patterns_than_the_limit_is_rejected_and_changes_nothing() -> None:
    core = coordinator(replace(SETTINGS, max_subscriptions=3))
    core.receive("a", Subscribe("p0"), 1.0)
    core.receive("a", Hello("a", TOKEN, (), ("p0", "p1", "p2")), 1.0)  # p0 counts once
    assert [type(m) for _, m in core.drain()] == [Welcome]
    core.receive("a", Hello("a", TOKEN, (), ("p3",)), 1.0)
    out = core.drain()
    assert [(dst, type(m)) for dst, m in out] == [("a", Reject)]
    assert "max_subscriptions 3" in out[0][1].reason  # type: ignore[union-attr]
    assert core.take_closures() == ["a"]
    assert core.subscriptions.patterns_of("a") == ("p0", "p1", "p2")
    core.receive("b", Hello("b", TOKEN, (), tuple(f"q{i}" for i in range(4))), 1.0)
    assert [type(m) for _, m in core.drain()] == [Reject]
    assert not core.knows("b")


# --- memory quotas --------------------------------------------------------------------------


def test_new_keys_beyond_the_quota_are_refused_and_journal_nothing() -> None:
    store = MemoryStore()
    store.limit(2, 1 << 20, 1 << 10)
    assert store.apply(1, PUT, "ns", "a", b"1", 0).ok
    assert store.apply(2, CAS, "ns", "b", b"2", 0).ok
    store.take_journal()
    refused = store.apply(3, PUT, "ns", "c", b"3", 0)
    assert refused == MemReply(3, False, 0, b"", "quota: the store holds max_memory_keys 2 keys")
    assert not store.apply(4, CAS, "ns", "c", b"3", 0).ok
    assert store.take_journal() == [] and len(store) == 2
    assert store.apply(5, PUT, "ns", "a", b"11", 0) == MemReply(5, True, 2, b"")  # overwrite
    assert store.apply(6, DELETE, "ns", "b", b"", 0).ok
    assert store.apply(7, PUT, "ns", "c", b"3", 0).ok  # the delete made room
    assert store.snapshot() == {("ns", "a"): (2, b"11"), ("ns", "c"): (1, b"3")}


def test_value_size_and_store_bytes_are_capped() -> None:
    store = MemoryStore()
    store.limit(100, 39, 16)
    big = store.apply(1, PUT, "ns", "k", b"x" * 17, 0)
    assert not big.ok and "max_value_bytes 16" in big.error
    assert store.apply(2, PUT, "ns", "k1", b"x" * 16, 0).ok  # 2 + 2 + 16 = 20 bytes
    assert store.bytes == 20
    full = store.apply(3, PUT, "ns", "k2", b"x" * 16, 0)  # would be 40 > 39
    assert not full.ok and "max_memory_bytes 39" in full.error
    assert store.apply(4, PUT, "ns", "k1", b"x", 0).ok  # shrinking is always allowed
    assert store.apply(5, PUT, "ns", "k2", b"x" * 16, 0).ok
    assert store.bytes == 5 + 20
    store.apply(6, DELETE, "ns", "k2", b"", 0)
    assert store.bytes == 5
    rebuilt = MemoryStore()
    rebuilt.load([Write(ns, k, v, value) for (ns, k), (v, value) in store.snapshot().items()])
    assert rebuilt.bytes == 5


def test_a_refused_write_is_answered_at_once_and_never_acknowledged() -> None:
    core = coordinator(replace(SETTINGS, max_memory_keys=1), durable=True)
    core.receive("a", MemRequest(1, PUT, "ns", "k1", b"v"), 1.0)
    core.receive("a", MemRequest(2, PUT, "ns", "k2", b"v"), 1.0)
    refused = MemReply(2, False, 0, b"", "quota: the store holds max_memory_keys 1 keys")
    assert core.drain() == [("a", refused)]  # the accepted write waits to be durable
    assert [w.key for w in core.take_writes()] == ["k1"]
    core.writes_persisted()
    assert core.drain() == [("a", MemReply(1, True, 1, b""))]
    core.receive("a", MemRequest(2, PUT, "ns", "k2", b"v"), 1.0)  # a retry: same answer
    assert core.drain() == [("a", refused)]


# --- reads are not remembered -------------------------------------------------------------


def test_get_replies_are_not_kept_so_old_values_are_freed() -> None:
    """Remembering GET replies for retries kept every value they returned alive: a
    client alternating put and get of a 1 MiB value could pin 16,384 MiB."""
    core = coordinator()
    for op in range(1, 201, 2):
        core.receive("a", MemRequest(op, PUT, "ns", "k", bytes([op % 256]) * 1000), 1.0)
        core.receive("a", MemRequest(op + 1, GET, "ns", "k"), 1.0)
    replies = [m for _, m in core.drain() if isinstance(m, MemReply)]
    assert len(replies) == 200
    assert not any(r.value for r in core._mem_replies.values())
    assert len(core._mem_replies) == 100  # the writes
    core.receive("a", MemRequest(2, GET, "ns", "k"), 2.0)  # a retried read reads again
    assert core.drain() == [("a", MemReply(2, True, 100, bytes([199]) * 1000))]


def test_the_topic_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics, "TOPIC_CACHE_LIMIT", 100)
    index = SubscriptionIndex()
    index.add("a", "t.*")
    for i in range(1000):
        assert index.subscribers(f"t.{i}") == ("a",)
    assert len(index._cache) == 100
    assert index.subscribers("t.999") == ("a",)


# --- the server: output budget, unregistered ids, connection count ---------------------------


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


Served = tuple[CoordinatorServer, int]


@asynccontextmanager
async def server(
    limits: ServerLimits | None = None,
) -> AsyncIterator[tuple[CoordinatorServer, int]]:
    core = CoordinatorServer(SETTINGS, None, limits)
    listener = await asyncio.start_server(core.handle, "127.0.0.1", 0, limit=1 << 18)
    try:
        yield core, listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        core.close()
        handlers = asyncio.all_tasks() - {asyncio.current_task()}
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)


async def unread_gets() -> tuple[int, int, int, int]:
    """(GETs sent, applied while the client did not read, most unsent reply bytes in the
    server, replies read once the client reads)."""
    async with server() as (core, port):
        conn = await register(port, "reader", TOKEN)
        value = b"v" * VALUE
        conn.send_msg("reader", MemRequest(1, PUT, "ns", "big", value))
        await conn.read_until(lambda f: len(f) == 1, 3.0)
        count = 6000
        conn.send(
            b"".join(
                routed_frame("reader", MemRequest(op, GET, "ns", "big"))
                for op in range(2, 2 + count)
            )
        )
        unsent = 0
        for _ in range(20):
            await asyncio.sleep(0.02)
            for peer in core.peers:
                transport = peer.link.writer.transport
                unsent = max(unsent, transport.get_write_buffer_size())
        applied = core.coordinator.store.applied - 1
        seen = await conn.read_until(lambda f: len(f) >= count + 1, 20.0)
        conn.close()
        return count, applied, unsent, len(seen.frames) - 1


def test_a_client_that_does_not_read_large_replies_stops_being_read() -> None:
    count, applied, unsent, read = run(unread_gets)
    assert applied < count // 4  # the server stopped handing its requests to the core
    assert unsent <= HIGH_WATER + OUTPUT_BUDGET + SLICE_FRAMES * VALUE + 65536
    assert read == count  # nothing was lost: every GET is answered once it reads


async def unregistered_ids() -> tuple[list[object], bool, int]:
    async with server(ServerLimits(max_unregistered_ids=4)) as (_, port):
        anon = await RawConnection.open(port)
        anon.send(b"".join(routed_frame(f"id-{i}", Probe(i)) for i in range(6)))
        refused = await anon.read_until_closed(3.0)
        worker = await RawConnection.open(port)
        worker.send(b"".join(routed_frame(f"w{i}", Hello(f"w{i}", TOKEN)) for i in range(20)))
        worker.send_msg("w0", Probe(99))
        served = await worker.read_until(lambda f: ("w0", ProbeReply(99)) in f, 3.0)
        worker.close()
        welcomed = sum(isinstance(m, Welcome) for _, m in served.frames)
        return [m for _, m in refused.frames], refused.closed, welcomed


def test_a_connection_may_bind_only_a_few_unregistered_ids() -> None:
    refused, closed, welcomed = run(unregistered_ids)
    assert refused[:4] == [ProbeReply(i) for i in range(4)]
    assert len(refused) == 8 and all(isinstance(m, Error) for m in refused[4:])
    assert all("more than 4 unregistered node ids" in m.reason for m in refused[4:])  # type: ignore[attr-defined]
    assert closed
    assert welcomed == 20  # a worker's agents stop counting once registered


def answer_to(node: str, probe_id: int) -> Callable[[list[Routed]], bool]:
    return lambda frames: (node, ProbeReply(probe_id)) in frames


async def connection_count() -> tuple[list[bool], bool, bool]:
    async with server(ServerLimits(max_connections=2)) as (core, port):
        conns = [await RawConnection.open(port) for _ in range(3)]
        answered = []
        for i, conn in enumerate(conns):
            conn.send_msg(f"p{i}", Probe(i))
            seen = await conn.read_until(answer_to(f"p{i}", i), 1.0)
            answered.append(seen.matched)
        third_closed = conns[2].closed
        conns[0].close()
        async with asyncio.timeout(5.0):  # until the server has let that connection go
            while len(core.peers) > 1:
                await asyncio.sleep(0.005)
        again = await RawConnection.open(port)
        again.send_msg("p9", Probe(9))
        later = await again.read_until(lambda f: ("p9", ProbeReply(9)) in f, 1.0)
        for conn in [*conns, again]:
            conn.close()
        return answered, third_closed, later.matched and core.report.refused_connections == 1


def test_connections_beyond_the_limit_are_closed_at_once() -> None:
    answered, third_closed, room_again = run(connection_count)
    assert answered == [True, True, False]
    assert third_closed
    assert room_again


# --- the defaults do not touch any committed scenario -----------------------------------------


def test_committed_scenarios_stay_far_below_the_default_limits() -> None:
    checked = 0
    for path in sorted(glob.glob(str(ROOT / "scenarios/**/*.yaml"), recursive=True)):
        try:
            scenario = load_scenario(path)
        except Exception:
            continue  # a suite, not a scenario
        checked += 1
        settings = scenario.protocol_settings()
        agents = build_agents(scenario)
        assert max(len(a.subscriptions) for a in agents) * 10 <= settings.max_subscriptions
        for stream in scenario.workload:
            if isinstance(stream, MemoryStream):
                size = stream.size if isinstance(stream.size, int) else stream.size.max
                assert size * 10 <= settings.max_value_bytes, path
                assert stream.namespaces * stream.keys * 10 <= settings.max_memory_keys, path
    assert checked >= 20
