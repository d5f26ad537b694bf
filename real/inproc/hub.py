"""The in-process transport: coordinator and agents on one asyncio event loop.

Each node (the coordinator, every agent, the availability prober) has a
``Mailbox``: a deque of ``(src, msg)`` plus a flag saying whether a
processing callback is already scheduled. Sending appends to the
destination's deque and, if the node is idle, schedules it with
``loop.call_soon``. When the node runs it handles every queued message,
stamping each with the run clock, then drains the state machine once and
routes what it produced. That is the same shape as one ``asyncio.Queue``
and consumer task per node, minus a task switch per message, and it keeps
the per-node batching (one ``Ack`` per burst) that the tcp transport has.

Timers: after each run a node's ``next_deadline()`` is armed with
``loop.call_at``; a new deadline replaces the old handle.

The workload replays the plan: it sleeps until an operation's scheduled
time, then issues every operation that is due (it never skips one; when
behind, it issues at once, ``ISSUE_SLICE`` per loop turn so that deliveries
and heartbeats run in between, and latency still counts from the schedule).

Status snapshot: at ``plan.status_at`` (near the end of the steady-state
load, before the drain) the prober sends one ``StatusRequest`` with the
plan's token through the hub, like its probes; the coordinator's
``StatusReply`` becomes ``DriverResult.status`` (None if it never came).
It routes nothing, so it changes no delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from protocol.agent import Agent
from protocol.coordinator import Coordinator, tree_node
from protocol.faults import crashes_coordinator
from protocol.messages import Message
from protocol.nodes import COORDINATOR_ID as COORD
from protocol.nodes import PROBER_ID as PROBER
from protocol.plan import Operation, Plan
from protocol.prober import Prober
from protocol.topology import ancestries
from protocol.workload import IssueLag, Schedule, issue
from protocol.workload import issue_due as issue_ops
from real.clock import RunClock
from real.slowdown import slow_coordinator
from real.tcp.workers import ISSUE_SLICE

Progress = Callable[[float], None]


class Mailbox:
    """One node's inbox, its processing callback and its timer."""

    __slots__ = ("node", "node_id", "inbox", "scheduled", "timer", "deadline", "hub")

    def __init__(self, hub: Hub, node_id: str, node: Coordinator | Agent | None) -> None:
        self.hub = hub
        self.node_id = node_id
        self.node = node
        self.inbox: deque[tuple[str, Message]] = deque()
        self.scheduled = False
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None

    def process(self) -> None:
        """Handle everything queued, then send what the node produced."""
        self.scheduled = False
        node = self.node
        inbox = self.inbox
        now = self.hub.clock.now()
        if node is None:
            self.hub.on_probe_replies(inbox, now)
            return
        receive = node.receive
        while inbox:
            src, msg = inbox.popleft()
            receive(src, msg, now)
        self.flush()

    def flush(self) -> None:
        """Route the node's output and re-arm its timer."""
        node = self.node
        assert node is not None
        self.hub.route(self.node_id, node.drain())
        deadline = node.next_deadline()
        if deadline != self.deadline:
            self.arm(deadline)

    def arm(self, deadline: float | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.deadline = deadline
        if deadline is not None:
            hub = self.hub
            when = hub.clock.loop_time_for(hub.loop, deadline)
            self.timer = hub.loop.call_at(when, self.fire)

    def fire(self) -> None:
        self.timer = None
        self.deadline = None
        node = self.node
        assert node is not None
        node.on_timer(self.hub.clock.now())
        self.flush()


class Hub:
    """Every mailbox on the loop, and the routing between them."""

    mailbox_class: type[Mailbox] = Mailbox

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: RunClock) -> None:
        self.loop = loop
        self.clock = clock
        self.boxes: dict[str, Mailbox] = {}
        self.prober: Prober | None = None  # build_hub gives it the plan's
        self.messages = 0
        self.lag = IssueLag()  # how late the replay issued ops

    def add(self, node_id: str, node: Coordinator | Agent | None) -> Mailbox:
        box = self.mailbox_class(self, node_id, node)
        self.boxes[node_id] = box
        return box

    def route(self, src: str, outgoing: list[tuple[str, Message]]) -> None:
        boxes = self.boxes
        call_soon = self.loop.call_soon
        self.messages += len(outgoing)
        for dst, msg in outgoing:
            box = boxes.get(dst)
            if box is None:
                continue  # the link to an unknown node is closed: the message is lost
            box.inbox.append((src, msg))
            if not box.scheduled:
                box.scheduled = True
                call_soon(box.process)

    def issue_due(self, op: Operation, now: float) -> Mailbox | None:
        """Make ``op``'s origin send it; the mailbox to flush, or None if nothing went."""
        box = self.boxes[op.origin]
        issue(box.node, op, now, op.at)  # type: ignore[arg-type]
        return box

    def on_probe_replies(self, inbox: deque[tuple[str, Message]], now: float) -> None:
        prober = self.prober
        while inbox:
            _, msg = inbox.popleft()
            if prober is not None:
                prober.receive(msg, now)


