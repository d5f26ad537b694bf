"""The security checks again, through the portal's WebSocket gateway (``/ws/agent``).

A client that joins over the gateway must meet the same refusals as one on a
tcp link. ``gateway_checks(target, seed, fuzz_frames)`` serves the portal
(``harness.portal.app``, uvicorn on a loopback socket of its own, in this
event loop) attached to the coordinator under test, registers a second
bystander through the gateway, and runs the attack groups that concern what
a client sends, each attacker on its own WebSocket
(``harness.portal.wsclient.open_ws``: one message per frame of the tcp
envelope):

- ``unauthenticated_checks``, ``wrong_token_checks`` and ``malformed_checks``
  (``harness.certify.security.attacks``);
- ``fuzz_checks`` (``harness.certify.security.fuzz``) with the same seed.

Each check keeps its name with ``gateway_`` in front, and its method says that
it ran through the gateway. The last check, ``gateway_still_serves``, asks both
bystanders for service: the one on the gateway and the one on tcp. The groups
that measure the coordinator's own memory and bind (flood, limits, quota,
bind) run on tcp only; the gateway adds no buffer of its own (one frame in
flight each way, ``harness.portal.gateway``).

A frame the gateway itself refuses (a text message, a message that is not
exactly one frame) closes the WebSocket with 1008 before the coordinator sees
it; the attacks count a closed connection as refused either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

from harness.certify.security.attacks import (
    malformed_cases,
    malformed_checks,
    unauthenticated_checks,
    wrong_token_checks,
)
from harness.certify.security.base import SecurityCheck, Target, guarded
from harness.certify.security.fuzz import fuzz_checks
from harness.portal.serving import portal_gateway
from real.tcp.client import Bystander, RawConnection

PREFIX = "gateway_"
BYSTANDER = "gateway-bystander"
THROUGH = (
    " Through the portal's WebSocket gateway (swarmtwin serve --coordinator, /ws/agent): "
    "each connection was a WebSocket carrying one tcp envelope frame per binary message."
)
CLOSED = "closed (by the gateway or the coordinator)"
GROUP_METHOD = "The check's group did not complete, so nothing was measured."
Group = Callable[[], Awaitable[list[SecurityCheck]]]

GATEWAY_GROUPS: tuple[tuple[str, ...], ...] = tuple(
    tuple(PREFIX + name for name in group)
    for group in (
        ("unauthenticated_traffic_refused", "unauthenticated_traffic_has_no_effect"),
        ("wrong_token_rejected", "wrong_token_node_cannot_use_bus"),
        tuple(f"malformed_{kind}_refused" for kind in malformed_cases()),
        ("fuzzed_frames_survived",),
        ("still_serves",),
    )
)
GATEWAY_CHECK_NAMES: tuple[str, ...] = tuple(name for group in GATEWAY_GROUPS for name in group)


async def gateway_checks(target: Target, seed: int, fuzz_frames: int) -> list[SecurityCheck]:
    """Every check of ``GATEWAY_CHECK_NAMES``, in order, through the gateway."""
    from harness.portal.wsclient import open_ws

    checks: list[SecurityCheck] = []
    async with portal_gateway("127.0.0.1", target.port, target.settings.token) as url:

        async def dial() -> RawConnection:
            return await open_ws(url)

        bystander = await Bystander.register(
            0,
            BYSTANDER,
            target.settings.token,
            target.settings.heartbeat_interval,
            conn=await open_ws(url),
        )
        through = Target(target.server, target.settings, bystander, dial)
        try:
            groups: list[Group] = [
                lambda: unauthenticated_checks(through),
                lambda: wrong_token_checks(through),
                lambda: malformed_checks(through),
                lambda: fuzz_checks(through, seed, fuzz_frames),
            ]
            for names, run in zip(GATEWAY_GROUPS, groups, strict=False):
                named = tuple((name, GROUP_METHOD) for name in names)
                checks += await guarded(named, _renaming(run))
            checks.append(await _still_serves(target, through))
        finally:
            with contextlib.suppress(Exception):
                await bystander.close()
    return checks


def _renaming(run: Group) -> Group:
    async def renamed() -> list[SecurityCheck]:
        return [
            dataclasses.replace(
                check,
                name=PREFIX + check.name,
                # a message that is not exactly one frame is refused by the gateway itself
                detail=check.detail.replace("closed by the coordinator", CLOSED),
                method=check.method + THROUGH,
            )
            for check in await run()
        ]

    return renamed


async def _still_serves(tcp: Target, through: Target) -> SecurityCheck:
    served_ws, seen_ws = await through.still_serves()
    served_tcp, seen_tcp = await tcp.still_serves()
    return SecurityCheck(
        PREFIX + "still_serves",
        served_ws and served_tcp,
        f"after every attack through the gateway: on the gateway, {seen_ws}; on tcp, {seen_tcp}",
        "A bystander registered through the gateway and the bystander on tcp each sent a "
        "probe, a memory put and a get of the value put, each answered within 5 s.",
    )
