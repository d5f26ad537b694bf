"""Security check: seeded fuzzed frames against the live coordinator.

How it works. ``harness.certify.security.frames.fuzz_plan(seed, count)`` gives the frames,
already grouped into connections. Up to ``PARALLEL`` connections run at
once; each writes its frames (after a valid ``Hello`` on every other
connection) and then:

- a stream that ends malformed or incomplete must be closed by the
  coordinator (an incomplete one after our EOF): that is a refusal;
- a stream that ends with a message carrying a (wrong) token must be
  closed too (the coordinator answers ``Reject`` and closes the link);
- any other stream ends with a marker ``Probe``; the coordinator must answer
  it, or close the link for a protocol reason (a frame naming a node bound to
  another connection, or a failed node speaking without a new ``Hello``).

A connection that gets neither within ``CONNECTION_TIMEOUT`` is a hang. The
check passes when no connection hung, every malformed or incomplete stream
was refused, and afterwards the coordinator process is alive and the
bystander is served. The whole phase is bounded by ``PHASE_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter

from harness.certify.security.base import SecurityCheck, Target
from harness.certify.security.frames import FuzzConnection, fuzz_plan, hello_frame, plan_bytes
from protocol.messages import Probe, ProbeReply
from real.tcp.client import routed_frame

PARALLEL = 8
CONNECTION_TIMEOUT = 3.0
PHASE_TIMEOUT = 30.0
MARKER_BASE = 0x5EC_0000
NAME = "fuzzed_frames_survived"
METHOD = (
    "Frames drawn from random.Random(seed) (random bytes; bit-flipped, truncated and "
    "extended valid frames of every message type; valid frames with hostile field values "
    "and bodies of the wrong shape) were sent over many connections, every other one "
    "registered first; each connection was read until the coordinator closed it or "
    f"answered a closing Probe (at most {CONNECTION_TIMEOUT:.0f} s), then the bystander "
    "asked for service."
)


async def _run_connection(target: Target, token: str, index: int, conn: FuzzConnection) -> str:
    """ "served", "closed" or "hung" for one fuzz connection."""
    link = await target.connect()
    try:
        head = hello_frame(conn.node, token) if conn.registered else b""
        link.send(head + b"".join(f.data for f in conn.frames))
        if conn.ending in ("malformed", "incomplete", "token"):
            if conn.ending == "incomplete":
                link.half_close()
            seen = await link.read_until_closed(CONNECTION_TIMEOUT)
            return "closed" if seen.closed else "hung"
        marker = MARKER_BASE + index
        link.send(routed_frame(conn.node, Probe(marker)))
        answer = (conn.node, ProbeReply(marker))
        seen = await link.read_until(lambda frames: answer in frames, CONNECTION_TIMEOUT)
        if seen.matched:
            return "served"
        return "closed" if seen.closed else "hung"
    finally:
        link.abort()


async def fuzz_checks(target: Target, seed: int, count: int) -> list[SecurityCheck]:
    plan = fuzz_plan(seed, count, target.settings.token)
    started = time.perf_counter()
    gate = asyncio.Semaphore(PARALLEL)

    async def one(index: int, conn: FuzzConnection) -> str:
        async with gate:
            try:
                return await _run_connection(target, target.settings.token, index, conn)
            except (ConnectionError, OSError, TimeoutError):
                return "connect failed"

    tasks = [asyncio.ensure_future(one(i, conn)) for i, conn in enumerate(plan)]
    done, pending = await asyncio.wait(tasks, timeout=PHASE_TIMEOUT)
    for task in pending:
        task.cancel()
    outcomes = [t.result() if t in done and not t.cancelled() else "hung" for t in tasks]
    seconds = time.perf_counter() - started
    served, seen = await target.still_serves()

    endings = Counter(conn.ending for conn in plan)
    by_ending = Counter(
        (conn.ending, outcome) for conn, outcome in zip(plan, outcomes, strict=True)
    )
    must_refuse = endings["malformed"] + endings["incomplete"]
    refused = by_ending[("malformed", "closed")] + by_ending[("incomplete", "closed")]
    rejected = by_ending[("token", "closed")]
    hung = sum(1 for o in outcomes if o in ("hung", "connect failed"))
    frames = [f for conn in plan for f in conn.frames]
    valid = sum(1 for f in frames if f.verdict == "valid")
    kinds = Counter(f.kind for f in frames)
    closed_clean = by_ending[("open", "closed")]
    markers = by_ending[("open", "served")]
    digest = zlib.crc32(plan_bytes(plan))
    detail = (
        f"{len(frames)} frames ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; "
        f"crc32 0x{digest:08x}) over {len(plan)} connections "
        f"({sum(c.registered for c in plan)} registered first) in {seconds:.2f} s: "
        f"{valid} frames were valid for the coordinator's decoder; {refused} of "
        f"{must_refuse} connections ending in a malformed or truncated frame were refused; "
        f"{rejected} of {endings['token']} ending in a wrong token were closed; of "
        f"{endings['open']} other connections, {markers} had their closing probe answered and "
        f"{closed_clean} were closed for a protocol reason (such as naming another "
        f"connection's node); {hung} hung; "
        f"after: {seen}"
    )
    passed = hung == 0 and refused == must_refuse and rejected == endings["token"] and served
    return [SecurityCheck(NAME, passed, detail, METHOD)]
