"""The plan's fault timeline on the model: kills, pauses, a coordinator crash, bad links.

A ``FaultInjector`` joins a ``ModelRun`` (``sim.driver``) whose plan has
faults (``plan.faults``, compiled by ``harness.scenario.faults``) or whose coordinator
persists (``durable_coordinator``). It replays the same timeline as the real
tcp driver, on the simulated clock:

- **Gates.** With faults, every node's ``arrive`` callback and the engine's
  timer callback are replaced by the injector's gates, which call the
  engine's own handlers when a message or a timer may go on. A fault-free
  run keeps the engine's callbacks, so its hot path is untouched.
- **Links.** A message between an agent and the coordinator (either way) is
  checked when it reaches the far end: on a link that is down (the agent
  was killed, or its link broke in a coordinator crash and it has not
  reconnected yet) it is dropped; otherwise the link faults in effect decide
  (``Target.link``: a partition drops it, the combined loss drops it with one
  draw from ``random.Random(f"{plan.seed}:loss")``, so the engine's stream of
  draws is unchanged, and the delays add up). Probes are not on an agent's
  link.
- **KILL_AGENT.** The agent's life ends at ``fault.at``: what reaches it is
  dropped, its timers stop, what it had queued is lost, and the
  coordinator's ``link_closed`` runs at once (as a job free of service
  time: the OS closes a SIGKILLed process's sockets). At ``fault.end`` a
  supervisor starts it again; it is live ``calibration.agent_restart``
  later, as a fresh ``Agent`` that first ``recall``\\s what its earlier lives
  handled (their completion records) and then connects: at once when the
  coordinator is live, else with the reconnect backoff below.
- **PAUSE_AGENT.** Messages to the agent queue, its timers do not fire and
  its due ops wait; when the last pause on it ends, everything queued is
  handled in the order it arrived (messages, waiting ops, reconnects), then
  an overdue timer fires. The coordinator is told nothing.
- **CRASH_COORDINATOR.** The coordinator dies at ``fault.at``: what reaches
  it is dropped (a dropped probe is never answered) and its timers stop.
  Every live agent's link breaks; the agent notices at once and tries to
  reconnect after ``settings.reconnect_min``, doubling up to
  ``settings.reconnect_max``; an attempt succeeds only when the coordinator
  is live, and then the agent says hello again (``Agent.start``). The
  coordinator is live again at ``fault.end + calibration.coordinator_restart``,
  a new coordinator built by ``protocol.durable.restarted`` from the
  ``DurableState`` it persisted into (memory rows, the bus journal's state, the
  answers to recent writes). A ``StoreSnapshot`` of the
  restored store goes to ``result.restarts``.
- **CRASH_COORDINATOR of a tree node** (``fault.node``). Every coordinator of
  the tree is gated as the root is. The node dies at ``fault.at``: only its own
  agents' links break (they ``fail_over`` to its ancestors, after the reconnect
  backoff), its neighbours' ``link_closed`` runs at once (children re-parent, the
  parent keeps what it held: ``protocol.failover``), a ``PeerHello`` that reaches
  a dead node closes its sender's link (it moves on), and a message on a link that
  broke (between an agent and a coordinator it has left) is dropped. It is live
  again at ``fault.end + calibration.coordinator_restart``, built from its own
  journal with its ancestors (``tree_node``), and rejoins its parent.
- **Persistence.** A persisting coordinator (``durable_coordinator``: the
  plan's ``settings.durable_bus`` is on or the plan crashes the coordinator)
  has, after every one of its jobs, its ``take_writes()`` and
  ``take_bus_journal()`` applied to the model's durable copies, then
  ``writes_persisted()`` called, as the real server does per batch. The
  model does not charge the SQLite commit: persistence costs no simulated
  time.

Overlaps, and which ops are issued, follow ``protocol.faults`` (each agent and
the coordinator has a ``Target``): pauses nest, a kill ends pauses, a kill
during a restart cancels it, link faults combine, and an op is issued, held
or never issued as ``Target.fate`` says. Held ops are issued when the last
pause ends or the new life is live, late (as the real new process issues
every op from ``fault.end`` on). A job a node had taken before a fault hit it
completes, except on a killed agent: the records its unfinished jobs left
(dated after the kill) are dropped, and what a node sends after it died is
lost with its link. The driver is told about each never-issued op
(``lost_op``) so that it does not wait for its completions, and likewise
about a probe dropped at a dead coordinator (``lost_probe``).

Events: ``NodeEvent(at, "injected", node)`` per affected agent (``node`` is
``"coordinator"`` for a crash of the root, the node's id for one below it) and
``NodeEvent(heal, "healed", node)``, with
``heal`` the end plus the restart time for a kill or crash and the end for
the others, plus every event the coordinator reports (``take_events``, after
each of its jobs), in time order.

Everything is deterministic: fault actions are scheduled at exact times
(no wake-up lateness), and the only random draws are the loss draws.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from simpy.events import NORMAL

from protocol.agent import Agent, memory_until
from protocol.coordinator import Coordinator
from protocol.durable import DurableState, restarted
from protocol.faults import Effect, Fate, Target, crash_event_node, timeline
from protocol.messages import PeerHello, Probe, StatusRequest
from protocol.nodes import COORDINATOR_ID
from protocol.payload import checksum
from protocol.plan import AgentSpec, Fault, FaultKind, Operation, Plan
from protocol.records import DriverResult, NodeEvent, StoreSnapshot
from protocol.retransmit import next_reconnect_wait
from protocol.topology import ancestries
from protocol.workload import remembered
from sim.calibration import Calibration
from sim.engine import Engine
from sim.nodes import Arrival, Callbacks, SimNode, TimerDue

DROP_REASONS = ("node down", "link down", "partition", "loss")
Schedule = Callable[[float, Callable[[], None]], None]
Held = tuple[Callable[[], None], Operation | None]  # an action and the op it issues, if any


def durable_coordinator(plan: Plan) -> bool:
    """True when the model's coordinator persists (``durable_memory=True``)."""
    if plan.settings.durable_bus:
        return True
    return any(fault.kind == FaultKind.CRASH_COORDINATOR for fault in plan.faults)


