"""A coordinator of a tree dies and restarts: its subtree re-attaches, nothing is lost.

``CrashTree`` is the tree cluster with every coordinator persisting its journals
after each step (as a durable server does per batch) and knowing its ancestors,
each agent knowing its coordinator's. ``crash(node)`` kills one coordinator: what
is on the wire to it is lost, its neighbours are told that its link closed, and
its agents fail over (``Agent.fail_over``) and say hello at once; ``restart``
builds it again from what it persisted. The property crashes a random
coordinator of a random tree at a random time, for a random while, under the
flat property tests' workloads, and checks that every expected (op, recipient)
is still handled exactly once and every task's result reaches its submitter.
"""

from __future__ import annotations

import heapq
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.agent import Agent
from protocol.coordinator import Coordinator, tree_node
from protocol.durable import DurableState, restarted
from protocol.messages import Ack, Deliver, DeliveryKind, Message, PeerHello
from protocol.settings import ProtocolSettings
from protocol.topology import ancestries, tree
from tests.cluster import COORD, Faults
from tests.core.test_core_properties import (
    FAST,
    Scenario,
    issue,
    protocol_settings,
    scenarios,
)
from tests.core.test_tree import TreeCluster, handled_once, trees, with_work


class CrashTree(TreeCluster):
    """A tree whose coordinators persist every step and can be crashed and restarted."""

    def __init__(self, settings: ProtocolSettings, faults: Faults, seed: int) -> None:
        super().__init__(replace(settings, durable_bus=True), faults, seed)
        self.coordinator = Coordinator(COORD, self.settings, durable_memory=True)
        self.parents: dict[str, str] = {COORD: ""}
        self.kept: dict[str, DurableState] = {COORD: DurableState()}
        self.dead: set[str] = set()
        self.waiting: set[str] = set()  # agents whose every coordinator was dead
        self.closed: list[tuple[str, str]] = []  # coordinators refused by a dead one
        self.blocked = ("", "")  # a (src, dst) whose messages are dropped for now

    def ancestors(self, node: str) -> tuple[str, ...]:
        chain = []
        while self.parents[node]:
            node = self.parents[node]
            chain.append(node)
        return tuple(chain)

    def add_coordinator(self, node_id: str, parent: str) -> Coordinator:
        self.parents[node_id] = parent
        self.kept[node_id] = DurableState()
        return self._start(node_id, first=True)

    def _start(self, node_id: str, first: bool = False) -> Coordinator:
        kept = self.kept[node_id]
        rows, bus = list(kept.rows.values()), None if first else kept.bus
        chain = self.ancestors(node_id)
        coordinator = restarted(node_id, self.settings, chain, rows, bus, kept.recalled())
        if node_id == COORD:
            self.coordinator = coordinator
        else:
            self.children[node_id] = coordinator
        coordinator.start(self.now)
        self._flush(node_id, coordinator)
        return coordinator

    def add_agent(
        self,
        node_id: str,
        capabilities: tuple[str, ...] = (),
        subscriptions: tuple[str, ...] = (),
        vouched_by: str = "",
        coordinator: str = COORD,
    ) -> Agent:
        chain = (coordinator, *self.ancestors(coordinator))
        agent = Agent(
            node_id, coordinator, self.settings, capabilities, subscriptions, fallbacks=chain[1:]
        )
        self.agents[node_id] = agent
        agent.start(self.now)
        self._flush(node_id, agent)
        return agent

    def _send(self, src: str, dst: str, msg: Message) -> None:
        if (src, dst) == self.blocked:
            return
        if dst in self.dead:
            self.log.append((src, dst, msg))
            if src in self.agents:  # a refused connection: the agent tries the next one
                self._refused(src)
            elif type(msg) is PeerHello:  # and a coordinator is told its link closed
                self.closed.append((src, dst))
            return
        super()._send(src, dst, msg)

    def _flush(self, src: str, node: Coordinator | Agent) -> None:
        if isinstance(node, Coordinator):
            self.kept[src].persist(node)
        super()._flush(src, node)
        while self.closed:
            name, dst = self.closed.pop()
            coordinator = self.coordinators.get(name)
            if coordinator is not None and name not in self.dead:
                coordinator.link_closed(dst, self.now)
                self._flush(name, coordinator)

    def _refused(self, name: str) -> None:
        agent = self.agents[name]
        for _ in agent.coordinators:
            if agent.fail_over() not in self.dead:
                self.waiting.discard(name)
                agent.start(self.now)
                self._flush(name, agent)
                return
        self.waiting.add(name)  # tries again when one restarts

    def crash(self, node: str) -> None:
        """Kill ``node``: its neighbours see its links close, its agents fail over."""
        self.dead.add(node)
        self._wire = [item for item in self._wire if item[3] != node]
        heapq.heapify(self._wire)  # what is left, still a heap
        if node == COORD:
            self.coordinator = Coordinator("dead", self.settings)  # never reached
        else:
            del self.children[node]
        for name, coordinator in list(self.coordinators.items()):
            if name not in self.dead and node in coordinator.sessions:
                coordinator.link_closed(node, self.now)
                self._flush(name, coordinator)
        for name, agent in self.agents.items():
            if agent.coordinator == node:
                self._refused(name)

    def restart(self, node: str) -> None:
        """``node`` again, from what it persisted."""
        self.dead.discard(node)
        self._start(node)
        for name in sorted(self.waiting):
            self._refused(name)

    def _next_timer(self) -> tuple[float, str] | None:
        best: tuple[float, str] | None = None
        for node_id in [COORD, *self.children, *self.agents]:
            if node_id in self.dead:
                continue
            deadline = self.node(node_id).next_deadline()
            if deadline is not None and (best is None or deadline < best[0]):
                best = (deadline, node_id)
        return best

    def quiet(self) -> bool:
        if self.dead:
            return False
        return super().quiet()


