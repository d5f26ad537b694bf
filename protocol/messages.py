"""The protocol's messages: frozen, slotted dataclasses, one per wire type.

Every message class has a wire code in ``WIRE_CODES`` (the first element of
its msgpack array, see ``protocol.codec``: a table, not a class attribute, so
that mypyc can compile these classes) and fields made only of ``int``,
``float``, ``bool``, ``str``, ``bytes`` and tuples of ``str`` or ``int``, so the codec can turn
each one into a msgpack array and back without any per-class code. The one
structured field is ``StatusReply.components``: a tuple of
``ComponentStatus`` (name, health, metrics), nested arrays on the wire,
checked by the codec against ``HEALTH_STATES`` and the ``MAX_*`` limits.

Each class writes its ``__init__`` by hand (plain stores, which mypyc compiles;
the generated one is 20 times slower), and the fields it stores must match the
declared ones: a test checks every field of every message, compiled and not.
Uncompiled, ``_interpreted_inits`` swaps in the generated ``__init__``.

Node ids are plain strings. Nothing here names "the" coordinator: a message
travels between two nodes and the driver knows who sent it, so a coordinator
can later have a parent or replicas without any change to these formats.

Directions: A = agent, C = coordinator, S = a storage replica of a quorum store.
"""

from __future__ import annotations

import copyreg
from dataclasses import FrozenInstanceError, dataclass, fields, make_dataclass
from enum import IntEnum
from typing import Any, NamedTuple


class DeliveryKind(IntEnum):
    """Why a ``Deliver`` was sent."""

    PUBLISH = 1
    DIRECT = 2
    BROADCAST = 3
    TASK = 4
    RELAY = 5  # between coordinators: an op for one node (``protocol.failover``)


class MemVerb(IntEnum):
    """Memory store operations."""

    GET = 1
    PUT = 2
    CAS = 3
    DELETE = 4


# --- registration and liveness -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """A -> C: register (or re-register after a reconnect) with a token.

    ``vouched_by``, when not empty, names a live node registered on the same
    link whose liveness stands for this one's (a multiplexing process's link
    node): the coordinator then asks for no heartbeats (``Welcome``'s
    interval 0) and declares this node failed when that one fails."""

    node_id: str
    token: str
    capabilities: tuple[str, ...] = ()
    subscriptions: tuple[str, ...] = ()
    vouched_by: str = ""

    def __init__(
        self,
        node_id: str,
        token: str,
        capabilities: tuple[str, ...] = (),
        subscriptions: tuple[str, ...] = (),
        vouched_by: str = "",
    ) -> None:
        self.node_id = node_id  # type: ignore[misc]
        self.token = token  # type: ignore[misc]
        self.capabilities = capabilities  # type: ignore[misc]
        self.subscriptions = subscriptions  # type: ignore[misc]
        self.vouched_by = vouched_by  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Welcome:
    """C -> A: registration accepted, with the flow-control window and timers.

    ``heartbeat_interval`` 0 means: send no heartbeats (a vouched node)."""

    node_id: str
    credit: int
    heartbeat_interval: float

    def __init__(self, node_id: str, credit: int, heartbeat_interval: float) -> None:
        self.node_id = node_id  # type: ignore[misc]
        self.credit = credit  # type: ignore[misc]
        self.heartbeat_interval = heartbeat_interval  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Reject:
    """C -> A: registration (or a ``StatusRequest``) refused: bad token, bad id.

    The link should be closed."""

    reason: str

    def __init__(self, reason: str) -> None:
        self.reason = reason  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A -> C: I am alive."""

    seq: int

    def __init__(self, seq: int) -> None:
        self.seq = seq  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Probe:
    """any -> C: availability probe, answered by ``ProbeReply``."""

    probe_id: int

    def __init__(self, probe_id: int) -> None:
        self.probe_id = probe_id  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class ProbeReply:
    """C -> prober."""

    probe_id: int

    def __init__(self, probe_id: int) -> None:
        self.probe_id = probe_id  # type: ignore[misc]


