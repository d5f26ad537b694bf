"""The coordinator state machine: registration, bus, tasks, memory, health.

Sans-IO: the driver calls ``receive(src, msg, now)`` for each message,
``on_timer(now)`` when ``next_deadline()`` passes, and ``drain()`` to collect
``(dst, msg)`` pairs to send. ``take_closures()`` names links to close (a
rejected registration, a peer that sent garbage). Nothing here reads a
clock, sleeps or does I/O.

The bus (subscriptions, routing, credit windows and retransmission) is the
``protocol.bus.BusRouting`` mixin. In a tree of coordinators (``parent`` set, or
children that joined), ``protocol.peers.PeerRouting`` makes the neighbours
sessions of their own and routes across them; a child's driver calls
``start(now)`` once, to join its parent. Operations are de-duplicated by
``(origin, op_id)``, so a retried publish, task or memory write is answered
again without being applied twice. Only the newest ``DEDUP_WINDOW`` op ids
of each origin are remembered, so a flood of accepted requests cannot grow
those tables without bound; a retry of an older op is handled as new
(at-least-once: the receivers suppress the duplicate). A ``GET`` is not
remembered at all: it changes nothing, so a retried one simply reads again
(remembering it would keep every value it returned alive, however often the
key was overwritten since).

Tasks (``protocol.tasks``) go to the live agent with the capability that
holds the fewest (at most ``task_slots`` each), as a ``Deliver`` of kind
TASK; in a tree, to a subtree with a free slot, and idle subtrees steal
waiting tasks from loaded ones (``protocol.stealing``). The worker answers
with ``TaskResult``, which is also that delivery's ack; the coordinator
forwards ``TaskDone`` to the submitter and resends it until the submitter
acks. When an agent misses heartbeats for ``failure_after`` it is marked
failed: its in-flight tasks are reassigned (and not sent to it again), and
its deliveries are held, bounded by ``Busy``, until it comes back, when they
are resent, or until ``session_expiry``, when they are dropped (that part
lives in ``protocol.failures``).

Memory requests go to ``MemoryStore``, which refuses writes beyond the
quotas of ``ProtocolSettings`` (keys, bytes, value size) with a failed
``MemReply``: a refused write is never applied nor acknowledged. With
``durable_memory`` set, replies to writes are held until the driver has
persisted the store's journal and called ``writes_persisted()``, and so are
the replies to reads (and refused writes) of a key whose last write is not
durable yet: a crash could take back what they saw. When the
driver persists and ``settings.durable_bus`` is on, ``Accepted`` is held
the same way until the op's bus journal entries (``protocol.journal``) are
durable, and a restarted coordinator picks up what is still owed with
``restore``.

Faults leave a trail in ``events`` (``NodeEvent``): an agent declared failed,
a task taken from it and given to another, an agent back after a failure.
The harness turns them into time to detection and time to reassignment.
A ``StatusRequest`` or ``ListRequest`` (any node, with the token) is answered by
``protocol.status``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from protocol.bus import BusRouting, Retry
from protocol.failover import TreeRepair
from protocol.failures import FailureHandling
from protocol.journal import BusEntry, BusJournal, BusState
from protocol.memory import MemoryStore, Write
from protocol.messages import (
    Accepted,
    Ack,
    Broadcast,
    Deliver,
    Direct,
    Error,
    Heartbeat,
    Hello,
    Interest,
    InterestAck,
    ListRequest,
    Load,
    MemBack,
    MemForward,
    MemReply,
    MemRequest,
    MemVerb,
    Message,
    PeerHello,
    Probe,
    ProbeReply,
    Publish,
    Reject,
    StatusRequest,
    StealReply,
    StealRequest,
    Subscribe,
    TaskBack,
    TaskBackAck,
    TaskDone,
    TaskDoneAck,
    TaskResult,
    TaskSubmit,
    Unsubscribe,
    Welcome,
)
from protocol.peers import INF, NOT_NEIGHBOUR, PeerRouting, RepairState, TreeState
from protocol.records import NodeEvent, TaskStamp
from protocol.retransmit import RetryHeap, RtoEstimator
from protocol.sessions import CoordinatorStats, HeldBatch, OpKey, Session, Slot, Task
from protocol.settings import ProtocolSettings
from protocol.status import StatusJob, StatusReporting
from protocol.stealing import StealState, WorkStealing
from protocol.tasks import TaskPlacement
from protocol.topics import PatternError, SubscriptionIndex, validate_pattern

LOG_LIMIT = 1000  # the newest refusals and failures kept for health reporting
DEDUP_WINDOW = 16384  # op ids remembered per origin to answer retries
Outgoing = tuple[str, Message]


class Coordinator(
    BusRouting,
    FailureHandling,
    StatusReporting,
    PeerRouting,
    WorkStealing,
    TaskPlacement,
    TreeRepair,
):
    """The coordinator protocol state machine."""

    def __init__(
        self,
        node_id: str,
        settings: ProtocolSettings,
        store: MemoryStore | None = None,
        durable_memory: bool = False,
        parent: str = "",
        fallbacks: tuple[str, ...] = (),
    ) -> None:
        self.node_id = node_id
        self.parent = parent  # the parent coordinator of a tree, or "" (``protocol.peers``)
        self.settings = settings
        self.store = store if store is not None else MemoryStore()
        self.store.limit(
            settings.max_memory_keys, settings.max_memory_bytes, settings.max_value_bytes
        )
        self.durable_memory = durable_memory
        self.store.journaled = durable_memory  # a store nobody persists journals nothing
        self.journal = BusJournal(durable_memory and settings.durable_bus)
        self.events: list[NodeEvent] = []
        self._parked: dict[str, list[Deliver]] = {}
        self.sessions: dict[str, Session] = {}
        self.subscriptions = SubscriptionIndex()
        self.tasks: dict[OpKey, Task] = {}
        self.unassigned: deque[Task] = deque()
        self.stats = CoordinatorStats()
        self.log: deque[str] = deque(maxlen=LOG_LIMIT)
        self._out: list[Outgoing] = []
        self._closures: list[str] = []
        self._routed: dict[OpKey, int] = {}
        self._passed: dict[OpKey, tuple[str, int]] = {}  # tasks from a neighbour: its delivery
        self._mem_replies: dict[OpKey, MemReply] = {}
        self._recent_ops: dict[str, deque[int]] = {}  # per origin, oldest first
        self._held_replies: list[Outgoing] = []  # held since the last ``seal``
        self._held_new: list[OpKey] = []  # their keys
        self._held_slots: list[Slot] = []  # memory slots written by them
        self._held_batches: deque[HeldBatch] = deque()
        self._dirty: dict[Slot, int] = {}  # slot -> batch of its last write not yet durable
        self._held_keys: set[OpKey] = set()  # every held answer's (not re-answered meanwhile)
        self._batch = 0
        self.hold_reads = False  # hold every memory reply (a replicated coordinator)
        self.answers: list[tuple[str, MemReply]] = []  # writes applied since ``take_answers``
        self._done_pending: dict[OpKey, TaskDone] = {}
        self._back_pending: dict[OpKey, TaskBack] = {}
        self._retries: RetryHeap[Retry] = RetryHeap()  # task answers owed an ack
        self._link_timers: RetryHeap[str] = RetryHeap()  # the links' retransmission timers
        self._next_msg_id = 1
        self._next_sweep: float | None = None
        self._status_jobs: deque[StatusJob] = deque()
        # the tree (``protocol.peers``): all idle in a flat coordinator
        self.via: dict[str, str] = {}
        self.peers: list[str] = []
        self._tree = TreeState()
        self._steal = StealState()
        # where to go if the parent dies: the parent, then ``fallbacks`` (``protocol.failover``)
        self._repair = RepairState(ancestors=(parent, *fallbacks) if parent else ())
        # per task, the times it spent here (``TaskStamp``), for a driver that asks
        self.stamp_tasks = False
        self.task_stamps: list[TaskStamp] = []

    # --- driver interface -----------------------------------------------------

    def receive(self, src: str, msg: Message, now: float) -> None:
        """Handle one message from ``src``."""
        self.stats.received += 1
        session = self.sessions.get(src)
        if session is not None:
            if not session.linked and type(msg) not in _REJOIN:
                if src != self.parent:  # a new parent's, before its Welcome: it resends
                    self._refuse(src, f"{src} must say hello on its new link", close=True)
                return
            if not session.alive and type(msg) not in _REJOIN:
                self._revive(session, now)
            session.last_seen = now
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            self._refuse(src, f"unexpected {type(msg).__name__} from {src}")
            return
        if session is None and type(msg) not in _OPEN:
            if src == self.parent:
                return  # from the parent before its Welcome, reordered: it resends
            if type(msg) is Error or type(msg) is Reject:
                self.log.append(f"{type(msg).__name__} from {src}, unknown here")
                return  # answering it could start an endless exchange of refusals
            if type(msg) in _FROM_COORDINATORS:  # it takes this one for a neighbour
                reason = f"{type(msg).__name__} from {src}, not a neighbour"
                self._refuse(src, reason, reply=Reject(NOT_NEIGHBOUR))
                return
            self._refuse(src, f"{type(msg).__name__} before registration")
            return
        handler(self, src, msg, now)

    def on_timer(self, now: float) -> None:
        """Resend what timed out, detect failed agents, make the next part of
        each status still being made."""
        self._resend_expired(now)
        if self._status_jobs:
            self._status_step(now)
        if self._next_sweep is not None and now >= self._next_sweep:
            self._detect_failures(now)
            if self._repair.orphans:
                self._expire_orphans(now)
            if self._repair.stranded:
                self._retry_stranded(now)
            self._next_sweep = now + self.settings.heartbeat_interval / 2
        if now >= self._tree.peer_due:
            self._peer_timer(now)

    def next_deadline(self) -> float | None:
        """The earliest time ``on_timer`` has work to do."""
        deadlines = []
        retry = self._retries.next_due()
        if retry is not None:
            deadlines.append(retry)
        link = self._link_timers.next_due()
        if link is not None:
            deadlines.append(link)
        if self._next_sweep is not None:
            deadlines.append(self._next_sweep)
        status = self._status_deadline()
        if status is not None:
            deadlines.append(status)
        peer_due = self._tree.peer_due
        if peer_due != INF:
            deadlines.append(peer_due)
        return min(deadlines) if deadlines else None

    def drain(self) -> list[Outgoing]:
        """Messages to send, in order."""
        if self._tree.peer_acks:
            self._take_peer_acks()
        out = self._out
        self._out = []
        self.stats.sent += len(out)
        return out

    def take_closures(self) -> list[str]:
        """Links the driver should close after sending what ``drain`` returned."""
        closures, self._closures = self._closures, []
        return closures

    def take_writes(self) -> list[Write]:
        """Memory writes the driver must persist before ``writes_persisted``."""
        return self.store.take_journal()

    def take_bus_journal(self) -> list[BusEntry]:
        """Bus entries the driver must persist before ``writes_persisted``."""
        return self.journal.take()

    def take_answers(self) -> list[tuple[str, MemReply]]:
        """The answers to writes applied since the last call (with ``durable_memory``),
        which the driver persists with the writes (``protocol.durable``)."""
        answers, self.answers = self.answers, []
        return answers

    def take_task_stamps(self) -> list[TaskStamp]:
        """The ``TaskStamp`` of each task whose result passed through here since the
        last call (only with ``stamp_tasks`` set; the drivers that keep their
        coordinators in process do, to split task latency)."""
        stamps, self.task_stamps = self.task_stamps, []
        return stamps

    def take_events(self) -> list[NodeEvent]:
        """Fault-related events since the last call."""
        events, self.events = self.events, []
        return events

    def restore(self, state: BusState) -> None:
        """Pick up, after a restart, what the persisted journal says is still owed.

        Call it on a fresh coordinator before any message. Deliveries wait
        for their node's hello; unfinished tasks wait for a capable agent.
        """
        for member in state.members.values():
            session = self._new_session(member.node, member.capabilities, 0.0)
            session.alive = session.linked = False
            self.sessions[member.node] = session
            for pattern in member.subscriptions:
                self.subscriptions.add(member.node, pattern)
        for neighbour in state.neighbours.values():
            self._restore_neighbour(neighbour.node, neighbour.patterns, neighbour.members)
        self._parked = state.owed_to()
        for node in list(self._parked):
            if node in self.sessions:
                self.sessions[node].backlog.extend(self._parked.pop(node))
        for deliver in state.deliveries.values():
            key = (deliver.origin, deliver.op_id)
            if key not in self._routed:
                self._remember(key)
            self._routed[key] = self._routed.get(key, 0) + 1
        for key, pending in state.tasks.items():
            task = Task(key[0], key[1], pending.capability, pending.payload, pending.checksum)
            self.tasks[key] = task
            if key not in self._routed:
                self._remember(key)
            self._routed[key] = 1
            self.unassigned.append(task)
        self._next_msg_id = max(self._next_msg_id, state.next_msg_id())
        self._repair.restored = bool(self.parent)  # a tree node hands on what is not here

    def recall_answers(self, answers: list[tuple[str, MemReply]]) -> None:
        """Answer retries of these writes, applied before this coordinator took over,
        as they were answered (a replicated coordinator's new leader), rather than
        apply them again."""
        for origin, reply in answers:
            key = (origin, reply.op_id)
            self._mem_replies[key] = reply
            self._remember(key)

    def writes_persisted(self) -> None:
        """Every write taken so far is durable: release the held replies."""
        self.seal()
        self.release(self._batch)

    def seal(self) -> int:
        """Number the replies held since the last seal as one batch, and return its
        number (0: none held). A replicated coordinator seals after each batch of
        work it proposes, and releases the batch once it is committed."""
        if not self._held_replies:
            return 0
        self._batch += 1
        batch = HeldBatch(self._batch, self._held_replies, self._held_new, self._held_slots)
        self._held_batches.append(batch)
        self._held_replies = []
        self._held_new = []
        self._held_slots = []
        return self._batch

    def release(self, batch: int) -> None:
        """Send the held replies of every sealed batch up to ``batch``."""
        batches = self._held_batches
        dirty = self._dirty
        while batches and batches[0].number <= batch:
            done = batches.popleft()
            self._out.extend(done.replies)
            self._held_keys.difference_update(done.keys)
            for slot in done.slots:
                if dirty.get(slot, batch + 1) <= batch:
                    del dirty[slot]

    def _hold_reply(self, dst: str, reply: Message, key: OpKey | None) -> None:
        self._held_replies.append((dst, reply))
        if key is not None:
            self._held_keys.add(key)
            self._held_new.append(key)

    def peer_malformed(self, src: str, reason: str) -> None:
        """A peer sent bytes the codec refused: log it, tell it, close its link."""
        self._refuse(src, f"malformed input from {src}: {reason}", close=True)

    def link_closed(self, src: str, now: float) -> None:
        """The driver lost the link to ``src``: the agent is failed now, and whatever
        speaks for it next must start with a ``Hello`` (and its token)."""
        session = self.sessions.get(src)
        if session is None:
            return
        session.linked = False
        if session.alive:
            self.stats.links_lost += 1
            self._fail(session, now)
        if session.peer:
            self._neighbour_lost(src, now)  # ``protocol.failover``

    # the later mixins' methods, called from mixins before them (whose stubs would
    # shadow them in the method resolution order)
    def _interest_changed(self, now: float) -> None:
        PeerRouting._interest_changed(self, now)

    def _direct_to(self, dst: str, came_from: str) -> tuple[str, ...]:
        return PeerRouting._direct_to(self, dst, came_from)

    def _send_load(self, now: float, beat: bool) -> None:
        WorkStealing._send_load(self, now, beat)

    def _assign_waiting(self, now: float) -> None:
        TaskPlacement._assign_waiting(self, now)

    def _assign(self, task: Task, worker: Session, now: float) -> None:
        TaskPlacement._assign(self, task, worker, now)

    def _on_peer_task(self, src: str, msg: Deliver, now: float) -> None:
        TaskPlacement._on_peer_task(self, src, msg, now)

    def _give_back(self, task: Task, now: float) -> bool:
        return TaskPlacement._give_back(self, task, now)

    def _hand_over_restored(self, now: float) -> None:
        TreeRepair._hand_over_restored(self, now)

    def _adopt_peer(self, node: str, msg: Interest, now: float) -> None:
        TreeRepair._adopt_peer(self, node, msg, now)

    def _on_relay(self, src: str, msg: Deliver, now: float) -> None:
        TreeRepair._on_relay(self, src, msg, now)

    def _forget_peer(self, peer: str) -> None:
        TreeRepair._forget_peer(self, peer)

    def _retry_stranded(self, now: float) -> None:
        TreeRepair._retry_stranded(self, now)

    def _disowned(self, peer: str, now: float) -> None:
        TreeRepair._disowned(self, peer, now)

    def _switch_parent(self, to: str, now: float) -> None:
        TreeRepair._switch_parent(self, to, now)

    def _restore_neighbour(
        self, node: str, patterns: tuple[str, ...], members: tuple[str, ...]
    ) -> None:
        TreeRepair._restore_neighbour(self, node, patterns, members)

    def _expire_orphans(self, now: float) -> None:
        TreeRepair._expire_orphans(self, now)

    def knows(self, node: str) -> bool:
        """True once ``node`` has registered (it may since have failed)."""
        return node in self.sessions

    # --- registration and liveness ---------------------------------------------

    def _on_hello(self, src: str, msg: Hello, now: float) -> None:
        if not self.settings.accepts(msg.token):
            self._refuse(
                src, f"rejected {msg.node_id!r}: bad token", close=True, reply=Reject("bad token")
            )
            return
        if msg.node_id != src:
            self._refuse(
                src,
                f"rejected {msg.node_id!r} on link {src!r}",
                close=True,
                reply=Reject("node id does not match link"),
            )
            return
        try:
            for pattern in msg.subscriptions:
                validate_pattern(pattern)
            self._check_subscription_limit(src, msg.subscriptions)
        except PatternError as exc:
            self._refuse(src, str(exc), close=True, reply=Reject(str(exc)))
            return
        for pattern in msg.subscriptions:
            self.subscriptions.add(src, pattern)
        self.journal.member(src, msg.capabilities, msg.subscriptions)
        session = self.sessions.get(src)
        if session is None:
            session = self._new_session(src, msg.capabilities, now)
            self.sessions[src] = session
            self.events.append(NodeEvent(now, "registered", src))
            session.backlog.extend(self._parked.pop(src, ()))
            if self._repair.orphans:
                self._adopt_agent(src, msg.subscriptions, session, now)
        else:
            if not session.alive:
                self.events.append(NodeEvent(now, "returned", src))
            session.alive = True
            session.linked = True
            session.last_seen = now
            session.capabilities = msg.capabilities
        if self._next_sweep is None:
            self._next_sweep = now + self.settings.heartbeat_interval / 2
        session.voucher = self._voucher_for(src, msg.vouched_by)
        interval = 0.0 if session.voucher else self.settings.heartbeat_interval
        self._out.append((src, Welcome(src, self.settings.credit, interval)))
        self._resend_session(session, now)
        self._assign_waiting(now)
        self._interest_changed(now)

    def _voucher_for(self, node: str, vouched_by: str) -> str:
        """The voucher ``node`` may have: a live node that is vouched for by nobody
        (one level only), else none, and ``node`` sends its own heartbeats."""
        if not vouched_by or vouched_by == node:
            return ""
        voucher = self.sessions.get(vouched_by)
        if voucher is None or not voucher.alive or voucher.voucher:
            self.log.append(f"{node}: voucher {vouched_by!r} is not a live node; heartbeats")
            return ""
        return vouched_by

    def _new_session(self, node: str, capabilities: tuple[str, ...], now: float) -> Session:
        rto = RtoEstimator(self.settings.ack_timeout, self.settings.max_rto)
        return Session(node, capabilities, now, rto=rto)

    def _on_heartbeat(self, src: str, msg: Heartbeat, now: float) -> None:
        return None  # receive() already refreshed last_seen

    def _on_probe(self, src: str, msg: Probe, now: float) -> None:
        self._out.append((src, ProbeReply(msg.probe_id)))

    # --- op bookkeeping: de-duplication and answers held for durability ----------

    def _remember(self, key: OpKey) -> None:
        """Note a new de-duplication entry; forget its origin's oldest beyond
        ``DEDUP_WINDOW`` (unless its answer is still held for durability)."""
        origin, op_id = key
        recent = self._recent_ops.get(origin)
        if recent is None:
            recent = self._recent_ops[origin] = deque()
        recent.append(op_id)
        while len(recent) > DEDUP_WINDOW:
            old = (origin, recent[0])
            if old in self._held_keys:  # its answer is not out yet: forget it later
                break
            recent.popleft()
            self._routed.pop(old, None)
            self._passed.pop(old, None)
            self._mem_replies.pop(old, None)

    def _accept(self, src: str, key: OpKey, reply: Accepted) -> None:
        """Answer now, or once the journal is durable when the bus is durable."""
        if self.journal.enabled:
            self._hold_reply(src, reply, key)
        else:
            self._out.append((src, reply))

    # --- memory --------------------------------------------------------------

    def _on_mem_request(self, src: str, msg: MemRequest, now: float) -> None:
        if self.parent:
            self._forward_memory(src, msg)  # the root owns the store (``protocol.peers``)
        else:
            self._apply_memory(src, msg, src)

    def _apply_memory(self, origin: str, msg: MemRequest, reply_to: str) -> None:
        """Apply ``origin``'s request once and answer it: to ``origin`` itself, or, for a
        request forwarded up a tree, as ``MemBack`` to the child ``reply_to``."""
        key = (origin, msg.op_id)
        if key in self._held_keys:
            return  # its reply goes out once the write is durable
        reply = self._mem_replies.get(key)
        if reply is None:
            reply = self.store.apply(
                msg.op_id, msg.verb, msg.namespace, msg.key, msg.value, msg.expected_version
            )
            if msg.verb != MemVerb.GET:  # a read changes nothing: its retry reads again
                self._mem_replies[key] = reply
                self._remember(key)
                if self.durable_memory and reply.ok:
                    self.answers.append((origin, reply))
                    slot = (msg.namespace, msg.key)
                    self._dirty[slot] = self._batch + 1  # the batch ``seal`` numbers next
                    self._held_slots.append(slot)
                    self._hold_reply(reply_to, _back(origin, reply, reply_to), key)
                    return
        if self.hold_reads or (msg.namespace, msg.key) in self._dirty:
            # it saw a write not yet durable (a read, or a write refused for its version):
            # answered now, a crash could take back what it said
            self._hold_reply(reply_to, _back(origin, reply, reply_to), None)
            return
        self._out.append((reply_to, _back(origin, reply, reply_to)))

    # --- errors --------------------------------------------------------------

    def _refuse(
        self, src: str, reason: str, close: bool = False, reply: Message | None = None
    ) -> None:
        self.stats.refused += 1
        self.log.append(reason)
        self._out.append((src, reply if reply is not None else Error(reason)))
        if close:
            self._closures.append(src)


def tree_node(
    node_id: str,
    settings: ProtocolSettings,
    chain: tuple[str, ...],
    store: MemoryStore | None = None,
    durable_memory: bool = False,
) -> Coordinator:
    """Coordinator ``node_id`` of a tree, knowing its ancestors (``chain``, from
    ``protocol.topology.ancestries``; empty for the root): its parent, and where it
    re-attaches if the parent dies."""
    parent = chain[0] if chain else ""
    return Coordinator(node_id, settings, store, durable_memory, parent, chain[1:])


def _back(origin: str, reply: MemReply, reply_to: str) -> MemReply | MemBack:
    """The answer to ``origin``'s memory request as it leaves for ``reply_to``."""
    if reply_to == origin:
        return reply
    return MemBack(origin, reply.op_id, reply.ok, reply.version, reply.value, reply.error)


# what a node may send before it is registered, and on a link it must say hello on
_OPEN = (Hello, PeerHello, Welcome, Probe, StatusRequest, ListRequest)
_REJOIN = (Hello, PeerHello, Welcome)
# what only a coordinator of a tree sends (an agent never does)
_FROM_COORDINATORS = (
    Deliver,
    Interest,
    InterestAck,
    Load,
    StealRequest,
    StealReply,
    TaskBack,
    TaskBackAck,
    MemForward,
    MemBack,
)

# each message type the coordinator handles, and its handler (module level: mypyc
# compiles no class-level dict of methods)
_HANDLERS: dict[type, Callable[[Coordinator, str, Any, float], None]] = {
    Hello: Coordinator._on_hello,
    Heartbeat: Coordinator._on_heartbeat,
    Probe: Coordinator._on_probe,
    StatusRequest: StatusReporting._on_status_request,
    ListRequest: StatusReporting._on_list_request,
    Subscribe: BusRouting._on_subscribe,
    Unsubscribe: BusRouting._on_unsubscribe,
    Publish: BusRouting._on_publish,
    Direct: BusRouting._on_direct,
    Broadcast: BusRouting._on_broadcast,
    Ack: BusRouting._on_ack,
    TaskSubmit: TaskPlacement._on_task_submit,
    TaskResult: TaskPlacement._on_task_result,
    TaskDoneAck: TaskPlacement._on_task_done_ack,
    TaskBack: TaskPlacement._on_task_back,
    TaskBackAck: TaskPlacement._on_task_back_ack,
    Load: WorkStealing._on_load,
    StealRequest: WorkStealing._on_steal_request,
    StealReply: WorkStealing._on_steal_reply,
    MemRequest: Coordinator._on_mem_request,
    PeerHello: PeerRouting._on_peer_hello,
    Welcome: PeerRouting._on_welcome,
    Interest: PeerRouting._on_interest,
    InterestAck: PeerRouting._on_interest_ack,
    Deliver: PeerRouting._on_peer_deliver,
    MemForward: PeerRouting._on_mem_forward,
    MemBack: PeerRouting._on_mem_back,
    Error: PeerRouting._on_peer_error,
    Reject: PeerRouting._on_peer_error,
}