def crash_run(
    scenario: Scenario,
    tree: tuple[tuple[int, ...], list[int]],
    victim: int,
    start: float,
    span: float,
) -> CrashTree:
    parents, attach = tree
    settings = replace(protocol_settings(scenario), task_slots=1 + scenario.seed % 2)
    net = CrashTree(settings, scenario.faults, scenario.seed)
    names = [COORD] + [f"c{i}" for i in range(1, len(parents) + 1)]
    for i, parent in enumerate(parents, start=1):
        net.add_coordinator(names[i], names[parent])
    for i, (name, caps, subs) in enumerate(scenario.agents):
        net.add_agent(name, caps, subs, coordinator=names[attach[i]])
    net.wait("settled")
    node = names[victim % len(names)]
    crash_at, back_at = net.now + start, net.now + start + span
    crashed = False
    for op in scenario.ops:
        net.run_until(net.now + op.gap)
        if not crashed and net.now >= crash_at:
            net.crash(node)
            crashed = True
        if net.now >= back_at and node in net.dead:
            net.restart(node)
        issue(net, op)
    if not crashed:
        net.run_until(crash_at)
        net.crash(node)
    net.run_until(max(net.now, back_at))
    if node in net.dead:
        net.restart(node)
    net.wait("quiet")
    net.run_until(net.now + 0.5)
    net.wait("quiet")
    return net


@settings(FAST, max_examples=60)
@given(
    scenarios().map(with_work),
    trees(),
    st.integers(0, 5),
    st.floats(0.0, 0.2),
    st.floats(0.0, 0.5),
)
def test_a_crashed_coordinator_of_the_tree_loses_nothing(
    scenario: Scenario,
    tree: tuple[tuple[int, ...], list[int]],
    victim: int,
    start: float,
    span: float,
) -> None:
    """Any coordinator of the tree, the root included, dies at some point of the
    workload and restarts up to half a second later: every expected (op, recipient)
    is handled exactly once, and every task's result reaches its submitter once (a
    task may have run twice: its first worker's result died with the coordinator)."""
    net = crash_run(scenario, tree, victim, start, span)
    handled_once(scenario, net)


def test_a_dead_leafs_agents_re_attach_to_its_parent_and_get_what_it_held() -> None:
    """root <- mid <- leaf; the leaf dies holding a publish for its subscriber, which
    re-attaches to mid at once; the publish reaches it when the leaf restarts and
    relays what its journal owes."""
    settings = ProtocolSettings(heartbeat_interval=0.05, ack_timeout=0.02, max_rto=0.2)
    net = CrashTree(settings, Faults(), 1)
    net.add_coordinator("mid", COORD)
    net.add_coordinator("leaf", "mid")
    net.add_agent("pub", (), (), coordinator=COORD)
    net.add_agent("sub", (), ("t",), coordinator="leaf")
    net.wait("settled")
    net.blocked = ("leaf", "sub")
    net.agents["pub"].publish(1, "t", b"x", net.now)
    net._flush("pub", net.agents["pub"])
    net.run_until(net.now + 0.05)
    assert not net.agents["sub"].completions
    net.crash("leaf")
    net.blocked = ("", "")
    net.run_until(net.now + 0.2)
    assert net.agents["sub"].coordinator == "mid" and net.agents["sub"].registered
    assert not net.agents["sub"].completions  # only the leaf's journal has it
    net.restart("leaf")
    net.run_until(net.now + 0.5)
    assert [c.op_id for c in net.agents["sub"].completions if not c.duplicate] == [1]
    relays = [m for s, _, m in net.log if s == "leaf" and type(m) is Deliver]
    assert [m.kind for m in relays] == [DeliveryKind.RELAY]
    assert relays[0].topic == "sub\x001t"  # destination, NUL, PUBLISH, topic


def test_a_malformed_relay_is_acked_refused_and_logged() -> None:
    settings = ProtocolSettings(heartbeat_interval=0.05, ack_timeout=0.02, max_rto=0.2)
    net = CrashTree(settings, Faults(), 1)
    net.add_coordinator("leaf", COORD)
    net.wait("settled")
    root = net.coordinator
    bad = Deliver(99, DeliveryKind.RELAY, "x", 1, "no separator", b"", 0)
    root.receive("leaf", bad, net.now)
    assert [m for d, m in root.drain() if d == "leaf"] == [Ack((99,))]
    assert root.stats.refused == 1 and "relay from leaf" in root.log[-1]


def test_every_coordinator_knows_its_ancestors_up_to_the_root() -> None:
    nodes = tree(2, 3)
    chains = ancestries(nodes)
    assert chains["coord.1"] == (COORD,)
    assert chains["coord.2.1"] == ("coord.2", COORD)
    assert COORD not in chains  # the root has none
    coordinator = tree_node("coord.2.1", ProtocolSettings(), chains["coord.2.1"])
    assert coordinator.parent == "coord.2"
    assert coordinator._repair.ancestors == ("coord.2", COORD)
    assert tree_node(COORD, ProtocolSettings(), ()).parent == ""
