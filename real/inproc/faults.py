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

A coordinator crash is not offered here: the coordinator shares the
agents' loop and holds no persisted state; it needs ``transport: tcp``
(the scenario loader refuses it with exit 2).

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
from protocol.faults import Effect, Fate, Target, timeline
from protocol.messages import Message
from protocol.plan import AgentSpec, Fault, Operation, Plan
from protocol.records import DriverResult, NodeEvent
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
        self.faulty_links: set[str] = set()  # agents with link faults in effect
        self.events: list[NodeEvent] = []
        self.past_lives: list[Agent] = []

    def attach(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(f"{plan.seed}:loss")
        self.targets = {spec.agent_id: Target(spec.agent_id) for spec in plan.agents}

    # --- links ------------------------------------------------------------------

    def route(self, src: str, outgoing: list[tuple[str, Message]]) -> None:
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
        if isinstance(box.node, Agent):
            self.past_lives.append(box.node)
        box.node = None
        box.paused = False  # a new process is not stopped; its ops die with it
        box.held_ops.clear()
        box.arm(None)
        box.inbox.clear()
        coordinator = self.boxes[COORD]
        assert isinstance(coordinator.node, Coordinator)
        coordinator.node.link_closed(node, now)
        coordinator.flush()

    def _respawn(self, spec: AgentSpec, now: float) -> None:
        box = self._box(spec.agent_id)
        assert self.plan is not None
        agent = Agent(
            spec.agent_id, COORD, self.plan.settings, spec.capabilities, spec.subscriptions
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
        wait = step.at - hub.clock.now()
        if wait > 0:
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
    coordinator = hub.boxes[COORD].node
    assert isinstance(coordinator, Coordinator)
    result.events = sorted([*hub.events, *coordinator.take_events()])