# --- subscriptions and the bus ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    """A -> C: receive publishes whose topic matches ``pattern`` (``*`` one level, ``#`` rest)."""

    pattern: str

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """A -> C."""

    pattern: str

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Publish:
    """A -> C: publish to a topic. ``op_id`` is unique per origin."""

    op_id: int
    topic: str
    payload: bytes
    checksum: int

    def __init__(self, op_id: int, topic: str, payload: bytes, checksum: int) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.topic = topic  # type: ignore[misc]
        self.payload = payload  # type: ignore[misc]
        self.checksum = checksum  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Direct:
    """A -> C: send to one agent."""

    op_id: int
    dst: str
    payload: bytes
    checksum: int

    def __init__(self, op_id: int, dst: str, payload: bytes, checksum: int) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.dst = dst  # type: ignore[misc]
        self.payload = payload  # type: ignore[misc]
        self.checksum = checksum  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Broadcast:
    """A -> C: send to every registered agent except the origin."""

    op_id: int
    payload: bytes
    checksum: int

    def __init__(self, op_id: int, payload: bytes, checksum: int) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.payload = payload  # type: ignore[misc]
        self.checksum = checksum  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Accepted:
    """C -> A: the operation was routed to ``recipients`` agents and will be delivered."""

    op_id: int
    recipients: int

    def __init__(self, op_id: int, recipients: int) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.recipients = recipients  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Busy:
    """C -> A: refused for flow control; retry the same ``op_id`` after ``retry_after`` s."""

    op_id: int
    retry_after: float

    def __init__(self, op_id: int, retry_after: float) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.retry_after = retry_after  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Deliver:
    """C -> A: one delivery. ``msg_id`` is unique per recipient link; ack it."""

    msg_id: int
    kind: int
    origin: str
    op_id: int
    topic: str
    payload: bytes
    checksum: int

    def __init__(
        self,
        msg_id: int,
        kind: int,
        origin: str,
        op_id: int,
        topic: str,
        payload: bytes,
        checksum: int,
    ) -> None:
        self.msg_id = msg_id  # type: ignore[misc]
        self.kind = kind  # type: ignore[misc]
        self.origin = origin  # type: ignore[misc]
        self.op_id = op_id  # type: ignore[misc]
        self.topic = topic  # type: ignore[misc]
        self.payload = payload  # type: ignore[misc]
        self.checksum = checksum  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Ack:
    """A -> C: these deliveries were handled (batched)."""

    msg_ids: tuple[int, ...]

    def __init__(self, msg_ids: tuple[int, ...]) -> None:
        self.msg_ids = msg_ids  # type: ignore[misc]


