"""A leader keeps each append message within ``max_bytes`` of entry data (one
oversized entry still goes alone) and refuses proposals beyond ``max_uncommitted``."""

from __future__ import annotations

from protocol.consensus.messages import Kind, Role
from protocol.consensus.progress import Progress
from protocol.consensus.raft import RaftConfig
from tests.core.consensus.raftnet import RaftNet


def elected(config: RaftConfig) -> tuple[RaftNet, str]:
    net = RaftNet(3, seed=2, config=config, compact_every=10**9)
    for _ in range(40):
        net.round()
    leader = net.leader()
    assert leader is not None
    return net, leader


def test_appends_are_cut_at_max_bytes_and_everything_still_commits() -> None:
    net, leader = elected(RaftConfig(max_bytes=100))
    node = net.nodes[leader]
    sent = []
    original = net.send
    net.send = lambda m: (sent.append(m), original(m))[1]  # type: ignore[method-assign]
    for size in (60, 60, 60, 250, 10):
        node.propose(b"put k " + b"9" * size)
    net.flush(leader)
    for _ in range(20):
        net.round()
    appends = [m for m in sent if m.kind is Kind.APPEND and m.entries]
    assert appends
    for m in appends:
        data = [len(e.data) for e in m.entries]
        assert len(data) == 1 or sum(data) <= 100, data
    assert all(net.nodes[n].log.applied == node.log.last_index() for n in net.ids)


def test_can_take_says_whether_proposals_fit_under_max_uncommitted() -> None:
    net = RaftNet(3, seed=3, config=RaftConfig(max_uncommitted=3), compact_every=10**9)
    for _ in range(40):
        net.round()
    leader = net.leader()
    assert leader is not None
    node = net.nodes[leader]
    follower = next(n for n in net.ids if n != leader)
    assert not net.nodes[follower].can_take(1)
    net.partition((leader,), tuple(n for n in net.ids if n != leader))
    assert node.can_take(3) and not node.can_take(4)
    node.propose(b"put k 1")
    assert node.can_take(2) and not node.can_take(3)


def test_a_leader_that_steps_down_on_a_tick_has_a_ready_saying_so() -> None:
    """Check-quorum deposes a cut-off leader on a tick that has nothing to persist or
    send; the change of role is a ready of its own, so the driver stops serving at
    once (it used to wait for the next message to reach that replica)."""
    net, leader = elected(RaftConfig(election_ticks=4))
    node = net.nodes[leader]
    net.partition((leader,), tuple(n for n in net.nodes if n != leader))
    for _ in range(2 * 4):
        node.tick()
        if node.role is not Role.LEADER:
            break
        net.flush(leader)
    assert node.role is Role.FOLLOWER
    assert node.has_ready()
    ready = node.ready()
    assert ready.role is Role.FOLLOWER and not ready.messages and not ready.entries
    node.advance(ready)
    assert not node.has_ready()


def test_a_slow_follower_is_not_taken_for_one_that_lost_an_append() -> None:
    """A follower that acknowledges anything between heartbeat answers is slow, not
    deaf: its appends stay pipelined. One that acknowledges nothing for
    ``STALL_BEATS`` answers while appends are out lost one: probe again."""
    progress = Progress(match=10, next=11, replicating=True)
    progress.sent(20)
    assert not progress.stalled()  # the first answer: nothing to compare with yet
    progress.acked(12)
    assert not progress.stalled()  # 20 is still out, but 11..12 came back meanwhile
    progress.acked(15)
    assert not progress.stalled()
    assert not progress.stalled()  # one answer with nothing new: not yet
    assert progress.stalled()  # STALL_BEATS answers without an acknowledgement
    progress.probe()
    assert progress.next == 16 and not progress.replicating