def build_hub(
    plan: Plan, loop: asyncio.AbstractEventLoop, clock: RunClock, hub_class: type[Hub] = Hub
) -> Hub:
    """A hub with the coordinator, the prober and every agent of the plan.

    ``hub_class`` lets calibration substitute an instrumented hub.
    """
    hub = hub_class(loop, clock)
    hub.prober = Prober(plan)
    durable = crashes_coordinator(plan)  # its journals are kept (``real.inproc.faults``)
    root = Coordinator(COORD, plan.settings, durable_memory=durable)
    hub.add(COORD, slow_coordinator(root))  # test-only hook
    chains = ancestries(plan.tree)
    for node in plan.tree:  # the coordinators of a tree, parents first
        hub.add(
            node.node_id,
            tree_node(node.node_id, plan.settings, chains[node.node_id], None, durable),
        )
    hub.add(PROBER, None)
    for spec in plan.agents:
        agent = Agent(
            spec.agent_id,
            spec.coordinator,
            plan.settings,
            spec.capabilities,
            spec.subscriptions,
            fallbacks=chains.get(spec.coordinator, ()),
        )
        hub.add(spec.agent_id, agent)
    return hub


def agents_of(hub: Hub) -> list[Agent]:
    return [box.node for box in hub.boxes.values() if isinstance(box.node, Agent)]


def coordinators_of(hub: Hub) -> list[Coordinator]:
    return [box.node for box in hub.boxes.values() if isinstance(box.node, Coordinator)]


async def register_all(hub: Hub, timeout: float = 30.0) -> dict[str, float]:
    """Start the coordinators of a tree and every agent, and wait until each agent is
    registered (and, in a tree, every subscription has reached every coordinator:
    ``Coordinator.interest_settled``); return when each agent was seen."""
    now = hub.clock.now()
    coordinators = coordinators_of(hub)
    for coordinator in coordinators:
        if coordinator.parent:
            coordinator.start(now)
            hub.boxes[coordinator.node_id].flush()
    for agent in agents_of(hub):
        agent.start(now)
        hub.boxes[agent.node_id].flush()
    registered: dict[str, float] = {}
    deadline = time.perf_counter() + timeout
    agents = agents_of(hub)
    tree = len(coordinators) > 1
    while len(registered) < len(agents) or (
        tree and not all(c.interest_settled() for c in coordinators)
    ):
        if time.perf_counter() > deadline:
            missing = len(agents) - len(registered)
            what = f"{missing} agents did not register" if missing else "interest did not settle"
            raise TimeoutError(f"{what} within {timeout} s")
        await asyncio.sleep(0.001)
        now = hub.clock.now()
        for agent in agents:
            if agent.registered and agent.node_id not in registered:
                registered[agent.node_id] = now
    return registered


