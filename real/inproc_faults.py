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

Ops whose origin is dead at their scheduled time are never issued, and
an agent that comes back issues only ops scheduled after its return.
Every injection and heal is recorded as a ``NodeEvent``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import Message
from protocol.plan import AgentSpec, Fault, FaultKind, Operation, Plan
from protocol.records import DriverResult, NodeEvent
from protocol.workload import issue, remembered
from real.clock import RunClock
from real.inproc import COORD, PROBER, Hub, Mailbox

LINK_FAULTS = (FaultKind.PARTITION, FaultKind.LINK_DELAY, FaultKind.LINK_LOSS)


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
        self.links: dict[str, list[Fault]] = {}
        self.down_until: dict[str, float] = {}
        self.events: list[NodeEvent] = []
        self.past_lives: list[Agent] = []

    def attach(self, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(f"{plan.seed}:loss")

    # --- links ------------------------------------------------------------------

    def route(self, src: str, outgoing: list[tuple[str, Message]]) -> None:
        if not self.links:
            super().route(src, outgoing)
            return
        for dst, msg in outgoing:
            agent = dst if src == COORD else src
            faults = self.links.get(agent)
            if not faults:
                super().route(src, [(dst, msg)])
                continue
            delay = self._link_delay(faults)
            if delay is None:
                continue
            if delay > 0:
                self.loop.call_later(delay, super().route, src, [(dst, msg)])
            else:
                super().route(src, [(dst, msg)])

    def _link_delay(self, faults: list[Fault]) -> float | None:
        """Extra delay for one message on a faulty link, or None when it is lost."""
        delay = 0.0
        for fault in faults:
            if fault.kind == FaultKind.PARTITION:
                return None
            if fault.kind == FaultKind.LINK_LOSS and self.rng.random() < fault.loss:
                return None
            delay += fault.delay
        return delay

    # --- ops --------------------------------------------------------------------

    def issue_due(self, op: Operation, now: float) -> Mailbox | None:
        """Issue ``op`` unless its origin is dead or paused (then it waits)."""
        box = self.boxes[op.origin]
        assert isinstance(box, FaultMailbox)
        if box.node is None or op.at < self.down_until.get(op.origin, 0.0):
            return None
        if box.paused:
            box.held_ops.append(op)
            return None
        issue(box.node, op, now, op.at)  # type: ignore[arg-type]
        return box

    # --- injection --------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        now = self.clock.now()
        for node in fault.agents:
            self.events.append(NodeEvent(now, "injected", node))
        if fault.kind == FaultKind.KILL_AGENT:
            for node in fault.agents:
                self._kill(node, now)
        elif fault.kind == FaultKind.PAUSE_AGENT:
            for node in fault.agents:
                self._box(node).paused = True
        elif fault.kind in LINK_FAULTS:
            for node in fault.agents:
                self.links.setdefault(node, []).append(fault)

    def heal(self, fault: Fault, spec_of: dict[str, AgentSpec]) -> None:
        now = self.clock.now()
        for node in fault.agents:
            if fault.kind == FaultKind.KILL_AGENT:
                self._respawn(spec_of[node], now)
            elif fault.kind == FaultKind.PAUSE_AGENT:
                self._resume(node, now)
            elif fault.kind in LINK_FAULTS:
                self.links[node].remove(fault)
                if not self.links[node]:
                    del self.links[node]
            self.events.append(NodeEvent(now, "healed", node))

    def _box(self, node: str) -> FaultMailbox:
        box = self.boxes[node]
        assert isinstance(box, FaultMailbox)
        return box

    def _kill(self, node: str, now: float) -> None:
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
        if box.node is not None:
            return  # overlapping kills: the first heal already brought it back
        assert self.plan is not None
        agent = Agent(
            spec.agent_id, COORD, self.plan.settings, spec.capabilities, spec.subscriptions
        )
        ops = {op.op_id: op for op in self.plan.operations}
        lives = self.lives_of(spec.agent_id)
        handled, results = remembered(ops, (c for life in lives for c in life.completions))
        agent.recall(handled, results)
        self.down_until[spec.agent_id] = now
        box.node = agent
        agent.start(now)
        box.flush()

    def _resume(self, node: str, now: float) -> None:
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
    """Inject and heal every fault of the plan at its time."""
    spec_of = {spec.agent_id: spec for spec in plan.agents}
    steps: list[tuple[float, int, bool, Fault]] = []
    for fault in plan.faults:
        steps.append((fault.at, fault.fault_id, True, fault))
        steps.append((fault.end, fault.fault_id, False, fault))
    steps.sort(key=lambda step: (step[0], step[2], step[1]))  # heal before inject, as sim
    for at, _, injecting, fault in steps:
        wait = at - hub.clock.now()
        if wait > 0:
            await asyncio.sleep(wait)
        if injecting:
            hub.inject(fault)
        else:
            hub.heal(fault, spec_of)


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