# --- tasks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskSubmit:
    """A -> C: run a task on the least-loaded agent that has ``capability``."""

    op_id: int
    capability: str
    payload: bytes
    checksum: int

    def __init__(self, op_id: int, capability: str, payload: bytes, checksum: int) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.capability = capability  # type: ignore[misc]
        self.payload = payload  # type: ignore[misc]
        self.checksum = checksum  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A -> C: the worker's result for task ``(origin, op_id)``.

    It also acknowledges the task's ``Deliver`` (``msg_id``): a task delivery
    is not acked on its own, so a lost result is recovered by redelivery.
    """

    msg_id: int
    origin: str
    op_id: int
    payload: bytes
    checksum: int

    def __init__(
        self,
        msg_id: int,
        origin: str,
        op_id: int,
        payload: bytes,
        checksum: int,
    ) -> None:
        self.msg_id = msg_id  # type: ignore[misc]
        self.origin = origin  # type: ignore[misc]
        self.op_id = op_id  # type: ignore[misc]
        self.payload = payload  # type: ignore[misc]
        self.checksum = checksum  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class TaskDone:
    """C -> submitter: the task finished on ``worker``. Retried until the submitter acks."""

    op_id: int
    worker: str
    payload: bytes
    checksum: int

    def __init__(self, op_id: int, worker: str, payload: bytes, checksum: int) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.worker = worker  # type: ignore[misc]
        self.payload = payload  # type: ignore[misc]
        self.checksum = checksum  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class TaskDoneAck:
    """submitter -> C."""

    op_id: int

    def __init__(self, op_id: int) -> None:
        self.op_id = op_id  # type: ignore[misc]


# --- memory store --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemRequest:
    """A -> C: a memory operation. ``expected_version`` is used by CAS only."""

    op_id: int
    verb: int
    namespace: str
    key: str
    value: bytes = b""
    expected_version: int = 0

    def __init__(
        self,
        op_id: int,
        verb: int,
        namespace: str,
        key: str,
        value: bytes = b"",
        expected_version: int = 0,
    ) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.verb = verb  # type: ignore[misc]
        self.namespace = namespace  # type: ignore[misc]
        self.key = key  # type: ignore[misc]
        self.value = value  # type: ignore[misc]
        self.expected_version = expected_version  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class MemReply:
    """C -> A: result of a memory operation. ``version`` 0 means "absent"."""

    op_id: int
    ok: bool
    version: int
    value: bytes
    error: str = ""

    def __init__(self, op_id: int, ok: bool, version: int, value: bytes, error: str = "") -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.ok = ok  # type: ignore[misc]
        self.version = version  # type: ignore[misc]
        self.value = value  # type: ignore[misc]
        self.error = error  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Error:
    """C -> A: the last message was refused (malformed, unknown, not registered)."""

    reason: str

    def __init__(self, reason: str) -> None:
        self.reason = reason  # type: ignore[misc]


# --- between coordinators of a tree (``protocol.peers``) ------------------------------
#
# Directions: P = parent coordinator, K = child coordinator. Between them, ops travel
# as ``Deliver`` (origin and op id kept; for DIRECT, ``topic`` names the destination
# agent) and are acked with ``Ack``, under the same credit window and retransmission
# as deliveries to agents; both send ``Heartbeat``.


@dataclass(frozen=True, slots=True)
class PeerHello:
    """K -> P: join the parent as a child coordinator, with the shared token. The
    parent answers ``Welcome`` (or ``Reject``); the child resends until welcomed."""

    node_id: str
    token: str

    def __init__(self, node_id: str, token: str) -> None:
        self.node_id = node_id  # type: ignore[misc]
        self.token = token  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Interest:
    """K <-> P: what the sender wants routed to it, as a whole snapshot (``version``
    grows by one per change; an older or repeated one is acked and ignored).

    From a child: the patterns followed in its subtree and the agents in it
    (``members``). From the parent: the patterns followed outside the child's
    subtree (``members`` empty: whatever is not in a subtree goes up)."""

    version: int
    patterns: tuple[str, ...]
    members: tuple[str, ...]

    def __init__(self, version: int, patterns: tuple[str, ...], members: tuple[str, ...]) -> None:
        self.version = version  # type: ignore[misc]
        self.patterns = patterns  # type: ignore[misc]
        self.members = members  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class InterestAck:
    """K <-> P: the ``Interest`` of this version was applied (or was stale)."""

    version: int

    def __init__(self, version: int) -> None:
        self.version = version  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class MemForward:
    """K -> P: an agent's memory request, on its way to the root, which owns the store."""

    origin: str
    op_id: int
    verb: int
    namespace: str
    key: str
    value: bytes = b""
    expected_version: int = 0

    def __init__(
        self,
        origin: str,
        op_id: int,
        verb: int,
        namespace: str,
        key: str,
        value: bytes = b"",
        expected_version: int = 0,
    ) -> None:
        self.origin = origin  # type: ignore[misc]
        self.op_id = op_id  # type: ignore[misc]
        self.verb = verb  # type: ignore[misc]
        self.namespace = namespace  # type: ignore[misc]
        self.key = key  # type: ignore[misc]
        self.value = value  # type: ignore[misc]
        self.expected_version = expected_version  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class MemBack:
    """P -> K: the root's ``MemReply`` for agent ``dst``, on its way down to it."""

    dst: str
    op_id: int
    ok: bool
    version: int
    value: bytes
    error: str = ""

    def __init__(
        self,
        dst: str,
        op_id: int,
        ok: bool,
        version: int,
        value: bytes,
        error: str = "",
    ) -> None:
        self.dst = dst  # type: ignore[misc]
        self.op_id = op_id  # type: ignore[misc]
        self.ok = ok  # type: ignore[misc]
        self.version = version  # type: ignore[misc]
        self.value = value  # type: ignore[misc]
        self.error = error  # type: ignore[misc]


