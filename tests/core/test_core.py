"""Example-based tests of the sans-IO core, through ``tests.core_net.Net``.

Bugs these tests found, now fixed, are pinned in ``test_core_regressions.py``.
"""

from collections import Counter

import pytest

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import (
    Accepted,
    Ack,
    Broadcast,
    Busy,
    Deliver,
    DeliveryKind,
    Direct,
    Error,
    Heartbeat,
    Hello,
    MemReply,
    MemRequest,
    MemVerb,
    Message,
    Probe,
    ProbeReply,
    Publish,
    Reject,
    Subscribe,
    TaskDone,
    TaskDoneAck,
    TaskResult,
    TaskSubmit,
    Welcome,
)
from protocol.payload import checksum
from protocol.settings import ProtocolSettings
from tests.cluster import COORD, Faults
from tests.core_net import QUIET, SETTINGS, Net, settle, started, unique

# --- registration --------------------------------------------------------------------


def test_registration_accepted() -> None:
    net = Net()
    agent = net.add_agent("a1", ("gpu",), ("x.*",))
    assert not agent.registered
    net.advance(0.01)
    assert agent.registered
    assert agent.rejected is None
    assert net.msgs(Welcome, dst="a1") == [Welcome("a1", SETTINGS.credit, 0.1)]
    session = net.coordinator.sessions["a1"]
    assert session.alive and session.capabilities == ("gpu",)
    assert net.coordinator.subscriptions.patterns_of("a1") == ("x.*",)
    assert net.coordinator.take_closures() == []


def test_wrong_token_rejected_and_link_closed() -> None:
    net = Net()
    intruder = Agent("evil", COORD, ProtocolSettings(token="guess"))
    net.agents["evil"] = intruder
    intruder.start(net.now)
    net._flush("evil", intruder)
    net.advance(0.05)  # less than request_timeout: no second hello yet
    assert intruder.rejected == "bad token"
    assert not intruder.registered
    assert "evil" not in net.coordinator.sessions
    assert net.msgs(Reject, dst="evil") == [Reject("bad token")]
    assert net.msgs(Welcome) == []
    assert net.coordinator.take_closures() == ["evil"]
    assert any("bad token" in line for line in net.coordinator.log)
    # and a rejected link stays refused: its requests are not routed
    net.add_agent("b", (), ("t",))
    net.advance(0.01)
    net.coordinator.receive("evil", Publish(1, "t", b"x", checksum(b"x")), net.now)
    out = net.coordinator.drain()
    assert [(dst, type(msg)) for dst, msg in out] == [("evil", Error)]


def test_hello_node_id_must_match_the_link() -> None:
    coordinator = Coordinator(COORD, SETTINGS)
    coordinator.receive("link-1", Hello("someone-else", SETTINGS.token), 0.0)
    assert coordinator.drain() == [("link-1", Reject("node id does not match link"))]
    assert coordinator.take_closures() == ["link-1"]
    assert coordinator.sessions == {}


