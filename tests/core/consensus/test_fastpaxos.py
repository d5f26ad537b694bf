"""Fast Paxos (``protocol.consensus.fastpaxos``) through the in-memory cluster of ``fpnet``.

Safety is checked as the cluster goes (no two replicas apply different values
at one index, at most one coordinator per ballot); liveness by running rounds
until every request is applied at every live replica, within a bound, once
the faults heal. Requests come from every replica at once (``proposers="any"``),
so fast rounds collide and the coordinator recovers them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.consensus.fastpaxos import FastPaxosConfig
from protocol.consensus.fpmessages import (
    FKind,
    Value,
    Vote,
    classic_quorum,
    fast_quorum,
    pick,
    round_of,
)
from protocol.consensus.messages import Role
from tests.core.consensus import lossywire
from tests.core.consensus.fpnet import FpNet

BOUND = 400  # rounds to finish once faults heal


def run_until_done(net: Any, rounds: int = BOUND) -> int:
    return lossywire.run_until_done(net, rounds)


def settle(net: FpNet) -> str:
    for _ in range(60):
        net.round()
        leader = net.coordinator()
        if leader is not None and net.nodes[leader].may_serve():
            return leader
    raise AssertionError("no coordinator")


@pytest.mark.parametrize(("n", "classic", "fast"), [(3, 2, 3), (4, 3, 3), (5, 3, 4), (7, 4, 6)])
def test_quorum_sizes_are_lamports(n: int, classic: int, fast: int) -> None:
    assert (classic_quorum(n), fast_quorum(n)) == (classic, fast)
    # any two fast quorums and a classic one share an acceptor; one less would not
    assert 2 * fast + classic > 2 * n
    assert 2 * (fast - 1) + classic <= 2 * n


def test_rule_o4_picks_the_value_a_fast_quorum_may_have_chosen() -> None:
    a, b = Value("r1", 1, b"a"), Value("r2", 1, b"b")
    fast = round_of(1)

    def votes(*values: Value) -> dict[str, Vote]:
        return {f"r{i}": Vote(7, fast, v, fast=True) for i, v in enumerate(values, 1)}

    assert pick({}, 5) is None
    # n = 5, fast quorum 4: Q = 3 acceptors, a twice: a + 2 unseen = 4 may have won
    assert pick(votes(a, a, b), 5) == a
    assert pick(votes(b, a, a), 5) == a
    # Q = 4 with a twice and b twice: neither can have 4 of 5
    assert pick(votes(a, b, a, b), 5) in (a, b)
    # a later round wins over a fast one
    later = {"r1": Vote(7, fast, a, fast=True), "r2": Vote(7, fast + 1, b)}
    assert pick(later, 5) == b


def test_a_value_is_chosen_two_message_delays_after_it_is_proposed() -> None:
    net = FpNet(5, seed=1, proposers="leader")
    leader = settle(net)
    assert net.nodes[leader].fast
    net.nodes[leader].propose(b"x")
    net.flush(leader)
    net.deliver()  # PROPOSE reaches every acceptor; each votes to every learner
    net.deliver()  # VOTED reaches every learner
    assert all(any(e.data == b"x" for e in net.applied[n]) for n in net.ids)


def test_colliding_proposals_are_recovered_and_every_request_is_applied_once_in_order() -> None:
    net = FpNet(3, seed=2)
    settle(net)
    for _ in range(30):
        net.submit()
        net.submit()
        net.round()
    run_until_done(net)
    assert net.collisions > 0
    orders = {tuple(e.data for e in net.applied[n]) for n in net.ids}
    assert len(orders) == 1


def test_two_proposers_at_one_index_get_one_value_chosen_there_everywhere() -> None:
    net = FpNet(5, seed=3)
    leader = settle(net)
    others = [n for n in net.ids if n != leader]
    index = max(net.nodes[n].next_index for n in net.ids)
    for node_id, data in ((others[0], b"left"), (others[1], b"right")):
        node = net.nodes[node_id]
        node.next_index = index
        entry = node.propose(data)
        assert getattr(entry, "index", None) == index
        net.flush(node_id)
    for _ in range(10):
        net.round()
    values = {net.nodes[n].chosen[index].value.data for n in net.ids}
    assert len(values) == 1 and values <= {b"left", b"right"}
    assert net.collisions > 0 or any(
        sum(1 for v in net.nodes[n].votes.values() if v.index == index) for n in net.ids
    )


def test_with_one_of_three_acceptors_down_the_coordinator_goes_classic_and_back() -> None:
    net = FpNet(3, seed=4, proposers="leader")
    leader = settle(net)
    follower = next(n for n in net.ids if n != leader)
    net.crash(follower)
    for _ in range(20):
        net.submit()
        net.round()
    run_until_done(net)
    node = net.nodes[leader]
    assert node.leading and not node.fast  # a fast quorum of 3 needs all 3
    assert node.term == node.tenure  # the same leadership, for the replicated coordinator
    net.restart(follower)
    for _ in range(60):
        net.submit()
        net.round()
    run_until_done(net)
    assert net.nodes[leader].leading and net.nodes[leader].fast


@pytest.mark.parametrize("torn", [False, True])
def test_the_coordinator_crashes_and_another_takes_over_with_nothing_lost(torn: bool) -> None:
    net = FpNet(5, seed=5, proposers="leader")
    leader = settle(net)
    for _ in range(10):
        net.submit()
        net.round()
    net.submit()
    net.crash(leader, torn=torn)
    new = settle(net)
    assert new != leader
    for _ in range(5):
        net.submit()
    run_until_done(net)
    assert net.nodes[new].role is Role.LEADER and net.nodes[new].current > 0
    net.restart(leader)
    for _ in range(30):
        net.round()
    run_until_done(net)
    assert net.applied[leader][-1].index == net.applied[new][-1].index


def test_a_replica_behind_the_others_compaction_gets_their_snapshot() -> None:
    net = FpNet(3, seed=6, proposers="leader", compact_every=4)
    leader = settle(net)
    lagger = next(n for n in net.ids if n != leader)
    net.crash(lagger)
    for _ in range(30):
        net.submit()
        net.round()
    run_until_done(net)
    assert net.nodes[leader].log.snap_index > net.stored[lagger].hard_state.commit
    net.restart(lagger)
    for _ in range(20):
        net.round()
    run_until_done(net)
    assert net.nodes[lagger].snapshot is not None
    assert net.nodes[lagger].log.committed >= net.nodes[leader].log.snap_index


def test_a_partitioned_coordinator_steps_down_and_its_proposals_are_not_chosen() -> None:
    net = FpNet(5, seed=7, proposers="leader")
    old = settle(net)
    rest = tuple(n for n in net.ids if n != old)
    net.partition((old,), rest)
    stale = net.nodes[old].propose(b"stale")
    net.flush(old)
    for _ in range(40):
        net.submit()
        net.round()
    assert not net.nodes[old].leading  # check-quorum
    new = net.coordinator()
    assert new in rest
    net.heal()
    run_until_done(net)
    assert all(e.data != b"stale" for n in net.ids for e in net.applied[n])
    assert not isinstance(stale, type(None))


def test_a_replica_that_returns_from_a_partition_does_not_depose_the_coordinator() -> None:
    net = FpNet(5, seed=8, proposers="leader")
    leader = settle(net)
    loner = next(n for n in net.ids if n != leader)
    net.partition((loner,), tuple(n for n in net.ids if n != loner))
    for _ in range(40):  # it times out again and again, raising its ballot
        net.round()
    net.heal()
    for _ in range(40):
        net.submit()
        net.round()
    run_until_done(net)
    assert net.coordinator() == leader and net.nodes[leader].tenure > 0


faults = st.lists(
    st.tuples(
        st.sampled_from(["partition", "crash", "torn", "heal", "calm"]),
        st.integers(0, 4),
        st.integers(1, 8),
    ),
    max_size=6,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    size=st.sampled_from([3, 5]),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    duplicate=st.sampled_from([0.0, 0.1]),
    proposers=st.sampled_from(["any", "leader"]),
    timeline=faults,
)
def test_safety_under_random_faults_and_liveness_once_they_heal(
    seed: int,
    size: int,
    loss: float,
    duplicate: float,
    proposers: str,
    timeline: list[tuple[str, int, int]],
) -> None:
    """Loss, duplication, reordering, partitions, crashes (some torn mid-write) and
    restarts, of fewer than half the replicas at a time: never two values applied
    at one index, never two coordinators of a ballot; once the network heals and
    every replica is back, every request is applied everywhere."""
    net = FpNet(size, seed=seed, loss=loss, duplicate=duplicate, proposers=proposers)
    tolerated = (size - 1) // 2
    for action, which, rounds in timeline:
        node = net.ids[which % size]
        if action == "partition":
            net.partition((node,), tuple(n for n in net.ids if n != node))
        elif action in ("crash", "torn") and len(net.dead) < tolerated:
            net.crash(node, torn=action == "torn")
        elif action == "heal":
            net.heal()
            for down in sorted(net.dead):
                net.restart(down)
        for _ in range(rounds):
            net.submit()
            net.resubmit()
            net.round()
    net.heal()
    for down in sorted(net.dead):
        net.restart(down)
    net.loss = net.duplicate = 0.0
    run_until_done(net)


def test_messages_per_commit_in_the_fast_path() -> None:
    """n = 3, one proposer (the coordinator): 2 PROPOSE and 3 x 2 VOTED per value."""
    net = FpNet(3, seed=9, proposers="leader")
    leader = settle(net)
    net.wire.clear()
    net.nodes[leader].propose(b"count")
    net.flush(leader)
    sent = list(net.wire)
    net.deliver()
    sent += net.wire
    net.deliver()
    kinds = [m.kind for m in sent]
    assert kinds.count(FKind.PROPOSE) == 2 and kinds.count(FKind.VOTED) == 6
    assert all(any(e.data == b"count" for e in net.applied[n]) for n in net.ids)


def test_a_classic_only_configuration_never_runs_a_fast_round() -> None:
    net = FpNet(3, seed=10, config=FastPaxosConfig(election_ticks=6, fast=False))
    settle(net)
    for _ in range(10):
        net.submit()
        net.round()
    run_until_done(net)
    assert not any(net.nodes[n].fast for n in net.ids)
