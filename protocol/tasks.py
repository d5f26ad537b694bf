"""Tasks: accepted once, placed on a free worker, answered once.

A mixin of ``protocol.coordinator.Coordinator``. A task is a ``TaskSubmit``
from an agent (accepted once, de-duplicated by ``(origin, op_id)``, refused
with ``Busy`` while ``max_backlog`` tasks wait) or a TASK ``Deliver`` from a
neighbouring coordinator of a tree. Either way it waits in ``unassigned``
until ``_assign_waiting`` finds it a free worker:

- a live agent with the capability that holds fewer than ``task_slots`` tasks
  (0: any), the one holding the fewest (ties: the earliest registered); an
  agent runs one task at a time and keeps the others it holds waiting;
- in a tree (``protocol.stealing`` keeps what each child said of its subtree in
  ``Load``), a child whose subtree has a free capable agent, the one with the
  most; or the parent, when the subtree here has no capable agent at all, when
  the parent stole the task (``StealRequest``), or for every task submitted here
  when ``task_placement`` is ``central``.

A task is never forwarded to the neighbour it came from, so it travels a
simple path of the tree. It is returned there unrun (a ``TaskBack`` with no
worker), and that neighbour places it again, when the worker it went on to
failed, or when that neighbour's subtree is the best place for it (the root of
``central`` placement hands a task back to the subtree that sent it up, and it
then runs there). It goes to an agent or a neighbour as a TASK
``Deliver``. An agent answers ``TaskResult``, which is also the delivery's ack;
a neighbour acks the delivery on arrival and answers later with ``TaskBack``,
resent until ``TaskBackAck``. The coordinator a task was submitted to forwards
the result to its submitter as ``TaskDone``, resent until ``TaskDoneAck``; one
that got the task from a neighbour sends it back there as ``TaskBack``. Until
its result is in, a task stays in ``tasks`` with its worker, so a worker that
fails (an agent, or a whole neighbouring subtree) gives it back to the queue
(``protocol.failures``): nothing accepted is lost. A task that failed over may
run twice; its submitter sees one result (it de-duplicates ``TaskDone``).
"""

from __future__ import annotations

from collections import deque

from mypy_extensions import trait

from protocol.bus import Retry
from protocol.journal import BusJournal, PendingTask
from protocol.messages import (
    Accepted,
    Busy,
    Deliver,
    DeliveryKind,
    Message,
    TaskBack,
    TaskBackAck,
    TaskDone,
    TaskDoneAck,
    TaskResult,
    TaskSubmit,
)
from protocol.records import NodeEvent, TaskStamp
from protocol.retransmit import RetryHeap
from protocol.sessions import CoordinatorStats, OpKey, Session, Task
from protocol.settings import ProtocolSettings

CENTRAL = "central"
LOCAL = "local"
STEAL = "steal"
PLACEMENTS = (STEAL, CENTRAL, LOCAL)
SCAN_LIMIT = 64  # waiting tasks one placement pass looks at without placing them