# --- tasks across a tree (``protocol.tasks``, ``protocol.stealing``) --------------------


@dataclass(frozen=True, slots=True)
class Load:
    """K -> P: the task load of the sender's subtree, sent when it changes and with
    each heartbeat; applied only if ``seq`` is newer than the last applied.

    ``queued``: tasks waiting for an agent; ``work``: their expected seconds of
    work; ``free``: agents with no task beyond what waits; ``agents``: live
    agents; ``capabilities``: what those agents can do, sorted."""

    seq: int
    queued: int
    work: float
    free: int
    agents: int
    capabilities: tuple[str, ...]

    def __init__(
        self,
        seq: int,
        queued: int,
        work: float,
        free: int,
        agents: int,
        capabilities: tuple[str, ...],
    ) -> None:
        self.seq = seq  # type: ignore[misc]
        self.queued = queued  # type: ignore[misc]
        self.work = work  # type: ignore[misc]
        self.free = free  # type: ignore[misc]
        self.agents = agents  # type: ignore[misc]
        self.capabilities = capabilities  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class StealRequest:
    """P -> K: give me up to ``want`` of your waiting tasks (none already started)."""

    steal_id: int
    want: int

    def __init__(self, steal_id: int, want: int) -> None:
        self.steal_id = steal_id  # type: ignore[misc]
        self.want = want  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class StealReply:
    """K -> P: ``given`` tasks went to you for steal ``steal_id`` as TASK ``Deliver``s
    sent before this reply (0: refused, nothing was waiting)."""

    steal_id: int
    given: int

    def __init__(self, steal_id: int, given: int) -> None:
        self.steal_id = steal_id  # type: ignore[misc]
        self.given = given  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class TaskBack:
    """coordinator -> the neighbour that gave it task ``(origin, op_id)``: its result,
    run on agent ``worker``. Resent until ``TaskBackAck``."""

    origin: str
    op_id: int
    worker: str
    payload: bytes
    checksum: int

    def __init__(
        self,
        origin: str,
        op_id: int,
        worker: str,
        payload: bytes,
        checksum: int,
    ) -> None:
        self.origin = origin  # type: ignore[misc]
        self.op_id = op_id  # type: ignore[misc]
        self.worker = worker  # type: ignore[misc]
        self.payload = payload  # type: ignore[misc]
        self.checksum = checksum  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class TaskBackAck:
    """The answer to ``TaskBack``: the result of ``(origin, op_id)`` arrived."""

    origin: str
    op_id: int

    def __init__(self, origin: str, op_id: int) -> None:
        self.origin = origin  # type: ignore[misc]
        self.op_id = op_id  # type: ignore[misc]


# --- replicas --------------------------------------------------------------------------

NOT_LEADER = "not the leader"  # a replica's Reject; ": <id>" follows when it knows the leader


def not_leader(leader: str) -> str:
    """The reason a replica that does not serve gives, naming the leader it knows."""
    return f"{NOT_LEADER}: {leader}" if leader else NOT_LEADER


def leader_hint(reason: str | None) -> str | None:
    """From a ``Reject`` reason: "" for a replica that did not lead and named none, the
    leader it named, or None when the reason is not that (a real refusal)."""
    if reason is None or not reason.startswith(NOT_LEADER):
        return None
    return reason[len(NOT_LEADER) + 2 :] if reason.startswith(f"{NOT_LEADER}: ") else ""


