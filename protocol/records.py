"""Event records that both drivers emit and the harness's metrics consume.

Agents append a ``Completion`` whenever an operation completes at them: a
delivery reaches the handler, a task result reaches its submitter, or a
memory reply reaches its requester. They also note every op the coordinator
accepted (``accepted``) and every acknowledged memory write (``WriteAck``),
which is what "acknowledged data" means when the harness counts losses.
Times are seconds since run start, read from the driver's clock
(``time.perf_counter()`` since the run's start for real, ``env.now`` for
sim). The core never reads a clock itself; it stamps the ``now`` it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# A live view of a run (``swarmtwin serve``): called about ten times a second of run
# time with the run clock's now, then the op ids and times of the unique (not
# duplicate) completions since the previous call. The records above stay the
# source of every figure; a feed only lets a watcher draw the run as it goes.
LiveFeed = Callable[[float, Sequence[int], Sequence[float]], None]
LIVE_INTERVAL = 0.1  # seconds of run time between two calls of a feed


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


class NodeEvent(NamedTuple):
    """Something that happened to a node, for the recovery figures.

    ``kind`` is one of: ``"failed"`` (the coordinator declared the agent
    failed), ``"reassigned"`` (a task taken from that failed agent was given
    to another), ``"returned"`` (a failed agent spoke again), ``"registered"``
    (an agent the coordinator did not know said hello), and, from the
    drivers' fault injectors, ``"injected"`` and ``"healed"`` (``node`` is
    then the agent, or ``"coordinator"``).
    """

    at: float
    kind: str
    node: str


DELETED = -1  # a WriteAck's checksum for an acknowledged delete


class WriteAck(NamedTuple):
    """A memory write (put, cas or delete) that its requester saw acknowledged.

    For a delete, ``version`` is the version it removed and ``checksum`` is
    ``DELETED``.
    """

    op_id: int
    namespace: str
    key: str
    version: int
    checksum: int
    at: float


class StoreSnapshot(NamedTuple):
    """The memory a coordinator restarted from: ``(namespace, key) -> (version, crc)``."""

    at: float
    entries: dict[tuple[str, str], tuple[int, int]]


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
    # CPU seconds from the start of the load (the run's t0) to the stop, where the
    # process knows them (a tcp worker): its whole life less setup and teardown
    load_cpu_seconds: float | None = None
    # seconds its threads were runnable but waited for a core (the kernel's run-queue
    # delay, ``real.usage.run_queue_wait``); None where the kernel does not say
    wait_seconds: float | None = None


@dataclass(slots=True)
class DriverResult:
    """What a driver hands back after replaying a plan.

    ``status`` is the coordinator's answer to the prober's one
    ``StatusRequest`` at ``Plan.status_at``, as ``protocol.status.status_dict``
    gives it (``{component: {"health": str, "metrics": {name: number}}}``);
    None when no reply came back (or the plan takes no snapshot).

    ``shed`` names the ops their origin gave up before the coordinator
    accepted them (admission control, ``protocol.requests``): refused with
    ``Busy`` or still queued once their admission deadline had passed. They
    are neither delivered nor lost; an op named both here and in ``accepted``
    (a retry that was accepted after all) counts as accepted.

    ``errors`` names what went wrong with the run itself, as opposed to what
    it measured: a core exception the coordinator survived, a worker process
    that failed, a coordinator that did not restart. A result with any error
    is not evidence (``harness.metrics.figures.invalid_reasons``); ``notes``
    stays free text for people.
    """

    backend: str
    transport: str
    completions: list[Completion] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    processes: list[ProcessUsage] = field(default_factory=list)
    registered: dict[str, float] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)
    shed: list[int] = field(default_factory=list)
    events: list[NodeEvent] = field(default_factory=list)
    write_acks: list[WriteAck] = field(default_factory=list)
    restarts: list[StoreSnapshot] = field(default_factory=list)
    wall_seconds: float = 0.0
    end_time: float = 0.0
    notes: list[str] = field(default_factory=list)
    status: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    # the model only: CPU seconds each simulated process was charged, by part
    # (``sim.engine.Engine.busy``), to set beside a real process's CPU time
    busy: dict[str, dict[str, float]] = field(default_factory=dict)