@trait  # a mixin of Coordinator: mypyc compiles a mixin only as a trait
class TaskPlacement:
    """Accepting tasks, placing them on workers, and passing results back."""

    node_id: str
    parent: str
    settings: ProtocolSettings
    sessions: dict[str, Session]
    stats: CoordinatorStats
    journal: BusJournal
    events: list[NodeEvent]
    tasks: dict[OpKey, Task]
    unassigned: deque[Task]
    _passed: dict[OpKey, tuple[str, int]]
    _out: list[tuple[str, Message]]
    _routed: dict[OpKey, int]
    _held_keys: set[OpKey]
    _done_pending: dict[OpKey, TaskDone]
    _back_pending: dict[OpKey, TaskBack]
    _retries: RetryHeap[Retry]
    _next_msg_id: int
    stamp_tasks: bool
    task_stamps: list[TaskStamp]

    # --- the coordinator's and the other mixins', used here -----------------------------

    def _remember(self, key: OpKey) -> None:
        raise NotImplementedError

    def _accept(self, src: str, key: OpKey, reply: Accepted) -> None:
        raise NotImplementedError

    def _enqueue(self, deliver: Deliver, sessions: list[Session], now: float) -> None:
        raise NotImplementedError

    def _refill(self, session: Session, now: float) -> None:
        raise NotImplementedError

    def _link_rto(self, node: str) -> float:
        raise NotImplementedError

    def _child_worker(self, task: Task) -> Session | None:
        raise NotImplementedError  # protocol.stealing

    def _below_can(self, capability: str) -> bool:
        raise NotImplementedError  # protocol.stealing

    def _owed_up(self, task: Task) -> bool:
        raise NotImplementedError  # protocol.stealing

    def _given_to(self, task: Task, worker: Session) -> None:
        raise NotImplementedError  # protocol.stealing

    def _learn_duration(self, capability: str, seconds: float) -> None:
        raise NotImplementedError  # protocol.stealing

    def _load_changed(self, now: float) -> None:
        raise NotImplementedError  # protocol.stealing

    def _peer_ack(self, src: str, msg_id: int) -> None:
        raise NotImplementedError  # protocol.peers

    # --- submission --------------------------------------------------------------------

    def _on_task_submit(self, src: str, msg: TaskSubmit, now: float) -> None:
        key = (src, msg.op_id)
        if self.unassigned:
            self._assign_waiting(now)
        # new unless submitted here before (a task that only passed through on its way
        # elsewhere is new when its submitter, having failed over, submits it here)
        new = key not in self.tasks and self._routed.get(key, -1) < 0
        passing = self.tasks.get(key)
        if passing is not None and passing.came_from:
            passing.came_from = ""  # its submitter is here now: the result goes to it
            self._routed[key] = 1
        if new and len(self.unassigned) >= self.settings.max_backlog:
            self.stats.busy += 1
            self._out.append((src, Busy(msg.op_id, self.settings.busy_retry)))
            return
        if key in self._held_keys:
            return  # its answer goes out once the task is durable
        if new:
            task = Task(src, msg.op_id, msg.capability, msg.payload, msg.checksum, queued_at=now)
            self.tasks[key] = task
            self._routed[key] = 1
            self._remember(key)
            self.unassigned.append(task)
            pending = PendingTask(src, msg.op_id, msg.capability, msg.payload, msg.checksum)
            self.journal.task(pending)
            self._accept(src, key, Accepted(msg.op_id, 1))
            self._assign_waiting(now)
            return
        self._out.append((src, Accepted(msg.op_id, 1)))

    def _on_peer_task(self, src: str, msg: Deliver, now: float) -> None:
        """A task from a neighbour: ack its delivery, then queue it (once)."""
        self._peer_ack(src, msg.msg_id)
        key = (msg.origin, msg.op_id)
        seen = self._routed.get(key)
        if key in self.tasks or (seen is not None and seen >= 0):
            return  # a redelivery (or its result is on its way back), or submitted here
        if self._passed.get(key) == (src, msg.msg_id):
            return  # a late copy of a delivery handled already
        # else new, or placed here again (another delivery) after it was lost
        task = Task(msg.origin, msg.op_id, msg.topic, msg.payload, msg.checksum, queued_at=now)
        task.came_from = src
        self.tasks[key] = task
        if seen is None:
            self._remember(key)
        self._routed[key] = -1  # passing through, not submitted here
        self._passed[key] = (src, msg.msg_id)
        self.unassigned.append(task)
        self._assign_waiting(now)

    # --- placement ---------------------------------------------------------------------

    def _assign_waiting(self, now: float) -> None:
        """Give waiting tasks, oldest first, to free workers. The scan stops after
        ``SCAN_LIMIT`` tasks it could not place (and asks for a worker once per
        capability and giver), so a long queue with no free worker costs little: a
        later task of another capability waits, at most, until those ahead move."""
        queue = self.unassigned
        if queue:
            if len(queue) > self.stats.queue_peak:
                self.stats.queue_peak = len(queue)
            kept: list[Task] = []
            full: set[tuple[str, str]] = set()  # (capability, came from): no worker left
            while queue and len(kept) < SCAN_LIMIT:
                task = queue.popleft()
                kind = (task.capability, task.came_from)
                worker = None if kind in full else self._free_worker(task)
                if worker is None:
                    full.add(kind)
                    kept.append(task)
                elif worker.node_id == task.came_from and self._give_back(task, now):
                    self._given_to(task, worker)  # back where it came from, to run there
                else:
                    self._assign(task, worker, now)
            queue.extendleft(reversed(kept))
        self._load_changed(now)

    def _give_back(self, task: Task, now: float) -> bool:
        """Return a task that a neighbour gave here, unrun: a ``TaskBack`` with no
        worker. Its giver still has it and places it again. So goes a task whose
        worker here failed, and one whose best worker is the subtree it came from."""
        giver = self.sessions.get(task.came_from) if task.came_from else None
        if giver is None or not giver.alive:
            return False
        key = (task.origin, task.op_id)
        del self.tasks[key]
        self._routed.pop(key, None)  # if it comes here again, it is new here
        back = TaskBack(task.origin, task.op_id, "", b"", 0)
        self._back_pending[key] = back
        self._out.append((task.came_from, back))
        self._retries.push(now + self._link_rto(task.came_from), (back, (task.came_from,), 0))
        if task.taken_from is not None:
            self.events.append(NodeEvent(now, "reassigned", task.taken_from))
        return True

    def _free_worker(self, task: Task) -> Session | None:
        """Where ``task`` goes now, or None: it waits."""
        parent = self.sessions.get(self.parent) if self.parent else None
        upward = parent is not None and parent.alive and task.came_from != self.parent
        if upward and parent is not None and not self._backlog_full(parent):
            if self._owed_up(task):
                return parent
            if self.settings.task_placement == CENTRAL and not task.returned:
                return parent  # every task climbs to the root (not one that came down)
        best: Session | None = None
        capable = False
        capability = task.capability
        slots = self.settings.task_slots
        for session in self.sessions.values():
            if session.peer or capability not in session.capabilities:
                continue
            capable = True
            held = len(session.tasks)
            if not session.alive or (slots and held >= slots) or self._backlog_full(session):
                continue
            if best is None or held < len(best.tasks):
                best = session
        if best is not None:
            return best
        child = self._child_worker(task)
        if child is not None:
            return child
        capable = capable or self._below_can(capability)
        if upward and parent is not None and not capable and not self._backlog_full(parent):
            return parent  # nobody here can run it: maybe someone elsewhere
        return None

    def _backlog_full(self, session: Session) -> bool:
        return len(session.backlog) >= self.settings.max_backlog

    def _assign(self, task: Task, worker: Session, now: float) -> None:
        task.worker = worker.node_id
        task.assigned_at = now
        if task.taken_from is not None:
            self.events.append(NodeEvent(now, "reassigned", task.taken_from))
            task.taken_from = None
        worker.tasks.add((task.origin, task.op_id))
        if worker.peer:
            self._given_to(task, worker)
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

    # --- results -----------------------------------------------------------------------

    def _on_task_result(self, src: str, msg: TaskResult, now: float) -> None:
        session = self.sessions[src]
        session.rto.answer(msg.msg_id, now)
        if session.inflight.pop(msg.msg_id, None) is not None and session.backlog:
            self._refill(session, now)
        key = (msg.origin, msg.op_id)
        session.tasks.discard(key)
        task = self.tasks.get(key)
        if task is not None:  # else a late result from a worker the task was taken from
            self.stats.tasks_run_here += 1
            if task.worker == src:
                self._learn_duration(task.capability, now - task.assigned_at)
            self._finish(task, src, msg.payload, msg.checksum, now)
        self._assign_waiting(now)  # the agent is free again

    def _on_task_back(self, src: str, msg: TaskBack, now: float) -> None:
        """A neighbour's result for a task given to it: ack, pass it on (once). With
        no worker, the task comes back unrun: place it again."""
        self._out.append((src, TaskBackAck(msg.origin, msg.op_id)))
        key = (msg.origin, msg.op_id)
        session = self.sessions[src]
        task = self.tasks.get(key)
        if task is not None and not msg.worker:
            if task.worker == src:  # else a late repeat: it was placed again already
                session.tasks.discard(key)
                task.worker = None
                task.returned = True
                self.unassigned.appendleft(task)
        elif task is not None:
            session.tasks.discard(key)
            self._finish(task, msg.worker, msg.payload, msg.checksum, now)
        self._assign_waiting(now)

    def _finish(self, task: Task, worker: str, payload: bytes, checksum: int, now: float) -> None:
        """``task`` ran on ``worker``: send its result back the way it came."""
        key = (task.origin, task.op_id)
        del self.tasks[key]
        if self.stamp_tasks:
            ran = worker in self.sessions and not self.sessions[worker].peer
            stamp = TaskStamp(
                task.origin, task.op_id, self.node_id, task.queued_at, task.assigned_at, now, ran
            )
            self.task_stamps.append(stamp)
        if task.worker is not None and task.worker in self.sessions:
            self.sessions[task.worker].tasks.discard(key)
        if task.came_from:
            to = task.came_from
            back = TaskBack(task.origin, task.op_id, worker, payload, checksum)
            self._back_pending[key] = back
            self._out.append((to, back))
            self._retries.push(now + self._link_rto(to), (back, (to,), 0))
            return
        done = TaskDone(task.op_id, worker, payload, checksum)
        self._done_pending[key] = done
        self._out.append((task.origin, done))
        self._retries.push(now + self._link_rto(task.origin), (done, (task.origin,), 0))

    def _on_task_done_ack(self, src: str, msg: TaskDoneAck, now: float) -> None:
        if self._done_pending.pop((src, msg.op_id), None) is not None:
            self.journal.finished(src, msg.op_id)

    def _on_task_back_ack(self, src: str, msg: TaskBackAck, now: float) -> None:
        self._back_pending.pop((msg.origin, msg.op_id), None)