@dataclass(slots=True, eq=False)
class AgentState:
    """One agent under faults: the rules' view (``target``) and the model's."""

    node: SimNode
    spec: AgentSpec
    target: Target
    link_up: bool = True
    held: list[Held] = field(default_factory=list)  # what waits for the pause to end
    lives: list[Agent] = field(default_factory=list)  # its earlier lives


class FaultInjector:
    """Replays ``plan.faults`` on one model run (module docstring)."""

    def __init__(
        self,
        plan: Plan,
        calibration: Calibration,
        engine: Engine,
        coordinators: list[SimNode],
        agents: list[SimNode],
        schedule: Schedule,
        lost_op: Callable[[Operation], None],
        lost_probe: Callable[[], None],
        undone: Callable[[int], None],
    ) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.engine = engine
        self.env = engine.env
        self.coordinator = coordinators[0]  # the root: the one of a flat run
        self.coordinators = {node.node_id: node for node in coordinators}
        self.chains = ancestries(plan.tree)  # each coordinator's ancestors
        self.at = schedule
        self.lost_op = lost_op
        self.lost_probe = lost_probe
        self.undone = undone
        self.agent_restart = calibration.agent_restart
        self.coordinator_restart = calibration.coordinator_restart
        self.durable = durable_coordinator(plan)
        self.kept = {node: DurableState() for node in self.coordinators}  # what each persisted
        self.events: list[NodeEvent] = []
        self.restarts: list[StoreSnapshot] = []  # the root's store after each restart
        self.restarted = 0  # coordinators restarted (a tree's too)
        self.states = {
            node.node_id: AgentState(node, spec, Target(node.node_id))
            for node, spec in zip(agents, plan.agents, strict=True)
        }
        self.loss = random.Random(f"{plan.seed}:loss").random
        self.crashes = {node: Target(crash_event_node(node)) for node in self.coordinators}
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.unissued = 0
        self._ops: dict[int, Operation] | None = None
        self._arrive_agent = engine._arrive_agent
        self._arrive_coordinator = engine._arrive_coordinator
        self._on_timer = engine._on_timer
        self._agent_cb: Callbacks = (self._agent_after_link,)
        self._coordinator_cb: Callbacks = (self._coordinator_after_link,)
        engine.after_coordinator = self._after_coordinator
        if plan.faults:
            self._intercept()
            self._schedule_faults()

    @property
    def active(self) -> bool:
        """True when the plan has faults (the gates are in place)."""
        return bool(self.plan.faults)

    def _intercept(self) -> None:
        for state in self.states.values():
            state.node.arrive = (self._to_agent,)
        for node in self.coordinators.values():
            node.arrive = (self._to_coordinator,)
        self.engine._timer_cb = (self._timer,)

    def _schedule_faults(self) -> None:
        for step in timeline(self.plan.faults):
            self.at(step.at, partial(self._inject if step.inject else self._heal, step.fault))

    def close(self) -> None:
        """Drop the references back to the engine and the nodes."""
        self.engine.after_coordinator = None
        self.states.clear()
        self._agent_cb = self._coordinator_cb = ()
        self.at, self.lost_op, self.lost_probe = _never_at, _never_lost, _nothing_lost
        self.undone = _never_undone

    # --- the workload -----------------------------------------------------------

    def issue(self, node: SimNode, op: Operation) -> None:
        """Issue ``op`` on its origin, unless the origin was down at ``op.at`` (never
        issued) or is paused (issued when the pause ends)."""
        state = self.states[op.origin]
        fate = state.target.fate(op.at)
        if fate == Fate.ISSUE:
            self.engine.issue(node, op)
        elif fate == Fate.HOLD:  # issued when the pause ends or the new life is live
            state.held.append((partial(self.engine.issue, node, op, False), op))
        else:
            self._unissued(op)

    def _unissued(self, op: Operation) -> None:
        self.unissued += 1
        self.lost_op(op)

    # --- gates ------------------------------------------------------------------

    def _to_agent(self, event: Arrival) -> None:
        state = self.states[event.node.node_id]
        if event.src in self.coordinators:
            if event.src != event.node.core.coordinator:  # type: ignore[union-attr]
                self.dropped["link down"] += 1  # the link it came on broke: a fail-over
                return
            if not self._passes(state, event, self._agent_cb):
                return
        self._agent_after_link(event)

    def _agent_after_link(self, event: Arrival) -> None:
        state = self.states[event.node.node_id]
        if state.target.dead:
            self.dropped["node down"] += 1
        elif state.target.paused:
            state.held.append((partial(self._arrive_agent, event), None))
        else:
            self._arrive_agent(event)

    def _to_coordinator(self, event: Arrival) -> None:
        if self.crashes[event.node.node_id].dead:
            self._lost_at_coordinator(event)
            return
        state = self.states.get(event.src)
        if state is not None:
            if state.node.core.coordinator != event.node.node_id:  # type: ignore[union-attr]
                self.dropped["link down"] += 1  # sent on a link that broke since
                return
            if not self._passes(state, event, self._coordinator_cb):
                return
        self._arrive_coordinator(event)

    def _coordinator_after_link(self, event: Arrival) -> None:
        if self.crashes[event.node.node_id].dead:
            self._lost_at_coordinator(event)
        else:
            self._arrive_coordinator(event)

    def _lost_at_coordinator(self, event: Arrival) -> None:
        self.dropped["node down"] += 1
        if type(event.msg) is Probe or type(event.msg) is StatusRequest:
            self.lost_probe()  # the status request is counted as a probe
        elif type(event.msg) is PeerHello:  # a coordinator could not connect: it moves on
            sender = self.coordinators.get(event.src)
            if sender is not None and not self.crashes[event.src].dead:
                core: Coordinator = sender.core  # type: ignore[assignment]
                self.engine.serve(sender, partial(core.link_closed, event.node.node_id))

    def _passes(self, state: AgentState, event: Arrival, after: Callbacks) -> bool:
        """True when a message on ``state``'s link goes on now; False when the link
        dropped it or delayed it (it then arrives later through ``after``)."""
        if not state.link_up:
            self.dropped["link down"] += 1
            return False
        condition = state.target.link()
        if condition.clear:
            return True
        delay = condition.passes(self.loss)
        if delay is None:
            self.dropped["partition" if condition.partitioned else "loss"] += 1
            return False
        if delay > 0.0:
            late = Arrival(after, event.node, event.src, event.msg)
            self.env.schedule(late, NORMAL, delay)
            return False
        return True

    def _timer(self, event: TimerDue) -> None:
        node = event.node
        crashes = self.crashes.get(node.node_id)
        if crashes is not None:
            if crashes.dead:
                return
        else:
            state = self.states.get(node.node_id)
            if state is not None and not state.target.alive:
                return  # a paused node's timer is re-armed when it resumes
        self._on_timer(event)

    # --- the persisting coordinator ------------------------------------------------

    def _after_coordinator(self, coordinator: Coordinator) -> None:
        """After each coordinator job: persist (durable), collect its events."""
        if self.durable:
            self.kept[coordinator.node_id].persist(coordinator)
        if coordinator.events:
            self.events.extend(coordinator.take_events())

    # --- the timeline ---------------------------------------------------------------

    def _inject(self, fault: Fault) -> None:
        if fault.kind == FaultKind.CRASH_COORDINATOR:
            node = fault.node or COORDINATOR_ID
            self.events.append(NodeEvent(fault.at, "injected", crash_event_node(node)))
            if self.crashes[node].inject(fault, fault.at) == Effect.KILL:
                self._crash(node)
            return
        for agent_id in fault.agents:
            self.events.append(NodeEvent(fault.at, "injected", agent_id))
            state = self.states[agent_id]
            effect = state.target.inject(fault, fault.at)
            if effect == Effect.KILL:
                self._kill(state, fault.at)
            elif effect == Effect.CANCEL_RESTART:  # the process being started dies too
                self._drop_held(state)

    def _heal(self, fault: Fault) -> None:
        if fault.kind == FaultKind.CRASH_COORDINATOR:
            node = fault.node or COORDINATOR_ID
            crashes = self.crashes[node]
            live = fault.end + self.coordinator_restart
            if crashes.heal(fault, fault.end) == Effect.RESTART:
                self.at(live, partial(self._coordinator_live, node, crashes.life, live))
            self.at(live, partial(self._healed, live, crash_event_node(node)))
            return
        for agent_id in fault.agents:
            state = self.states[agent_id]
            effect = state.target.heal(fault, fault.end)
            if fault.kind == FaultKind.KILL_AGENT:
                live = fault.end + self.agent_restart
                if effect == Effect.RESTART:
                    self.at(live, partial(self._agent_live, state, state.target.life, live))
                self.at(live, partial(self._healed, live, agent_id))
                continue
            self._healed(fault.end, agent_id)
            if effect == Effect.RESUME:
                self._resume(state)

    def _healed(self, at: float, node: str) -> None:
        self.events.append(NodeEvent(at, "healed", node))

    # --- agents -----------------------------------------------------------------------

    def _kill(self, state: AgentState, at: float) -> None:
        node = state.node
        self._drop_held(state)
        node.armed = None
        self._unfinished(node.core, at)  # type: ignore[arg-type]
        linked, state.link_up = state.link_up, False
        name: str = node.core.coordinator  # type: ignore[union-attr]
        if linked and not self.crashes[name].dead:
            host = self.coordinators[name]
            coordinator: Coordinator = host.core  # type: ignore[assignment]
            self.engine.serve(host, partial(coordinator.link_closed, node.node_id))

    def _drop_held(self, state: AgentState) -> None:
        """What waited on the agent dies with it: its held ops are never issued."""
        for _, op in state.held:
            if op is not None:
                self._unissued(op)
        state.held.clear()

    def _unfinished(self, agent: Agent, now: float) -> None:
        """Forget what the dying agent had not finished by ``now``.

        The engine runs a job when it reaches the node, stamped with its
        later end, so jobs still queued at the kill left records dated after
        it. A process killed first never wrote them: drop those completions
        and write acks (a suffix: an agent's jobs end in order) and tell the
        driver the completions are missing again. What those jobs sent is
        lost with the link.
        """
        completions = agent.completions
        cut = len(completions)
        while cut and completions[cut - 1].at > now:
            cut -= 1
        if cut < len(completions):
            self.undone(sum(1 for c in completions[cut:] if not c.duplicate))
            del completions[cut:]
        agent.write_acks[:] = [ack for ack in agent.write_acks if ack.at <= now]

    def _agent_live(self, state: AgentState, life: int, live: float) -> None:
        """The restarted agent is live: a fresh ``Agent`` that recalls its earlier lives."""
        if not state.target.live(life):
            return  # killed again while it started
        node, spec = state.node, state.spec
        state.lives.append(node.core)  # type: ignore[arg-type]
        agent = Agent(
            spec.agent_id,
            spec.coordinator,
            self.settings,
            spec.capabilities,
            spec.subscriptions,
            fallbacks=self.chains.get(spec.coordinator, ()),
        )
        lives = state.lives
        agent.recall(*remembered(self._op_index(), (c for life in lives for c in life.completions)))
        node.core = agent
        self._attempt(state, state.target.life, next_reconnect_wait(self.settings))
        held, state.held = state.held, []
        for action, _ in held:  # ops due since the restart began, as the new process issues them
            action()

    def _link_lost(self, state: AgentState) -> None:
        """The agent's link to the coordinator broke: reconnect with backoff."""
        if state.target.dead or not state.link_up:
            return
        if state.target.paused:
            state.held.append((partial(self._link_lost, state), None))
            return
        state.link_up = False
        wait = next_reconnect_wait(self.settings)
        following = next_reconnect_wait(self.settings, wait)
        self.at(self.env.now + wait, partial(self._attempt, state, state.target.life, following))

    def _attempt(self, state: AgentState, life: int, backoff: float) -> None:
        """Try to connect; on failure try again ``backoff`` later (doubling, capped)."""
        if state.target.life != life or state.target.dead or state.link_up:
            return
        if state.target.paused:
            state.held.append((partial(self._attempt, state, life, backoff), None))
            return
        agent: Agent = state.node.core  # type: ignore[assignment]
        if not self.crashes[agent.coordinator].dead:
            state.link_up = True
            self.engine.start_agent(state.node)
            return
        agent.fail_over()  # refused: the next coordinator on its list, after the backoff
        following = next_reconnect_wait(self.settings, backoff)
        self.at(self.env.now + backoff, partial(self._attempt, state, life, following))

    def _resume(self, state: AgentState) -> None:
        """The last pause ended: handle what queued, in order, then re-arm the timer."""
        held, state.held = state.held, []
        node = state.node
        node.armed = None
        for action, _ in held:
            action()
        self.engine.serve(node, _nothing)

    # --- the coordinator ---------------------------------------------------------------

    def _crash(self, dead: str) -> None:
        """``dead`` dies: its agents' links break (they fail over, ``Agent.fail_over``:
        in a flat run, to the same coordinator once it is back), and its neighbours in
        a tree see its links close."""
        node = self.coordinators[dead]
        node.armed = None
        core: Coordinator = node.core  # type: ignore[assignment]
        self.events.extend(core.take_events())
        for state in self.states.values():
            agent: Agent = state.node.core  # type: ignore[assignment]
            if agent.coordinator == dead:
                if state.link_up and not state.target.dead:
                    agent.fail_over()
                self._link_lost(state)
        for name, other in self.coordinators.items():
            neighbour: Coordinator = other.core  # type: ignore[assignment]
            if name != dead and not self.crashes[name].dead and dead in neighbour.sessions:
                self.engine.serve(other, partial(neighbour.link_closed, dead))

    def _coordinator_live(self, name: str, life: int, live: float) -> None:
        """A new coordinator, restored from what the old one persisted; in a tree it
        rejoins its parent."""
        if not self.crashes[name].live(life):
            return  # crashed again while it started
        node = self.coordinators[name]
        root = node is self.coordinator
        kept = self.kept[name]
        chain = self.chains.get(name, ())
        rows = list(kept.rows.values())
        coordinator = restarted(name, self.settings, chain, rows, kept.bus, kept.recalled())
        coordinator.stamp_tasks = True  # its earlier life's stamps died with it
        if root:
            entries = {
                slot: (version, checksum(value))
                for slot, (version, value) in coordinator.store.snapshot().items()
            }
            self.restarts.append(StoreSnapshot(live, entries))
        node.core = coordinator
        node.armed = None
        self.restarted += 1
        if coordinator.parent:
            self.engine.start_agent(node)  # its PeerHello

    # --- the result --------------------------------------------------------------------

    def _op_index(self) -> dict[int, Operation]:
        if self._ops is None:
            self._ops = {op.op_id: op for op in self.plan.operations}
        return self._ops

    def lives(self, node: SimNode) -> list[Agent]:
        """Every life of ``node``'s agent, oldest first."""
        state = self.states.get(node.node_id)
        earlier = state.lives if state is not None else []
        return [*earlier, node.core]  # type: ignore[list-item]

    def fill(self, result: DriverResult, agents: list[SimNode], limit: float) -> None:
        """Add what the faults left to ``result``: accepted ops, acknowledged writes,
        events, restart snapshots and a note."""
        history = result.mem_history
        for node in agents:
            for agent in self.lives(node):
                result.accepted.extend(agent.accepted)
                result.shed.extend(agent.shed)
                result.write_acks.extend(ack for ack in agent.write_acks if ack.at <= limit)
                if history is not None:
                    history.extend(memory_until(agent, limit))
        for name, node in self.coordinators.items():
            if not self.crashes[name].dead:
                core: Coordinator = node.core  # type: ignore[assignment]
                self.events.extend(core.take_events())
        result.events.extend(sorted(self.events, key=_event_time))
        result.restarts.extend(self.restarts)
        if self.plan.faults:
            result.notes.append(self.note())

    def note(self) -> str:
        """One line on the faults replayed and what they cost."""
        kinds = Counter(fault.kind.name.lower() for fault in self.plan.faults)
        injected = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        dropped = ", ".join(f"{count} {why}" for why, count in self.dropped.items() if count)
        return (
            f"faults: {injected}; messages dropped: {dropped or 'none'}; "
            f"ops never issued (origin down): {self.unissued}; "
            f"coordinator restarts: {self.restarted}"
        )


def _nothing(end: float) -> None:
    """A job that does nothing (serving it re-arms the node's timer)."""


def _never_at(when: float, action: Callable[[], None]) -> None:
    """Schedules nothing (a closed injector)."""


def _never_lost(op: Operation) -> None:
    """Reports nothing (a closed injector)."""


def _nothing_lost() -> None:
    """Reports nothing (a closed injector)."""


def _never_undone(count: int) -> None:
    """Reports nothing (a closed injector)."""


def _event_time(event: NodeEvent) -> float:
    return event.at
