"""The security checks' result types and the live coordinator they run against.

How it works. Every check returns ``SecurityCheck`` records (name, passed,
detail with the measured figures, one sentence of method), and
``SecurityReport`` collects them with the seed. ``Target`` is the running
coordinator child (``real.tcp.children.ServerProcess``) plus the ``Bystander``,
a legitimate registered agent on its own connection. ``Target.still_serves``
is the liveness test every attack ends with: the coordinator process is
alive and the bystander gets a probe, a memory write and a read answered
within a deadline. ``guarded`` runs one group of checks so that an exception
in it becomes failed checks with the exception in their detail instead of
ending the run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protocol.settings import ProtocolSettings
from real.tcp.children import ServerProcess
from real.tcp.client import Bystander, RawConnection

SERVICE_TIMEOUT = 5.0
log = logging.getLogger("swarmtwin.security")


@dataclass(frozen=True)
class SecurityCheck:
    """One security check: what was measured and whether it passed."""

    name: str
    passed: bool
    detail: str
    method: str


@dataclass(frozen=True)
class SecurityReport:
    """Every check of one run against one coordinator."""

    checks: tuple[SecurityCheck, ...]
    seed: int
    fuzz_frames: int

    @property
    def compliance(self) -> float:
        """Percent of checks passed, 0..100 (0 when there are none)."""
        if not self.checks:
            return 0.0
        return 100.0 * sum(1 for c in self.checks if c.passed) / len(self.checks)

    @property
    def failed(self) -> tuple[SecurityCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)


@dataclass(slots=True)
class Target:
    """The coordinator under test and the legitimate agent that watches it."""

    server: ServerProcess
    settings: ProtocolSettings
    bystander: Bystander
    # how an attacker connects: a tcp connection to the coordinator unless given
    # (``harness.certify.security.gateway``: through the portal's WebSocket gateway)
    dial: Callable[[], Awaitable[RawConnection]] | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def connect(self) -> RawConnection:
        """A new attacker's connection to the coordinator under test."""
        if self.dial is not None:
            return await self.dial()
        return await RawConnection.open(self.port)

    async def still_serves(self, timeout: float = SERVICE_TIMEOUT) -> tuple[bool, str]:
        """(served, what was seen): the process is alive and the bystander is served."""
        if not self.server.alive:
            return False, "the coordinator process is dead"
        result = await self.bystander.serve_once(timeout)
        alive = self.server.alive
        if result.served and alive:
            return True, f"bystander served ({result.detail}), coordinator alive"
        state = "alive" if alive else "dead"
        return False, f"bystander not served: {result.detail}; coordinator {state}"


async def check_service(target: Target, name: str, after: str) -> SecurityCheck:
    """A check that passes only if the coordinator still serves the bystander."""
    served, seen = await target.still_serves()
    return SecurityCheck(
        name,
        served,
        f"after {after}: {seen}",
        "The coordinator child process was polled and a registered bystander agent sent "
        "a probe, a memory put and a get of the value put, each answered within "
        f"{SERVICE_TIMEOUT:.0f} s.",
    )


async def guarded(
    names_and_methods: tuple[tuple[str, str], ...],
    run: Callable[[], Awaitable[list[SecurityCheck]]],
) -> list[SecurityCheck]:
    """``run()``; if it raises, every named check fails with the exception as detail.

    A group must return exactly its named checks, in order: a check it left out
    is added as failed, so a group cannot shrink the compliance denominator.
    """
    try:
        checks = await run()
    except Exception as exc:  # a check that breaks is a failed check, not a crash
        log.info("security check group %s raised", names_and_methods[0][0], exc_info=True)
        return [
            SecurityCheck(name, False, f"the check raised {type(exc).__name__}: {exc}", method)
            for name, method in names_and_methods
        ]
    returned = {check.name: check for check in checks}
    missing = "the check's group did not return this check"
    return [
        returned.get(name) or SecurityCheck(name, False, missing, method)
        for name, method in names_and_methods
    ]
