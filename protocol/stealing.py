"""Work stealing in a tree of coordinators: load reports, the balance, the handshake.

A mixin of ``protocol.coordinator.Coordinator``, after Dask's
``distributed/stealing.py``: occupancy (expected seconds of queued work), a
cost-benefit rule, and a request that the victim confirms with what it really
gave, so that a task already started is never moved.

Load. Each coordinator with a parent tells it the load of its subtree in a
``Load``: tasks waiting, their expected seconds of work (the occupancy: each
task's capability's mean duration, learned from the results of tasks run here,
``DURATION_GUESS`` until one is known), free task slots beyond what waits (an
agent has ``task_slots``; with no limit, an idle agent counts one), live
agents, and their capabilities. It is sent ``LOAD_DELAY`` after a change, and in
place of the heartbeat to the parent (so a lost one is made good within a
heartbeat interval, at no extra message); a child's ``Load`` is applied only if
newer than the last. The parent keeps it as a ``LoadView``, and counts down its
``free`` for each task it sends that child until the next ``Load``.

The balance (``task_placement: steal``). After each change a parent with
children looks at them: when some have free slots (``spare``, beyond the
parent's own waiting tasks) and another has tasks waiting, it asks the most
occupied one first (occupancy per agent, the time a new task would wait there)
with ``StealRequest(want)``, if that wait is more than ``COST_FACTOR`` times the
round trip that moving a task costs (two hops; the links' smoothed round
trips); ``want`` is at most its waiting tasks and the spare agents. One request
is out per child; one not answered within ``STEAL_TIMEOUT`` counts as refused.
A child that gave less than asked is not asked again until its next ``Load``
(what it said of its queue is spent), so refusals cannot spin.

The handshake. The victim gives up to ``want`` of its waiting tasks, oldest
first and never one that came from the parent, as TASK ``Deliver``s to the
parent (``protocol.tasks``: it keeps each until its result is back, so a failed
parent loses nothing), and answers ``StealReply(given)``; a task already given
to an agent is running and stays. Oldest first, the tree runs tasks about in
the order one queue would: taking the newest left the oldest waiting, and in
the burst of ``scenarios/steal.yaml`` the model's task p95 was 347 ms against
192 ms. If it had fewer waiting than wanted, it asks its own most occupied
children for the rest, passes up what they give, and answers once they all have
(``given`` counts theirs too). The parent places the stolen tasks as any other:
on the free subtree. So an idle leaf's report makes its parent steal from its
siblings, and, when they have nothing, makes the grandparent steal from its
cousins' subtree.

``central`` sends every task to the root, which places it; ``local`` never
steals (a task leaves its leaf only when nobody there has the capability).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from mypy_extensions import trait

from protocol.messages import Load, Message, StealReply, StealRequest
from protocol.peers import TreeState
from protocol.sessions import CoordinatorStats, Session, Task
from protocol.settings import ProtocolSettings

LOAD_DELAY = 0.002  # changes within this long after a first go out as one Load
DURATION_GUESS = 0.01  # seconds: a capability's task duration until one is measured
DURATION_WEIGHT = 0.25  # how much a new measurement moves the mean
COST_FACTOR = 2.0  # steal only when the victim's wait exceeds this many move costs
STEAL_TIMEOUT = 0.2  # seconds: a steal request not answered by then counts as refused
LoadFigures = tuple[int, float, int, int, tuple[str, ...]]


@dataclass(slots=True)
class LoadView:
    """What a child last said of its subtree's load (``Load``), and a steal out to it."""

    seq: int = 0
    queued: int = 0
    work: float = 0.0
    free: int = 0
    agents: int = 0
    capabilities: tuple[str, ...] = ()
    steal_id: int = 0  # the steal request out to it; 0: none
    asked_at: float = 0.0
    want: int = 0
    relay_for: int = 0  # the parent's steal this one was asked for; 0: for this one's own
    spent: int = 0  # the ``seq`` of the load it had when it gave less than asked


@dataclass(slots=True)
class StealState:
    """Per-coordinator stealing state (kept off the trait, as ``peers.TreeState``)."""

    load_seq: int = 0
    load_sent: LoadFigures | None = None
    next_steal: int = 1
    owed_up: int = 0  # tasks still to pass up for the parent's steal requests
    relays: dict[int, list[int]] = field(default_factory=dict)  # parent's id: [given, asks out]
    views: dict[str, LoadView] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)


