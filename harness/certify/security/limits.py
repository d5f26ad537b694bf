"""Security checks: one client cannot grow the coordinator's memory past its limits.

How it works. Each check attacks the live coordinator child from its own
loopback connection (``real.tcp.client``) while ``RssWatch`` samples the
child's RSS with psutil every ``SAMPLE_INTERVAL``, then looks for the
refusal the protocol promises (docs/protocol.md, "Errors and closing
links") and asks the bystander for service:

1. ``large_reads_bounded``: a registered client stores one
   ``LARGE_VALUE``-byte value, then writes ``GET_BYTES`` of ``GET``
   requests for it in one go and never reads (its receive buffer is
   ``SMALL_RECEIVE_BUFFER``). Every tiny request asks for the whole value,
   so unbounded, one read of requests becomes hundreds of MiB of replies.
   Pass when the coordinator's RSS grew by at most ``LARGE_READ_CAP``
   while the client held its replies unread.
2. ``subscription_limit_enforced``: a registered client sends
   ``max_subscriptions + SUBSCRIBE_EXTRA`` distinct ``Subscribe``s, then a
   ``StatusRequest``. Exactly ``SUBSCRIBE_EXTRA`` must be refused with an
   ``Error`` naming ``max_subscriptions``, the status reply must show the
   agent holding ``max_subscriptions`` patterns, and a ``Hello`` carrying
   more patterns than the limit must get ``Reject`` and a closed link.
3. ``unregistered_ids_limited``: one unregistered connection sends a
   ``Probe`` from each of ``ID_FLOOD`` distinct node ids. Exactly
   ``max_unregistered_ids`` probes may be answered before the connection is
   refused and closed. Controls: a connection that registers
   ``WORKER_AGENTS`` agents with pipelined ``Hello``s (a worker) gets every
   ``Welcome``, and a prober-like connection (one unregistered id) still
   gets its ``ProbeReply`` and ``StatusReply``.

Every loop is bounded in count and every read has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

import psutil

from harness.certify.security.base import SecurityCheck, Target
from harness.certify.security.flood import MIB, SMALL_RECEIVE_BUFFER, register
from protocol.envelope import Routed
from protocol.messages import (
    Error,
    Hello,
    MemReply,
    MemRequest,
    MemVerb,
    Probe,
    ProbeReply,
    Reject,
    StatusReply,
    StatusRequest,
    Subscribe,
    Welcome,
)
from protocol.status import agent_component, status_dict
from real.tcp.admission import ServerLimits
from real.tcp.client import RawConnection, routed_frame

SAMPLE_INTERVAL = 0.05
READ_TIMEOUT = 5.0
NAMESPACE = "security-limits"
LARGE_VALUE = 32 * 1024
GET_BYTES = 512 * 1024
HOLD_SECONDS = 0.6
LARGE_READ_CAP = 16 * MIB
SUBSCRIBE_EXTRA = 20_000
ID_FLOOD = 20_000
WORKER_AGENTS = 64


class RssWatch:
    """Samples a process's RSS in the background, from a baseline taken at creation."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline: int = self.process.memory_info().rss
        self.peak: int = self.baseline
        self.samples = 0
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while True:
            self._take()
            await asyncio.sleep(SAMPLE_INTERVAL)

    def _take(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.samples += 1

    async def stop(self) -> int:
        """Stop sampling (after one last sample); the growth in bytes."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._take()
        return self.peak - self.baseline

    def text(self) -> str:
        growth = (self.peak - self.baseline) / MIB
        return (
            f"coordinator RSS {self.baseline / MIB:.1f} MiB before, {self.peak / MIB:.1f} MiB "
            f"at most ({self.samples} samples): growth {growth:.2f} MiB"
        )


def _last_is(kind: type) -> Callable[[list[Routed]], bool]:
    """A ``read_until`` predicate: the newest frame is a ``kind`` (O(1) per read)."""
    return lambda frames: bool(frames) and isinstance(frames[-1][1], kind)


# --- 1. a small request with a large answer -------------------------------------------------


async def large_read_check(target: Target) -> SecurityCheck:
    pid = target.server.pid
    assert pid is not None
    node = "large-reader"
    conn = await register(target.port, node, target.settings.token)
    sock = conn.writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RECEIVE_BUFFER)
    try:
        value = b"L" * LARGE_VALUE
        conn.send_msg(node, MemRequest(1, MemVerb.PUT, NAMESPACE, "large", value))
        stored = await conn.read_until(_last_is(MemReply), READ_TIMEOUT)
        if not stored.matched:
            raise RuntimeError(f"the {LARGE_VALUE} B value was not stored: {stored.frames!r}")
        one = len(routed_frame(node, MemRequest(2, MemVerb.GET, NAMESPACE, "large")))
        count = GET_BYTES // one
        requests = b"".join(
            routed_frame(node, MemRequest(op, MemVerb.GET, NAMESPACE, "large"))
            for op in range(2, 2 + count)
        )
        watch = RssWatch(pid)
        started = time.perf_counter()
        conn.send(requests)
        await asyncio.sleep(HOLD_SECONDS)
        growth = await watch.stop()
        held = time.perf_counter() - started
        transport = conn.writer.transport
        unsent = transport.get_write_buffer_size() if transport is not None else 0
    finally:
        conn.abort()
    served, seen = await target.still_serves()
    asked = count * LARGE_VALUE / MIB
    detail = (
        f"{count:,} GETs ({len(requests) / 1024:.0f} KiB, {one} B each) for a "
        f"{LARGE_VALUE // 1024} KiB value asked for {asked:,.0f} MiB of replies; the client "
        f"read none for {held:.2f} s ({unsent / 1024:.0f} KiB of its requests still unsent "
        f"at the end); {watch.text()} (cap {LARGE_READ_CAP / MIB:.0f} MiB); after: {seen}"
    )
    return SecurityCheck(
        "large_reads_bounded",
        growth <= LARGE_READ_CAP and served,
        detail,
        f"A registered client with a {SMALL_RECEIVE_BUFFER} B receive buffer stored one "
        f"{LARGE_VALUE // 1024} KiB value, wrote {GET_BYTES // 1024} KiB of GET requests "
        f"for it in one write and read nothing for {HOLD_SECONDS} s while psutil sampled "
        f"the coordinator's RSS every {SAMPLE_INTERVAL * 1000:.0f} ms; pass when it grew "
        f"by at most {LARGE_READ_CAP / MIB:.0f} MiB and the bystander is served afterwards.",
    )


# --- 2. subscriptions per agent ---------------------------------------------------------------


async def status_of(conn: RawConnection, node: str, token: str) -> dict[str, dict[str, Any]]:
    """Ask for the coordinator's status as ``node`` on ``conn``; ``status_dict`` of the reply."""
    conn.send_msg(node, StatusRequest(1, token))
    seen = await conn.read_until(_last_is(StatusReply), READ_TIMEOUT)
    replies = [m for _, m in seen.frames if isinstance(m, StatusReply)]
    if not replies:
        raise RuntimeError(f"no StatusReply for {node} within {READ_TIMEOUT:.0f} s")
    return status_dict(replies[-1].components)


async def _hello_over_limit(target: Target, limit: int) -> tuple[str, bool]:
    """(the answer, closed) for a ``Hello`` carrying ``limit + 1`` patterns."""
    node = "subscriber-greedy"
    conn = await target.connect()
    try:
        patterns = tuple(f"greedy.p{i}" for i in range(limit + 1))
        conn.send_msg(node, Hello(node, target.settings.token, (), patterns))
        seen = await conn.read_until_closed(READ_TIMEOUT)
    finally:
        conn.close()
    first = seen.frames[0][1] if seen.frames else None
    answer = f"{type(first).__name__}({getattr(first, 'reason', '')!r})" if first else "nothing"
    return answer, seen.closed and isinstance(first, Reject) and str(limit) in first.reason


async def subscription_check(target: Target) -> SecurityCheck:
    pid = target.server.pid
    assert pid is not None
    limit = target.settings.max_subscriptions
    node = "subscriber-many"
    conn = await register(target.port, node, target.settings.token)
    try:
        sent = limit + SUBSCRIBE_EXTRA
        watch = RssWatch(pid)
        conn.send(b"".join(routed_frame(node, Subscribe(f"many.p{i}")) for i in range(sent)))
        status = await status_of(conn, node, target.settings.token)
        await watch.stop()
    finally:
        conn.close()
    errors = [m for _, m in conn.frames if isinstance(m, Error)]
    naming = sum(1 for e in errors if "max_subscriptions" in e.reason and str(limit) in e.reason)
    held = status.get(agent_component(node), {}).get("metrics", {}).get("subscriptions", -1)
    hello_answer, hello_refused = await _hello_over_limit(target, limit)
    served, seen = await target.still_serves()
    passed = (
        naming == SUBSCRIBE_EXTRA
        and len(errors) == SUBSCRIBE_EXTRA
        and held == limit
        and hello_refused
        and served
    )
    example = f" (e.g. {errors[0].reason!r})" if errors else ""
    detail = (
        f"{sent:,} distinct Subscribes from one agent: {naming:,} refused with an Error naming "
        f"max_subscriptions {limit}{example}; the status reply shows the agent holding {held} "
        f"patterns; {watch.text()}; a Hello with {limit + 1} patterns got {hello_answer} and "
        f"the link was {'closed' if hello_refused else 'NOT refused and closed'}; after: {seen}"
    )
    return SecurityCheck(
        "subscription_limit_enforced",
        passed,
        detail,
        f"A registered agent sent max_subscriptions + {SUBSCRIBE_EXTRA:,} distinct Subscribes in "
        "one write, then a StatusRequest; every Error was decoded and the agent's subscription "
        "count read from the status reply; then a Hello with one pattern over the limit was "
        "sent on a new connection and read until the coordinator closed it.",
    )


# --- 3. node ids bound without registering ------------------------------------------------------


async def _worker_control(target: Target) -> int:
    """Welcomes for ``WORKER_AGENTS`` agents registered with pipelined Hellos on one link."""
    conn = await target.connect()
    nodes = [f"limits-worker-{i}" for i in range(WORKER_AGENTS)]
    try:
        conn.send(b"".join(routed_frame(n, Hello(n, target.settings.token)) for n in nodes))
        seen = await conn.read_until(
            lambda frames: sum(isinstance(m, Welcome) for _, m in frames) >= WORKER_AGENTS,
            READ_TIMEOUT,
        )
    finally:
        conn.close()
    return sum(1 for _, m in seen.frames if isinstance(m, Welcome))


async def _prober_control(target: Target) -> bool:
    """A prober's connection (one unregistered id) gets its probe and status answered."""
    conn = await target.connect()
    try:
        conn.send_msg("limits-prober", Probe(1))
        status = await status_of(conn, "limits-prober", target.settings.token)
    finally:
        conn.close()
    return bool(status) and any(m == ProbeReply(1) for _, m in conn.frames)


def _probe_replies(frames: list[Routed]) -> int:
    return sum(1 for _, m in frames if isinstance(m, ProbeReply))


async def unregistered_ids_check(target: Target) -> SecurityCheck:
    pid = target.server.pid
    assert pid is not None
    limit = ServerLimits().max_unregistered_ids
    conn = await target.connect()
    try:
        watch = RssWatch(pid)
        started = time.perf_counter()
        conn.send(b"".join(routed_frame(f"anon-id-{i}", Probe(i)) for i in range(ID_FLOOD)))
        seen = await conn.read_until_closed(READ_TIMEOUT)
        seconds = time.perf_counter() - started
        await watch.stop()
    finally:
        conn.abort()
    answered = _probe_replies(seen.frames)
    errors = [m.reason for _, m in seen.frames if isinstance(m, Error)]
    explained = sum(1 for e in errors if "unregistered" in e and str(limit) in e)
    welcomed = await _worker_control(target)
    prober = await _prober_control(target)
    served, seen_after = await target.still_serves()
    passed = (
        answered == limit
        and seen.closed
        and explained > 0
        and welcomed == WORKER_AGENTS
        and prober
        and served
    )
    detail = (
        f"one unregistered connection sent a Probe from each of {ID_FLOOD:,} node ids: "
        f"{answered:,} were answered (limit max_unregistered_ids {limit}), the connection was "
        f"{'closed' if seen.closed else 'NOT closed'} after {seconds * 1000:.0f} ms with "
        f"{explained} Errors naming the limit; {watch.text()}; "
        f"controls: {welcomed} of {WORKER_AGENTS} agents registered with pipelined Hellos "
        f"on one connection were welcomed, a prober's probe and status request were "
        f"{'answered' if prober else 'NOT answered'}; after: {seen_after}"
    )
    return SecurityCheck(
        "unregistered_ids_limited",
        passed,
        detail,
        f"One raw connection sent {ID_FLOOD:,} Probes, each from a new node id, in one write "
        "and was read until the coordinator closed it while psutil sampled its RSS; then a "
        f"worker-like connection registered {WORKER_AGENTS} agents and a prober-like one sent "
        "a Probe and a StatusRequest, and the bystander asked for service.",
    )


async def limit_checks(target: Target) -> list[SecurityCheck]:
    return [
        await large_read_check(target),
        await subscription_check(target),
        await unregistered_ids_check(target),
    ]
