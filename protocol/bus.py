"""The coordinator's bus: subscriptions, routing, credit windows, retransmission.

A mixin of ``protocol.coordinator.Coordinator``, kept apart so the
coordinator's module stays about registration, tasks and memory.

How delivery works. A publish, direct or broadcast is routed once, given a
coordinator-wide ``msg_id``, and the same ``Deliver`` object goes to every
recipient (so a driver can encode it once). Each recipient session has a
credit window: at most ``credit`` deliveries in flight (sent, not acked).
Beyond the window deliveries wait in the session's bounded backlog. If any
recipient's backlog is full, or a live recipient's backlog is standing (it
has not emptied for ``delay_target``), the whole operation is refused with
``Busy`` and the sender backs off: so a slow agent can grow neither the
coordinator's memory nor the latency of what is admitted. Unacked
deliveries are resent after an adaptive timeout with the same ``msg_id``;
the receiver de-duplicates. Each agent's
link has its own estimator (``Session.rto``, ``protocol.retransmit``: at
least ``ack_timeout``), so a link whose acks come late because its agent or
the coordinator is overloaded gets a longer timeout; and an expiry backs
off the whole link (doubling, kept until a fresh sample), not only the
message, so retransmissions cannot multiply the load of an overloaded
system. Operations are
de-duplicated by ``(origin, op_id)`` (``Coordinator._remember``), so a
retried publish is not routed twice. ``TaskDone`` is resent the same way
until the submitter acks it, and ``TaskBack`` until the neighbour acks it
(``protocol.tasks``).

An agent follows at most ``max_subscriptions`` patterns: a ``Subscribe``
beyond that is refused with an ``Error`` naming the limit (and changes
nothing), so one agent cannot grow the subscription index without bound.
"""

from __future__ import annotations

from collections import deque

from mypy_extensions import trait

from protocol.journal import BusJournal
from protocol.messages import (
    Accepted,
    Ack,
    Broadcast,
    Busy,
    Deliver,
    DeliveryKind,
    Direct,
    Message,
    Publish,
    Subscribe,
    TaskBack,
    TaskDone,
    Unsubscribe,
)
from protocol.retransmit import RetryHeap, backoff
from protocol.sessions import CoordinatorStats, OpKey, Session, Task
from protocol.settings import ProtocolSettings
from protocol.topics import PatternError, SubscriptionIndex

Retry = tuple[Deliver | TaskDone | TaskBack, tuple[str, ...], int]