@trait  # a mixin of Coordinator: mypyc compiles a mixin only as a trait
class WorkStealing:
    """Load reports, the balance and the steal handshake."""

    node_id: str
    parent: str
    settings: ProtocolSettings
    sessions: dict[str, Session]
    stats: CoordinatorStats
    peers: list[str]
    unassigned: deque[Task]
    _out: list[tuple[str, Message]]
    _steal: StealState
    _tree: TreeState

    # --- the others', used here --------------------------------------------------------

    def _refuse(
        self, src: str, reason: str, close: bool = False, reply: Message | None = None
    ) -> None:
        raise NotImplementedError

    def _assign(self, task: Task, worker: Session, now: float) -> None:
        raise NotImplementedError  # protocol.tasks

    def _assign_waiting(self, now: float) -> None:
        raise NotImplementedError  # protocol.tasks

    def _rearm(self) -> None:
        raise NotImplementedError  # protocol.peers

    # --- durations ---------------------------------------------------------------------

    def _learn_duration(self, capability: str, seconds: float) -> None:
        """A task of ``capability`` took ``seconds`` from assignment to result here."""
        durations = self._steal.durations
        old = durations.get(capability)
        durations[capability] = seconds if old is None else old + (seconds - old) * DURATION_WEIGHT

    def _duration(self, capability: str) -> float:
        return self._steal.durations.get(capability, DURATION_GUESS)

    # --- what placement asks of the children ------------------------------------------

    def _children(self) -> list[tuple[str, LoadView]]:
        """The live children and their views."""
        found = []
        for child, view in self._steal.views.items():
            session = self.sessions.get(child)
            if session is not None and session.alive:
                found.append((child, view))
        return found

    def _child_worker(self, task: Task) -> Session | None:
        """The child whose subtree has the most free task slots for ``task``'s
        capability (the one it came from included: ``protocol.tasks`` returns it
        there)."""
        best: Session | None = None
        most = 0
        for child, view in self._children():
            if view.free <= most:
                continue
            if task.capability in view.capabilities:
                session = self.sessions[child]
                if len(session.backlog) < self.settings.max_backlog:
                    best = session
                    most = view.free
        return best

    def _below_can(self, capability: str) -> bool:
        """Whether some live child's subtree has an agent with ``capability``."""
        return any(capability in view.capabilities for _, view in self._children())

    def _owed_up(self, task: Task) -> bool:
        """Whether ``task`` goes to the parent for a steal it asked for (counted down)."""
        if self._steal.owed_up > 0:
            self._steal.owed_up -= 1
            self.stats.tasks_given += 1
            return True
        return False

    def _given_to(self, task: Task, worker: Session) -> None:
        """``task`` went to neighbour ``worker``: a child has one free slot less."""
        view = self._steal.views.get(worker.node_id)
        if view is not None and view.free > 0:
            view.free -= 1
            view.queued += 1
            view.work += self._duration(task.capability)

    # --- load reports ------------------------------------------------------------------

    def _load_changed(self, now: float) -> None:
        """The load here may have changed: report it soon, and rebalance."""
        if self._steal.views and self.settings.task_placement != "local":
            self._balance(now)
        tree = self._tree
        if self.parent and now + LOAD_DELAY < tree.load_due:
            tree.load_due = now + LOAD_DELAY
            self._rearm()

    def _load_figures(self) -> LoadFigures:
        """``(queued, work, free, agents, capabilities)`` of the subtree here."""
        queued = len(self.unassigned)
        work = sum(self._duration(task.capability) for task in self.unassigned)
        if work > self.stats.occupancy_peak:  # this node's own occupancy
            self.stats.occupancy_peak = work
        free = agents = 0
        slots = self.settings.task_slots or 1  # with no limit, an idle agent is free
        capabilities: set[str] = set()
        for session in self.sessions.values():
            if session.peer or not session.alive:
                continue
            agents += 1
            capabilities.update(session.capabilities)
            free += max(slots - len(session.tasks), 0)
        for _, view in self._children():
            queued += view.queued
            work += view.work
            free += view.free
            agents += view.agents
            capabilities.update(view.capabilities)
        free = max(free - len(self.unassigned), 0)
        return queued, work, free, agents, tuple(sorted(capabilities))

    def _send_load(self, now: float, beat: bool) -> None:
        """Send the parent this subtree's load if it changed, or with the heartbeat
        (``beat``: the ``Load`` is the heartbeat)."""
        state = self._steal
        figures = self._load_figures()
        if figures == state.load_sent and not beat:
            return
        session = self.sessions.get(self.parent)
        if session is None or not session.linked:
            return
        state.load_sent = figures
        state.load_seq += 1
        self._out.append((self.parent, Load(state.load_seq, *figures)))

    def _on_load(self, src: str, msg: Load, now: float) -> None:
        session = self.sessions[src]
        if not session.peer or src == self.parent:
            self._refuse(src, f"Load from {src}, not a child")
            return
        view = self._steal.views.get(src)
        if view is None:
            view = self._steal.views[src] = LoadView()
        if msg.seq <= view.seq:
            return  # reordered behind a newer one
        view.seq = msg.seq
        view.queued = msg.queued
        view.work = msg.work
        view.free = msg.free
        view.agents = msg.agents
        view.capabilities = msg.capabilities
        self._assign_waiting(now)  # places what waits here; reports and rebalances

    # --- the balance -------------------------------------------------------------------

    def _balance(self, now: float) -> None:
        """Ask loaded children for tasks while other children have free slots."""
        children = self._children()
        self._expire_steals(children, now)
        if self.settings.task_placement != "steal":
            return
        spare = sum(view.free for _, view in children) - len(self.unassigned)
        if spare <= 0:
            return
        victims = [
            (view.work / max(view.agents, 1), child, view)
            for child, view in children
            if view.queued > view.free and not view.steal_id and view.seq > view.spent
        ]
        victims.sort(reverse=True)
        for wait, child, view in victims:
            if spare <= 0 or wait <= COST_FACTOR * self._move_cost(child):
                break
            want = min(spare, view.queued - view.free)
            self._ask(child, view, want, 0, now)
            spare -= want

    def _move_cost(self, child: str) -> float:
        """Seconds a stolen task spends moving: up from ``child`` and down again."""
        srtt = self.sessions[child].rto.srtt
        return 2 * srtt if srtt is not None else 0.0

    def _ask(self, child: str, view: LoadView, want: int, relay_for: int, now: float) -> None:
        state = self._steal
        view.steal_id = state.next_steal
        view.asked_at = now
        view.want = want
        view.relay_for = relay_for
        state.next_steal += 1
        self.stats.steals += 1
        self._out.append((child, StealRequest(view.steal_id, want)))

    def _expire_steals(self, children: list[tuple[str, LoadView]], now: float) -> None:
        """A steal request unanswered for ``STEAL_TIMEOUT`` is refused: ask again later."""
        for _, view in children:
            if view.steal_id and now - view.asked_at > STEAL_TIMEOUT:
                self._settle(view, 0)

    def _settle(self, view: LoadView, given: int) -> None:
        if given:
            self.stats.steals_granted += 1
        else:
            self.stats.steals_refused += 1
        if given < view.want:  # what it said of its load is spent: wait for a newer one
            view.spent = view.seq
        view.steal_id = 0
        if view.relay_for:
            state = self._steal
            state.owed_up = max(state.owed_up - (view.want - given), 0)  # will not come
            relay = state.relays.get(view.relay_for)
            if relay is not None:
                relay[0] += given
                relay[1] -= 1
                if relay[1] <= 0:  # every child asked has answered: answer the parent
                    del state.relays[view.relay_for]
                    self._out.append((self.parent, StealReply(view.relay_for, relay[0])))

    # --- the handshake -----------------------------------------------------------------

    def _on_steal_request(self, src: str, msg: StealRequest, now: float) -> None:
        """The parent wants up to ``want`` waiting tasks: give what waits here (oldest
        first, none that came from it), ask the children for the rest, confirm."""
        if src != self.parent:
            self._refuse(src, f"StealRequest from {src}, not my parent")
            return
        parent = self.sessions[src]
        given = 0
        limit = self.settings.max_backlog
        if parent.alive:
            keep: deque[Task] = deque()
            while self.unassigned and given < msg.want and len(parent.backlog) < limit:
                task = self.unassigned.popleft()
                if task.came_from == src:
                    keep.append(task)
                    continue
                self._assign(task, parent, now)
                given += 1
            keep.extend(self.unassigned)
            self.unassigned = keep
        self.stats.tasks_given += given
        rest = msg.want - given
        asked = 0
        if rest > 0 and parent.alive:
            for _, child, view in sorted(
                ((v.work, c, v) for c, v in self._children() if v.queued and not v.steal_id),
                reverse=True,
            ):
                ask = min(rest, view.queued)
                self._steal.owed_up += ask
                self._ask(child, view, ask, msg.steal_id, now)
                asked += 1
                rest -= ask
                if rest <= 0:
                    break
        if asked:  # the answer waits for the children's: it counts what they give too
            self._steal.relays[msg.steal_id] = [given, asked]
        else:
            self._out.append((src, StealReply(msg.steal_id, given)))
        self._load_changed(now)

    def _on_steal_reply(self, src: str, msg: StealReply, now: float) -> None:
        view = self._steal.views.get(src)
        if view is None or view.steal_id != msg.steal_id:
            return  # late: it counted as refused already
        waited = now - view.asked_at
        self.stats.steal_seconds += waited
        self.stats.steal_seconds_max = max(self.stats.steal_seconds_max, waited)
        self._settle(view, msg.given)
        self._assign_waiting(now)
