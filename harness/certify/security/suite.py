"""Security compliance: real checks against a running tcp coordinator.

How it works. ``run_security_checks(seed)`` starts its own coordinator as a
child process (``real.tcp.children.ServerProcess``: loopback, an ephemeral port,
a SQLite file in a temporary directory, default settings), registers a
legitimate *bystander* agent on its own connection (``real.tcp.client``), and
runs the checks one group after another against that one coordinator:

1. ``harness.certify.security.attacks``: requests before ``Hello`` get ``Error`` and no
   service and take no effect; wrong tokens get ``Reject`` and a closed link,
   and the rejected ids still get no service; every kind of malformed frame
   closes its connection while the bystander stays served;
2. ``harness.certify.security.bind``: the default bind is 127.0.0.1 (seen from
   outside the process); that ``swarmtwin coordinator --host 0.0.0.0``
   refuses the public default token is a harness check
   (``harness.certify.cli_check``), added to the report by ``certify``;
3. ``harness.certify.security.flood``: publish floods level off in the coordinator's
   RSS (a slow subscriber, zero-recipient publishes, unread replies);
4. ``harness.certify.security.limits``: one client cannot grow the coordinator's
   memory past its limits (GETs of a large value left unread, subscriptions
   per agent, node ids bound without registering);
5. ``harness.certify.security.quota``: the memory store's key quota refuses new keys
   and loses no acknowledged write (on a second coordinator child with a
   small quota, SIGKILLed and restarted);
6. ``harness.certify.security.fuzz``: seeded fuzzed frames (``harness.certify.security.frames``);
7. ``harness.certify.security.gateway``: groups 1 and 6 again, through the portal's
   WebSocket gateway attached to the same coordinator (``gateway_...``);
8. ``coordinator_survived``: the bystander is served one last time, then the
   coordinator is asked to stop and must answer with its report.

Each group runs under ``guarded`` (an exception fails that group's checks
and the run goes on) and within what is left of ``RUN_TIMEOUT``. Every loop
in the checks is bounded in count and time. The temporary directory is
removed and every child is reaped (``ChildProcesses.reap``: join, then
terminate, then kill) whatever happens. ``SecurityReport.compliance`` is the
percent of checks passed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from harness.certify.security.attacks import (
    malformed_cases,
    malformed_checks,
    unauthenticated_checks,
    wrong_token_checks,
)
from harness.certify.security.base import (
    SecurityCheck,
    SecurityReport,
    Target,
    check_service,
    guarded,
)
from harness.certify.security.bind import loopback_check
from harness.certify.security.flood import flood_checks
from harness.certify.security.fuzz import fuzz_checks
from harness.certify.security.gateway import GATEWAY_CHECK_NAMES, gateway_checks
from harness.certify.security.limits import limit_checks
from harness.certify.security.quota import quota_check
from protocol.settings import ProtocolSettings
from real.clock import new_event_loop
from real.tcp.children import ChildProcesses, ServerProcess
from real.tcp.client import Bystander

__all__ = [
    "CHECK_NAMES",
    "SecurityCheck",
    "SecurityReport",
    "Target",
    "check_service",
    "run_security_checks",
    "run_security_checks_async",
]

RUN_TIMEOUT = 90.0
BYSTANDER = "bystander"
Progress = Callable[[str], None]
GROUP_METHOD = "The check's group did not complete, so nothing was measured."


GROUP_NAMES: tuple[tuple[str, ...], ...] = (
    ("unauthenticated_traffic_refused", "unauthenticated_traffic_has_no_effect"),
    ("wrong_token_rejected", "wrong_token_node_cannot_use_bus"),
    tuple(f"malformed_{kind}_refused" for kind in malformed_cases()),
    ("default_bind_loopback",),
    ("flood_memory_bounded", "flood_unread_replies_bounded"),
    ("large_reads_bounded", "subscription_limit_enforced", "unregistered_ids_limited"),
    ("memory_key_quota_enforced",),
    ("fuzzed_frames_survived",),
    GATEWAY_CHECK_NAMES,
    ("coordinator_survived",),
)
CHECK_NAMES: tuple[str, ...] = tuple(name for group in GROUP_NAMES for name in group)
Group = Callable[[], Awaitable[list[SecurityCheck]]]


def _groups(target: Target, seed: int, fuzz_frames: int) -> list[Group]:
    """How to run each group of ``GROUP_NAMES``, in the same order."""

    async def bind() -> list[SecurityCheck]:
        return await loopback_check(target)

    async def quota() -> list[SecurityCheck]:
        return [await quota_check(target)]

    return [
        partial(unauthenticated_checks, target),
        partial(wrong_token_checks, target),
        partial(malformed_checks, target),
        bind,
        partial(flood_checks, target),
        partial(limit_checks, target),
        quota,
        partial(fuzz_checks, target, seed, fuzz_frames),
        partial(gateway_checks, target, seed, fuzz_frames),
        partial(_survived, target),
    ]


async def _survived(target: Target) -> list[SecurityCheck]:
    """Served once more, then a clean stop on request with the coordinator's own report."""
    served = await check_service(target, "coordinator_survived", "every attack")
    _, report = await target.server.stop()
    if report is None:
        stop_text = "it did not answer the stop request with its report"
    else:
        stats = report.stats
        stop_text = (
            f"on stop it reported {report.connections} connections, "
            f"{report.refused_connections} refused for malformed or hostile input, "
            f"{stats.get('refused', 0)} requests refused by the core, "
            f"{stats.get('received', 0):,} messages received"
        )
    return [
        SecurityCheck(
            served.name,
            served.passed and report is not None,
            f"{served.detail}; {stop_text}",
            served.method + " Then the coordinator was asked to stop and had to send its report.",
        )
    ]


