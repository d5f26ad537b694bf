"""Event records that both drivers emit and the harness's metrics consume.

Agents append a ``Completion`` whenever an operation completes at them: a
delivery reaches the handler, a task result reaches its submitter, or a
memory reply reaches its requester. Times are seconds since run start, read
from the driver's clock (``loop.time()`` offset for real, ``env.now`` for
sim). The core never reads a clock itself; it stamps the ``now`` it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Completion(NamedTuple):
    """One operation completed at one node.

    ``duplicate`` is True for a redelivery that the receiver suppressed
    (the handler did not run again). ``intact`` is False when the payload's
    checksum did not match.
    """

    op_id: int
    node: str
    at: float
    duplicate: bool
    intact: bool


class ProbeResult(NamedTuple):
    """One availability probe: sent at ``sent``, answered at ``answered`` (None if never)."""

    probe_id: int
    sent: float
    answered: float | None


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """Resource use of one real OS process (or of the whole sim run)."""

    name: str
    peak_rss_bytes: int
    cpu_seconds: float


@dataclass(slots=True)
class DriverResult:
    """What a driver hands back after replaying a plan."""

    backend: str
    transport: str
    completions: list[Completion] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    processes: list[ProcessUsage] = field(default_factory=list)
    registered: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    end_time: float = 0.0
    notes: list[str] = field(default_factory=list)
