"""A replicated coordinator loses nothing when its leader dies, and stays linearizable.

The workloads are the flat property tests' (publish, direct, broadcast, tasks,
memory; loss, duplication and reordering on the network), run against three
Raft replicas. The leader is killed at a random time and comes back later:
every expected (op, recipient) is still handled exactly once, and the memory
history the agents recorded is linearizable.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics.linearizable import check, from_calls
from protocol.consensus.messages import Kind, RaftMessage
from protocol.consensus.wire import encode_raft
from protocol.messages import Consensus, MemVerb
from protocol.settings import ProtocolSettings
from tests.cluster import Faults
from tests.core.consensus.replicanet import ReplicaCluster
from tests.core.test_core_properties import FAST, Scenario, issue, protocol_settings, scenarios
from tests.core.test_tree import handled_once, with_work


def build(scenario: Scenario, size: int = 3, protocol: str = "raft") -> ReplicaCluster:
    settings = replace(protocol_settings(scenario), task_slots=1 + scenario.seed % 2)
    net = ReplicaCluster(settings, scenario.faults, scenario.seed, size, protocol=protocol)
    for name, caps, subs in scenario.agents:
        net.add_agent(name, caps, subs)
    net.wait("settled")
    return net


def crash_run(
    scenario: Scenario,
    start: float,
    span: float,
    fault: str = "crash",
    size: int = 3,
    protocol: str = "raft",
) -> ReplicaCluster:
    """The leader at ``start`` is killed (``crash``) or cut off from the other replicas
    (``isolate``) until ``span`` later."""
    net = build(scenario, size, protocol)
    crash_at, back_at = net.now + start, net.now + start + span
    victim = ""
    for op in scenario.ops:
        net.run_until(net.now + op.gap)
        if not victim and net.now >= crash_at:
            victim = hit(net, fault)
        if victim and net.now >= back_at:
            heal(net, victim)
        issue(net, op)
    if not victim:
        net.run_until(crash_at)
        victim = hit(net, fault)
    net.run_until(max(net.now, back_at))
    heal(net, victim)
    net.wait("quiet")
    net.run_until(net.now + 0.5)
    net.wait("quiet")
    return net


def hit(net: ReplicaCluster, fault: str) -> str:
    victim = leader_of(net)
    if fault == "crash":
        net.crash(victim)
    else:
        net.isolate(victim)
    return victim


def heal(net: ReplicaCluster, victim: str) -> None:
    if victim in net.dead:
        net.restart(victim)
    net.heal()


def leader_of(net: ReplicaCluster) -> str:
    leader = net.serving()
    return leader.id if leader is not None else net.ids[0]


def linearizable(net: ReplicaCluster) -> None:
    calls = [call for agent in net.agents.values() for call in agent.memory_history()]
    verdict = check(from_calls(calls))
    assert verdict.linearizable is not False, verdict.describe()


@settings(FAST, max_examples=80)
@given(
    scenarios().map(with_work),
    st.floats(0.0, 0.3),
    st.floats(0.0, 0.5),
    st.sampled_from(("crash", "isolate")),
)
def test_a_lost_leader_loses_nothing_and_memory_stays_linearizable(
    scenario: Scenario, start: float, span: float, fault: str
) -> None:
    """The leader is killed, or cut off from the other replicas, at some point of
    the workload, for up to half a second: every expected (op, recipient) is
    handled exactly once, and the memory history is linearizable."""
    net = crash_run(scenario, start, span, fault)
    handled_once(scenario, net)
    linearizable(net)


@settings(FAST, max_examples=25)
@given(
    scenarios().map(with_work),
    st.floats(0.0, 0.3),
    st.floats(0.0, 0.5),
    st.sampled_from(("crash", "isolate")),
)
def test_on_pbft_a_lost_primary_loses_nothing_and_memory_stays_linearizable(
    scenario: Scenario, start: float, span: float, fault: str
) -> None:
    """The same workloads and faults on four PBFT replicas (f = 1): the primary is
    killed or cut off, a view change makes another the primary, and nothing is lost."""
    net = crash_run(scenario, start, span, fault, size=4, protocol="pbft")
    handled_once(scenario, net)
    linearizable(net)


@settings(FAST, max_examples=25)
@given(
    scenarios().map(with_work),
    st.floats(0.0, 0.3),
    st.floats(0.0, 0.5),
    st.sampled_from(("crash", "isolate")),
    st.sampled_from((3, 5)),
)
def test_on_fast_paxos_a_lost_coordinator_loses_nothing_and_memory_stays_linearizable(
    scenario: Scenario, start: float, span: float, fault: str, size: int
) -> None:
    """The same workloads and faults on Fast Paxos, 3 or 5 replicas: the coordinator
    is killed or cut off, the next in line wins a ballot (classic, with 3, as a fast
    quorum of 3 needs all of them), and nothing is lost."""
    net = crash_run(scenario, start, span, fault, size=size, protocol="fast-paxos")
    handled_once(scenario, net)
    linearizable(net)


def test_a_leader_cut_off_from_the_quorum_acknowledges_nothing() -> None:
    """A write and a read sent to a leader that cannot reach the other replicas are
    not answered (the write cannot commit, the read cannot confirm leadership); the
    leader steps down, the agent moves to the new leader, and both are answered
    there, the write applied once."""
    settings = ProtocolSettings(heartbeat_interval=0.05, ack_timeout=0.02, max_rto=0.2)
    net = ReplicaCluster(settings, Faults(), seed=5)
    b = net.add_agent("b", (), ())
    net.wait("settled")
    first = leader_of(net)
    b.memory(1, MemVerb.PUT, "ns", "k", b"v1", net.now)
    net._flush("b", b)
    net.wait("quiet")
    net.isolate(first)
    b.memory(2, MemVerb.PUT, "ns", "k", b"v2", net.now)
    b.memory(3, MemVerb.GET, "ns", "k", b"", net.now)
    net._flush("b", b)
    net.run_until(net.now + 0.05)  # well within an election timeout
    assert [c.op_id for c in b.mem_answered] == [1]  # held: nothing committed or confirmed
    net.wait("quiet")
    assert leader_of(net) != first
    answers = {c.op_id: c.version for c in b.mem_answered}
    assert answers[2] == 2 and answers[3] in (1, 2)
    net.heal()
    net.run_until(net.now + 1.0)
    assert all(r.state.rows[("ns", "k")].version == 2 for r in net.replicas.values())
    linearizable(net)


def test_agents_find_the_leader_and_their_writes_survive_its_death() -> None:
    settings = ProtocolSettings(heartbeat_interval=0.05, ack_timeout=0.02, max_rto=0.2)
    net = ReplicaCluster(settings, Faults(), seed=3)
    net.add_agent("a", (), ("t",))
    net.add_agent("b", (), ())
    net.wait("settled")
    first = leader_of(net)
    b = net.agents["b"]
    b.memory(1, MemVerb.PUT, "ns", "k", b"v1", net.now)
    net._flush("b", b)
    net.wait("quiet")
    assert [c.version for c in b.mem_answered] == [1]
    followers = [r for r in net.replicas.values() if r.id != first]
    assert all(r.state.rows[("ns", "k")].value == b"v1" for r in followers)  # on a quorum
    net.crash(first)
    b.publish(2, "t", b"hello", net.now)
    b.memory(3, MemVerb.GET, "ns", "k", b"", net.now)
    net._flush("b", b)
    net.wait("quiet")
    assert leader_of(net) != first
    assert [c.op_id for c in net.agents["a"].completions] == [2]
    assert b.mem_answered[-1].version == 1  # the new leader read the acknowledged write
    net.restart(first)
    net.run_until(net.now + 1.0)
    assert net.replicas[first].state.rows[("ns", "k")].value == b"v1"


def test_a_read_that_a_busy_engine_refuses_is_asked_again_not_forgotten() -> None:
    """A Fast Paxos coordinator that is changing ballots (phase 1 again, to switch
    between fast and classic rounds) refuses proposals, the null entry of a
    read-index round included; the read's batch is asked again once it can be, so
    its reply is not held for ever. (Found by the property above: a held read
    stopped every reply after it.)"""
    settings = ProtocolSettings(heartbeat_interval=0.05, ack_timeout=0.02, max_rto=0.2)
    net = ReplicaCluster(settings, Faults(), seed=4, protocol="fast-paxos")
    b = net.add_agent("b", (), ())
    net.wait("settled")
    b.memory(1, MemVerb.PUT, "ns", "k", b"v1", net.now)
    net._flush("b", b)
    net.wait("quiet")
    leader = net.serving()
    assert leader is not None
    leader.raft._prepare()  # the same leader, a new ballot: busy until it wins
    assert not leader.raft.can_take(1)
    b.memory(2, MemVerb.GET, "ns", "k", b"", net.now)
    net._flush("b", b)
    net.wait("quiet")
    assert [c.op_id for c in b.mem_answered] == [1, 2]
    assert b.mem_answered[-1].version == 1


def test_a_malformed_or_spoofed_consensus_frame_closes_that_link_only() -> None:
    settings = ProtocolSettings(heartbeat_interval=0.05, ack_timeout=0.02, max_rto=0.2)
    net = ReplicaCluster(settings, Faults(), seed=7)
    net.add_agent("a", (), ())
    net.wait("settled")
    replica = net.replicas[leader_of(net)]
    other = next(n for n in net.ids if n != replica.id)
    third = next(n for n in net.ids if n not in (replica.id, other))
    replica.receive(other, Consensus(b"\xc1garbage"), net.now)
    spoofed = encode_raft(RaftMessage(Kind.HEARTBEAT, third, replica.id, 99))
    replica.receive(other, spoofed, net.now)
    replica.receive("a", spoofed, net.now)  # from an agent: not a replica, ignored
    assert replica.take_closures() == [other, other]
    assert len(replica.refused) == 2 and replica.raft.term < 99
    net.run_until(net.now + 0.5)
    assert replica.serving  # nothing else changed
