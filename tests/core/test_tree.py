"""A tree of coordinators in the in-memory cluster: routing across it, and properties
under loss, duplication and reordering.

The trees here are random: 1 to 6 coordinators, each under a random earlier one,
with agents attached to any of them. The workloads are the flat property tests'
(``test_core_properties``), their tasks given 0 to 30 ms of work so that they
wait, move and get stolen. The checks are theirs where they carry over: every
expected (op, recipient) handled exactly once, by brute force over the agents'
subscriptions; memory replies equal to a reference store's; and every task run
once, on an agent that has its capability, its result back at its submitter.
A last property cuts one link of the tree for long enough that both ends declare
each other failed, and checks that nothing is lost or handled twice once it heals.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import (
    Deliver,
    DeliveryKind,
    MemBack,
    MemReply,
    MemVerb,
    Message,
    Welcome,
)
from protocol.payload import WORK_BYTES, task_payload
from protocol.settings import ProtocolSettings
from tests.cluster import COORD, Cluster, Faults
from tests.core.test_core_properties import (
    FAST,
    SETTLE_LIMIT,
    Scenario,
    expected_recipients,
    issue,
    protocol_settings,
    reference_memory,
    scenarios,
)


class TreeCluster(Cluster):
    """The in-memory cluster with more coordinators, each checked after every step."""

    def __init__(self, settings: ProtocolSettings, faults: Faults, seed: int) -> None:
        super().__init__(settings, faults, seed)
        self.log: list[tuple[str, str, Message]] = []

    def _send(self, src: str, dst: str, msg: Message) -> None:
        self.log.append((src, dst, msg))
        super()._send(src, dst, msg)

    def _flush(self, src: str, node: Coordinator | Agent) -> None:
        super()._flush(src, node)
        credit, limit = self.settings.credit, self.settings.max_backlog
        for coordinator in self.coordinators.values():
            for session in coordinator.sessions.values():
                assert len(session.inflight) <= credit, (coordinator.node_id, session.node_id)
                assert len(session.backlog) <= limit, (coordinator.node_id, session.node_id)

    def settled(self) -> bool:
        return all(c.interest_settled() for c in self.coordinators.values()) and all(
            a.registered for a in self.agents.values()
        )

    def quiet(self) -> bool:
        coordinators = self.coordinators.values()
        return (
            all(agent.pending == 0 for agent in self.agents.values())
            and all(not (c.tasks or c._done_pending or c._back_pending) for c in coordinators)
            and all(
                s.alive and not s.inflight and not s.backlog
                for c in coordinators
                for s in c.sessions.values()
            )
        )

    def wait(self, condition: str) -> None:
        while not getattr(self, condition)():
            assert self.now < SETTLE_LIMIT, f"the tree is not {condition}"
            self.run_until(self.now + 0.05)


def build(
    settings: ProtocolSettings,
    faults: Faults,
    seed: int,
    parents: tuple[int, ...],
    agents: tuple[tuple[str, tuple[str, ...], tuple[str, ...], int], ...],
    start: float = 0.0,
    cluster: type[TreeCluster] = TreeCluster,
) -> TreeCluster:
    """Coordinator i > 0 under coordinator ``parents[i - 1]``; each agent under its own;
    the clock starting at ``start``."""
    net = cluster(settings, faults, seed)
    net.now = start
    names = [COORD] + [f"c{i}" for i in range(1, len(parents) + 1)]
    for i, parent in enumerate(parents, start=1):
        net.add_coordinator(names[i], names[parent])
    for name, caps, subs, at in agents:
        net.add_agent(name, caps, subs, coordinator=names[at])
    net.wait("settled")
    return net


@st.composite
def trees(draw: st.DrawFn) -> tuple[tuple[int, ...], list[int]]:
    """Parents of coordinators 1..n-1, and an attachment for each of up to six agents."""
    size = draw(st.integers(1, 6))
    parents = tuple(draw(st.integers(0, i - 1)) for i in range(1, size))
    return parents, [draw(st.integers(0, size - 1)) for _ in range(6)]


def with_work(scenario: Scenario) -> Scenario:
    """Each task asks for 0, 10, 20 or 30 ms of work (by its op id), its payload after."""
    ops = tuple(
        replace(op, payload=task_payload(op.op_id, WORK_BYTES, op.op_id % 4 / 100) + op.payload)
        if op.kind == "task"
        else op
        for op in scenario.ops
    )
    return replace(scenario, ops=ops)


def run(scenario: Scenario, tree: tuple[tuple[int, ...], list[int]]) -> TreeCluster:
    parents, attach = tree
    agents = tuple(
        (name, caps, subs, attach[i]) for i, (name, caps, subs) in enumerate(scenario.agents)
    )
    # agents hold 1 or 2 tasks at once: the rest wait at coordinators and get stolen
    settings = replace(protocol_settings(scenario), task_slots=1 + scenario.seed % 2)
    net = build(settings, scenario.faults, scenario.seed, parents, agents)
    for op in scenario.ops:
        net.run_until(net.now + op.gap)
        issue(net, op)
    net.wait("quiet")
    net.run_until(net.now + 0.5)  # stray duplicates still on the wire arrive too
    net.wait("quiet")
    return net


def handled_once(scenario: Scenario, net: TreeCluster) -> set[int]:
    """Check that every expected (op, recipient) of an op not shed was handled exactly
    once, and nothing else, every payload intact; return the ops shed."""
    accepted = {op_id for agent in net.agents.values() for op_id in agent.accepted}
    answered = {c.op_id for agent in net.agents.values() for c in agent.completions}
    shed = {op_id for agent in net.agents.values() for op_id in agent.shed}
    shed -= accepted | {op.op_id for op in scenario.ops if op.kind == "memory"} & answered
    if not scenario.shed_after:
        assert not shed
    expected = Counter(
        (op.op_id, node)
        for op in scenario.ops
        if op.op_id not in shed
        for node in expected_recipients(scenario, op)
    )
    completions = [c for agent in net.agents.values() for c in agent.completions]
    assert Counter((c.op_id, c.node) for c in completions if not c.duplicate) == expected
    assert all(c.intact for c in completions)
    return shed


def check(scenario: Scenario, net: TreeCluster) -> None:
    ops = {op.op_id: op for op in scenario.ops}
    coordinators = set(net.coordinators)
    shed = handled_once(scenario, net)

    # each coordinator routes an op once: one msg_id per op and coordinator (a task may
    # be placed again: given back unrun, ``protocol.tasks``)
    msg_ids: dict[tuple[str, int], set[int]] = {}
    for src, _, msg in net.log:
        if type(msg) is Deliver and src in coordinators and msg.kind != DeliveryKind.TASK:
            msg_ids.setdefault((src, msg.op_id), set()).add(msg.msg_id)
    assert all(len(ids) == 1 for ids in msg_ids.values()), msg_ids

    # memory, owned by the root: one distinct reply per write, as a reference store gives
    # applying them in the order the root answered them (to its agents, or down the tree)
    first: dict[int, MemReply] = {}
    for src, _, msg in net.log:
        if src == COORD and type(msg) in (MemReply, MemBack):
            reply = MemReply(msg.op_id, msg.ok, msg.version, msg.value, msg.error)
            kept = first.setdefault(msg.op_id, reply)
            if ops[msg.op_id].verb != MemVerb.GET:
                assert kept == reply, "a retried write was re-applied"
    assert set(first) == {op.op_id for op in scenario.ops if op.kind == "memory"} - shed
    assert first == reference_memory([ops[op_id] for op_id in first])
    replied = {(d, m.op_id) for s, d, m in net.log if type(m) is MemReply and s in coordinators}
    assert replied == {(ops[i].origin, i) for i in first}  # and each reached its agent
    assert all(len(c.store) == 0 for c in net.coordinators.values() if c.parent)
    assert all(c.stats.failures_detected == 0 for c in net.coordinators.values())

    # every task ran once, on a capable agent (nothing fails here, so nothing reruns)
    ran = Counter(key for agent in net.agents.values() for key in agent._task_results)
    tasks = [op for op in scenario.ops if op.kind == "task" and op.op_id not in shed]
    assert ran == Counter((op.origin, op.op_id) for op in tasks)
    capable = {name: caps for name, caps, _ in scenario.agents}
    for _, dst, msg in net.log:
        if type(msg) is Deliver and msg.kind == DeliveryKind.TASK and dst in net.agents:
            assert msg.topic in capable[dst]


@FAST
@given(scenarios().map(with_work), trees())
def test_a_lossy_tree_delivers_every_op_exactly_once(
    scenario: Scenario, tree: tuple[tuple[int, ...], list[int]]
) -> None:
    check(scenario, run(scenario, tree))


@settings(FAST, max_examples=40)
@given(scenarios(busy=True).map(with_work), trees())
def test_busy_inside_the_tree_loses_nothing(
    scenario: Scenario, tree: tuple[tuple[int, ...], list[int]]
) -> None:
    """Tiny credit and backlogs: coordinators hold back acks, the edge answers Busy."""
    check(scenario, run(scenario, tree))


# --- small trees, by hand -----------------------------------------------------------


def chain(start: float = 0.0) -> TreeCluster:
    """root <- mid <- leaf1, root <- leaf2; a subscriber under each leaf and the root."""
    settings = ProtocolSettings(heartbeat_interval=0.05, ack_timeout=0.02, max_rto=0.2)
    agents = (
        ("a1", (), ("x.#",), 2),
        ("a2", (), ("y",), 3),
        ("a3", (), ("x.local",), 2),
        ("r1", (), ("z",), 0),
    )
    return build(settings, Faults(), 1, (0, 1, 0), agents, start)


def delivers(net: TreeCluster, op_id: int) -> list[tuple[str, str]]:
    return [(s, d) for s, d, m in net.log if type(m) is Deliver and m.op_id == op_id]


def test_a_publish_climbs_only_as_far_as_someone_outside_follows_it() -> None:
    net = chain()
    net.agents["a3"].publish(1, "x.local", b"p", net.now)  # a1 and a3, both under c2
    net._flush("a3", net.agents["a3"])
    net.wait("quiet")
    assert sorted(delivers(net, 1)) == [("c2", "a1"), ("c2", "a3")]
    net.agents["a3"].publish(2, "y", b"p", net.now)  # a2, under c3: via c1 and the root
    net._flush("a3", net.agents["a3"])
    net.wait("quiet")
    assert sorted(delivers(net, 2)) == [("c1", COORD), ("c2", "c1"), ("c3", "a2"), (COORD, "c3")]


@pytest.mark.parametrize("start", [0.0, -3.0])
def test_direct_and_broadcast_cross_the_tree(start: float) -> None:
    """Also on a clock that starts before 0, as the model's does (interest versions
    stay positive and growing)."""
    net = chain(start)
    net.agents["a2"].direct(1, "a3", b"d", net.now)
    net.agents["a2"].broadcast(2, b"b", net.now)
    net._flush("a2", net.agents["a2"])
    net.wait("quiet")
    direct = [(c.node, c.duplicate) for a in net.agents.values() for c in a.completions]
    assert sorted(delivers(net, 1)) == [("c1", "c2"), ("c2", "a3"), ("c3", COORD), (COORD, "c1")]
    assert ("a3", False) in direct
    got = sorted(c.node for a in net.agents.values() for c in a.completions if c.op_id == 2)
    assert got == ["a1", "a3", "r1"]
    assert all(m.topic == "" for s, d, m in net.log if type(m) is Deliver and d in net.agents)


def test_memory_is_the_roots_and_answers_come_back_down() -> None:
    net = chain()
    net.agents["a1"].memory(1, MemVerb.PUT, "ns", "k", b"v1", net.now)
    net._flush("a1", net.agents["a1"])
    net.wait("quiet")
    net.agents["a2"].memory(2, MemVerb.GET, "ns", "k", b"", net.now)
    net._flush("a2", net.agents["a2"])
    net.wait("quiet")
    replies = {m.op_id: (d, m) for s, d, m in net.log if type(m) is MemReply}
    assert replies[1][0] == "a1" and replies[1][1].version == 1
    assert replies[2][0] == "a2" and replies[2][1].value == b"v1"
    assert len(net.coordinator.store) == 1 and len(net.coordinators["c2"].store) == 0


def test_a_child_with_a_wrong_token_is_refused() -> None:
    net = chain()
    bad = Coordinator("c9", replace(net.settings, token="wrong"), parent=COORD)
    net.children["c9"] = bad
    bad.start(net.now)
    net._flush("c9", bad)
    net.run_until(net.now + 0.1)
    assert "c9" not in net.coordinator.sessions
    assert not any(type(m) is Welcome and d == "c9" for _, d, m in net.log)
    assert any(d == "c9" for _, d, _ in net.log)  # it was answered: Reject


def test_the_tree_is_deterministic() -> None:
    first, second = chain(), chain()
    for net in (first, second):
        net.agents["a2"].publish(1, "x.y", b"p", net.now)
        net._flush("a2", net.agents["a2"])
        net.wait("quiet")
    assert first.log == second.log
    assert DeliveryKind.PUBLISH in {m.kind for _, _, m in first.log if type(m) is Deliver}


def test_a_child_told_everything_sends_every_publish_up_and_loses_nothing() -> None:
    """More than 256 patterns followed outside a child's subtree: the child is told
    "#" rather than all of them, so it keeps one pattern, and the parent routes."""
    settings = ProtocolSettings(heartbeat_interval=0.05, ack_timeout=0.02, max_rto=0.2)
    many = tuple(f"t{i}" for i in range(300))
    net = build(settings, Faults(), 2, (0,), (("wide", (), many, 0), ("leafy", (), (), 1)))
    leaf = net.children["c1"]
    assert leaf.subscriptions.patterns_of(COORD) == ("#",)
    leafy = net.agents["leafy"]
    leafy.publish(1, "t299", b"p", net.now)
    leafy.publish(2, "nobody.follows", b"p", net.now)
    net._flush("leafy", leafy)
    net.wait("quiet")
    assert [(c.op_id, c.node) for c in net.agents["wide"].completions] == [(1, "wide")]
    assert sorted(delivers(net, 2)) == [("c1", COORD)]  # one hop up, then nowhere


# --- a partitioned link of the tree ------------------------------------------------


class CutTree(TreeCluster):
    """A tree whose link between two coordinators drops everything for a while."""

    cut: tuple[str, str, float, float] = ("", "", 0.0, 0.0)  # a, b, from, until

    def _send(self, src: str, dst: str, msg: Message) -> None:
        a, b, start, end = self.cut
        if {src, dst} == {a, b} and start <= self.now < end:
            self.log.append((src, dst, msg))
            return
        super()._send(src, dst, msg)


@settings(FAST, max_examples=40)
@given(scenarios().map(with_work), trees(), st.floats(0.0, 0.3), st.floats(0.1, 1.0))
def test_a_partitioned_link_of_the_tree_loses_nothing(
    scenario: Scenario, tree: tuple[tuple[int, ...], list[int]], start: float, span: float
) -> None:
    """A child and its parent cut off from each other for up to a second, long enough
    for each to declare the other failed (tasks given across are placed again; held
    deliveries wait): once it heals, every op is still handled exactly once and every
    task's result reaches its submitter once (a task placed again may have run
    twice: that is allowed, and its second result is suppressed)."""
    parents, attach = tree
    if not parents:
        return  # one coordinator: no link to cut
    agents = tuple(
        (name, caps, subs, attach[i]) for i, (name, caps, subs) in enumerate(scenario.agents)
    )
    base = replace(protocol_settings(scenario), task_slots=1, failure_after=0.3)
    net = build(base, scenario.faults, scenario.seed, parents, agents, cluster=CutTree)
    assert isinstance(net, CutTree)
    child = len(parents)  # the last coordinator, and its parent
    cut_child, cut_parent = f"c{child}", COORD if not parents[-1] else f"c{parents[-1]}"
    net.cut = (cut_child, cut_parent, net.now + start, net.now + start + span)
    for op in scenario.ops:
        net.run_until(net.now + op.gap)
        issue(net, op)
    net.run_until(net.cut[3] + 0.5)
    net.wait("quiet")
    shed = handled_once(scenario, net)
    tasks = [op for op in scenario.ops if op.kind == "task" and op.op_id not in shed]
    ran = {key for agent in net.agents.values() for key in agent._task_results}
    assert {(op.origin, op.op_id) for op in tasks} <= ran
