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
    (an agent the coordinator did not know said hello), ``"leader"`` and
    ``"deposed"`` (a replica of a replicated coordinator started or stopped
    serving, ``protocol.consensus.replica``), and, from the drivers' fault
    injectors, ``"injected"`` and ``"healed"`` (``node`` is then the agent, or
    ``"coordinator"``).
    """

    at: float
    kind: str
    node: str


DELETED = -1  # a WriteAck's checksum for an acknowledged delete


class MemCall(NamedTuple):
    """One memory request as its client saw it, for the linearizability check
    (``harness.metrics.linearizable``): when it was submitted (``invoked``) and
    answered (``returned``; ``math.inf`` when no answer came: it may or may not
    have taken effect), what it asked (``checksum`` of the value a put or cas
    wrote, a cas's ``expected`` version) and what came back (``ok``, ``version``,
    and ``read``, the checksum of the value a get read)."""

    op_id: int
    client: str
    verb: int  # ``protocol.messages.MemVerb``
    namespace: str
    key: str
    invoked: float
    returned: float
    checksum: int
    expected: int
    ok: bool
    version: int
    read: int


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

    def on_time(self, deadline: float) -> bool:
        """Answered within ``deadline`` seconds of being sent (what uptime counts)."""
        return self.answered is not None and self.answered - self.sent <= deadline


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """What a run did since the previous batch, for a live view (``swarmtwin serve``).

    ``ids``, ``ats`` and ``nodes`` are the op id, time and receiver of each
    unique (not duplicate) completion; ``shed`` the ops their origins shed;
    ``probes`` the prober's results as they stand at ``now`` (every probe sent
    so far, answered or not; empty when this batch has no news of them). A
    driver may hand over several batches per ``LIVE_INTERVAL`` (one per tcp
    worker report). The records above stay the source of every figure; a
    feed only lets a watcher draw the run as it goes.
    """

    now: float
    ids: Sequence[int] = ()
    ats: Sequence[float] = ()
    nodes: Sequence[str] = ()
    shed: Sequence[int] = ()
    probes: Sequence[ProbeResult] = ()


LiveFeed = Callable[[LiveBatch], None]


class LiveParts:
    """A driver's ``LiveBatch`` in the making: completions and shed ops as they come."""

    __slots__ = ("ats", "ids", "nodes", "shed")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.ats: list[float] = []
        self.nodes: list[str] = []
        self.shed: list[int] = []

    def add(self, completion: Completion) -> None:
        """One unique completion (the caller leaves out duplicates)."""
        self.ids.append(completion.op_id)
        self.ats.append(completion.at)
        self.nodes.append(completion.node)

    def extend(self, completions: Sequence[Completion]) -> None:
        """The unique ones among ``completions``."""
        fresh = [c for c in completions if not c.duplicate]
        self.ids.extend([c.op_id for c in fresh])
        self.ats.extend([c.at for c in fresh])
        self.nodes.extend([c.node for c in fresh])

    def take(self, now: float, probes: Sequence[ProbeResult] = ()) -> LiveBatch:
        """The batch so far, and start a new one."""
        batch = LiveBatch(now, self.ids, self.ats, self.nodes, self.shed, tuple(probes))
        self.ids, self.ats, self.nodes, self.shed = [], [], [], []
        return batch


LIVE_INTERVAL = 0.1  # seconds of run time between two batches of a feed, about


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


class TaskStamp(NamedTuple):
    """One coordinator's times for one task, noted when its result passed through
    (``Coordinator.stamp_tasks``): when the task arrived there, when it was last
    given to a worker (an agent or a neighbour), when its result came back, and
    whether an agent of this coordinator ran it."""

    origin: str
    op_id: int
    node: str
    queued_at: float
    assigned_at: float
    done_at: float
    ran_here: bool


