"""Raft under random fault timelines: safety always, liveness once the faults heal.

Hypothesis draws a cluster (1, 3 or 5 replicas), a network (loss, duplication,
how much of the wire is delivered per round: the rest waits, so messages are
reordered across rounds) and a timeline of faults: crashes (clean, or torn in the
middle of a write), restarts, the leader's crash, a replica or the leader cut off,
a split of the cluster, healing. Clients put and read (read-index) throughout.

Safety is checked as the cluster runs (``RaftNet``: one leader per term, leader
completeness, one entry per index) and at the end: replicas agree, every
acknowledged put is in every replica's state, and the clients' history is
linearizable. Liveness: once every replica is back and the network is clean, a
leader is elected, a new put is acknowledged, and every replica applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics.linearizable import Verb, check
from protocol.consensus.messages import Role
from tests.core.consensus.raftnet import RaftNet
from tests.core.test_core_properties import FAST

ROUNDS = 160  # rounds of faults and load (a round is one tick)
HEAL_ROUNDS = 200  # rounds to recover once everything is healed
FAULTS = (
    "crash",
    "torn",
    "restart",
    "crash_leader",
    "torn_leader",
    "isolate",
    "isolate_leader",
    "split",
    "heal",
)


@dataclass(frozen=True)
class Timeline:
    size: int
    seed: int
    loss: float
    dup: float
    share: float
    events: tuple[tuple[int, str, int], ...]


@st.composite
def timelines(draw: st.DrawFn) -> Timeline:
    size = draw(st.sampled_from([1, 3, 3, 5, 5]))
    events = draw(
        st.lists(
            st.tuples(st.integers(0, ROUNDS - 1), st.sampled_from(FAULTS), st.integers(0, 4)),
            max_size=12,
        )
    )
    return Timeline(
        size,
        draw(st.integers(0, 2**32 - 1)),
        draw(st.sampled_from([0.0, 0.02, 0.1, 0.3])),
        draw(st.sampled_from([0.0, 0.05, 0.2])),
        draw(st.sampled_from([1.0, 0.6, 0.3])),
        tuple(sorted(events)),
    )


def inject(net: RaftNet, fault: str, which: int) -> None:
    node = net.ids[which % len(net.ids)]
    leader = net.leader()
    if fault in ("crash_leader", "torn_leader", "isolate_leader"):
        if leader is None:
            return
        node = leader
    if fault in ("crash", "crash_leader"):
        net.crash(node)
    elif fault in ("torn", "torn_leader"):
        net.crash(node, torn=True)
    elif fault == "restart":
        for down in sorted(net.down):
            net.restart(down)
    elif fault in ("isolate", "isolate_leader"):
        net.partition((node,), tuple(n for n in net.ids if n != node))
    elif fault == "split":
        cut = 1 + which % max(len(net.ids) - 1, 1)
        net.partition(net.ids[:cut], net.ids[cut:])
    else:
        net.heal()


def run(timeline: Timeline) -> RaftNet:
    net = RaftNet(timeline.size, timeline.seed, loss=timeline.loss, dup=timeline.dup)
    events = list(timeline.events)
    value = 0
    for r in range(ROUNDS):
        while events and events[0][0] == r:
            _, fault, which = events.pop(0)
            inject(net, fault, which)
        client, key = f"c{r % 3}", f"k{r % 2}"
        if r % 3:
            value += 1
            net.put(client, key, value)
        else:
            net.get(client, key)
        net.round(timeline.share)
        net.agree()
    # heal everything, then the cluster must make progress
    net.loss = net.dup = 0.0
    net.heal()
    for node in sorted(net.down):
        net.restart(node)
    for attempt in range(3):  # a client retries a put a leader lost (a new value each time)
        leader = settled_leader(net)
        assert net.put("final", "k0", value + 1 + attempt), "the healed leader refused a put"
        for _ in range(HEAL_ROUNDS):
            net.round()
            if not any(c.op.client == "final" and c.node for c in net.calls) and all(
                net.nodes[n].log.applied == net.nodes[leader].log.committed for n in net.ids
            ):
                break
        if any(op.client == "final" for op in net.history):
            break
    assert any(op.client == "final" for op in net.history), "no put acknowledged after healing"
    committed = net.nodes[leader].log.committed
    assert all(net.nodes[n].log.applied == committed for n in net.ids), "replicas lag"
    net.agree()
    return net


def settled_leader(net: RaftNet) -> str:
    """Run until one replica leads at the highest term and has committed in it."""
    for _ in range(HEAL_ROUNDS):
        net.round()
        leader = net.leader()
        if leader is None:
            continue
        node = net.nodes[leader]
        top = max(n.term for n in net.nodes.values())
        if node.term == top and node.log.term(node.log.committed) == node.term:
            return leader
    raise AssertionError("no leader after the faults healed")


def check_run(net: RaftNet) -> None:
    states = [net.state[n].applied for n in net.ids]
    assert all(s == states[0] for s in states), "replicas disagree after healing"
    final = set(states[0])
    for op in net.history:
        if op.verb is Verb.PUT:
            assert f"put {op.key} {op.checksum}".encode() in final, f"acknowledged {op} lost"
    verdict = check(net.full_history())
    assert verdict.linearizable is True, verdict.describe()


@given(timelines())
@settings(FAST, max_examples=200)
def test_raft_is_safe_and_live_under_random_faults(timeline: Timeline) -> None:
    check_run(run(timeline))


def test_a_quiet_cluster_elects_one_leader_and_commits() -> None:
    net = RaftNet(5, seed=1)
    for _ in range(40):
        net.round()
    leaders = [n for n in net.ids if net.nodes[n].role is Role.LEADER]
    assert len(leaders) == 1
    assert net.put("c", "k", 7)
    for _ in range(5):
        net.round()
    assert [op.version for op in net.history] == [1]
    assert all(net.state[n].values == {"k": (1, 7)} for n in net.ids)
