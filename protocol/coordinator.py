"""The coordinator state machine: registration, bus, tasks, memory, health.

Sans-IO: the driver calls ``receive(src, msg, now)`` for each message,
``on_timer(now)`` when ``next_deadline()`` passes, and ``drain()`` to collect
``(dst, msg)`` pairs to send. ``take_closures()`` names links to close (a
rejected registration, a peer that sent garbage). Nothing here reads a
clock, sleeps or does I/O.

How delivery works. A publish, direct or broadcast is routed once, given a
coordinator-wide ``msg_id``, and the same ``Deliver`` object goes to every
recipient (so a driver can encode it once). Each recipient session has a
credit window: at most ``credit`` deliveries in flight (sent, not acked).
Beyond the window deliveries wait in the session's bounded backlog. If any
recipient's backlog is full the whole operation is refused with ``Busy``
and the sender retries, so a slow agent cannot grow the coordinator's
memory without bound. Unacked deliveries are resent after an adaptive
timeout (``protocol.retransmit``: at least ``ack_timeout``, doubling per
retry) with the same ``msg_id``; the receiver de-duplicates. Operations are de-duplicated
by ``(origin, op_id)``, so a retried publish is not routed twice.

Tasks go to the least-loaded live agent with the capability, as a
``Deliver`` of kind TASK. The worker answers with ``TaskResult``, which is
also that delivery's ack; the
coordinator forwards ``TaskDone`` to the submitter and resends it until the
submitter acks. When an agent misses heartbeats for ``failure_after`` it is
marked failed: its in-flight tasks are reassigned (and not sent to it again),
and its deliveries are held, bounded by ``Busy``, until it comes back, when
they are resent, or until ``session_expiry``, when they are dropped (that
part lives in ``protocol.failures``).

Memory requests go to ``MemoryStore``. With ``durable_memory`` set, replies
to writes are held until the driver has persisted the store's journal and
called ``writes_persisted()``. When the driver persists and
``settings.durable_bus`` is on, ``Accepted`` is held the same way until the
op's bus journal entries (``protocol.journal``) are durable, and a restarted
coordinator picks up what is still owed with ``restore``.

Faults leave a trail in ``events`` (``NodeEvent``): an agent declared failed,
a task taken from it and given to another, an agent back after a failure.
The harness turns them into time to detection and time to reassignment.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from hmac import compare_digest
from typing import Any, ClassVar

from protocol.failures import FailureHandling
from protocol.journal import BusEntry, BusJournal, BusState, PendingTask
from protocol.memory import MemoryStore, Write
from protocol.messages import (
    Accepted,
    Ack,
    Broadcast,
    Busy,
    Deliver,
    DeliveryKind,
    Direct,
    Error,
    Heartbeat,
    Hello,
    MemReply,
    MemRequest,
    MemVerb,
    Message,
    Probe,
    ProbeReply,
    Publish,
    Reject,
    Subscribe,
    TaskDone,
    TaskDoneAck,
    TaskResult,
    TaskSubmit,
    Unsubscribe,
    Welcome,
)
from protocol.records import NodeEvent
from protocol.retransmit import RetryHeap, RtoEstimator, backoff
from protocol.sessions import CoordinatorStats, OpKey, Session, Task
from protocol.settings import ProtocolSettings
from protocol.topics import PatternError, SubscriptionIndex, validate_pattern

LOG_LIMIT = 1000  # the newest refusals and failures kept for health reporting
Outgoing = tuple[str, Message]
Retry = tuple[Deliver | TaskDone, tuple[str, ...], int]


class Coordinator(FailureHandling):
    """The coordinator protocol state machine."""

    def __init__(
        self,
        node_id: str,
        settings: ProtocolSettings,
        store: MemoryStore | None = None,
        durable_memory: bool = False,
    ) -> None:
        self.node_id = node_id
        self.settings = settings
        self.store = store if store is not None else MemoryStore()
        self.durable_memory = durable_memory
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
        self._mem_replies: dict[OpKey, MemReply] = {}
        self._held_replies: list[Outgoing] = []
        self._held_keys: set[OpKey] = set()
        self._done_pending: dict[OpKey, TaskDone] = {}
        self._retries: RetryHeap[Retry] = RetryHeap()
        self._rto = RtoEstimator(settings.ack_timeout, settings.max_rto)
        self._next_msg_id = 1
        self._next_sweep: float | None = None

    # --- driver interface -----------------------------------------------------

    def receive(self, src: str, msg: Message, now: float) -> None:
        """Handle one message from ``src``."""
        self.stats.received += 1
        session = self.sessions.get(src)
        if session is not None:
            if not session.linked and type(msg) is not Hello:
                self._refuse(src, f"{src} must say hello on its new link", close=True)
                return
            if not session.alive and type(msg) is not Hello:
                self._revive(session, now)
            session.last_seen = now
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            self._refuse(src, f"unexpected {type(msg).__name__} from {src}")
            return
        if session is None and type(msg) not in (Hello, Probe):
            self._refuse(src, f"{type(msg).__name__} before registration")
            return
        handler(self, src, msg, now)

    def on_timer(self, now: float) -> None:
        """Resend what timed out and detect failed agents."""
        self._resend_expired(now)
        if self._next_sweep is not None and now >= self._next_sweep:
            self._detect_failures(now)
            self._next_sweep = now + self.settings.heartbeat_interval / 2

    def next_deadline(self) -> float | None:
        """The earliest time ``on_timer`` has work to do."""
        deadlines = []
        retry = self._retries.next_due()
        if retry is not None:
            deadlines.append(retry)
        if self._next_sweep is not None:
            deadlines.append(self._next_sweep)
        return min(deadlines) if deadlines else None

    def drain(self) -> list[Outgoing]:
        """Messages to send, in order."""
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
            session = Session(member.node, member.capabilities, 0.0, alive=False, linked=False)
            self.sessions[member.node] = session
            for pattern in member.subscriptions:
                self.subscriptions.add(member.node, pattern)
        self._parked = state.owed_to()
        for node in list(self._parked):
            if node in self.sessions:
                self.sessions[node].backlog.extend(self._parked.pop(node))
        for deliver in state.deliveries.values():
            key = (deliver.origin, deliver.op_id)
            self._routed[key] = self._routed.get(key, 0) + 1
        for key, pending in state.tasks.items():
            task = Task(key[0], key[1], pending.capability, pending.payload, pending.checksum)
            self.tasks[key] = task
            self._routed[key] = 1
            self.unassigned.append(task)
        self._next_msg_id = max(self._next_msg_id, state.next_msg_id())

    def writes_persisted(self) -> None:
        """Every write taken so far is durable: release the held replies."""
        self._out.extend(self._held_replies)
        self._held_replies = []
        self._held_keys.clear()

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
            self._fail(session, now)

    def knows(self, node: str) -> bool:
        """True once ``node`` has registered (it may since have failed)."""
        return node in self.sessions

    # --- registration and liveness ---------------------------------------------

    def _on_hello(self, src: str, msg: Hello, now: float) -> None:
        if not compare_digest(msg.token.encode(), self.settings.token.encode()):
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
        except PatternError as exc:
            self._refuse(src, str(exc), close=True, reply=Reject(str(exc)))
            return
        for pattern in msg.subscriptions:
            self.subscriptions.add(src, pattern)
        self.journal.member(src, msg.capabilities, msg.subscriptions)
        session = self.sessions.get(src)
        if session is None:
            session = Session(src, msg.capabilities, now)
            self.sessions[src] = session
            self.events.append(NodeEvent(now, "registered", src))
            session.backlog.extend(self._parked.pop(src, ()))
        else:
            if not session.alive:
                self.events.append(NodeEvent(now, "returned", src))
            session.alive = True
            session.linked = True
            session.last_seen = now
            session.capabilities = msg.capabilities
        if self._next_sweep is None:
            self._next_sweep = now + self.settings.heartbeat_interval / 2
        self._out.append(
            (src, Welcome(src, self.settings.credit, self.settings.heartbeat_interval))
        )
        self._resend_session(session, now)
        self._assign_waiting(now)

    def _on_heartbeat(self, src: str, msg: Heartbeat, now: float) -> None:
        return None  # receive() already refreshed last_seen

    def _on_probe(self, src: str, msg: Probe, now: float) -> None:
        self._out.append((src, ProbeReply(msg.probe_id)))

    # --- subscriptions and the bus ------------------------------------------------

    def _on_subscribe(self, src: str, msg: Subscribe, now: float) -> None:
        try:
            self.subscriptions.add(src, msg.pattern)
        except PatternError as exc:
            self._refuse(src, str(exc))
            return
        self.journal.subscribed(src, msg.pattern, True)

    def _on_unsubscribe(self, src: str, msg: Unsubscribe, now: float) -> None:
        self.subscriptions.remove(src, msg.pattern)
        self.journal.subscribed(src, msg.pattern, False)

    def _on_publish(self, src: str, msg: Publish, now: float) -> None:
        recipients = self.subscriptions.subscribers(msg.topic)
        self._route(
            src,
            msg.op_id,
            DeliveryKind.PUBLISH,
            msg.topic,
            msg.payload,
            msg.checksum,
            recipients,
            now,
        )

    def _on_direct(self, src: str, msg: Direct, now: float) -> None:
        recipients = (msg.dst,) if msg.dst in self.sessions else ()
        if not recipients:
            self.log.append(f"direct {src}:{msg.op_id} to unknown agent {msg.dst!r}")
        self._route(
            src, msg.op_id, DeliveryKind.DIRECT, "", msg.payload, msg.checksum, recipients, now
        )

    def _on_broadcast(self, src: str, msg: Broadcast, now: float) -> None:
        recipients = tuple(node for node in self.sessions if node != src)
        self._route(
            src, msg.op_id, DeliveryKind.BROADCAST, "", msg.payload, msg.checksum, recipients, now
        )

    def _route(
        self,
        src: str,
        op_id: int,
        kind: int,
        topic: str,
        payload: bytes,
        checksum: int,
        recipients: tuple[str, ...],
        now: float,
    ) -> None:
        key = (src, op_id)
        routed = self._routed.get(key)
        if routed is not None:
            if key not in self._held_keys:  # a held answer goes out once durable
                self._out.append((src, Accepted(op_id, routed)))
            return
        sessions = [self.sessions[node] for node in recipients]
        limit = self.settings.max_backlog
        if any(len(s.backlog) >= limit for s in sessions):  # failed agents' too: never drop
            self.stats.busy += 1
            self._out.append((src, Busy(op_id, self.settings.busy_retry)))
            return
        deliver = Deliver(self._next_msg_id, kind, src, op_id, topic, payload, checksum)
        self._next_msg_id += 1
        self._routed[key] = len(sessions)
        self.journal.delivered(deliver, list(recipients))
        self._accept(src, key, Accepted(op_id, len(sessions)))
        self._enqueue(deliver, sessions, now)

    def _accept(self, src: str, key: OpKey, reply: Accepted) -> None:
        """Answer now, or once the journal is durable when the bus is durable."""
        if self.journal.enabled:
            self._held_replies.append((src, reply))
            self._held_keys.add(key)
        else:
            self._out.append((src, reply))

    def _enqueue(self, deliver: Deliver, sessions: list[Session], now: float) -> None:
        credit = self.settings.credit
        sent: list[str] = []
        out = self._out
        for session in sessions:
            if session.alive and len(session.inflight) < credit and not session.backlog:
                session.inflight[deliver.msg_id] = deliver
                out.append((session.node_id, deliver))
                sent.append(session.node_id)
            else:
                self._hold(session, deliver)
        if sent:
            self._rto.start(deliver.msg_id, now)
            self._retries.push(now + self._rto.rto, (deliver, tuple(sent), 0))

    def _hold(self, session: Session, deliver: Deliver) -> None:
        """Queue ``deliver`` for later. Every queue, a failed agent's included, is
        bounded by ``Busy`` before routing, so nothing accepted is ever dropped."""
        session.backlog.append(deliver)

    def _on_ack(self, src: str, msg: Ack, now: float) -> None:
        session = self.sessions[src]
        inflight = session.inflight
        timed = self._rto.timed_key
        self.journal.acked(src, msg.msg_ids)
        for msg_id in msg.msg_ids:
            inflight.pop(msg_id, None)
            if msg_id == timed:
                self._rto.answer(msg_id, now)
        if session.backlog:
            self._refill(session, now)
        if self.unassigned and session.capabilities:
            self._assign_waiting(now)

    def _refill(self, session: Session, now: float) -> None:
        if not session.alive:
            return
        credit = self.settings.credit
        deadline = now + self._rto.rto
        while session.backlog and len(session.inflight) < credit:
            deliver = session.backlog.popleft()
            session.inflight[deliver.msg_id] = deliver
            self._out.append((session.node_id, deliver))
            self._retries.push(deadline, (deliver, (session.node_id,), 0))

    def _resend_session(self, session: Session, now: float) -> None:
        """After a (re)registration, resend everything in flight and every task result
        it has not acked, then refill."""
        deadline = now + self._rto.rto
        node = session.node_id
        for deliver in list(session.inflight.values()):
            self._rto.cancel(deliver.msg_id)
            self._out.append((node, deliver))
            self._retries.push(deadline, (deliver, (node,), 1))
        for (origin, _), done in self._done_pending.items():
            if origin == node:  # its retry timer may have backed off far while it was away
                self._out.append((node, done))
        self._refill(session, now)

    def _resend_expired(self, now: float) -> None:
        for msg, nodes, attempt in self._retries.pop_due(now):
            if isinstance(msg, TaskDone):
                self._resend_done(msg, nodes[0], attempt, now)
                continue
            again = []
            for node in nodes:
                session = self.sessions.get(node)
                if session is not None and session.alive and msg.msg_id in session.inflight:
                    self._out.append((node, msg))
                    again.append(node)
            if again:
                self._rto.cancel(msg.msg_id)
                self.stats.redelivered += len(again)
                self._retry_later(msg, tuple(again), attempt + 1, now)

    def _retry_later(
        self, msg: Deliver | TaskDone, nodes: tuple[str, ...], attempt: int, now: float
    ) -> None:
        due = now + backoff(self._rto.rto, attempt, self.settings.max_rto)
        self._retries.push(due, (msg, nodes, attempt))

    def _resend_done(self, done: TaskDone, node: str, attempt: int, now: float) -> None:
        key = (node, done.op_id)
        if key in self._done_pending:
            session = self.sessions.get(node)
            if session is not None and session.alive:
                self._out.append((node, done))
                self.stats.redelivered += 1
            self._retry_later(done, (node,), attempt + 1, now)

    # --- tasks ---------------------------------------------------------------

    def _on_task_submit(self, src: str, msg: TaskSubmit, now: float) -> None:
        key = (src, msg.op_id)
        if self.unassigned:
            self._assign_waiting(now)
        if key not in self._routed and len(self.unassigned) >= self.settings.max_backlog:
            self.stats.busy += 1
            self._out.append((src, Busy(msg.op_id, self.settings.busy_retry)))
            return
        if key in self._held_keys:
            return  # its answer goes out once the task is durable
        if key not in self.tasks and key not in self._routed:
            task = Task(src, msg.op_id, msg.capability, msg.payload, msg.checksum)
            self.tasks[key] = task
            self._routed[key] = 1
            self.unassigned.append(task)
            pending = PendingTask(src, msg.op_id, msg.capability, msg.payload, msg.checksum)
            self.journal.task(pending)
            self._accept(src, key, Accepted(msg.op_id, 1))
            self._assign_waiting(now)
            return
        self._out.append((src, Accepted(msg.op_id, 1)))

    def _assign_waiting(self, now: float) -> None:
        waiting = len(self.unassigned)
        for _ in range(waiting):
            task = self.unassigned.popleft()
            worker = self._least_loaded(task.capability)
            if worker is None or len(worker.backlog) >= self.settings.max_backlog:
                self.unassigned.append(task)
                continue
            self._assign(task, worker, now)

    def _least_loaded(self, capability: str) -> Session | None:
        best: Session | None = None
        for session in self.sessions.values():
            if not session.alive or capability not in session.capabilities:
                continue
            if best is None or len(session.tasks) < len(best.tasks):
                best = session
        return best

    def _assign(self, task: Task, worker: Session, now: float) -> None:
        task.worker = worker.node_id
        if task.taken_from is not None:
            self.events.append(NodeEvent(now, "reassigned", task.taken_from))
            task.taken_from = None
        worker.tasks.add((task.origin, task.op_id))
        deliver = Deliver(
            self._next_msg_id,
            DeliveryKind.TASK,
            task.origin,
            task.op_id,
            task.capability,
            task.payload,
            task.checksum,
        )
        self._next_msg_id += 1
        self._enqueue(deliver, [worker], now)

    def _on_task_result(self, src: str, msg: TaskResult, now: float) -> None:
        session = self.sessions[src]
        self._rto.answer(msg.msg_id, now)
        if session.inflight.pop(msg.msg_id, None) is not None and session.backlog:
            self._refill(session, now)
        if self.unassigned:
            self._assign_waiting(now)
        key = (msg.origin, msg.op_id)
        task = self.tasks.pop(key, None)
        if task is None:
            return  # a late result from a worker the task was taken from
        if task.worker is not None and task.worker in self.sessions:
            self.sessions[task.worker].tasks.discard(key)
        done = TaskDone(msg.op_id, src, msg.payload, msg.checksum)
        self._done_pending[key] = done
        self._out.append((msg.origin, done))
        self._retries.push(now + self._rto.rto, (done, (msg.origin,), 0))

    def _on_task_done_ack(self, src: str, msg: TaskDoneAck, now: float) -> None:
        if self._done_pending.pop((src, msg.op_id), None) is not None:
            self.journal.finished(src, msg.op_id)

    # --- memory --------------------------------------------------------------

    def _on_mem_request(self, src: str, msg: MemRequest, now: float) -> None:
        key = (src, msg.op_id)
        if key in self._held_keys:
            return  # its reply goes out once the write is durable
        reply = self._mem_replies.get(key)
        if reply is None:
            reply = self.store.apply(
                msg.op_id, msg.verb, msg.namespace, msg.key, msg.value, msg.expected_version
            )
            self._mem_replies[key] = reply
            if self.durable_memory and msg.verb != MemVerb.GET and reply.ok:
                self._held_replies.append((src, reply))
                self._held_keys.add(key)
                return
        self._out.append((src, reply))

    # --- errors --------------------------------------------------------------

    def _refuse(
        self, src: str, reason: str, close: bool = False, reply: Message | None = None
    ) -> None:
        self.stats.refused += 1
        self.log.append(reason)
        self._out.append((src, reply if reply is not None else Error(reason)))
        if close:
            self._closures.append(src)

    _HANDLERS: ClassVar[dict[type, Callable[[Coordinator, str, Any, float], None]]] = {
        Hello: _on_hello,
        Heartbeat: _on_heartbeat,
        Probe: _on_probe,
        Subscribe: _on_subscribe,
        Unsubscribe: _on_unsubscribe,
        Publish: _on_publish,
        Direct: _on_direct,
        Broadcast: _on_broadcast,
        Ack: _on_ack,
        TaskSubmit: _on_task_submit,
        TaskResult: _on_task_result,
        TaskDoneAck: _on_task_done_ack,
        MemRequest: _on_mem_request,
    }