@pytest.mark.parametrize(
    "msg",
    [
        Heartbeat(1),
        Subscribe("a.b"),
        Publish(1, "a.b", b"p", 0),
        Direct(1, "b", b"p", 0),
        Broadcast(1, b"p", 0),
        Ack((1, 2)),
        TaskSubmit(1, "gpu", b"p", 0),
        TaskResult(1, "b", 1, b"p", 0),
        TaskDoneAck(1),
        MemRequest(1, MemVerb.PUT, "ns", "k", b"v"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_messages_before_registration_are_refused(msg: Message) -> None:
    coordinator = Coordinator(COORD, SETTINGS)
    coordinator.receive("b", Hello("b", SETTINGS.token, ("gpu",), ("a.#",)), 0.0)
    assert [type(m) for _, m in coordinator.drain()] == [Welcome]
    coordinator.receive("ghost", msg, 0.1)
    out = coordinator.drain()
    assert len(out) == 1
    dst, reply = out[0]
    assert dst == "ghost" and type(reply) is Error
    assert "before registration" in reply.reason
    assert coordinator.stats.refused == 1
    assert "ghost" not in coordinator.sessions
    assert coordinator.tasks == {} and len(coordinator.store) == 0
    assert coordinator.sessions["b"].inflight == {}


def test_unexpected_message_type_gets_error() -> None:
    coordinator = Coordinator(COORD, SETTINGS)
    coordinator.receive("a", Hello("a", SETTINGS.token), 0.0)
    coordinator.drain()
    coordinator.receive("a", Welcome("a", 1, 1.0), 0.1)
    [(dst, reply)] = coordinator.drain()
    assert dst == "a" and type(reply) is Error and "unexpected Welcome" in reply.reason
    assert coordinator.take_closures() == []


def test_probe_is_answered_even_before_registration() -> None:
    coordinator = Coordinator(COORD, SETTINGS)
    coordinator.receive("monitor", Probe(42), 0.0)
    assert coordinator.drain() == [("monitor", ProbeReply(42))]


def test_agent_queues_requests_until_welcome() -> None:
    net = Net()
    net.add_agent("sub", (), ("t",))
    pub = net.add_agent("pub")
    net.call("pub", "publish", 1, "t", b"early")
    assert net.msgs(Publish) == []  # nothing before Welcome
    assert pub.pending == 1
    net.advance(0.05)
    assert unique(net.agents["sub"]) == [1]
    assert pub.pending == 0


def test_hello_is_repeated_until_welcome() -> None:
    net = Net()
    net.block = lambda src, dst, msg: type(msg) is Hello and net.now < 0.15
    agent = net.add_agent("a")
    net.advance(0.12)
    assert not agent.registered
    net.advance(0.2)
    assert agent.registered
    assert len(net.msgs(Hello, src="a")) >= 2


# --- the bus -------------------------------------------------------------------------

SUBSCRIBERS = (
    ("one_level", (), ("sensors.*.temp",)),
    ("rest", (), ("sensors.#",)),
    ("exact", (), ("sensors.room1.temp",)),
    ("other", (), ("other.x", "sensors.*")),
    ("pub", (), ()),
)


def test_publish_reaches_matching_subscribers_only() -> None:
    net = started(*SUBSCRIBERS)
    net.call("pub", "publish", 1, "sensors.room1.temp", b"21C")
    net.call("pub", "publish", 2, "sensors", b"root")  # '#' matches zero levels
    net.call("pub", "publish", 3, "sensors.room1", b"r1")
    net.call("pub", "publish", 4, "nobody.listens", b"-")
    net.advance(0.05)
    got = {node: sorted(unique(agent)) for node, agent in net.agents.items()}
    assert got == {
        "one_level": [1],
        "rest": [1, 2, 3],
        "exact": [1],
        "other": [3],
        "pub": [],
    }
    assert sorted(net.msgs(Accepted, dst="pub"), key=lambda a: a.op_id) == [
        Accepted(1, 3),
        Accepted(2, 1),
        Accepted(3, 2),
        Accepted(4, 0),
    ]
    assert all(c.intact for a in net.agents.values() for c in a.completions)
    settle(net)


def test_one_msg_id_per_operation_shared_by_all_recipients() -> None:
    net = started(*SUBSCRIBERS)
    net.call("pub", "publish", 1, "sensors.room1.temp", b"21C")
    net.call("pub", "publish", 2, "sensors.room2.temp", b"19C")
    net.advance(0.05)
    ids = {(m.op_id, m.msg_id) for m in net.msgs(Deliver)}
    assert len({msg_id for _, msg_id in ids}) == 2
    assert len({op for op, _ in ids}) == 2
    delivers = net.msgs(Deliver)
    assert all(d.kind == DeliveryKind.PUBLISH and d.origin == "pub" for d in delivers)
    assert {d.topic for d in delivers} == {"sensors.room1.temp", "sensors.room2.temp"}


def test_direct_reaches_only_its_destination() -> None:
    net = started(("a", (), ("#",)), ("b", (), ("#",)), ("c", (), ()))
    net.call("a", "direct", 7, "b", b"hi b")
    net.call("a", "direct", 8, "nobody", b"lost")
    net.advance(0.05)
    assert unique(net.agents["b"]) == [7]
    assert unique(net.agents["a"]) == [] and unique(net.agents["c"]) == []
    assert sorted(net.msgs(Accepted, dst="a"), key=lambda a: a.op_id) == [
        Accepted(7, 1),
        Accepted(8, 0),
    ]
    [deliver] = net.msgs(Deliver)
    assert (deliver.kind, deliver.origin, deliver.payload) == (DeliveryKind.DIRECT, "a", b"hi b")
    assert any("unknown agent 'nobody'" in line for line in net.coordinator.log)
    settle(net)


def test_broadcast_reaches_everyone_but_the_origin() -> None:
    net = started(*[(f"n{i}", (), ()) for i in range(5)])
    net.call("n2", "broadcast", 9, b"all")
    net.advance(0.05)
    got = {node: unique(agent) for node, agent in net.agents.items()}
    assert got == {"n0": [9], "n1": [9], "n2": [], "n3": [9], "n4": [9]}
    assert net.msgs(Accepted, dst="n2") == [Accepted(9, 4)]
    settle(net)


def test_agent_batches_acks_per_drain() -> None:
    agent = Agent("a", COORD, SETTINGS)
    agent.start(0.0)
    agent.receive(COORD, Welcome("a", 8, 0.1), 0.0)
    agent.drain()
    for msg_id in (5, 6, 7):
        agent.receive(COORD, Deliver(msg_id, DeliveryKind.PUBLISH, "p", msg_id, "t", b"", 0), 0.01)
    agent.receive(COORD, Deliver(6, DeliveryKind.PUBLISH, "p", 6, "t", b"", 0), 0.01)
    assert agent.drain() == [(COORD, Ack((5, 6, 7, 6)))]
    assert agent.drain() == []
    assert [(c.op_id, c.duplicate) for c in agent.completions] == [
        (5, False),
        (6, False),
        (7, False),
        (6, True),
    ]


def test_corrupted_payload_is_recorded_not_intact() -> None:
    agent = Agent("a", COORD, SETTINGS)
    agent.receive(COORD, Deliver(1, DeliveryKind.DIRECT, "p", 1, "", b"abc", checksum(b"abd")), 0)
    agent.receive(COORD, Deliver(2, DeliveryKind.DIRECT, "p", 2, "", b"abc", checksum(b"abc")), 0)
    assert [c.intact for c in agent.completions] == [False, True]


def test_lost_ack_causes_redelivery_with_same_msg_id_and_dedup() -> None:
    net = started(("sub", (), ("t",)), ("pub", (), ()), settings=QUIET)
    dropped: list[Ack] = []

    def lose_first_ack(src: str, dst: str, msg: Message) -> bool:
        if type(msg) is Ack and not dropped:
            dropped.append(msg)
            return True
        return False

    net.block = lose_first_ack
    net.call("pub", "publish", 1, "t", b"x")
    net.advance(0.2)
    delivers = net.msgs(Deliver, dst="sub")
    assert len(delivers) >= 2 and len({d.msg_id for d in delivers}) == 1
    sub = net.agents["sub"]
    assert [(c.op_id, c.duplicate) for c in sub.completions][:2] == [(1, False), (1, True)]
    assert unique(sub) == [1]
    assert net.coordinator.stats.redelivered >= 1
    settle(net)


def test_retried_publish_is_routed_once() -> None:
    net = started(("sub", (), ("t",)), ("pub", (), ()), settings=QUIET)
    lost: list[Message] = []

    def lose_first_accepted(src: str, dst: str, msg: Message) -> bool:
        if type(msg) is Accepted and not lost:
            lost.append(msg)
            return True
        return False

    net.block = lose_first_accepted
    net.call("pub", "publish", 1, "t", b"x")
    net.advance(0.5)
    assert len(net.msgs(Publish, src="pub")) >= 2  # the request was retried
    assert len(net.msgs(Accepted, dst="pub")) >= 2
    assert len({d.msg_id for d in net.msgs(Deliver)}) == 1  # but routed once
    assert unique(net.agents["sub"]) == [1]
    settle(net)


# --- tasks ---------------------------------------------------------------------------


def test_tasks_go_to_the_least_loaded_capable_agent() -> None:
    workers = [(f"w{i}", ("gpu", "cpu"), ()) for i in range(3)]
    net = started(*workers, ("cpu_only", ("cpu",), ()), ("boss", (), ()))
    for op_id in range(1, 7):
        net.call("boss", "submit_task", op_id, "gpu", op_id.to_bytes(2, "big"))
    net.advance(0.1)
    done = net.msgs(TaskDone, dst="boss")
    assert sorted(d.op_id for d in done) == [1, 2, 3, 4, 5, 6]
    assert Counter(d.worker for d in done) == {"w0": 2, "w1": 2, "w2": 2}
    for d in done:  # the built-in handler echoes the payload
        assert d.payload == d.op_id.to_bytes(2, "big") and d.checksum == checksum(d.payload)
    assert sorted(unique(net.agents["boss"])) == [1, 2, 3, 4, 5, 6]
    assert all(c.intact for c in net.agents["boss"].completions)
    assert net.msgs(TaskResult, src="cpu_only") == []
    assert net.msgs(Accepted, dst="boss") == [Accepted(op, 1) for op in range(1, 7)]
    settle(net)


def test_busy_worker_is_skipped_for_an_idle_one() -> None:
    net = started(("w0", ("gpu",), ()), ("w1", ("gpu",), ()), ("boss", (), ()), settings=QUIET)
    net.block = lambda src, dst, msg: src == "w0" and type(msg) is TaskResult
    net.call("boss", "submit_task", 1, "gpu", b"slow")
    net.advance(0.05)
    net.call("boss", "submit_task", 2, "gpu", b"fast")
    net.advance(0.05)
    net.call("boss", "submit_task", 3, "gpu", b"fast")
    net.advance(0.05)
    # w0 still holds task 1, so task 2 goes to w1, and so does task 3 once 2 is done
    assert sorted((d.op_id, d.worker) for d in net.msgs(TaskDone)) == [(2, "w1"), (3, "w1")]
    net.block = None
    net.advance(0.2)
    assert sorted(unique(net.agents["boss"])) == [1, 2, 3]
    settle(net)


def test_task_done_is_retried_until_acked() -> None:
    net = started(("w", ("gpu",), ()), ("boss", (), ()), settings=QUIET)
    net.block = lambda src, dst, msg: type(msg) is TaskDone and net.now < 0.2
    net.call("boss", "submit_task", 1, "gpu", b"job")
    net.advance(0.15)
    assert unique(net.agents["boss"]) == []
    assert len(net.msgs(TaskDone, dst="boss")) >= 2
    assert len(net.msgs(TaskResult, src="w")) == 1  # the worker ran it once
    net.advance(0.3)
    assert unique(net.agents["boss"]) == [1]
    assert net.msgs(TaskDoneAck, src="boss")
    settle(net)
    sent = len(net.msgs(TaskDone))
    net.advance(1.0)
    assert len(net.msgs(TaskDone)) == sent  # acked: no more resends


def test_lost_task_result_is_recovered_by_redelivery() -> None:
    net = started(("w", ("gpu",), ()), ("boss", (), ()), settings=QUIET)
    net.block = lambda src, dst, msg: type(msg) is TaskResult and net.now < 0.1
    net.call("boss", "submit_task", 1, "gpu", b"job")
    net.advance(0.5)
    results = net.msgs(TaskResult, src="w")
    assert len(results) >= 2 and len(set(results)) == 1  # same cached result each time
    assert unique(net.agents["boss"]) == [1]
    settle(net)


def test_task_waits_for_a_capable_agent() -> None:
    net = started(("boss", (), ()), ("w", ("cpu",), ()))
    net.call("boss", "submit_task", 1, "rare", b"job")
    net.advance(0.2)
    assert net.msgs(Accepted, dst="boss") == [Accepted(1, 1)]
    assert unique(net.agents["boss"]) == []
    net.add_agent("specialist", ("rare",))
    net.advance(0.05)
    assert [(d.op_id, d.worker) for d in net.msgs(TaskDone)] == [(1, "specialist")]
    assert unique(net.agents["boss"]) == [1]
    settle(net)


# --- memory --------------------------------------------------------------------------


def mem(
    net: Net, op_id: int, verb: int, key: str, value: bytes = b"", expected: int = 0
) -> MemReply:
    """Run one memory op from agent ``a`` to completion and return its reply."""
    net.call("a", "memory", op_id, verb, "ns", key, value, expected_version=expected)
    net.advance(0.02)
    replies = {r for r in net.msgs(MemReply, dst="a") if r.op_id == op_id}
    assert len(replies) == 1, replies
    return replies.pop()


def test_memory_put_get_cas_delete_with_versions() -> None:
    net = started(("a", (), ()))
    assert mem(net, 1, MemVerb.GET, "k") == MemReply(1, False, 0, b"", "absent")
    assert mem(net, 2, MemVerb.PUT, "k", b"v1") == MemReply(2, True, 1, b"")
    assert mem(net, 3, MemVerb.PUT, "k", b"v2") == MemReply(3, True, 2, b"")
    assert mem(net, 4, MemVerb.GET, "k") == MemReply(4, True, 2, b"v2")
    assert mem(net, 5, MemVerb.CAS, "k", b"v3", expected=2) == MemReply(5, True, 3, b"")
    assert mem(net, 6, MemVerb.CAS, "k", b"v4", expected=2) == MemReply(
        6, False, 3, b"", "version mismatch"
    )
    assert mem(net, 7, MemVerb.GET, "k") == MemReply(7, True, 3, b"v3")
    assert mem(net, 8, MemVerb.DELETE, "k") == MemReply(8, True, 3, b"")
    assert mem(net, 9, MemVerb.GET, "k") == MemReply(9, False, 0, b"", "absent")
    assert mem(net, 10, MemVerb.DELETE, "k") == MemReply(10, False, 0, b"", "absent")
    assert mem(net, 11, MemVerb.CAS, "k", b"new", expected=0) == MemReply(11, True, 1, b"")
    assert mem(net, 12, MemVerb.CAS, "other", b"x", expected=5) == MemReply(
        12, False, 0, b"", "version mismatch"
    )
    assert mem(net, 13, MemVerb.PUT, "", b"x").ok is False
    assert mem(net, 14, 99, "k").error == "unknown verb 99"
    assert net.coordinator.store.snapshot() == {("ns", "k"): (1, b"new")}
    assert sorted(unique(net.agents["a"])) == list(range(1, 15))
    settle(net)


def test_namespaces_are_separate() -> None:
    net = started(("a", (), ()))
    net.call("a", "memory", 1, MemVerb.PUT, "ns1", "k", b"one")
    net.call("a", "memory", 2, MemVerb.PUT, "ns2", "k", b"two")
    net.advance(0.02)
    assert net.coordinator.store.snapshot() == {
        ("ns1", "k"): (1, b"one"),
        ("ns2", "k"): (1, b"two"),
    }


def test_retried_mem_request_is_applied_once() -> None:
    net = started(("a", (), ()), settings=QUIET)
    net.block = lambda src, dst, msg: type(msg) is MemReply and net.now < 0.25
    net.call("a", "memory", 1, MemVerb.PUT, "ns", "k", b"v")
    net.advance(0.5)
    assert len(net.msgs(MemRequest, src="a")) >= 3  # retried while replies were lost
    assert set(net.msgs(MemReply, dst="a")) == {MemReply(1, True, 1, b"")}
    assert net.coordinator.store.snapshot() == {("ns", "k"): (1, b"v")}  # version 1: once
    assert net.coordinator.take_writes() == []  # nothing persists it: the store keeps no journal
    assert unique(net.agents["a"]) == [1]
    settle(net)


def test_duplicate_mem_reply_is_flagged_duplicate() -> None:
    net = started(("a", (), ()), faults=Faults(duplicate=1.0), settings=QUIET)
    net.call("a", "memory", 1, MemVerb.PUT, "ns", "k", b"v")
    net.advance(0.02)
    flags = [c.duplicate for c in net.agents["a"].completions if c.op_id == 1]
    assert flags[0] is False and len(flags) >= 2 and all(flags[1:])
    assert net.coordinator.store.snapshot() == {("ns", "k"): (1, b"v")}


def test_durable_memory_holds_write_replies_until_persisted() -> None:
    net = started(("a", (), ()), durable=True, settings=QUIET)
    coordinator = net.coordinator
    assert coordinator.durable_memory
    net.call("a", "memory", 1, MemVerb.PUT, "ns", "k", b"v1")
    net.call("a", "memory", 2, MemVerb.GET, "ns", "k", b"")
    net.call("a", "memory", 3, MemVerb.CAS, "ns", "k", b"no", expected_version=7)
    net.call("a", "memory", 4, MemVerb.GET, "ns", "other", b"")
    net.call("a", "memory", 5, MemVerb.CAS, "ns", "other", b"no", expected_version=7)
    net.advance(0.35)  # long enough for the PUT to be retried
    assert len(net.msgs(MemRequest, src="a")) >= 6
    replies = net.msgs(MemReply, dst="a")
    # a read or a refused write of a key written since the last persist saw a write a
    # crash could undo: held too; of any other key, answered at once
    assert {r.op_id for r in replies} == {4, 5}
    assert net.agents["a"].pending == 3
    assert coordinator.take_writes() == [("ns", "k", 1, b"v1")]
    assert coordinator.take_writes() == []
    coordinator.writes_persisted()
    net._flush(COORD, coordinator)
    net.advance(0.02)
    assert MemReply(1, True, 1, b"") in net.msgs(MemReply, dst="a")
    assert MemReply(2, True, 1, b"v1") in net.msgs(MemReply, dst="a")
    assert sorted(unique(net.agents["a"])) == [1, 2, 3, 4, 5]
    assert not coordinator._dirty  # once durable, the key is clean
    net.call("a", "memory", 6, MemVerb.GET, "ns", "k", b"")
    net.advance(0.02)
    assert 6 in unique(net.agents["a"])  # answered without a persist
    assert coordinator.store.snapshot() == {("ns", "k"): (1, b"v1")}  # applied once
    settle(net)


# --- flow control --------------------------------------------------------------------


def test_credit_and_backlog_bound_a_silent_agent_and_publisher_gets_busy() -> None:
    settings = ProtocolSettings(
        heartbeat_interval=0.1,
        failure_after=1000.0,
        ack_timeout=0.05,
        request_timeout=0.1,
        credit=2,
        max_backlog=3,
        busy_retry=0.05,
        shed_after=0.0,  # never shed: every op must go through once slow catches up
    )
    net = started(("slow", (), ("t",)), ("fast", (), ("t",)), ("pub", (), ()), settings=settings)
    session = net.coordinator.sessions["slow"]
    peaks = {"inflight": 0, "backlog": 0}

    def bounded() -> None:
        for s in net.coordinator.sessions.values():
            assert len(s.inflight) <= settings.credit, s.node_id
            assert len(s.backlog) <= settings.max_backlog, s.node_id
        peaks["inflight"] = max(peaks["inflight"], len(session.inflight))
        peaks["backlog"] = max(peaks["backlog"], len(session.backlog))

    net.checks.append(bounded)
    net.block = lambda src, dst, msg: src == "slow"  # it receives but never acks
    for op_id in range(1, 21):
        net.call("pub", "publish", op_id, "t", b"m")
    net.advance(0.25)  # while slow is silent
    assert peaks == {"inflight": 2, "backlog": 3}
    busy = net.msgs(Busy, dst="pub")
    assert busy and all(b.retry_after == settings.busy_retry for b in busy)
    refused = {b.op_id for b in busy}  # the adaptive window sends only some of 6..20 at once
    assert 6 in refused and refused <= set(range(6, 21))
    assert net.coordinator.stats.busy == len(busy)
    assert net.agents["pub"].pending == 20 - 5  # 5 accepted: 2 in flight + 3 queued
    assert sorted(unique(net.agents["slow"])) == [1, 2]  # it only ever got its credit
    assert sorted(unique(net.agents["fast"])) == [1, 2, 3, 4, 5]  # held back by slow
    net.block = None  # the slow agent catches up; every op eventually goes through
    settle(net)
    for node in ("slow", "fast"):
        assert sorted(unique(net.agents[node])) == list(range(1, 21))


# --- failure detection ---------------------------------------------------------------


def test_silent_agent_is_detected_and_its_task_reassigned() -> None:
    net = started(("w1", ("gpu",), ()), ("w2", ("gpu",), ()), ("boss", (), ()))
    coordinator = net.coordinator
    net.advance(0.3)  # some heartbeats
    silent_since = net.now
    net.block = lambda src, dst, msg: "w1" in (src, dst)
    net.call("boss", "submit_task", 1, "gpu", b"job")
    net.advance(0.01)
    assert coordinator.tasks[("boss", 1)].worker == "w1"  # tie goes to w1, which is silent
    detected = None
    while net.now < silent_since + 2.0:
        net.advance(0.005)
        if not coordinator.sessions["w1"].alive:
            detected = net.now
            break
    assert detected is not None
    elapsed = detected - silent_since
    assert SETTINGS.failure_after - SETTINGS.heartbeat_interval <= elapsed
    assert elapsed <= SETTINGS.failure_after + SETTINGS.heartbeat_interval
    assert coordinator.stats.failures_detected == 1
    assert coordinator.stats.tasks_reassigned == 1
    assert any("agent w1 failed" in line for line in coordinator.log)
    net.advance(0.1)
    assert [(d.op_id, d.worker) for d in net.msgs(TaskDone)] == [(1, "w2")]
    assert unique(net.agents["boss"]) == [1]
    assert coordinator.sessions["w2"].alive and coordinator.sessions["boss"].alive
    assert coordinator.tasks == {} and coordinator.sessions["w2"].tasks == set()


def test_heartbeats_keep_an_idle_agent_alive() -> None:
    net = started(("idle", (), ()))
    net.advance(5.0)
    assert net.coordinator.sessions["idle"].alive
    assert net.coordinator.stats.failures_detected == 0
    beats = net.msgs(Heartbeat, src="idle")
    assert 45 <= len(beats) <= 51 and [b.seq for b in beats] == list(range(1, len(beats) + 1))


def test_link_closed_fails_at_once_and_reregistration_resends_deliveries() -> None:
    net = started(("sub", (), ("t",)), ("pub", (), ()), settings=QUIET)
    net.block = lambda src, dst, msg: dst == "sub"  # the link is going down
    net.call("pub", "publish", 1, "t", b"x")
    net.advance(0.02)
    net.coordinator.link_closed("sub", net.now)
    assert not net.coordinator.sessions["sub"].alive
    net.call("pub", "publish", 2, "t", b"y")  # held for the failed agent
    net.advance(0.2)
    assert unique(net.agents["sub"]) == []
    net.block = None
    sub = net.agents["sub"]
    sub.start(net.now)  # reconnect
    net._flush("sub", sub)
    net.advance(0.1)
    assert net.coordinator.sessions["sub"].alive
    assert sorted(unique(sub)) == [1, 2]
    settle(net)


# --- malformed input -----------------------------------------------------------------


def test_peer_malformed_logs_replies_error_and_closes_the_link() -> None:
    net = started(("bad", (), ()), ("good", (), ("t",)), ("pub", (), ()))
    coordinator = net.coordinator
    coordinator.peer_malformed("bad", "frame length 0 outside 2..1048576")
    out = coordinator.drain()
    assert len(out) == 1 and out[0][0] == "bad" and type(out[0][1]) is Error
    assert "frame length 0" in out[0][1].reason
    assert coordinator.take_closures() == ["bad"]
    assert coordinator.take_closures() == []
    assert any("malformed input from bad" in line for line in coordinator.log)
    assert coordinator.stats.refused == 1
    # everyone else is still served
    net.call("pub", "publish", 1, "t", b"x")
    net.advance(0.05)
    assert unique(net.agents["good"]) == [1]
