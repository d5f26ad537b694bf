"""The plan: every operation's scheduled time, decided before a run starts.

The harness compiles a scenario into one ``Plan``; both drivers replay it.
A plan is plain frozen data, so it can be pickled to worker processes and
compared between runs. Times are seconds since the start of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from protocol.consensus.quorum import QuorumConfig
from protocol.nodes import COORDINATOR_ID
from protocol.settings import ProtocolSettings
from protocol.topology import TreeNode

STATUS_LEAD = 0.25  # the status snapshot is asked for this long before the load ends
STATUS_REQUEST_ID = 1  # the request id of that one StatusRequest


class OpKind(IntEnum):
    """The operation kinds a workload can offer."""

    PUBLISH = 1
    DIRECT = 2
    BROADCAST = 3
    TASK = 4
    MEMORY = 5


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent: its id, what it can do, which topic patterns it follows, and the
    coordinator it attaches to (the root, or a leaf of the plan's ``tree``)."""

    agent_id: str
    capabilities: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    coordinator: str = COORDINATOR_ID


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation, sent by ``origin`` at ``at`` seconds.

    ``target`` is the topic (publish), the destination agent id (direct),
    ``""`` (broadcast), the capability (task) or ``"namespace/key"`` (memory).
    ``verb`` is a ``MemVerb`` for memory operations and 0 otherwise.
    ``expected`` is how many completions the op should produce: recipients
    for publish/direct/broadcast, 1 for a task result or a memory reply.
    ``op_id`` is unique within the plan. ``work`` is a task's seconds of work
    (``protocol.payload.task_payload``), 0 for every other kind.
    """

    op_id: int
    at: float
    kind: OpKind
    origin: str
    target: str
    size: int
    expected: int
    verb: int = 0
    work: float = 0.0

    def __reduce__(self) -> tuple[Callable[..., Operation], tuple[object, ...]]:
        """Pickled as its field values, the kind as its number: a plan's ops go to
        every worker process, and the dataclass's own state pickling took 2.7 s each
        way for the default scenario's 700k ops (1.0 s to dump, 1.3 s to load this way)."""
        return (
            rebuild_operation,
            (
                self.op_id,
                self.at,
                int(self.kind),
                self.origin,
                self.target,
                self.size,
                self.expected,
                self.verb,
                self.work,
            ),
        )


def rebuild_operation(
    op_id: int,
    at: float,
    kind: int,
    origin: str,
    target: str,
    size: int,
    expected: int,
    verb: int,
    work: float,
) -> Operation:
    """An ``Operation`` from the values ``Operation.__reduce__`` pickled (a restricted
    unpickler, ``real.locust.job``, allows it: it builds nothing else)."""
    return Operation(op_id, at, _KINDS[kind], origin, target, size, expected, verb, work)


_KINDS = {kind.value: kind for kind in OpKind}


class FaultKind(IntEnum):
    """What a fault does. Every fault lasts ``[at, at + duration)``."""

    KILL_AGENT = 1  # the agents die at ``at``; a supervisor restarts them after ``duration``
    PAUSE_AGENT = 2  # the agents stop (SIGSTOP) and resume (SIGCONT) after ``duration``
    CRASH_COORDINATOR = 3  # the coordinator dies; it restarts from its state after ``duration``
    PARTITION = 4  # the agents' links to the coordinator drop everything for ``duration``
    LINK_DELAY = 5  # every message on the agents' links waits ``delay`` more, each way
    LINK_LOSS = 6  # every message on the agents' links is lost with probability ``loss``
    CRASH_REPLICA = 7  # a replica (``node``: an id, or "leader") dies; restarts later
    PAUSE_REPLICA = 8  # a replica stops (SIGSTOP) and resumes after ``duration``
    PARTITION_REPLICA = 9  # a replica's links to the other replicas drop everything


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault of the timeline, expanded by the harness so both drivers replay it as is.

    ``agents`` are the agents it hits (empty for a coordinator crash). On tcp a
    kill or pause hits a whole worker process, so the harness lists every
    agent of that worker. ``fault_id`` numbers the faults in time order.
    ``node`` is the coordinator a crash hits: "" for the root (the only one of a
    flat run), or a node of the plan's ``tree``; for a replica's crash, pause or
    partition, a replica id or ``leader`` (whichever leads when the fault hits).
    """

    fault_id: int
    at: float
    kind: FaultKind
    duration: float
    agents: tuple[str, ...] = ()
    delay: float = 0.0
    loss: float = 0.0
    node: str = ""

    @property
    def end(self) -> float:
        """When the fault is healed (restart, resume, link restored)."""
        return self.at + self.duration


@dataclass(frozen=True, slots=True)
class Replication:
    """A replicated coordinator: its ``protocol`` (``raft``), its replicas' ids (the
    agents start at the first), Raft's tick in seconds and its election timeout in
    ticks."""

    protocol: str
    replicas: tuple[str, ...]
    tick: float = 0.05
    election_ticks: int = 10


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a driver needs to replay a run."""

    seed: int
    duration: float
    warmup: float
    agents: tuple[AgentSpec, ...]
    operations: tuple[Operation, ...]
    settings: ProtocolSettings = field(default_factory=ProtocolSettings)
    probe_interval: float = 0.1
    probe_deadline: float = 0.05
    drain_timeout: float = 5.0
    faults: tuple[Fault, ...] = ()
    recovery_band: float = 0.10
    tree: tuple[TreeNode, ...] = ()  # the coordinators below the root; () for a flat one
    replication: Replication | None = None  # replicas instead of one coordinator
    quorum: QuorumConfig | None = None  # the memory store on storage replicas (Dynamo's N/R/W)

    @property
    def status_at(self) -> float | None:
        """When the prober asks the coordinator for its status, or None: never.

        Near the end of the steady-state load, ``STATUS_LEAD`` before
        ``duration`` but not before the middle of the steady-state window, so
        the load is still running and the reply has time to come back before
        the drain. The prober asks, so a plan without probes
        (``probe_interval <= 0``) takes no status snapshot.
        """
        if self.probe_interval <= 0 or self.duration <= 0:
            return None
        window = max(self.duration - self.warmup, 0.0)
        return self.duration - min(STATUS_LEAD, window / 2)

    @property
    def expected_total(self) -> int:
        """Completions the whole plan should produce."""
        return sum(op.expected for op in self.operations)
