"""Security checks: unauthenticated clients, wrong tokens and malformed frames.

How it works. Each attack opens its own loopback connection to the live
coordinator (``real.tcp.client.RawConnection``), writes its bytes and reads
the answer under a deadline. What the protocol promises (docs/protocol.md,
"Errors and closing links") is checked frame by frame:

- bus traffic before ``Hello`` gets ``Error("<Type> before registration")``
  per message and no service; its effects are then looked for from the
  bystander's side (the memory key it tried to write is absent, a publish to
  the topic it tried to subscribe reaches nobody, nothing it sent was
  delivered);
- a ``Hello`` with a wrong token gets ``Reject("bad token")`` and the server
  closes the link; the same node id on a fresh connection still gets no
  service;
- each kind of malformed frame (bad version byte, undecodable body, body of
  the wrong shape, truncated frame then EOF, oversized length, bad node id)
  arrives on a connection whose node first got a ``ProbeReply``; the server
  must close that connection, and after every single one the bystander must
  still be served and the coordinator process alive.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable

import msgpack

from harness.certify.security.base import SecurityCheck, Target
from protocol.codec import DEFAULT_MAX_FRAME, encode, encode_body
from protocol.envelope import ROUTED_VERSION, Routed
from protocol.messages import (
    Accepted,
    Ack,
    Broadcast,
    Busy,
    Deliver,
    Direct,
    Error,
    Heartbeat,
    Hello,
    MemReply,
    MemRequest,
    MemVerb,
    Message,
    Probe,
    ProbeReply,
    Publish,
    Reject,
    Subscribe,
    TaskDone,
    TaskDoneAck,
    TaskResult,
    TaskSubmit,
    Unsubscribe,
    Welcome,
)
from real.tcp.client import routed_frame

ATTACK_TIMEOUT = 3.0
SERVICE_TYPES = (Welcome, Accepted, Busy, MemReply, Deliver, TaskDone)
NAMESPACE = "security"
ANON = "anon-1"
ANON_TOPIC = "anon.topic"
LENGTH = struct.Struct(">I")


def _has_reply(node: str, probe_id: int) -> Callable[[list[Routed]], bool]:
    return lambda frames: any(n == node and m == ProbeReply(probe_id) for n, m in frames)


def _served(frames: list[Routed]) -> list[Message]:
    return [m for _, m in frames if isinstance(m, SERVICE_TYPES)]


async def _subscribers(target: Target) -> int:
    """How many subscribers a publish to ``ANON_TOPIC`` reaches now (-1: not accepted)."""
    answer = await target.bystander.publish(ANON_TOPIC, ATTACK_TIMEOUT)
    return answer.recipients if isinstance(answer, Accepted) else -1


async def _no_effect(
    target: Target, keys: list[str], origins: set[str], before: int
) -> tuple[bool, str]:
    """Nothing the refused clients sent took effect, seen from the bystander.

    ``before`` is what a publish to ``ANON_TOPIC`` reached before the attack:
    the refused subscriptions must not add to it. (Registered clients of
    earlier checks may hold a ``#`` subscription of their own until the
    failure detector drops them: the fuzzer's do, and the gateway's checks
    run after it, which once failed a certification with "reached 1".)"""
    bystander = target.bystander
    present = []
    for key in keys:
        reply = await bystander.get(NAMESPACE, key, ATTACK_TIMEOUT)
        if reply.ok:
            present.append(key)
    recipients = await _subscribers(target)
    delivered = [d for d in bystander.deliveries if d.origin in origins]
    ok = not present and 0 <= recipients <= before and not delivered
    detail = (
        f"{len(keys) - len(present)} of {len(keys)} keys they wrote are absent, "
        f"a publish to {ANON_TOPIC!r} reached {recipients} subscribers "
        f"({before} before the attack), "
        f"{len(delivered)} of their messages were delivered to the bystander"
    )
    return ok, detail


# --- 1. no service without a registration -------------------------------------------------


def _bus_messages(node: str, op_base: int) -> list[Message]:
    """One of every request an agent may send, as an unregistered node would."""
    payload = b"unauthenticated"
    crc = zlib.crc32(payload)
    return [
        Subscribe("anon.#"),
        Unsubscribe("anon.#"),
        Publish(op_base + 1, ANON_TOPIC, payload, crc),
        Direct(op_base + 2, "bystander", payload, crc),
        Broadcast(op_base + 3, payload, crc),
        Ack((1, 2, 3)),
        TaskSubmit(op_base + 4, "gpu", payload, crc),
        TaskResult(1, "bystander", 1, payload, crc),
        TaskDoneAck(op_base + 4),
        MemRequest(op_base + 5, MemVerb.PUT, NAMESPACE, node, b"stolen"),
        Heartbeat(1),
    ]


async def unauthenticated_checks(target: Target) -> list[SecurityCheck]:
    before = await _subscribers(target)
    conn = await target.connect()
    try:
        messages = _bus_messages(ANON, 100)
        for msg in messages:
            conn.send_msg(ANON, msg)
        conn.send_msg(ANON, Probe(77))
        seen = await conn.read_until(_has_reply(ANON, 77), ATTACK_TIMEOUT)
    finally:
        conn.close()
    errors = [m for _, m in seen.frames if isinstance(m, Error)]
    expected = [f"{type(m).__name__} before registration" for m in messages]
    matching = sum(1 for e, want in zip(errors, expected, strict=False) if e.reason == want)
    served = _served(seen.frames)
    refused_ok = matching == len(messages) and not served and seen.matched and not seen.closed
    refused = SecurityCheck(
        "unauthenticated_traffic_refused",
        refused_ok,
        f"{matching} of {len(messages)} bus messages sent before a Hello "
        f"({', '.join(type(m).__name__ for m in messages)}) were answered "
        f"Error('<Type> before registration'); {len(served)} service replies; "
        f"a Probe was answered ({'yes' if seen.matched else 'no'}: probes need no "
        "registration by design)",
        "A raw connection sent one of every agent request without a Hello, then a Probe, "
        "and every frame the coordinator sent back was decoded.",
    )
    effect_ok, effect = await _no_effect(target, [ANON], {ANON}, before)
    no_effect = SecurityCheck(
        "unauthenticated_traffic_has_no_effect",
        effect_ok,
        f"after the unregistered client's requests: {effect}",
        "The bystander read the memory key the unregistered client tried to write, "
        "published to the topic it tried to subscribe to (before and after the attack: "
        "no more subscribers after), and looked for its messages among its own deliveries.",
    )
    return [refused, no_effect]


# --- 2. wrong tokens -------------------------------------------------------------------------


def _wrong_tokens(token: str) -> list[str]:
    candidates = ["", "wrong-token", token[:-1], token + "x", token.upper()]
    unique: list[str] = []
    for candidate in candidates:
        if candidate != token and candidate not in unique:
            unique.append(candidate)
    return unique


async def wrong_token_checks(target: Target) -> list[SecurityCheck]:
    tokens = _wrong_tokens(target.settings.token)
    nodes = [f"intruder-{i}" for i in range(len(tokens))]
    before = await _subscribers(target)
    rejected = 0
    closed = 0
    leaks: list[str] = []
    for node, token in zip(nodes, tokens, strict=True):
        conn = await target.connect()
        try:
            conn.send(
                routed_frame(node, Hello(node, token, (), ("anon.#",)))
                + routed_frame(node, Publish(1, ANON_TOPIC, b"x", zlib.crc32(b"x")))
                + routed_frame(node, MemRequest(2, MemVerb.PUT, NAMESPACE, node, b"stolen"))
            )
            seen = await conn.read_until_closed(ATTACK_TIMEOUT)
        finally:
            conn.close()
        first = seen.frames[0] if seen.frames else None
        rejected += first == (node, Reject("bad token"))
        closed += seen.closed
        leaks += [f"{node}: {m!r}" for m in _served(seen.frames)]
    count = len(tokens)
    first_check = SecurityCheck(
        "wrong_token_rejected",
        rejected == count and closed == count and not leaks,
        f"{rejected} of {count} hellos with a wrong token (empty, wrong, truncated, "
        f"extended, upper-cased) got Reject('bad token'), {closed} of {count} links were "
        f"closed by the coordinator, {len(leaks)} service replies to the requests pipelined "
        "after the hello",
        "Each wrong token was sent in a Hello on its own connection, followed in the same "
        "write by a Publish and a memory put, and the connection was read until the "
        f"coordinator closed it (at most {ATTACK_TIMEOUT:.0f} s).",
    )

    errors = 0
    expected = 0
    after: list[str] = []
    for node in nodes:
        conn = await target.connect()
        try:
            requests = _bus_messages(node, 200)[:3] + _bus_messages(node, 200)[9:10]
            for msg in requests:
                conn.send_msg(node, msg)
            conn.send_msg(node, Probe(88))
            seen = await conn.read_until(_has_reply(node, 88), ATTACK_TIMEOUT)
        finally:
            conn.close()
        expected += len(requests)
        errors += sum(
            1 for _, m in seen.frames if isinstance(m, Error) and "before registration" in m.reason
        )
        after += [f"{node}: {m!r}" for m in _served(seen.frames)]
    effect_ok, effect = await _no_effect(target, nodes, set(nodes), before)
    second_check = SecurityCheck(
        "wrong_token_node_cannot_use_bus",
        errors == expected and not after and effect_ok,
        f"on fresh connections the {len(nodes)} rejected node ids sent {expected} requests "
        f"(subscribe, unsubscribe, publish, memory put): {errors} answered Error('... before "
        f"registration'), {len(after)} served; {effect}",
        "Each rejected node id reconnected and sent bus requests without a Hello; the "
        "bystander then looked for any effect of them.",
    )
    return [first_check, second_check]


# --- 3. malformed frames, each on its own connection ------------------------------------------


def _envelope(node: bytes, body: bytes, version: int = ROUTED_VERSION) -> bytes:
    return LENGTH.pack(2 + len(node) + len(body)) + bytes((version, len(node))) + node + body


def malformed_cases(max_frame: int = DEFAULT_MAX_FRAME) -> dict[str, list[tuple[str, bytes]]]:
    """Per class of malformed input: (label, bytes) cases; each goes on its own link."""
    node = b"m"
    probe = encode_body(Probe(1))
    return {
        "bad_version": [
            ("bare codec frame (version 1)", encode(Probe(1))),
            ("version 0x00", _envelope(node, probe, 0x00)),
            ("version 0x82", _envelope(node, probe, 0x82)),
            ("version 0xff", _envelope(node, probe, 0xFF)),
        ],
        "undecodable_body": [
            ("reserved byte 0xc1", _envelope(node, b"\xc1" * 7)),
            ("array cut short", _envelope(node, b"\x95\x0c\x07")),
            ("trailing bytes", _envelope(node, probe + b"\x00")),
            ("str that is not UTF-8", _envelope(node, b"\x92\x0a\xa2\xff\xfe")),
        ],
        "wrong_shape": [
            ("str where an int is due", _envelope(node, msgpack.packb([5, "x"]))),
            ("bool where an int is due", _envelope(node, msgpack.packb([5, True]))),
            ("unknown type code 99", _envelope(node, msgpack.packb([99, 1]))),
            ("too few fields", _envelope(node, msgpack.packb([12, 1]))),
            ("too many fields", _envelope(node, msgpack.packb([5, 1, 2]))),
            ("a map, not an array", _envelope(node, msgpack.packb({"type": 5}))),
            ("nil body", _envelope(node, b"\xc0")),
        ],
        "truncated": [
            (
                "header promises 100 bytes, 10 sent, then EOF",
                LENGTH.pack(100) + b"\x81\x01m" + b"1" * 7,
            ),
            ("header only, then EOF", LENGTH.pack(40)),
        ],
        "oversized": [
            (f"length {max_frame + 1} then 64 KiB", LENGTH.pack(max_frame + 1) + b"\x81" * 65536),
            ("length 0xffffffff", LENGTH.pack(0xFFFFFFFF) + b"\x81\x01m"),
        ],
        "node_id": [
            ("empty node id", _envelope(b"", probe)),
            ("node id not UTF-8", _envelope(b"\xff\xfe", probe)),
            ("node id longer than the frame", LENGTH.pack(5) + b"\x81\x40abc"),
        ],
    }


MALFORMED_TITLES = {
    "bad_version": "frames with a bad version byte",
    "undecodable_body": "frames with an undecodable msgpack body",
    "wrong_shape": "frames with a body of the wrong shape",
    "truncated": "truncated frames (then EOF)",
    "oversized": "frames with a length over the maximum",
    "node_id": "frames with a bad node id",
}


async def _one_malformed(
    target: Target, node: str, bad: bytes, eof: bool
) -> tuple[bool, bool, float]:
    """(closed by the server, an Error named the malformed input, seconds to close)."""
    conn = await target.connect()
    try:
        conn.send_msg(node, Probe(5))
        first = await conn.read_until(_has_reply(node, 5), ATTACK_TIMEOUT)
        if not first.matched:
            return False, False, 0.0
        started = time.perf_counter()
        conn.send(bad)
        if eof:
            conn.half_close()
        seen = await conn.read_until_closed(ATTACK_TIMEOUT)
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    errors = [m for n, m in seen.frames if n == node and isinstance(m, Error)]
    explained = any("malformed" in e.reason for e in errors)
    return seen.closed, explained, seconds


async def malformed_checks(target: Target) -> list[SecurityCheck]:
    checks: list[SecurityCheck] = []
    for kind, cases in malformed_cases().items():
        closed = explained = served = 0
        slowest = 0.0
        problems: list[str] = []
        for index, (label, bad) in enumerate(cases):
            node = f"malformed-{kind}-{index}"
            was_closed, was_explained, seconds = await _one_malformed(
                target, node, bad, eof=kind == "truncated"
            )
            ok, seen = await target.still_serves()
            closed += was_closed
            explained += was_explained
            served += ok
            slowest = max(slowest, seconds)
            if not (was_closed and ok):
                problems.append(f"{label}: closed={was_closed}, {seen}")
        count = len(cases)
        detail = (
            f"{closed} of {count} {MALFORMED_TITLES[kind]} had their connection closed by the "
            f"coordinator (slowest {slowest * 1000:.1f} ms), {explained} of {count} after an "
            f"Error naming the malformed input; the bystander was served and the "
            f"coordinator alive after {served} of {count}"
        )
        if problems:
            detail += "; failures: " + "; ".join(problems)
        checks.append(
            SecurityCheck(
                f"malformed_{kind}_refused",
                closed == count and served == count,
                detail,
                "Each case went on its own connection after a Probe from the same node was "
                "answered; the connection was read until the coordinator closed it, then the "
                "bystander asked for service. Cases: " + "; ".join(lbl for lbl, _ in cases) + ".",
            )
        )
    return checks
