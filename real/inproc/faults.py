"""Faults on the in-process transport: killed, paused and badly linked agents.

Used instead of the plain ``Hub`` when a plan has faults, so a fault-free
run keeps the plain hub's hot path. Everything shares one event loop, so:

- **kill_agent**: the agent's state machine is dropped (its mailbox keeps
  no node), messages to it are lost, its timer is cancelled, and the
  coordinator is told its link closed (a killed process's sockets close).
  At the fault's end a new ``Agent`` takes its place at once (there is no
  process to start), first recalling what its earlier lives handled
  (``Agent.recall``, from their completion records, which play the part
  of the tcp worker's record log), then saying hello.
- **pause_agent**: the agent's mailbox stops being processed and its timer
  stops firing, as under SIGSTOP; messages queue; ops due meanwhile wait.
  At the end everything queued is handled and the waiting ops are issued.
- **partition / link_delay / link_loss**: ``route`` drops, delays (with
  ``loop.call_later``) or randomly loses (``random.Random(f"{seed}:loss")``)
  every message between the agent and the coordinator.

A coordinator crash is offered for a node of a tree only (``crash_coordinator``
with ``node``; a flat coordinator's crash needs ``transport: tcp``, where it
restarts from SQLite, and the scenario loader refuses it here with exit 2):

- **crash_coordinator** (a tree node): every coordinator's journal is kept
  after each of its runs, in memory (``protocol.durable.DurableState``), as a
  durable server keeps it on disk. At the crash the node's state machine is
  dropped (what reaches it is lost, its timer stops), its neighbours see its
  links close (``Coordinator.link_closed``) and its agents fail over
  (``Agent.fail_over``) and say hello ``reconnect_min`` later; a hello or
  ``PeerHello`` to a dead coordinator is refused (the agent tries the next, the
  coordinator's link closes). At the fault's end it is built again from its
  journal, at once (there is no process to start), and rejoins its parent.

What the faults mean (nested pauses, overlapping kills, combined link
faults, which ops are issued, held or never issued) is decided by
``protocol.faults``: one ``Target`` per agent. Every injection and heal is
recorded as a ``NodeEvent``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.durable import DurableState, restarted
from protocol.faults import Effect, Fate, Target, crashes_coordinator, timeline
from protocol.messages import Hello, Message, PeerHello
from protocol.plan import AgentSpec, Fault, FaultKind, Operation, Plan
from protocol.records import DriverResult, NodeEvent
from protocol.retransmit import next_reconnect_wait
from protocol.topology import ancestries
from protocol.workload import issue, remembered
from real.clock import RunClock
from real.inproc.hub import COORD, PROBER, Hub, Mailbox


class FaultMailbox(Mailbox):
    """A mailbox that can be paused (nothing runs) or emptied of its node (dead)."""

    __slots__ = ("paused", "held_ops")

    def __init__(self, hub: Hub, node_id: str, node: Coordinator | Agent | None) -> None:
        super().__init__(hub, node_id, node)
        self.paused = False
        self.held_ops: list[Operation] = []

    def process(self) -> None:
        if self.paused:
            self.scheduled = False
            return
        if self.node is None and self.node_id != PROBER:
            self.scheduled = False
            self.inbox.clear()  # a dead agent: what reaches it is lost
            return
        super().process()

    def flush(self) -> None:
        hub = self.hub
        if isinstance(self.node, Coordinator) and isinstance(hub, FaultHub) and hub.durable:
            hub.persist(self.node)
        super().flush()

    def fire(self) -> None:
        if self.paused or self.node is None:
            self.timer = None
            return  # a paused node's timer fires when it resumes
        super().fire()


class FaultHub(Hub):
    """A hub whose links and agents follow the plan's fault timeline."""

    mailbox_class = FaultMailbox

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: RunClock) -> None:
        super().__init__(loop, clock)
        self.plan: Plan | None = None
        self.rng = random.Random()
        self.targets: dict[str, Target] = {}  # the rules' view of each agent
        self.crashes: dict[str, Target] = {}  # and of each coordinator
        self.faulty_links: set[str] = set()  # agents with link faults in effect
        self.events: list[NodeEvent] = []
        self.past_lives: list[Agent] = []
        self.durable = False  # keep every coordinator's journal (a plan that crashes one)
        self.kept: dict[str, DurableState] = {}  # what each coordinator persisted
        self.restarted = 0

    def attach(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(f"{plan.seed}:loss")
        self.targets = {spec.agent_id: Target(spec.agent_id) for spec in plan.agents}
        names = [COORD, *(node.node_id for node in plan.tree)]
        self.crashes = {name: Target(name) for name in names}
        self.durable = crashes_coordinator(plan)
        self.kept = {name: DurableState() for name in names}

    def persist(self, coordinator: Coordinator) -> None:
        """Keep what ``coordinator`` journaled, as a durable server commits it."""
        self.kept[coordinator.node_id].persist(coordinator)

    # --- links ------------------------------------------------------------------

    def route(self, src: str, outgoing: list[tuple[str, Message]]) -> None:
        if self.durable:
            outgoing = self._refused(src, outgoing)
        if not self.faulty_links:
            super().route(src, outgoing)
            return
        for dst, msg in outgoing:
            agent = dst if src == COORD else src
            if agent not in self.faulty_links:
                super().route(src, [(dst, msg)])
                continue
            delay = self.targets[agent].link().passes(self.rng.random)
            if delay is None:
                continue
            if delay > 0:
                self.loop.call_later(delay, super().route, src, [(dst, msg)])
            else:
                super().route(src, [(dst, msg)])

    def _refused(self, src: str, outgoing: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
        """What goes to a dead coordinator is lost; a hello to one is refused, as a
        connection to a dead process is: the agent tries its next coordinator, and a
        coordinator's link to it closes (it moves on)."""
        dead = [name for name, target in self.crashes.items() if target.dead]
        if not dead:
            return outgoing
        kept = []
        for dst, msg in outgoing:
            if dst not in dead:
                kept.append((dst, msg))
            elif type(msg) is Hello:
                self.loop.call_later(self._reconnect_wait(), self._reconnect, src)
            elif type(msg) is PeerHello:
                self.loop.call_soon(self._close_link, src, dst)
        return kept

    def _reconnect_wait(self) -> float:
        assert self.plan is not None
        return next_reconnect_wait(self.plan.settings)

    def _reconnect(self, name: str) -> None:
        """Agent ``name``'s connection was refused or broke: its next coordinator."""
        box = self._box(name)
        agent = box.node
        if isinstance(agent, Agent) and not box.paused:
            agent.fail_over()
            agent.start(self.clock.now())
            box.flush()

    def _close_link(self, name: str, dead: str) -> None:
        box = self.boxes[name]
        if isinstance(box.node, Coordinator):
            box.node.link_closed(dead, self.clock.now())
            box.flush()

    # --- ops --------------------------------------------------------------------

    def issue_due(self, op: Operation, now: float) -> Mailbox | None:
        """Issue ``op`` unless its origin is dead (never) or paused (it waits)."""
        box = self._box(op.origin)
        fate = self.targets[op.origin].fate(op.at)
        if fate == Fate.NEVER or box.node is None:
            return None
        if fate == Fate.HOLD:
            box.held_ops.append(op)
            return None
        issue(box.node, op, now, op.at)  # type: ignore[arg-type]
        return box

    # --- injection --------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        now = self.clock.now()
        if fault.kind == FaultKind.CRASH_COORDINATOR:
            name = fault.node or COORD
            self.events.append(NodeEvent(now, "injected", name))
            if self.crashes[name].inject(fault, now) == Effect.KILL:
                self._crash(name, now)
            return
        for node in fault.agents:
            self.events.append(NodeEvent(now, "injected", node))
            effect = self.targets[node].inject(fault, now)
            if effect == Effect.KILL:
                self.kill(node, now)
            elif effect == Effect.PAUSE:
                self._box(node).paused = True
            elif effect == Effect.LINKS:
                self._links_changed(node)

    def heal(self, fault: Fault, spec_of: dict[str, AgentSpec]) -> None:
        now = self.clock.now()
        if fault.kind == FaultKind.CRASH_COORDINATOR:
            name = fault.node or COORD
            target = self.crashes[name]
            if target.heal(fault, now) == Effect.RESTART:  # no process to start
                self._restart(name, now)
                target.live(target.life)
            self.events.append(NodeEvent(now, "healed", name))
            return
        for node in fault.agents:
            target = self.targets[node]
            effect = target.heal(fault, now)
            if effect == Effect.RESTART:  # no process to start: live at once
                self._respawn(spec_of[node], now)
                target.live(target.life)
            elif effect == Effect.RESUME:
                self.resume(node, now)
            elif effect == Effect.LINKS:
                self._links_changed(node)
            self.events.append(NodeEvent(now, "healed", node))

    def _links_changed(self, node: str) -> None:
        if self.targets[node].link().clear:
            self.faulty_links.discard(node)
        else:
            self.faulty_links.add(node)

    def _box(self, node: str) -> FaultMailbox:
        box = self.boxes[node]
        assert isinstance(box, FaultMailbox)
        return box

    def kill(self, node: str, now: float) -> None:
        """Drop ``node``'s state machine, as a killed process: the coordinator sees its
        link close."""
        box = self._box(node)
        at = COORD
        if isinstance(box.node, Agent):
            self.past_lives.append(box.node)
            at = box.node.coordinator
        box.node = None
        box.paused = False  # a new process is not stopped; its ops die with it
        box.held_ops.clear()
        box.arm(None)
        box.inbox.clear()
        coordinator = self.boxes[at]
        if isinstance(coordinator.node, Coordinator):
            coordinator.node.link_closed(node, now)
            coordinator.flush()

    def _crash(self, name: str, now: float) -> None:
        """Drop coordinator ``name``'s state machine: its neighbours see its links
        close, its agents' links break."""
        box = self._box(name)
        coordinator = box.node
        assert isinstance(coordinator, Coordinator)
        self.persist(coordinator)
        self.events.extend(coordinator.take_events())
        box.node = None
        box.arm(None)
        box.inbox.clear()
        wait = self._reconnect_wait()
        for other in self.boxes.values():
            node = other.node
            if isinstance(node, Agent) and node.coordinator == name:
                self.loop.call_later(wait, self._reconnect, other.node_id)
            elif isinstance(node, Coordinator) and name in node.sessions:
                node.link_closed(name, now)
                other.flush()

    def _restart(self, name: str, now: float) -> None:
        """Coordinator ``name`` again, from its journal; it rejoins its parent."""
        assert self.plan is not None
        kept = self.kept[name]
        chain = ancestries(self.plan.tree).get(name, ())
        rows = list(kept.rows.values())
        coordinator = restarted(name, self.plan.settings, chain, rows, kept.bus, kept.recalled())
        coordinator.stamp_tasks = True
        box = self._box(name)
        box.node = coordinator
        self.restarted += 1
        coordinator.start(now)
        box.flush()

    def _respawn(self, spec: AgentSpec, now: float) -> None:
        box = self._box(spec.agent_id)
        assert self.plan is not None
        agent = Agent(
            spec.agent_id,
            spec.coordinator,
            self.plan.settings,
            spec.capabilities,
            spec.subscriptions,
            fallbacks=ancestries(self.plan.tree).get(spec.coordinator, ()),
        )
        ops = {op.op_id: op for op in self.plan.operations}
        lives = self.lives_of(spec.agent_id)
        handled, results = remembered(ops, (c for life in lives for c in life.completions))
        agent.recall(handled, results)
        box.node = agent
        agent.start(now)
        box.flush()

    def resume(self, node: str, now: float) -> None:
        """Let a paused node run again: what queued is handled, held ops are issued."""
        box = self._box(node)
        box.paused = False
        held, box.held_ops = box.held_ops, []
        if isinstance(box.node, Agent):
            for op in held:
                issue(box.node, op, now)
            box.node.on_timer(now)
        box.process()

    def lives_of(self, node: str) -> Iterator[Agent]:
        yield from (agent for agent in self.past_lives if agent.node_id == node)
        current = self.boxes[node].node
        if isinstance(current, Agent):
            yield current


async def run_faults(hub: FaultHub, plan: Plan) -> None:
    """Inject and heal every fault of the plan at its time (``protocol.faults.timeline``)."""
    spec_of = {spec.agent_id: spec for spec in plan.agents}
    for step in timeline(plan.faults):
        while (wait := step.at - hub.clock.now()) > 0:  # a sleep may end a little early
            await asyncio.sleep(wait)
        if step.inject:
            hub.inject(step.fault)
        else:
            hub.heal(step.fault, spec_of)


def collect(hub: FaultHub, agents: list[Agent], result: DriverResult) -> None:
    """Records of every life of every agent, and the fault events, into ``result``."""
    lives = [*hub.past_lives, *agents]
    result.completions = [c for agent in lives for c in agent.completions]
    result.accepted = [op_id for agent in lives for op_id in agent.accepted]
    result.shed = [op_id for agent in lives for op_id in agent.shed]
    result.write_acks = [ack for agent in lives for ack in agent.write_acks]
    result.mem_history = [call for agent in lives for call in agent.memory_history()]
    events = list(hub.events)
    for box in hub.boxes.values():
        if isinstance(box.node, Coordinator):
            events.extend(box.node.take_events())
    result.events = sorted(events)
