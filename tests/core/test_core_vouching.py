"""Liveness per link: a voucher node's heartbeats stand for the agents it vouches
for (``Hello.vouched_by``), through the in-memory cluster on its own clock."""

from __future__ import annotations

from protocol.messages import Heartbeat, Message, Welcome
from protocol.settings import ProtocolSettings
from tests.cluster import Cluster

SETTINGS = ProtocolSettings(heartbeat_interval=0.1, failure_after=0.3)


class MutableCluster(Cluster):
    """A cluster that can silence nodes and keeps every message sent."""

    def __init__(self) -> None:
        super().__init__(SETTINGS)
        self.muted: set[str] = set()
        self.log: list[tuple[str, str, Message]] = []

    def _send(self, src: str, dst: str, msg: Message) -> None:
        self.log.append((src, dst, msg))
        if src not in self.muted:
            super()._send(src, dst, msg)

    def sent_by(self, src: str, kind: type) -> list[Message]:
        return [msg for s, _, msg in self.log if s == src and type(msg) is kind]


def link_of_three() -> MutableCluster:
    net = MutableCluster()
    net.add_agent("w0.link0")
    net.run_until(0.01)
    for name in ("a1", "a2", "a3"):
        net.add_agent(name, vouched_by="w0.link0")
    net.run_until(0.05)
    return net


def test_vouched_agents_send_no_heartbeats_and_stay_alive() -> None:
    net = link_of_three()
    welcomes = [msg for _, dst, msg in net.log if type(msg) is Welcome and dst == "a1"]
    assert [w.heartbeat_interval for w in welcomes] == [0.0]  # type: ignore[attr-defined]
    net.run_until(3.0)
    sessions = net.coordinator.sessions
    assert all(sessions[n].alive for n in ("w0.link0", "a1", "a2", "a3"))
    assert net.coordinator.stats.failures_detected == 0
    assert not any(net.sent_by(n, Heartbeat) for n in ("a1", "a2", "a3"))
    assert len(net.sent_by("w0.link0", Heartbeat)) >= 25  # one per interval for the link
    status = {c.name: c for c in net.coordinator.status(net.now)}
    assert status["agent:a1"].health == "ok"  # heard from through its voucher


def test_a_silent_voucher_fails_with_every_agent_it_vouches_for() -> None:
    net = link_of_three()
    net.run_until(1.0)
    net.muted.add("w0.link0")
    net.run_until(1.5)
    sessions = net.coordinator.sessions
    assert not any(sessions[n].alive for n in ("w0.link0", "a1", "a2", "a3"))
    assert net.coordinator.stats.failures_detected == 4
    failed = [e for e in net.coordinator.events if e.kind == "failed"]
    assert {e.node for e in failed} == {"w0.link0", "a1", "a2", "a3"}
    assert len({e.at for e in failed}) == 1  # one sweep, the voucher first
    assert failed[0].node == "w0.link0"


def test_a_vouched_agent_that_speaks_is_alive_on_its_own_words() -> None:
    net = link_of_three()
    net.muted.add("w0.link0")
    for step in range(10):  # a1 keeps publishing; the others say nothing
        net.issue("a1", step + 1, "publish", "t", b"x")
        net.run_until(0.05 + 0.1 * (step + 1))
    sessions = net.coordinator.sessions
    assert sessions["a1"].alive
    assert not sessions["a2"].alive and not sessions["w0.link0"].alive


def test_an_unknown_voucher_means_the_agent_beats_for_itself() -> None:
    net = MutableCluster()
    net.add_agent("lonely", vouched_by="nobody")
    net.run_until(1.0)
    assert net.coordinator.sessions["lonely"].alive
    assert net.coordinator.sessions["lonely"].voucher == ""
    assert len(net.sent_by("lonely", Heartbeat)) >= 8
    assert any("voucher 'nobody' is not a live node" in line for line in net.coordinator.log)


def test_a_vouched_node_cannot_vouch_in_turn() -> None:
    net = link_of_three()
    net.add_agent("b1", vouched_by="a1")
    net.run_until(1.0)
    assert net.coordinator.sessions["b1"].voucher == ""
    assert net.sent_by("b1", Heartbeat)


def test_agents_come_back_with_their_voucher_after_a_partition() -> None:
    net = link_of_three()
    net.issue("a2", 1, "publish", "t", b"x")
    net.run_until(1.0)
    net.muted.add("w0.link0")
    net.run_until(1.5)  # all four failed (previous test)
    net.muted.discard("w0.link0")
    net.run_until(2.0)  # the voucher's next heartbeat heals the link
    sessions = net.coordinator.sessions
    assert all(sessions[n].alive for n in ("w0.link0", "a1", "a2", "a3"))
    returned = [e.node for e in net.coordinator.events if e.kind == "returned"]
    assert sorted(returned) == ["a1", "a2", "a3", "w0.link0"]
    net.run_until(5.0)
    assert all(sessions[n].alive for n in ("w0.link0", "a1", "a2", "a3"))