@dataclass(frozen=True, slots=True)
class CoordinatorFigures:
    """One coordinator of a tree at the end of a run (``protocol.treereport.tree_figures``):
    its level (the root is 1), messages, refusals, and what it did with tasks."""

    node_id: str
    level: int
    received: int
    sent: int
    busy: int
    redelivered: int
    tasks_run: int  # on its own agents
    queue_peak: int  # the most tasks that waited here at once
    steals: int  # steal requests it sent its children
    steals_granted: int
    steals_refused: int
    tasks_given: int  # tasks it gave its parent for steals
    steal_seconds: float  # request to answer, summed
    steal_seconds_max: float
    ops_entered: int = 0  # publishes, directs and broadcasts its agents sent it
    ops_routed: int = 0  # such ops it routed, its agents' and its neighbours' (once each)
    occupancy_peak_s: float = 0.0  # the most seconds of work that waited here (at a Load)


REPLICA_COUNTS = (
    "commits",  # readies that changed storage: one transaction each
    "flushes",  # loop turns that persisted and sent
    "flush_bytes",  # log entry bytes stored plus committed entry bytes applied
    "frames",  # consensus frames received from the other replicas
    "frame_bytes",  # their bodies' bytes
    "entries",  # log entries (batches of the coordinator's work) applied
)


def replica_note(node: str, counts: dict[str, float]) -> str:
    """One replica's ``REPLICA_COUNTS`` as a run note, the same from every driver."""
    return (
        f"replica {node}: {counts['commits']:.0f} raft log commits, {counts['flushes']:.0f} "
        f"flushes ({counts['flush_bytes'] / 1e6:.1f} MB stored and applied), "
        f"{counts['frames']:.0f} consensus frames received ({counts['frame_bytes'] / 1e6:.1f} MB), "
        f"{counts.get('entries', 0):.0f} log entries applied"
    )


STORE_COUNTS = (
    "reads",  # QuorumReads answered
    "writes",  # QuorumWrites that changed a cell (a newer stamp)
    "commits",  # loop turns that made cells durable: one transaction each
    "refused",  # requests refused (a bad token, a key or value out of bounds)
)


def store_note(node: str, counts: dict[str, float]) -> str:
    """One storage replica's ``STORE_COUNTS`` as a run note, the same from every driver."""
    return (
        f"storage replica {node}: {counts['reads']:.0f} reads, {counts['writes']:.0f} cells "
        f"written, {counts['commits']:.0f} commits, {counts['refused']:.0f} refused"
    )


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

    ``coordinators`` has one row per coordinator of a tree (empty for a flat one).
    ``registered`` holds when each agent's registration was seen, and
    ``spawn_at`` when the driver began to start the agents (tcp: before the worker
    processes were started; inproc: before the state machines were built; the
    model: when its agents start), both on the run clock (negative: before the
    load).
    """

    backend: str
    transport: str
    completions: list[Completion] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    processes: list[ProcessUsage] = field(default_factory=list)
    registered: dict[str, float] = field(default_factory=dict)
    spawn_at: float | None = None  # when the driver began starting agents (run clock)
    accepted: list[int] = field(default_factory=list)
    shed: list[int] = field(default_factory=list)
    events: list[NodeEvent] = field(default_factory=list)
    write_acks: list[WriteAck] = field(default_factory=list)
    restarts: list[StoreSnapshot] = field(default_factory=list)
    # a quorum store's contents at the end: every key's newest cell over all its
    # storage replicas' files (``protocol.consensus.quorum.newest_cells``)
    final_store: StoreSnapshot | None = None
    wall_seconds: float = 0.0
    end_time: float = 0.0
    notes: list[str] = field(default_factory=list)
    status: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    coordinators: list[CoordinatorFigures] = field(default_factory=list)  # of a tree
    task_stamps: list[TaskStamp] = field(default_factory=list)  # inproc and the model
    # every memory request of the run, answered or not (``Agent.memory_history``);
    # None when the driver could not keep all of them (a killed worker's are lost)
    mem_history: list[MemCall] | None = field(default_factory=list)
    # the model only: CPU seconds each simulated process was charged, by part
    # (``sim.engine.Engine.busy``), to set beside a real process's CPU time
    busy: dict[str, dict[str, float]] = field(default_factory=dict)
    # a replicated coordinator's replicas, by id: what each did (``REPLICA_COUNTS``)
    replicas: dict[str, dict[str, float]] = field(default_factory=dict)
    # a quorum store's storage replicas, by id: what each did (``STORE_COUNTS``)
    stores: dict[str, dict[str, float]] = field(default_factory=dict)