@dataclass(frozen=True, slots=True)
class Consensus:
    """Replica -> replica: one consensus message, its body encoded by the protocol
    that owns it (Raft: ``protocol.consensus.wire``). An empty body only names the
    sender on a new link."""

    body: bytes

    def __init__(self, body: bytes) -> None:
        self.body = body  # type: ignore[misc]


# --- status (monitoring) ---------------------------------------------------------------

HEALTH_STATES: tuple[str, ...] = ("ok", "degraded", "failed")
MAX_COMPONENT_NAME = 512  # characters; agent components are "agent:<node id>"
MAX_METRIC_NAME = 64  # characters
MAX_METRICS = 64  # per component

Metric = tuple[str, int | float]


class ComponentStatus(NamedTuple):
    """One component of a ``StatusReply``: its health and its metrics.

    ``health`` is one of ``HEALTH_STATES``; ``metrics`` are ``(name, value)``
    pairs with distinct names and finite int or float values.
    """

    name: str
    health: str
    metrics: tuple[Metric, ...]


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """any -> C: report every component's health and metrics. Needs the shared token."""

    request_id: int
    token: str

    def __init__(self, request_id: int, token: str) -> None:
        self.request_id = request_id  # type: ignore[misc]
        self.token = token  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class StatusReply:
    """C -> requester: one ``ComponentStatus`` per component, names distinct.

    A status of many components (one per agent) comes in ``parts`` replies,
    numbered ``part`` = 1..parts, each within the frame limit; the requester
    joins them in part order (``protocol.status.StatusParts``)."""

    request_id: int
    components: tuple[ComponentStatus, ...]
    part: int = 1
    parts: int = 1

    def __init__(
        self,
        request_id: int,
        components: tuple[ComponentStatus, ...],
        part: int = 1,
        parts: int = 1,
    ) -> None:
        self.request_id = request_id  # type: ignore[misc]
        self.components = components  # type: ignore[misc]
        self.part = part  # type: ignore[misc]
        self.parts = parts  # type: ignore[misc]


class ListWhat(IntEnum):
    """What a ``ListRequest`` lists, and what each name's count is."""

    TOPICS = 1  # subscription patterns; count: their subscribers
    NAMESPACES = 2  # memory namespaces; count: their keys
    KEYS = 3  # the keys of one namespace; count: each key's version


LIST_LIMIT = 1000  # the most names one ListReply carries


@dataclass(frozen=True, slots=True)
class ListRequest:
    """any -> C: list topics, namespaces or one namespace's keys (at most ``limit``,
    capped at ``LIST_LIMIT``). Needs the shared token."""

    request_id: int
    token: str
    what: int
    namespace: str = ""
    limit: int = LIST_LIMIT

    def __init__(
        self,
        request_id: int,
        token: str,
        what: int,
        namespace: str = "",
        limit: int = LIST_LIMIT,
    ) -> None:
        self.request_id = request_id  # type: ignore[misc]
        self.token = token  # type: ignore[misc]
        self.what = what  # type: ignore[misc]
        self.namespace = namespace  # type: ignore[misc]
        self.limit = limit  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class ListReply:
    """C -> requester: names, in no particular order, with one count each (see
    ``ListWhat``), and ``total``, how many there are in all."""

    request_id: int
    what: int
    names: tuple[str, ...]
    counts: tuple[int, ...]
    total: int

    def __init__(
        self,
        request_id: int,
        what: int,
        names: tuple[str, ...],
        counts: tuple[int, ...],
        total: int,
    ) -> None:
        self.request_id = request_id  # type: ignore[misc]
        self.what = what  # type: ignore[misc]
        self.names = names  # type: ignore[misc]
        self.counts = counts  # type: ignore[misc]
        self.total = total  # type: ignore[misc]