async def replay(hub: Hub, schedule: Schedule) -> None:
    """Issue every operation of ``schedule`` (the plan's, built before the run
    clock starts) at its scheduled time (``hub.lag`` keeps how late).

    A hub whose ``issue_due`` is the plain one (no faults to consult per op)
    runs the core's compiled loop (``protocol.workload.issue_due``)."""
    issue_due = hub.issue_due
    plain = type(hub).issue_due is Hub.issue_due
    agents = {node: box.node for node, box in hub.boxes.items() if isinstance(box.node, Agent)}
    boxes = hub.boxes
    lag = hub.lag
    clock = hub.clock
    ops, times = schedule.ops, schedule.times
    index = 0
    while index < len(ops):
        wait = times[index] - clock.now()
        if wait > 0:
            await asyncio.sleep(wait)
        now = clock.now()
        touched: dict[str, Mailbox] = {}
        stop = min(index + ISSUE_SLICE, len(ops))
        if plain:
            issued: dict[str, Agent] = {}
            # an agent that only shed ops has nothing to send: no flush (its
            # ``shed`` list is read directly, by ``Settled`` and the results)
            index = issue_ops(agents, schedule, index, stop, 0.0, now, lag, issued, False)
            touched = {node: boxes[node] for node in issued}
        while index < stop and times[index] <= now:
            op = ops[index]
            lag.issued_at(op.at, now)
            box = issue_due(op, now)
            if box is not None:
                touched[op.origin] = box
            index += 1
        for box in touched.values():
            box.flush()
        if wait <= 0:
            await asyncio.sleep(0)  # let deliveries, heartbeats and timers run between bursts


async def probe(hub: Hub, plan: Plan) -> None:
    """Send the prober's probes on its schedule until the plan ends."""
    prober, clock = hub.prober, hub.clock
    assert prober is not None
    while (at := prober.next_probe_at()) is not None:
        wait = at - clock.now()
        if wait > 0:
            await asyncio.sleep(wait)
        hub.route(PROBER, [(COORD, prober.probe(clock.now()))])


async def ask_status(hub: Hub, plan: Plan) -> None:
    """At ``plan.status_at``, send the coordinator the run's one ``StatusRequest``."""
    prober = hub.prober
    if prober is None or prober.status_at is None:
        return
    wait = prober.status_at - hub.clock.now()
    if wait > 0:
        await asyncio.sleep(wait)
    hub.route(PROBER, [(COORD, prober.status_request())])


class Settled:
    """Unique completions so far (suppressed redeliveries do not count) plus the
    expected completions of ops their origin shed, counted on from where the last
    call stopped: each agent's records only grow, so a poll costs what is new, not
    everything so far (a rescan of millions of records every 10 ms held the loop
    that was still delivering)."""

    def __init__(self, hub: Hub, expected: dict[int, int]) -> None:
        self.hub = hub
        self.expected = expected
        self.seen: dict[int, tuple[int, int]] = {}  # id(agent): completions, shed seen
        self.agents: list[Agent] = []  # keeps every counted agent alive, so ids stay unique
        self.total = 0

    def __call__(self) -> int:
        hub, expected = self.hub, self.expected
        for agent in (*agents_of(hub), *getattr(hub, "past_lives", ())):
            key = id(agent)
            if key not in self.seen:
                self.agents.append(agent)
            done, shed = self.seen.get(key, (0, 0))
            completions = agent.completions
            self.total += sum(1 for c in completions[done:] if not c.duplicate)
            self.total += sum(expected.get(op_id, 0) for op_id in agent.shed[shed:])
            self.seen[key] = (len(completions), len(agent.shed))
        return self.total


async def settle(hub: Hub, plan: Plan) -> None:
    """After the plan, wait for every expected completion (or the op's shedding)
    or the drain timeout."""
    total = plan.expected_total
    settled = Settled(hub, {op.op_id: op.expected for op in plan.operations})
    deadline = plan.duration + plan.drain_timeout
    while hub.clock.now() < deadline and settled() < total:
        await asyncio.sleep(0.01)
