"""An in-memory cluster for core tests: a manual clock and a lossy network.

Every message sent is put on a heap keyed by its arrival time. A seeded
``random.Random`` decides, per message, whether the network drops it,
duplicates it, or delays it by a random amount (which reorders messages).
``run_until(t)`` delivers messages and fires timers in time order, calling
only the sans-IO interface (``receive``, ``on_timer``, ``next_deadline``,
``drain``), exactly as a driver would.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import Message
from protocol.plan import Plan
from protocol.records import Completion
from protocol.settings import ProtocolSettings
from protocol.workload import issue

COORD = "coord"


@dataclass
class Faults:
    """Per-message fault probabilities and the delay range."""

    drop: float = 0.0
    duplicate: float = 0.0
    min_delay: float = 0.0005
    max_delay: float = 0.0005


class Cluster:
    """A coordinator and agents wired through a simulated network."""

    def __init__(
        self, settings: ProtocolSettings, faults: Faults | None = None, seed: int = 0
    ) -> None:
        self.settings = settings
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.now = 0.0
        self.coordinator = Coordinator(COORD, settings)
        self.children: dict[str, Coordinator] = {}  # the other coordinators of a tree
        self.agents: dict[str, Agent] = {}
        self._wire: list[tuple[float, int, str, str, Message]] = []
        self._seq = itertools.count()
        self.sent = 0

    def add_agent(
        self,
        node_id: str,
        capabilities: tuple[str, ...] = (),
        subscriptions: tuple[str, ...] = (),
        vouched_by: str = "",
        coordinator: str = COORD,
    ) -> Agent:
        agent = Agent(node_id, coordinator, self.settings, capabilities, subscriptions, vouched_by)
        self.agents[node_id] = agent
        agent.start(self.now)
        self._flush(node_id, agent)
        return agent

    def add_coordinator(self, node_id: str, parent: str) -> Coordinator:
        """A child coordinator of a tree under ``parent``; it joins at once."""
        coordinator = Coordinator(node_id, self.settings, parent=parent)
        self.children[node_id] = coordinator
        coordinator.start(self.now)
        self._flush(node_id, coordinator)
        return coordinator

    @property
    def coordinators(self) -> dict[str, Coordinator]:
        """The coordinator (the root of a tree) and any others."""
        return {COORD: self.coordinator, **self.children}

    def node(self, node_id: str) -> Coordinator | Agent:
        if node_id == COORD:
            return self.coordinator
        found = self.children.get(node_id)
        return found if found is not None else self.agents[node_id]

    def _flush(self, src: str, node: Coordinator | Agent) -> None:
        for dst, msg in node.drain():
            self._send(src, dst, msg)

    def _send(self, src: str, dst: str, msg: Message) -> None:
        self.sent += 1
        faults = self.faults
        copies = 1
        if self.rng.random() < faults.drop:
            copies = 0
        elif self.rng.random() < faults.duplicate:
            copies = 2
        for _ in range(copies):
            delay = self.rng.uniform(faults.min_delay, faults.max_delay)
            heapq.heappush(self._wire, (self.now + delay, next(self._seq), src, dst, msg))

    def _next_timer(self) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        for node_id in [COORD, *self.children, *self.agents]:
            deadline = self.node(node_id).next_deadline()
            if deadline is not None and (best is None or deadline < best[0]):
                best = (deadline, node_id)
        return best

    def run_until(self, end: float) -> None:
        """Advance the clock to ``end``, delivering messages and firing timers."""
        while True:
            timer = self._next_timer()
            wire_at = self._wire[0][0] if self._wire else None
            if wire_at is not None and wire_at <= end and (timer is None or wire_at <= timer[0]):
                at, _, src, dst, msg = heapq.heappop(self._wire)
                self.now = max(self.now, at)
                node = self.node(dst)
                node.receive(src, msg, self.now)
                self._flush(dst, node)
            elif timer is not None and timer[0] <= end:
                self.now = max(self.now, timer[0])
                node = self.node(timer[1])
                node.on_timer(self.now)
                self._flush(timer[1], node)
            else:
                self.now = end
                return

    def issue(self, origin: str, op_id: int, fn_name: str, *args: object) -> None:
        agent = self.agents[origin]
        getattr(agent, fn_name)(op_id, *args, self.now)
        self._flush(origin, agent)

    def replay(self, plan: Plan, settle: float = 10.0) -> None:
        """Add the plan's agents, issue every operation at its time, then settle."""
        for spec in plan.agents:
            self.add_agent(spec.agent_id, spec.capabilities, spec.subscriptions)
        for op in plan.operations:
            self.run_until(op.at)
            agent = self.agents[op.origin]
            issue(agent, op, self.now)
            self._flush(op.origin, agent)
        self.run_until(plan.duration + settle)

    def completions(self) -> list[Completion]:
        return [c for agent in self.agents.values() for c in agent.completions]
