"""The model's parts: a CPU (``Server``), a node on it (``SimNode``) and the events
that reach a node (``Arrival``, ``Batch``, ``TimerDue``).

``sim.engine`` schedules the events and serves them; these classes only hold
state. A ``Server`` is busy until a simulated time and counts the CPU seconds it
was charged, by part (``BUSY_PARTS``), to set beside what a real process
measured. A ``SimNode`` is one protocol object (coordinator or agent; the prober
has no core and no server) with its service-time samplers and its armed timer.
A node that ``persists`` (a Raft replica) sends nothing at the end of a job:
a ``Flush`` event persists and sends for every job since the last one.
The events are bare SimPy events (compiled, yet subclasses of SimPy's ``Event``)
with no process behind them, which keeps the model fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from mypy_extensions import mypyc_attr
from simpy.events import Event

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import Message
from sim.distribution import Sampler

BUSY_PARTS = ("service", "recipients", "wire", "payload", "timers")
Callbacks = tuple[Callable[[Any], None], ...]


class Persisting(Protocol):
    """A core that persists before it sends (``sim.replicas.SimReplica``): served as a
    coordinator is, but its output waits for a ``Flush``."""

    def start(self, now: float) -> None: ...

    def receive(self, src: str, msg: Message, now: float) -> None: ...

    def on_timer(self, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def drain(self) -> list[tuple[str, Message]]: ...

    def persist(self, now: float) -> tuple[float, float]:
        """Write what changed; return the seconds of CPU it took and the seconds the
        writes blocked the loop on the disk."""
        ...


class Server:
    """One CPU: the simulated time until which it is busy, and the CPU seconds it
    was charged, by part (``BUSY_PARTS``): what the model predicts the process
    spends, to compare with the CPU time a real process measured."""

    __slots__ = (
        "busy_until",
        "run_since",
        "ran",
        "service",
        "recipients",
        "wire",
        "payload",
        "timers",
        "jobs",
        "saved",
        "blocked",
        "disk_from",
        "disk_until",
    )

    def __init__(self, start: float) -> None:
        self.busy_until = start
        self.run_since = start  # when its current run of back-to-back jobs began
        self.ran = 0.0  # CPU seconds it ran since then (waiting for a core is not running)
        self.service = 0.0  # message and issue jobs' service times, after batch savings
        self.recipients = 0.0  # per_recipient_seconds of the Delivers a job emitted
        self.wire = 0.0  # codec: per message and per byte (tcp)
        self.payload = 0.0  # building and verifying payloads
        self.timers = 0.0  # timer jobs
        self.jobs = 0  # message jobs that joined no batch, issue jobs and timer jobs
        self.saved = 0.0  # what messages that joined a batch saved
        self.blocked = 0.0  # waiting on the disk (a replica's commits): busy, but not CPU
        self.disk_from = -math.inf  # its latest wait on the disk, off the CPU (``_sliced``)
        self.disk_until = -math.inf

    def busy(self) -> dict[str, float]:
        """CPU seconds charged so far, by part, then ``jobs`` (a count), ``saved`` and
        ``blocked`` (seconds on the disk, not CPU)."""
        parts = {part: float(getattr(self, part)) for part in BUSY_PARTS}
        return {**parts, "jobs": float(self.jobs), "saved": self.saved, "blocked": self.blocked}


class SimNode:
    """A protocol object, its server, its service-time samplers and its armed timer."""

    __slots__ = (
        "node_id",
        "core",
        "role",
        "server",
        "service",
        "timer_cost",
        "armed",
        "arrive",
        "last_start",
        "saving",
        "index",
        "hosts",
        "shed_seen",
        "wire_message",
        "wire_byte",
        "job",
        "persists",
        "flush_due",
    )

    def __init__(
        self,
        node_id: str,
        core: Coordinator | Agent | Persisting | None,
        role: str,
        server: Server | None,
        service: dict[type, Sampler],
        timer_cost: Sampler,
        index: int = 0,
    ) -> None:
        self.node_id = node_id
        self.core = core
        self.role = role
        self.server = server
        self.service = service
        self.timer_cost = timer_cost
        self.armed: float | None = None
        self.arrive: Callbacks = ()
        self.last_start = -math.inf  # when this node's latest message job starts
        self.saving = 0.0  # what a message saves by joining a queued batch
        self.index = index  # the order in which the node was added
        self.hosts: tuple[Server, ...] = ()  # a coordinator's servers when it has several
        self.shed_seen = 0  # an agent's shed ops already reported (``Engine.on_shed``)
        self.wire_message = 0.0  # the codec's cost per message and per byte, for this role
        self.wire_byte = 0.0
        self.job = 0.0  # the per-job cost in each drawn service time (figure (i))
        self.persists = False  # its output leaves only after a flush that persists first
        self.flush_due = False  # a ``Flush`` is scheduled


@mypyc_attr(native_class=False)  # compiled, yet a subclass of SimPy's Event
class Arrival(Event):
    """A message reaching ``node`` (a bare SimPy event: no process, no __init__ work)."""

    __slots__ = ("node", "src", "msg")

    def __init__(self, callbacks: Callbacks, node: SimNode, src: str, msg: Message) -> None:
        self.callbacks = callbacks  # type: ignore[assignment]
        self._ok = True
        self.node = node
        self.src = src
        self.msg = msg


@mypyc_attr(native_class=False)
class Batch(Event):
    """Several messages that left one process for another in one write, arriving
    together: ``items`` are ``(node, src, msg)``, served in order."""

    __slots__ = ("items",)

    def __init__(self, callbacks: Callbacks, items: list[tuple[SimNode, str, Message]]) -> None:
        self.callbacks = callbacks  # type: ignore[assignment]
        self._ok = True
        self.items = items


@mypyc_attr(native_class=False)
class TimerDue(Event):
    """``node``'s deadline ``at`` has come."""

    __slots__ = ("node", "at")

    def __init__(self, callbacks: Callbacks, node: SimNode, at: float) -> None:
        self.callbacks = callbacks  # type: ignore[assignment]
        self._ok = True
        self.node = node
        self.at = at


@mypyc_attr(native_class=False)
class Flush(Event):
    """``node`` (one that ``persists``) writes what its jobs since the last flush
    changed, then sends what they produced: a real server's end of a loop turn."""

    __slots__ = ("node",)

    def __init__(self, callbacks: Callbacks, node: SimNode) -> None:
        self.callbacks = callbacks  # type: ignore[assignment]
        self._ok = True
        self.node = node