@trait  # a mixin of Coordinator: mypyc compiles a mixin only as a trait
class BusRouting:
    """Subscriptions, routing and (re)delivery over the coordinator's tables."""

    settings: ProtocolSettings
    sessions: dict[str, Session]
    subscriptions: SubscriptionIndex
    stats: CoordinatorStats
    journal: BusJournal
    log: deque[str]
    unassigned: deque[Task]
    _out: list[tuple[str, Message]]
    _routed: dict[OpKey, int]
    _held_keys: set[OpKey]
    _done_pending: dict[OpKey, TaskDone]
    _back_pending: dict[OpKey, TaskBack]
    _retries: RetryHeap[Retry]
    _next_msg_id: int

    def _refuse(
        self, src: str, reason: str, close: bool = False, reply: Message | None = None
    ) -> None:
        raise NotImplementedError  # the coordinator's

    def _remember(self, key: OpKey) -> None:
        raise NotImplementedError  # the coordinator's

    def _accept(self, src: str, key: OpKey, reply: Accepted) -> None:
        raise NotImplementedError  # the coordinator's

    def _assign_waiting(self, now: float) -> None:
        raise NotImplementedError  # protocol.tasks

    # --- subscriptions ------------------------------------------------------------

    def _interest_changed(self, now: float) -> None:
        raise NotImplementedError  # protocol.peers

    def _on_subscribe(self, src: str, msg: Subscribe, now: float) -> None:
        try:
            self._check_subscription_limit(src, (msg.pattern,))
            self.subscriptions.add(src, msg.pattern)
        except PatternError as exc:
            self._refuse(src, str(exc))
            return
        self.journal.subscribed(src, msg.pattern, True)
        self._interest_changed(now)

    def _check_subscription_limit(self, node: str, patterns: tuple[str, ...]) -> None:
        """Raise ``PatternError`` if adding ``patterns`` would give ``node`` more
        than ``max_subscriptions`` (patterns it already has do not count twice)."""
        limit = self.settings.max_subscriptions
        index = self.subscriptions
        have = index.count(node)
        if have + len(patterns) <= limit:
            return
        new = {p for p in patterns if not index.has(node, p)}
        if have + len(new) > limit:
            raise PatternError(
                f"subscription limit: {node} may follow at most max_subscriptions "
                f"{limit} patterns (has {have}, asked for {len(new)} more)"
            )

    def _on_unsubscribe(self, src: str, msg: Unsubscribe, now: float) -> None:
        self.subscriptions.remove(src, msg.pattern)
        self.journal.subscribed(src, msg.pattern, False)
        self._interest_changed(now)

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
        recipients = self._direct_to(msg.dst, "")
        topic = ""
        if not recipients:
            self.log.append(f"direct {src}:{msg.op_id} to unknown agent {msg.dst!r}")
        elif self.sessions[recipients[0]].peer:
            topic = msg.dst  # between coordinators, a direct names its destination here
        self._route(
            src, msg.op_id, DeliveryKind.DIRECT, topic, msg.payload, msg.checksum, recipients, now
        )

    def _direct_to(self, dst: str, came_from: str) -> tuple[str, ...]:
        raise NotImplementedError  # protocol.peers

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
        if self._congested(sessions, now):
            self.stats.busy += 1
            self._out.append((src, Busy(op_id, self.settings.busy_retry)))
            return
        self._accept(src, key, Accepted(op_id, len(sessions)))
        self.stats.ops_entered += 1
        self._dispatch(kind, src, op_id, topic, payload, checksum, recipients, sessions, now)

    def _dispatch(
        self,
        kind: int,
        origin: str,
        op_id: int,
        topic: str,
        payload: bytes,
        checksum: int,
        recipients: tuple[str, ...],
        sessions: list[Session],
        now: float,
    ) -> None:
        """Route an admitted op: one ``Deliver`` for every recipient (agents, or the
        neighbouring coordinators of a tree), remembered for de-duplication."""
        key = (origin, op_id)
        deliver = Deliver(self._next_msg_id, kind, origin, op_id, topic, payload, checksum)
        self._next_msg_id += 1
        self.stats.ops_routed += 1
        self._routed[key] = len(sessions)
        self._remember(key)
        self.journal.delivered(deliver, list(recipients))
        self._enqueue(deliver, sessions, now)

    def _congested(self, sessions: list[Session], now: float) -> bool:
        """Whether a recipient's queue refuses more: full (a failed agent's too, so
        nothing accepted is ever dropped), or, for a live agent, standing: not
        empty for ``delay_target`` (its deliveries would wait longer than that)."""
        limit = self.settings.max_backlog
        standing = now - self.settings.delay_target
        for s in sessions:
            backlog = s.backlog
            if backlog and (len(backlog) >= limit or (s.alive and s.backlog_since < standing)):
                return True
        return False

    def _enqueue(self, deliver: Deliver, sessions: list[Session], now: float) -> None:
        credit = self.settings.credit
        sent: list[str] = []
        out = self._out
        msg_id = deliver.msg_id
        wait = 0.0
        for session in sessions:
            if session.alive and len(session.inflight) < credit and not session.backlog:
                session.inflight[msg_id] = deliver
                out.append((session.node_id, deliver))
                sent.append(session.node_id)
                rto = session.rto
                rto.start(msg_id, now)  # each link times one delivery at a time
                link_rto = rto.rto
                if link_rto > wait:
                    wait = link_rto
            else:
                self._hold(session, deliver, now)
        if sent:  # one retry entry for the op: due when the slowest link's timeout is
            self._retries.push(now + wait, (deliver, tuple(sent), 0))

    def _hold(self, session: Session, deliver: Deliver, now: float) -> None:
        """Queue ``deliver`` for later. Every queue, a failed agent's included, is
        bounded by ``Busy`` before routing, so nothing accepted is ever dropped."""
        backlog = session.backlog
        if not backlog:
            session.backlog_since = now
        backlog.append(deliver)

    def _on_ack(self, src: str, msg: Ack, now: float) -> None:
        session = self.sessions[src]
        inflight = session.inflight
        timed = session.rto.timed_key
        self.journal.acked(src, msg.msg_ids)
        for msg_id in msg.msg_ids:
            inflight.pop(msg_id, None)
            if msg_id == timed:
                session.rto.answer(msg_id, now)
        if session.backlog:
            self._refill(session, now)
        if self.unassigned and session.capabilities:
            self._assign_waiting(now)

    def _refill(self, session: Session, now: float) -> None:
        if not session.alive:
            return
        credit = self.settings.credit
        deadline = now + session.rto.rto
        while session.backlog and len(session.inflight) < credit:
            deliver = session.backlog.popleft()
            session.inflight[deliver.msg_id] = deliver
            self._out.append((session.node_id, deliver))
            self._retries.push(deadline, (deliver, (session.node_id,), 0))

    def _resend_session(self, session: Session, now: float) -> None:
        """After a (re)registration, resend everything in flight and every task result
        it has not acked, then refill."""
        deadline = now + session.rto.rto
        node = session.node_id
        for deliver in list(session.inflight.values()):
            session.rto.cancel(deliver.msg_id)
            self._out.append((node, deliver))
            self._retries.push(deadline, (deliver, (node,), 1))
        for (origin, _), done in self._done_pending.items():
            if origin == node:  # its retry timer may have backed off far while it was away
                self._out.append((node, done))
        self._refill(session, now)

    def _resend_expired(self, now: float) -> None:
        for msg, nodes, attempt in self._retries.pop_due(now):
            if isinstance(msg, TaskDone):
                owed = (nodes[0], msg.op_id) in self._done_pending
                self._resend_answer(msg, nodes[0], attempt, owed, now)
                continue
            if isinstance(msg, TaskBack):
                key = (msg.origin, msg.op_id)
                if nodes[0] not in self.sessions:  # a neighbour forgotten: it lost the task
                    self._back_pending.pop(key, None)
                    continue
                self._resend_answer(msg, nodes[0], attempt, key in self._back_pending, now)
                continue
            again = []
            wait = 0.0
            for node in nodes:
                session = self.sessions.get(node)
                if session is not None and session.alive and msg.msg_id in session.inflight:
                    rto = session.rto
                    rto.cancel(msg.msg_id)
                    rto.expired(now)  # the link backs off, not only this message
                    wait = max(wait, rto.rto)
                    self._out.append((node, msg))
                    again.append(node)
            if again:
                self.stats.redelivered += len(again)
                # the links' timeouts have doubled already (``expired``): no second factor
                self._retries.push(now + wait, (msg, tuple(again), attempt + 1))

    def _link_rto(self, node: str) -> float:
        """The retransmission timeout of ``node``'s link (the minimum if unknown)."""
        session = self.sessions.get(node)
        return session.rto.rto if session is not None else self.settings.ack_timeout

    def _resend_answer(
        self, msg: TaskDone | TaskBack, node: str, attempt: int, owed: bool, now: float
    ) -> None:
        """Resend a task's answer while it is ``owed`` (not acked yet), backing off."""
        if owed:
            session = self.sessions.get(node)
            if session is not None and session.alive:
                self._out.append((node, msg))
                self.stats.redelivered += 1
            due = now + backoff(self._link_rto(node), attempt + 1, self.settings.max_rto)
            self._retries.push(due, (msg, (node,), attempt + 1))
