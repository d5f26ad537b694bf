"""How the coordinator handles failed agents: detection, failure, return, expiry.

A mixin of ``protocol.coordinator.Coordinator``, kept apart so the
coordinator's module stays about the bus, tasks and memory. The sweep
(``_detect_failures``, every ``heartbeat_interval / 2``) marks an agent
failed once it has been silent for ``failure_after``; a closed link does so
at once (``Coordinator.link_closed``). A failed agent's tasks go back to the
unassigned queue for another worker (or, in a tree, a task a neighbour gave is
returned to it unrun, ``protocol.tasks``), and the task deliveries it still had
are forgotten so it does not run them again on return. Its other
deliveries stay held (bounded by ``Busy``) until it speaks again
(``_revive``) or it has been failed for ``session_expiry``, when they are
dropped and its subscriptions removed (``_expire``). Every step leaves a
``NodeEvent`` for the harness.
"""

from __future__ import annotations

from collections import deque

from mypy_extensions import trait

from protocol.journal import BusJournal
from protocol.messages import DeliveryKind
from protocol.records import NodeEvent
from protocol.sessions import CoordinatorStats, OpKey, Session, Task
from protocol.settings import ProtocolSettings
from protocol.topics import SubscriptionIndex


@trait  # a mixin of Coordinator: mypyc compiles a mixin only as a trait
class FailureHandling:
    """Failure detection and recovery over the coordinator's tables."""

    settings: ProtocolSettings
    sessions: dict[str, Session]
    subscriptions: SubscriptionIndex
    stats: CoordinatorStats
    journal: BusJournal
    events: list[NodeEvent]
    log: deque[str]
    tasks: dict[OpKey, Task]
    unassigned: deque[Task]

    def _assign_waiting(self, now: float) -> None:
        raise NotImplementedError  # the coordinator's

    def _resend_session(self, session: Session, now: float) -> None:
        raise NotImplementedError  # the coordinator's

    def _give_back(self, task: Task, now: float) -> bool:
        raise NotImplementedError  # protocol.tasks

    def _interest_changed(self, now: float) -> None:
        raise NotImplementedError  # protocol.peers

    def _revive(self, session: Session, now: float) -> None:
        """A failed agent spoke again (a healed partition): resume its deliveries.
        A voucher speaks for the failed agents it vouches for on a link that is
        still open: they come back with it (they send no heartbeats of their own)."""
        back = [session]
        node = session.node_id
        if not session.voucher:
            back += [
                s
                for s in self.sessions.values()
                if s.voucher == node and not s.alive and s.linked and s is not session
            ]
        for returned in back:
            returned.alive = True
            returned.last_seen = now
            self.events.append(NodeEvent(now, "returned", returned.node_id))
            self.log.append(f"agent {returned.node_id} is back (seen at {now:.3f})")
            self._resend_session(returned, now)
        self._assign_waiting(now)

    def last_heard(self, session: Session) -> float:
        """When ``session`` was last heard from: itself, or its voucher while the
        voucher lives (a vouched node sends no heartbeats; ``Hello.vouched_by``)."""
        seen = session.last_seen
        if session.voucher:
            voucher = self.sessions.get(session.voucher)
            if voucher is not None and voucher.alive and voucher.last_seen > seen:
                return voucher.last_seen
        return seen

    def _detect_failures(self, now: float) -> None:
        limit = now - self.settings.failure_after
        expiry = now - self.settings.session_expiry
        sessions = self.sessions
        for session in sessions.values():  # vouchers first: they registered before
            if session.alive:
                if session.last_seen < limit and self.last_heard(session) < limit:
                    self.stats.failures_detected += 1
                    self._fail(session, now)
            elif session.last_seen < expiry and self._holds(session):
                self._expire(session, now)

    def _holds(self, session: Session) -> bool:
        """Whether a session still has deliveries or subscriptions to give up."""
        pending = session.backlog or session.inflight
        return bool(pending or self.subscriptions.patterns_of(session.node_id))

    def _expire(self, session: Session, now: float) -> None:
        """Failed for longer than ``session_expiry``: drop what it is owed and its
        subscriptions, so a node that never returns cannot hold publishers back
        forever. The one place accepted deliveries are discarded (``stats.dropped``)."""
        node = session.node_id
        owed = [*session.inflight, *(d.msg_id for d in session.backlog)]
        self.stats.dropped += len(owed)
        self.journal.acked(node, tuple(owed))
        session.inflight.clear()
        session.backlog.clear()
        self.subscriptions.remove_node(node)
        self.journal.member(node, session.capabilities, ())
        self._interest_changed(now)
        self.events.append(NodeEvent(now, "expired", node))
        self.log.append(f"agent {node} expired: {len(owed)} held deliveries dropped")

    def _fail(self, session: Session, now: float) -> None:
        session.alive = False
        self.events.append(NodeEvent(now, "failed", session.node_id))
        self.log.append(f"agent {session.node_id} failed (last seen {session.last_seen:.3f})")
        for key in sorted(session.tasks):
            task = self.tasks.get(key)
            if task is not None:
                task.worker = None
                task.taken_from = session.node_id
                self.stats.tasks_reassigned += 1
                if not (task.came_from and self._give_back(task, now)):
                    self.unassigned.append(task)  # else back to the neighbour that gave it
        session.tasks.clear()
        self._drop_task_deliveries(session)
        self._assign_waiting(now)

    @staticmethod
    def _drop_task_deliveries(session: Session) -> None:
        """A failed agent's tasks went to others: it must not get them again on return."""
        for msg_id, (deliver, _) in list(session.inflight.items()):
            if deliver.kind == DeliveryKind.TASK:
                del session.inflight[msg_id]
        if any(d.kind == DeliveryKind.TASK for d in session.backlog):
            session.backlog = deque(d for d in session.backlog if d.kind != DeliveryKind.TASK)
