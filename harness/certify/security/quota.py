"""Security check: the memory store's quota refuses new keys, and loses nothing acknowledged.

How it works. Filling the default quota (``max_memory_keys``, a million
keys) would take longer than the whole suite, so the check starts a second
coordinator child (``real.tcp.children.ServerProcess``, loopback, a SQLite file
next to the first one's) whose settings differ from the run's only in
``max_memory_keys = QUOTA_KEYS``. A registered client then:

1. puts ``QUOTA_KEYS + EXTRA_KEYS`` new keys, pipelined; exactly
   ``QUOTA_KEYS`` must be acknowledged and ``EXTRA_KEYS`` refused with a
   ``MemReply(ok=False)`` whose error names ``max_memory_keys``;
2. at the quota: overwrites an acknowledged key (allowed: no new key), puts
   a value one byte over ``max_value_bytes`` (refused, naming it), deletes
   a key and then creates a new one (allowed: the delete made room);
3. reads the store's key count from a ``StatusReply`` (must be the quota).

Then the child is SIGKILLed and started again on the same database. Every
acknowledged write must be there with its version and value, and no refused
key may exist: a refusal is never an acknowledgement, and an
acknowledgement survives a crash. The child is stopped at the end (and the
run reaps it whatever happens).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from harness.certify.security.base import SecurityCheck, Target
from harness.certify.security.flood import register
from harness.certify.security.limits import READ_TIMEOUT, status_of
from protocol.envelope import Routed
from protocol.messages import MemReply, MemRequest, MemVerb
from real.tcp.children import ServerProcess
from real.tcp.client import RawConnection, routed_frame

QUOTA_KEYS = 2000
EXTRA_KEYS = 500
VALUE = b"q" * 64
NAMESPACE = "quota"
DEATH_TIMEOUT = 5.0
WRITER = "quota-writer"
AT_QUOTA_STEPS = 4  # the requests of ``_at_quota``, after the fill's


def _replies(frames: list[Routed]) -> dict[int, MemReply]:
    return {m.op_id: m for _, m in frames if isinstance(m, MemReply)}


async def _ask(conn: RawConnection, requests: list[MemRequest]) -> dict[int, MemReply]:
    """Send ``requests`` in one write; their replies by op id (within ``READ_TIMEOUT``)."""
    wanted = {r.op_id for r in requests}
    conn.send(b"".join(routed_frame(WRITER, r) for r in requests))
    seen = await conn.read_until(lambda f: wanted <= _replies(f).keys(), READ_TIMEOUT)
    return {k: v for k, v in _replies(seen.frames).items() if k in wanted}


def _key(i: int) -> str:
    return f"k{i}"


async def _fill(conn: RawConnection, max_value: int) -> tuple[dict[str, int], list[str], str]:
    """Steps 1 and 2: (acknowledged key -> version, findings, example refusal)."""
    total = QUOTA_KEYS + EXTRA_KEYS
    puts = [MemRequest(i + 1, MemVerb.PUT, NAMESPACE, _key(i), VALUE) for i in range(total)]
    replies = await _ask(conn, puts)
    acked = {_key(op - 1): r.version for op, r in replies.items() if r.ok}
    refused = [r for r in replies.values() if not r.ok]
    naming = [r for r in refused if "max_memory_keys" in r.error and str(QUOTA_KEYS) in r.error]
    found = [
        f"{len(acked):,} of {total:,} new keys acknowledged, {len(naming):,} refused with an "
        f"error naming max_memory_keys {QUOTA_KEYS:,}, {len(replies):,} answered"
    ]
    op = total + 1
    overwrite, big, delete, fresh = await _at_quota(conn, op, max_value)
    if overwrite.ok:
        acked[_key(0)] = overwrite.version
    if delete.ok:
        acked.pop(_key(1), None)
    if fresh.ok:
        acked["fresh"] = fresh.version
    found.append(
        f"at the quota: an overwrite was {'acknowledged' if overwrite.ok else 'REFUSED'}, a "
        f"{max_value + 1:,} B value was {'refused' if not big.ok else 'ACKNOWLEDGED'} "
        f"({big.error!r}), a delete then a new key were "
        f"{'acknowledged' if delete.ok and fresh.ok else 'NOT both acknowledged'}"
    )
    good = (
        len(acked) == QUOTA_KEYS
        and len(naming) == EXTRA_KEYS == len(refused)
        and overwrite.ok
        and not big.ok
        and "max_value_bytes" in big.error
        and delete.ok
        and fresh.ok
    )
    example = naming[0].error if naming else "none"
    return acked, found + ([] if good else ["FAILED"]), example


async def _at_quota(
    conn: RawConnection, op: int, max_value: int
) -> tuple[MemReply, MemReply, MemReply, MemReply]:
    """Overwrite, an oversized value, a delete, then a new key: their replies in order."""
    steps = [
        [MemRequest(op, MemVerb.PUT, NAMESPACE, _key(0), VALUE + b"2")],
        [MemRequest(op + 1, MemVerb.PUT, NAMESPACE, _key(0), b"x" * (max_value + 1))],
        [MemRequest(op + 2, MemVerb.DELETE, NAMESPACE, _key(1))],
        [MemRequest(op + 3, MemVerb.PUT, NAMESPACE, "fresh", VALUE)],
    ]
    answers: list[MemReply] = []
    for index, step in enumerate(steps):
        reply = (await _ask(conn, step)).get(op + index)
        answers.append(reply if reply is not None else MemReply(op + index, False, 0, b"", "none"))
    assert len(answers) == AT_QUOTA_STEPS
    return answers[0], answers[1], answers[2], answers[3]


async def _after_crash(server: ServerProcess, token: str, acked: dict[str, int]) -> list[str]:
    """Kill the child, start it again on its database, and read every key back."""
    server.kill()
    for _ in range(int(DEATH_TIMEOUT / 0.01)):
        if not server.alive:
            break
        await asyncio.sleep(0.01)
    await server.spawn()
    conn = await register(server.port, WRITER, token)
    names = [_key(i) for i in range(QUOTA_KEYS + EXTRA_KEYS)] + ["fresh"]
    try:
        # op ids new to this writer: the restarted coordinator still answers a retry of
        # any of its recent writes (``protocol.durable``), and a reused id is a retry
        first = QUOTA_KEYS + EXTRA_KEYS + AT_QUOTA_STEPS + 1
        ops = range(first, first + len(names))
        gets = [MemRequest(op, MemVerb.GET, NAMESPACE, n) for op, n in zip(ops, names, strict=True)]
        replies = await _ask(conn, gets)
    finally:
        conn.close()
    found = {
        n: r
        for op, n in zip(ops, names, strict=True)
        if (r := replies.get(op)) is not None and r.ok
    }
    lost = [n for n in acked if n not in found]
    wrong = [n for n, version in acked.items() if n in found and found[n].version != version]
    ghosts = [n for n in found if n not in acked]
    text = (
        f"after a SIGKILL and a restart on the same database, {len(acked) - len(lost):,} of "
        f"{len(acked):,} acknowledged keys were read back ({len(wrong)} with a wrong version), "
        f"{len(ghosts)} refused or deleted keys exist"
    )
    return [text] if not (lost or wrong or ghosts) else [text, "FAILED"]


async def quota_check(target: Target) -> SecurityCheck:
    settings = replace(target.settings, max_memory_keys=QUOTA_KEYS)
    first_db = target.server.db_path
    db = str(Path(first_db).parent / "quota.sqlite") if first_db else None
    server = await ServerProcess.start(target.server.children, settings, db)
    try:
        conn = await register(server.port, WRITER, settings.token)
        try:
            acked, found, example = await _fill(conn, settings.max_value_bytes)
            status = await status_of(conn, WRITER, settings.token)
        finally:
            conn.close()
        keys = status.get("memory", {}).get("metrics", {}).get("keys", -1)
        found.append(f"the status reply counts {keys:,} keys")
        if keys != QUOTA_KEYS:
            found.append("FAILED")
        found += await _after_crash(server, settings.token, acked)
    finally:
        await server.stop()
    served, seen = await target.still_serves()
    defaults = target.settings
    detail = (
        f"on a coordinator with max_memory_keys {QUOTA_KEYS:,} (the run's default is "
        f"{defaults.max_memory_keys:,} keys and {defaults.max_memory_bytes / (1 << 20):,.0f} "
        f"MiB, values at most {defaults.max_value_bytes:,} B): "
        + "; ".join(f for f in found if f != "FAILED")
        + f"; example refusal {example!r}; the run's coordinator after: {seen}"
    )
    return SecurityCheck(
        "memory_key_quota_enforced",
        "FAILED" not in found and served,
        detail,
        "A second coordinator child was started with the run's settings but a "
        f"{QUOTA_KEYS:,}-key quota; a registered client put {QUOTA_KEYS + EXTRA_KEYS:,} new "
        "keys, then tried an overwrite, an oversized value, a delete and a new key, and read "
        "the key count from a status reply; the child was SIGKILLed, restarted on its "
        "database, and every key read back.",
    )