async def run_security_checks_async(
    seed: int, fuzz_frames: int = 500, progress: Progress | None = None
) -> SecurityReport:
    """``run_security_checks`` for a caller already inside an event loop's thread."""
    say = progress or (lambda _: None)
    checks: list[SecurityCheck] = []
    children = ChildProcesses()
    bystander: Bystander | None = None
    deadline = time.monotonic() + RUN_TIMEOUT
    with tempfile.TemporaryDirectory(prefix="swarmtwin-security-") as scratch:
        try:
            settings = ProtocolSettings()
            db_path = str(Path(scratch) / "coordinator.sqlite")
            server = await ServerProcess.start(children, settings, db_path)
            say(f"security: coordinator pid {server.pid} on 127.0.0.1:{server.port}")
            bystander = await Bystander.register(
                server.port, BYSTANDER, settings.token, settings.heartbeat_interval
            )
            target = Target(server, settings, bystander)
            for names, run in zip(GROUP_NAMES, _groups(target, seed, fuzz_frames), strict=True):
                left = deadline - time.monotonic()
                named = tuple((name, GROUP_METHOD) for name in names)
                group = await guarded(named, partial(_within, run, left))
                for check in group:
                    say(f"security: {check.name}: {'passed' if check.passed else 'FAILED'}")
                checks.extend(group)
        except Exception as exc:  # the coordinator or the bystander never came up
            reason = f"the run could not start: {type(exc).__name__}: {exc}"
            done = {c.name for c in checks}
            checks.extend(
                SecurityCheck(name, False, reason, GROUP_METHOD)
                for name in CHECK_NAMES
                if name not in done
            )
            say(f"security: {reason}")
        finally:
            if bystander is not None:
                with contextlib.suppress(Exception):
                    await bystander.close()
            children.reap()
            for note in children.notes:
                say(f"security: {note}")
    return SecurityReport(tuple(checks), seed, fuzz_frames)


async def _within(run: Group, seconds: float) -> list[SecurityCheck]:
    if seconds <= 0:
        raise TimeoutError(f"the run's {RUN_TIMEOUT:.0f} s budget was spent before it")
    return await asyncio.wait_for(run(), seconds)


def run_security_checks(
    seed: int, fuzz_frames: int = 500, progress: Progress | None = None
) -> SecurityReport:
    """Start a coordinator, run every security check against it, reap it; the report.

    Same ``seed``, same fuzzed frames. ``progress`` gets one line per check.
    Called from a thread that runs an event loop, the checks run on a fresh
    loop in a helper thread (and ``progress`` is called from there).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_new_loop(seed, fuzz_frames, progress)
    with concurrent.futures.ThreadPoolExecutor(1, "security-checks") as pool:
        return pool.submit(_run_on_new_loop, seed, fuzz_frames, progress).result()


def _run_on_new_loop(seed: int, fuzz_frames: int, progress: Progress | None) -> SecurityReport:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(run_security_checks_async(seed, fuzz_frames, progress))
    finally:
        loop.close()
