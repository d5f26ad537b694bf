"""Core behaviour under faults: durable bus, restart from the journal, fault events.

``DurableNet`` persists the coordinator's journals after every step (an
instant group commit, as ``real.tcp.server`` does once per loop turn) and can
crash the coordinator: the wire to and from it is emptied, a new
coordinator is built from what was persisted, and every agent says hello
again, as agents do after their link drops.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics.linearizable import check, from_calls
from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.durable import DurableState, restarted
from protocol.journal import BusState, PendingDelivery
from protocol.messages import Accepted, Deliver, MemReply, MemVerb
from protocol.retransmit import ELECTION_PATIENCE, ReconnectBackoff, next_reconnect_wait
from protocol.settings import ProtocolSettings
from tests.cluster import COORD, Faults
from tests.core_net import SETTINGS, Net, settle, unique

DURABLE = ProtocolSettings(
    heartbeat_interval=0.05,
    failure_after=0.15,
    ack_timeout=0.05,
    request_timeout=0.1,
    busy_retry=0.01,
    durable_bus=True,
)


class DurableNet(Net):
    """A net whose coordinator persists every step and can be crashed."""

    def __init__(self, settings: ProtocolSettings = DURABLE, **kw: object) -> None:
        super().__init__(settings, durable=True, **kw)  # type: ignore[arg-type]
        self.kept = DurableState()
        self.persist_enabled = True

    def _flush(self, src: str, node: Coordinator | Agent) -> None:
        if node is self.coordinator and self.persist_enabled:
            self.kept.persist(node)
        super()._flush(src, node)

    def crash(self) -> None:
        """Kill the coordinator and start a new one from what was persisted."""
        self._wire = [item for item in self._wire if COORD not in (item[2], item[3])]
        kept = self.kept
        rows = list(kept.rows.values())
        self.coordinator = restarted(COORD, self.settings, (), rows, kept.bus, kept.recalled())
        for node_id, agent in self.agents.items():
            agent.start(self.now)
            self._flush(node_id, agent)


def durable_started(*ids: str, subscriptions: tuple[str, ...] = ("t",)) -> DurableNet:
    net = DurableNet()
    for node_id in ids:
        net.add_agent(node_id, ("compute",), subscriptions)
    net.advance(0.01)
    return net


def test_durable_bus_holds_accepted_until_persisted() -> None:
    net = durable_started("a", "b")
    net.persist_enabled = False
    net.call("a", "publish", 1, "t", b"x")
    net.advance(0.02)
    assert not any(m.op_id == 1 for m in net.msgs(Accepted, dst="a"))
    assert len(net.msgs(Deliver, dst="b")) == 1  # delivery is not held, only the answer
    net.persist_enabled = True
    net.advance(0.3)  # the publish's retry reaches the coordinator and the answer goes out
    assert any(m.op_id == 1 for m in net.msgs(Accepted, dst="a"))
    settle(net)


def test_crash_before_delivery_loses_no_accepted_publish() -> None:
    net = durable_started("a", "b", "c")
    net.block = lambda src, dst, msg: dst == "c" and type(msg) is Deliver
    net.call("a", "publish", 1, "t", b"payload")
    net.advance(0.05)
    assert 1 in net.agents["a"].accepted
    assert 1 not in unique(net.agents["c"])
    net.crash()
    net.block = None
    net.advance(0.5)
    assert unique(net.agents["b"]).count(1) == 1
    assert unique(net.agents["c"]) == [1]
    settle(net)


def test_crash_keeps_unfinished_task_and_acked_writes() -> None:
    net = DurableNet()
    net.add_agent("a", (), ())
    net.add_agent("w", ("compute",), ())
    net.advance(0.01)
    net.block = lambda src, dst, msg: src == "w"  # the worker's result never arrives
    net.call("a", "submit_task", 7, "compute", b"job")
    net.call("a", "memory", 8, MemVerb.PUT, "ns", "k", b"v1")
    net.advance(0.05)
    assert 7 in net.agents["a"].accepted
    acked = net.agents["a"].write_acks
    assert [(w.key, w.version) for w in acked] == [("k", 1)]
    net.crash()
    net.block = None
    assert net.coordinator.store.snapshot() == {("ns", "k"): (1, b"v1")}
    net.advance(1.0)
    assert unique(net.agents["a"]).count(7) == 1
    settle(net)


def test_a_write_applied_before_a_crash_is_answered_once_not_applied_again() -> None:
    net = durable_started("a", subscriptions=())
    net.block = lambda src, dst, msg: dst == "a" and type(msg) is MemReply  # answers lost
    net.call("a", "memory", 8, MemVerb.PUT, "ns", "k", b"v1")
    net.advance(0.02)
    assert net.kept.rows[("ns", "k")].version == 1  # durable, its answer never arrived
    net.crash()
    net.block = None
    net.advance(0.5)  # the PUT's retry reaches the new coordinator
    assert [(w.key, w.version) for w in net.agents["a"].write_acks] == [("k", 1)]
    assert net.coordinator.store.snapshot() == {("ns", "k"): (1, b"v1")}  # not version 2
    settle(net)


def test_nobody_reads_a_write_that_a_crash_takes_back() -> None:
    net = durable_started("a", "b", subscriptions=())
    net.persist_enabled = False  # the write is applied, never made durable
    net.call("a", "memory", 1, MemVerb.PUT, "ns", "k", b"v1")
    net.advance(0.005)
    net.call("b", "memory", 2, MemVerb.GET, "ns", "k", b"")
    net.advance(0.02)
    assert not net.msgs(MemReply, dst="b")  # held: it would have read version 1
    net.crash()  # version 1 is gone
    net.persist_enabled = True
    net.advance(0.5)
    history = [call for agent in net.agents.values() for call in agent.memory_history()]
    verdict = check(from_calls(history))
    assert verdict.linearizable is True, verdict.describe()
    settle(net)


@settings(max_examples=40, deadline=None)
@given(
    crash_after=st.integers(min_value=1, max_value=40),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_memory_stays_linearizable_whenever_the_coordinator_crashes(
    crash_after: int, seed: int
) -> None:
    """Writes, reads and compare-and-sets on two keys from three clients over a lossy
    wire, a crash at a random step: every history is linearizable."""
    net = DurableNet(seed=seed, faults=Faults(drop=0.1, min_delay=0.001, max_delay=0.02))
    for node_id in ("a", "b", "c"):
        net.add_agent(node_id, (), ())
    while not all(agent.registered for agent in net.agents.values()):
        net.advance(0.01)
    for op_id in range(1, 41):
        origin, key = "abc"[op_id % 3], f"k{op_id % 2}"
        verb = (MemVerb.PUT, MemVerb.GET, MemVerb.CAS)[(op_id * 7 + seed) % 3]
        value = f"{origin}{op_id}".encode()
        net.call(origin, "memory", op_id, verb, "ns", key, value, expected_version=op_id % 4)
        net.advance(0.002)
        if op_id == crash_after:
            net.crash()
    net.advance(2.0)
    settle(net)
    history = [call for agent in net.agents.values() for call in agent.memory_history()]
    verdict = check(from_calls(history))
    assert verdict.linearizable is True, verdict.describe()


def test_failure_and_reassignment_leave_events() -> None:
    net = Net(DURABLE)
    net.add_agent("a", (), ())
    net.add_agent("w1", ("compute",), ())
    net.advance(0.01)
    net.block = lambda src, dst, msg: "w1" in (src, dst)  # w1 dies
    net.call("a", "submit_task", 1, "compute", b"job")
    net.advance(0.05)
    net.add_agent("w2", ("compute",), ())
    net.advance(0.5)
    kinds = [(e.kind, e.node) for e in net.coordinator.take_events()]
    assert ("failed", "w1") in kinds and ("reassigned", "w1") in kinds
    assert unique(net.agents["a"]) == [1]


def test_detection_comes_within_failure_after_plus_a_sweep() -> None:
    net = Net(DURABLE)
    net.add_agent("a", (), ())
    net.advance(0.2)
    killed_at = net.now
    net.block = lambda src, dst, msg: "a" in (src, dst)
    net.advance(1.0)
    failed = [e for e in net.coordinator.take_events() if e.kind == "failed"]
    assert len(failed) == 1
    detection = failed[0].at - killed_at
    bound = DURABLE.failure_after + DURABLE.heartbeat_interval * 1.5
    assert 0 < detection <= bound, detection


@settings(max_examples=40, deadline=None)
@given(
    crash_after=st.integers(min_value=1, max_value=30),
    loss_seed=st.integers(min_value=0, max_value=1000),
)
def test_no_accepted_op_is_lost_whenever_the_coordinator_crashes(
    crash_after: int, loss_seed: int
) -> None:
    """Random crash time under a mixed load: every accepted op completes, once."""
    net = DurableNet(seed=loss_seed, faults=Faults(drop=0.1, min_delay=0.001, max_delay=0.02))
    for node_id in ("a", "b", "c"):
        net.add_agent(node_id, ("compute",), ("t",))
    while not all(agent.registered for agent in net.agents.values()):
        net.advance(0.01)  # hellos are lost too; they are retried
    for op_id in range(1, 31):
        origin = "abc"[op_id % 3]
        if op_id % 3 == 0:
            net.call(origin, "submit_task", op_id, "compute", b"job")
        else:
            net.call(origin, "publish", op_id, "t", b"msg")
        net.advance(0.003)
        if op_id == crash_after:
            net.crash()
    net.advance(2.0)
    settle(net)
    handled = [c for agent in net.agents.values() for c in agent.completions if not c.duplicate]
    pairs = [(c.op_id, c.node) for c in handled]
    assert len(pairs) == len(set(pairs)), "a handler ran twice"
    for agent in net.agents.values():
        for op_id in agent.accepted:
            expected = 1 if op_id % 3 == 0 else 3
            got = sum(1 for op, _ in set(pairs) if op == op_id)
            assert got == expected, (op_id, got)


def test_restore_parks_deliveries_for_their_node_only() -> None:
    state = BusState()
    deliver = Deliver(5, 1, "a", 9, "t", b"x", 0)
    state.apply([PendingDelivery("b", deliver), PendingDelivery("c", deliver)])
    coordinator = Coordinator(COORD, SETTINGS, durable_memory=True)
    coordinator.restore(state)
    assert coordinator._next_msg_id == 6
    assert sorted(coordinator._parked) == ["b", "c"]


def test_a_full_queue_for_a_failed_agent_refuses_with_busy_and_drops_nothing() -> None:
    settings = ProtocolSettings(
        heartbeat_interval=0.05,
        failure_after=0.15,
        ack_timeout=0.05,
        request_timeout=0.1,
        credit=1,
        max_backlog=2,
        session_expiry=1000.0,
        shed_after=0.0,  # never shed: refused ops wait for the agent's return
    )
    net = Net(settings)
    for node_id in ("a", "dead"):
        net.add_agent(node_id, (), ("t",))
    net.advance(0.01)
    net.block = lambda src, dst, msg: "dead" in (src, dst)
    net.advance(0.5)
    for op_id in range(1, 6):
        net.call("a", "publish", op_id, "t", b"x")
    net.advance(0.5)
    assert net.coordinator.stats.dropped == 0
    assert net.coordinator.stats.busy > 0
    held = net.coordinator.sessions["dead"]
    assert len(held.backlog) + len(held.inflight) <= settings.credit + settings.max_backlog
    net.block = None  # it comes back: everything accepted reaches it
    net.advance(3.0)
    accepted = net.agents["a"].accepted
    assert sorted(set(unique(net.agents["dead"]))) == sorted(accepted) == [1, 2, 3, 4, 5]


def test_a_returning_agent_gets_neither_its_reassigned_tasks_nor_a_late_task_result() -> None:
    net = Net(DURABLE)
    net.add_agent("boss", (), ())
    net.add_agent("w1", ("compute",), ())
    net.advance(0.01)
    net.block = lambda src, dst, msg: src == "w1"  # w1 is dying
    net.call("boss", "submit_task", 1, "compute", b"job")
    net.advance(0.05)
    net.block = lambda src, dst, msg: src == "w1" or "boss" in (src, dst)  # boss cut off too
    net.advance(0.3)  # both failed; the task waits for another worker
    net.add_agent("w2", ("compute",), ())
    net.advance(2.0)  # w2 ran it; the result's resends to boss back off
    tasks_to_w1 = len(net.msgs(Deliver, dst="w1"))
    net.block = None  # both come back
    net.advance(0.06)  # boss's next heartbeat revives it
    assert unique(net.agents["boss"]).count(1) == 1  # the result came at once
    net.advance(1.0)
    assert len(net.msgs(Deliver, dst="w1")) == tasks_to_w1  # w1 never got the task again


def test_reconnect_waits_double_from_the_minimum_to_the_maximum() -> None:
    settings = ProtocolSettings(reconnect_min=0.01, reconnect_max=0.05)
    waits = [next_reconnect_wait(settings)]
    for _ in range(4):
        waits.append(next_reconnect_wait(settings, waits[-1]))
    assert waits == [0.01, 0.02, 0.04, 0.05, 0.05]


def test_a_lost_link_backs_off_as_one_rule_says_in_both_worlds() -> None:
    """``ReconnectBackoff`` (the real worker's per link, the model's per agent): a
    healthy link lost, or a refusal naming the leader, waits the minimum; a live
    replica that knows no leader (an election) is asked again at the minimum a few
    times, then the waits double; a failed connect (a dead replica) doubles."""
    settings = ProtocolSettings(reconnect_min=0.01, reconnect_max=0.08)
    backoff = ReconnectBackoff(settings)
    assert backoff.lost(healthy=True, hint=None) == 0.01  # the leader's process died
    assert backoff.failed() == 0.02  # the next replica tried was the dead one
    assert backoff.lost(healthy=False, hint="r2") == 0.01  # told the leader: go now
    unnamed = [backoff.lost(healthy=False, hint="") for _ in range(ELECTION_PATIENCE + 3)]
    assert unnamed == [0.01] * ELECTION_PATIENCE + [0.02, 0.04, 0.08]
    assert backoff.lost(healthy=False, hint=None) == 0.08  # at most reconnect_max
    assert backoff.lost(healthy=True, hint=None) == 0.01