# --- between an agent and the storage replicas of a quorum store -----------------------
#
# ``protocol.consensus.quorum``: each agent coordinates its own memory operations
# (Dynamo's N/R/W); a replica only keeps cells and answers. A cell is a key's value
# with its *stamp* ``(counter, writer)``, the order in which replicas keep the newest
# (last writer wins), and the store's ``version`` of the key (0: absent). ``phase``
# numbers the client's rounds of one operation (0 reads, 1 writes), so a late answer
# to an earlier round is told apart.


@dataclass(frozen=True, slots=True)
class QuorumRead:
    """A -> S: send me your cell of ``namespace``/``key``. Needs the shared token."""

    op_id: int
    phase: int
    namespace: str
    key: str
    token: str = ""

    def __init__(self, op_id: int, phase: int, namespace: str, key: str, token: str = "") -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.phase = phase  # type: ignore[misc]
        self.namespace = namespace  # type: ignore[misc]
        self.key = key  # type: ignore[misc]
        self.token = token  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class QuorumWrite:
    """A -> S: keep this cell unless yours has a higher stamp (``present`` False: a
    tombstone, the key deleted). Needs the shared token."""

    op_id: int
    phase: int
    namespace: str
    key: str
    counter: int
    writer: str
    version: int
    present: bool
    value: bytes = b""
    token: str = ""

    def __init__(
        self,
        op_id: int,
        phase: int,
        namespace: str,
        key: str,
        counter: int,
        writer: str,
        version: int,
        present: bool,
        value: bytes = b"",
        token: str = "",
    ) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.phase = phase  # type: ignore[misc]
        self.namespace = namespace  # type: ignore[misc]
        self.key = key  # type: ignore[misc]
        self.counter = counter  # type: ignore[misc]
        self.writer = writer  # type: ignore[misc]
        self.version = version  # type: ignore[misc]
        self.present = present  # type: ignore[misc]
        self.value = value  # type: ignore[misc]
        self.token = token  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class QuorumCell:
    """S -> A: my cell of the key a ``QuorumRead`` asked for (counter 0: I have none),
    or, with ``error`` set, the read was refused."""

    op_id: int
    phase: int
    counter: int
    writer: str
    version: int
    present: bool
    value: bytes = b""
    error: str = ""

    def __init__(
        self,
        op_id: int,
        phase: int,
        counter: int,
        writer: str,
        version: int,
        present: bool,
        value: bytes = b"",
        error: str = "",
    ) -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.phase = phase  # type: ignore[misc]
        self.counter = counter  # type: ignore[misc]
        self.writer = writer  # type: ignore[misc]
        self.version = version  # type: ignore[misc]
        self.present = present  # type: ignore[misc]
        self.value = value  # type: ignore[misc]
        self.error = error  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class QuorumWritten:
    """S -> A: the ``QuorumWrite`` of ``op_id``/``phase`` is on my disk (or I held a
    newer cell), or, with ``error`` set, it was refused."""

    op_id: int
    phase: int
    error: str = ""

    def __init__(self, op_id: int, phase: int, error: str = "") -> None:
        self.op_id = op_id  # type: ignore[misc]
        self.phase = phase  # type: ignore[misc]
        self.error = error  # type: ignore[misc]


Message = (
    Hello
    | Welcome
    | Reject
    | Heartbeat
    | Probe
    | ProbeReply
    | StatusRequest
    | StatusReply
    | ListRequest
    | ListReply
    | Subscribe
    | Unsubscribe
    | Publish
    | Direct
    | Broadcast
    | Accepted
    | Busy
    | Deliver
    | Ack
    | TaskSubmit
    | TaskResult
    | TaskDone
    | TaskDoneAck
    | MemRequest
    | MemReply
    | Error
    | PeerHello
    | Interest
    | InterestAck
    | MemForward
    | MemBack
    | Load
    | StealRequest
    | StealReply
    | TaskBack
    | TaskBackAck
    | Consensus
    | QuorumRead
    | QuorumWrite
    | QuorumCell
    | QuorumWritten
)

