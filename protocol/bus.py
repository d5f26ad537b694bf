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
system. Retransmission is per link, as TCP's is per connection: a session
keeps its deliveries in flight in the order they were last sent, each with
that time, and one timer (``Session.timer_due``, one entry in
``_link_timers``) fires when the oldest may have expired. It resends what
has waited the link's timeout, oldest first, and sets itself again for the
oldest left. So a delivery costs no timer of its own: an ack only removes it
from the session, and a link whose acks keep coming sees its timer fire
about once per timeout, finding nothing to resend. Operations are
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
from protocol.sessions import INF, CoordinatorStats, OpKey, Session, Task
from protocol.settings import ProtocolSettings
from protocol.topics import PatternError, SubscriptionIndex

Retry = tuple[TaskDone | TaskBack, tuple[str, ...], int]  # an answer, its addressee, attempt


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
    _link_timers: RetryHeap[str]
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
        out = self._out
        msg_id = deliver.msg_id
        sent = (deliver, now)
        for session in sessions:
            if session.alive and len(session.inflight) < credit and not session.backlog:
                session.inflight[msg_id] = sent
                out.append((session.node_id, deliver))
                rto = session.rto
                rto.start(msg_id, now)  # each link times one delivery at a time
                if session.timer_due == INF:
                    self._arm(session, now + rto.rto)
            else:
                self._hold(session, deliver, now)

    def _hold(self, session: Session, deliver: Deliver, now: float) -> None:
        """Queue ``deliver`` for later. Every queue, a failed agent's included, is
        bounded by ``Busy`` before routing, so nothing accepted is ever dropped."""
        backlog = session.backlog
        if not backlog:
            session.backlog_since = now
        backlog.append(deliver)

    def _arm(self, session: Session, due: float) -> None:
        """Set ``session``'s retransmission timer (one heap entry per link at most)."""
        session.timer_due = due
        self._link_timers.push(due, session.node_id)

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
        inflight = session.inflight
        backlog = session.backlog
        out = self._out
        node = session.node_id
        while backlog and len(inflight) < credit:
            deliver = backlog.popleft()
            inflight[deliver.msg_id] = (deliver, now)
            out.append((node, deliver))
        if inflight and session.timer_due == INF:
            self._arm(session, now + session.rto.rto)

    def _resend_session(self, session: Session, now: float) -> None:
        """After a (re)registration, resend everything in flight and every task result
        it has not acked, then refill."""
        node = session.node_id
        inflight = session.inflight
        for msg_id, (deliver, _) in list(inflight.items()):
            session.rto.cancel(msg_id)
            self._out.append((node, deliver))
            inflight[msg_id] = (deliver, now)  # in place: the order of sends is kept
        for (origin, _), done in self._done_pending.items():
            if origin == node:  # its retry timer may have backed off far while it was away
                self._out.append((node, done))
        if inflight and session.timer_due == INF:
            self._arm(session, now + session.rto.rto)
        self._refill(session, now)

    def _resend_expired(self, now: float) -> None:
        """Fire the links' retransmission timers that are due, then the task answers'."""
        for node in self._link_timers.pop_due(now):
            session = self.sessions.get(node)
            if session is not None and session.timer_due <= now:  # else a stale entry
                session.timer_due = INF
                self._resend_link(session, now)
        for msg, nodes, attempt in self._retries.pop_due(now):
            if isinstance(msg, TaskDone):
                owed = (nodes[0], msg.op_id) in self._done_pending
                self._resend_answer(msg, nodes[0], attempt, owed, now)
            elif isinstance(msg, TaskBack):
                key = (msg.origin, msg.op_id)
                if nodes[0] not in self.sessions:  # a neighbour forgotten: it lost the task
                    self._back_pending.pop(key, None)
                    continue
                self._resend_answer(msg, nodes[0], attempt, key in self._back_pending, now)

    def _resend_link(self, session: Session, now: float) -> None:
        """``session``'s timer fired: resend every delivery in flight on it for the
        link's timeout or longer (oldest first), back the link off once, and set
        the timer for the oldest delivery left. A failed agent's link rests until
        it returns (``_resend_session``)."""
        inflight = session.inflight
        if not session.alive or not inflight:
            return
        rto = session.rto
        timeout = rto.rto
        expired: list[int] = []
        for msg_id, (_, sent_at) in inflight.items():
            if sent_at + timeout > now:
                break  # sent in order: the rest are younger
            expired.append(msg_id)
        if expired:
            rto.expired(now)  # the link backs off, not only these messages
            node = session.node_id
            out = self._out
            for msg_id in expired:
                deliver = inflight.pop(msg_id)[0]
                inflight[msg_id] = (deliver, now)  # to the back: the youngest send
                rto.cancel(msg_id)
                out.append((node, deliver))
            self.stats.redelivered += len(expired)
        oldest = next(iter(inflight.values()))[1]
        self._arm(session, oldest + rto.rto)

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