WIRE_CODES: dict[type[Message], int] = {
    Hello: 1,
    Welcome: 2,
    Reject: 3,
    Heartbeat: 4,
    Probe: 5,
    ProbeReply: 6,
    StatusRequest: 50,
    StatusReply: 51,
    ListRequest: 52,
    ListReply: 53,
    Subscribe: 10,
    Unsubscribe: 11,
    Publish: 12,
    Direct: 13,
    Broadcast: 14,
    Accepted: 15,
    Busy: 16,
    Deliver: 17,
    Ack: 18,
    TaskSubmit: 20,
    TaskResult: 21,
    TaskDone: 22,
    TaskDoneAck: 23,
    MemRequest: 30,
    MemReply: 31,
    Error: 40,
    PeerHello: 60,
    Interest: 61,
    InterestAck: 62,
    MemForward: 63,
    MemBack: 64,
    Load: 65,
    StealRequest: 66,
    StealReply: 67,
    TaskBack: 68,
    TaskBackAck: 69,
    Consensus: 90,
    QuorumRead: 70,
    QuorumWrite: 71,
    QuorumCell: 72,
    QuorumWritten: 73,
}
"""Each message type's code: the first element of its msgpack array on the wire."""

TUPLE_ELEMENTS: dict[str, str] = {
    "capabilities": "str",
    "subscriptions": "str",
    "msg_ids": "int",
    "components": "ComponentStatus",
    "names": "str",
    "counts": "int",
    "patterns": "str",
    "members": "str",
}
"""The element type of every tuple field, by field name. Compiled, these classes
keep only ``tuple`` as the field's runtime type, so the codec reads the element
type here (a test checks this table against the annotations above)."""

MESSAGE_TYPES: tuple[type[Message], ...] = tuple(WIRE_CODES)
BY_TYPE: dict[int, type[Message]] = {code: cls for cls, code in WIRE_CODES.items()}


def _interpreted_inits() -> None:
    """Uncompiled, give every message the ``__init__`` that ``dataclasses``
    writes for a frozen class.

    Every message defines ``__init__`` by hand: compiled, its assignments are
    stores into the native object (47 ns for a ``Deliver`` against 908 ns for
    the generated ``__init__``, which goes through ``object.__setattr__`` once
    per field, and mypyc does not compile it). Interpreted, the frozen
    ``__setattr__`` refuses them, so each class takes the generated
    ``__init__`` of a twin made with ``make_dataclass`` from its own fields
    (same names, order and defaults).
    """
    for cls in MESSAGE_TYPES:  # compiled, pickle's default cannot rebuild a frozen class
        copyreg.pickle(cls, _reduce)
    try:
        Heartbeat(0)
        return  # compiled: the hand-written stores work
    except FrozenInstanceError:
        pass
    for cls in MESSAGE_TYPES:
        twin = make_dataclass(
            cls.__name__, [(f.name, f.type, f) for f in fields(cls)], frozen=True, slots=True
        )
        init = vars(twin)["__init__"]
        floats = tuple(f.name for f in fields(cls) if f.type in ("float", float))
        cls.__init__ = _floats_coerced(init, floats) if floats else init  # type: ignore[method-assign]


def _floats_coerced(init: Any, names: tuple[str, ...]) -> Any:
    """``init``, then every field in ``names`` made a float, as the compiled class
    stores an int given for a float field: without it, a pure-Python core sent
    ``Load.work`` 0 as a msgpack int (1 byte) where the compiled one sent 0.0 (9
    bytes), and the model, which charges by the byte, ran another course."""

    def coerced(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        for name in names:
            object.__setattr__(self, name, float(getattr(self, name)))

    return coerced


def _reduce(msg: Message) -> tuple[type[Message], tuple[object, ...]]:
    """Pickle a message as its class and its field values."""
    return type(msg), tuple(getattr(msg, f.name) for f in fields(msg))


_interpreted_inits()
