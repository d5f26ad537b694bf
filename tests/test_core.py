"""Example-based tests of the sans-IO core, mostly through ``tests.cluster.Cluster``.

``Net`` extends the in-memory cluster with three test hooks: a log of every
message a node asked to send, a ``block`` predicate that silently drops
chosen messages (a partition, a lost reply), and ``checks`` run after every
step of the simulation (invariants that must hold at all times).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

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
from tests.cluster import COORD, Cluster, Faults

SETTINGS = ProtocolSettings(
    heartbeat_interval=0.1,
    failure_after=0.5,
    ack_timeout=0.05,
    request_timeout=0.1,
    busy_retry=0.01,
)
QUIET = ProtocolSettings(  # nobody is declared failed while a test blocks its messages
    heartbeat_interval=0.1,
    failure_after=1000.0,
    ack_timeout=0.05,
    request_timeout=0.1,
    busy_retry=0.01,
)

Blocker = Callable[[str, str, Message], bool]


class Net(Cluster):
    """A ``Cluster`` that records sends, can block messages and checks invariants."""

    def __init__(
        self,
        settings: ProtocolSettings = SETTINGS,
        faults: Faults | None = None,
        seed: int = 0,
        durable: bool = False,
    ) -> None:
        super().__init__(settings, faults, seed)
        if durable:
            self.coordinator = Coordinator(COORD, settings, durable_memory=True)
        self.log: list[tuple[float, str, str, Message]] = []
        self.block: Blocker | None = None
        self.checks: list[Callable[[], None]] = []
        self.steps = 0
        self.max_steps = 100_000  # fail, rather than hang, if a node starts spinning

    def _send(self, src: str, dst: str, msg: Message) -> None:
        self.log.append((self.now, src, dst, msg))
        if self.block is not None and self.block(src, dst, msg):
            return
        super()._send(src, dst, msg)

    def _flush(self, src: str, node: Coordinator | Agent) -> None:
        super()._flush(src, node)
        self.steps += 1
        assert self.steps <= self.max_steps, f"runaway simulation at t={self.now:.3f}"
        for check in self.checks:
            check()

    def msgs(self, kind: type, src: str | None = None, dst: str | None = None) -> list:
        """Messages of type ``kind`` sent (before any loss), optionally by/to a node."""
        return [
            m
            for _, s, d, m in self.log
            if type(m) is kind and (src is None or s == src) and (dst is None or d == dst)
        ]

    def call(self, origin: str, method: str, *args: object, **kwargs: object) -> None:
        """Make agent ``origin`` issue a request now and put it on the wire."""
        agent = self.agents[origin]
        getattr(agent, method)(*args, now=self.now, **kwargs)
        self._flush(origin, agent)

    def advance(self, seconds: float) -> None:
        self.run_until(self.now + seconds)


def unique(agent: Agent) -> list[int]:
    """Op ids handled (not suppressed as duplicates) at ``agent``."""
    return [c.op_id for c in agent.completions if not c.duplicate]


def quiet(net: Net) -> bool:
    """Nothing left in flight, queued or pending anywhere."""
    coordinator = net.coordinator
    return (
        all(not s.inflight and not s.backlog and not s.tasks for s in coordinator.sessions.values())
        and not coordinator.tasks
        and not coordinator.unassigned
        and not coordinator._done_pending
        and all(agent.pending == 0 for agent in net.agents.values())
    )


def settle(net: Net, limit: float = 30.0) -> None:
    """Run until nothing is left in flight (retries back off, so no fixed time)."""
    deadline = net.now + limit
    while not quiet(net) and net.now < deadline:
        net.advance(0.05)
    coordinator = net.coordinator
    for session in coordinator.sessions.values():
        assert not session.inflight, (session.node_id, session.inflight)
        assert not session.backlog, (session.node_id, session.backlog)
        assert not session.tasks, (session.node_id, session.tasks)
    assert not coordinator.tasks
    assert not coordinator.unassigned
    assert not coordinator._done_pending
    for agent in net.agents.values():
        assert agent.pending == 0, agent.node_id


def started(*agents: tuple[str, tuple[str, ...], tuple[str, ...]], **kw: object) -> Net:
    """A net with ``(id, capabilities, subscriptions)`` agents, all registered."""
    net = Net(**kw)  # type: ignore[arg-type]
    for node_id, caps, subs in agents:
        net.add_agent(node_id, caps, subs)
    net.advance(0.01)
    assert all(agent.registered for agent in net.agents.values())
    return net


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
    assert net.coordinator.store.snapshot() == {("ns", "k"): (1, b"v")}
    assert net.coordinator.take_writes() == [("ns", "k", 1, b"v")]
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
    net.advance(0.35)  # long enough for the PUT to be retried
    assert len(net.msgs(MemRequest, src="a")) >= 4
    replies = net.msgs(MemReply, dst="a")
    assert {r.op_id for r in replies} == {2, 3}  # reads and failed writes are not held
    assert net.agents["a"].pending == 1
    assert coordinator.take_writes() == [("ns", "k", 1, b"v1")]
    assert coordinator.take_writes() == []
    coordinator.writes_persisted()
    net._flush(COORD, coordinator)
    net.advance(0.02)
    assert MemReply(1, True, 1, b"") in net.msgs(MemReply, dst="a")
    assert sorted(unique(net.agents["a"])) == [1, 2, 3]
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
    assert {b.op_id for b in busy} == set(range(6, 21))
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


# --- regressions: core bugs found by these tests, fixed in 7ae4a10 --------------------


def test_rejected_hello_leaves_no_subscriptions_behind() -> None:
    """A Hello with a valid then an invalid pattern used to leave the valid one in
    the index, and the next matching publish crashed ``_route`` with KeyError."""
    coordinator = Coordinator(COORD, SETTINGS)
    hello = Hello("evil", SETTINGS.token, (), ("x.y", "bad.."))
    coordinator.receive("evil", hello, 0.0)
    [(dst, reply)] = coordinator.drain()
    assert dst == "evil" and type(reply) is Reject and "bad.." in reply.reason
    assert coordinator.take_closures() == ["evil"]
    assert coordinator.subscriptions.subscribers("x.y") == ()
    assert coordinator.subscriptions.patterns_of("evil") == ()
    coordinator.receive("pub", Hello("pub", SETTINGS.token), 0.0)
    coordinator.drain()
    coordinator.receive("pub", Publish(1, "x.y", b"", 0), 0.1)
    assert coordinator.drain() == [("pub", Accepted(1, 0))]


def test_rejected_agent_has_no_stuck_deadline() -> None:
    """After Reject the hello timer used to stay armed in the past: on_timer did
    nothing and next_deadline() kept returning it, so a driver spun forever."""
    agent = Agent("a", COORD, ProtocolSettings(token="wrong", request_timeout=0.1))
    agent.start(0.0)
    agent.drain()
    agent.receive(COORD, Reject("bad token"), 0.01)
    agent.on_timer(1.0)
    assert agent.drain() == []  # no hello after a rejection
    deadline = agent.next_deadline()
    assert deadline is None or deadline > 1.0


def test_rejected_agent_does_not_stall_the_cluster_clock() -> None:
    net = Net()
    net.max_steps = 1_000
    intruder = Agent("evil", COORD, ProtocolSettings(token="guess", request_timeout=0.1))
    net.agents["evil"] = intruder
    intruder.start(net.now)
    net._flush("evil", intruder)
    net.advance(5.0)
    assert net.now == 5.0 and intruder.rejected == "bad token"
    assert len(net.msgs(Hello, src="evil")) == 1


def test_task_backlog_is_bounded_and_extra_tasks_get_busy() -> None:
    """Task deliveries used to bypass max_backlog (TaskSubmit never got Busy)."""
    settings = ProtocolSettings(
        credit=1, max_backlog=2, failure_after=1000.0, ack_timeout=0.05, busy_retry=0.01
    )
    net = started(("w", ("gpu",), ()), ("boss", (), ()), settings=settings)
    coordinator = net.coordinator
    worker = coordinator.sessions["w"]

    def bounded() -> None:
        assert len(worker.inflight) <= settings.credit
        assert len(worker.backlog) <= settings.max_backlog
        assert len(coordinator.unassigned) <= settings.max_backlog

    net.checks.append(bounded)
    net.block = lambda src, dst, msg: src == "w"  # the worker never answers
    for op_id in range(1, 11):
        net.call("boss", "submit_task", op_id, "gpu", b"job")
    net.advance(0.3)
    assert len(worker.backlog) == settings.max_backlog
    assert {b.op_id for b in net.msgs(Busy, dst="boss")} == set(range(6, 11))
    assert net.agents["boss"].pending == 5  # 1 in flight + 2 queued + 2 waiting accepted


def test_task_reassigned_to_the_same_worker_leaves_nothing_in_flight() -> None:
    """The agent used to replay its cached TaskResult with the OLD msg_id, so a task
    reassigned to the same worker (new msg_id) was never acked and resent forever."""
    net = started(("w", ("gpu",), ()), ("boss", (), ()), settings=QUIET)
    net.block = lambda src, dst, msg: type(msg) is TaskResult
    net.call("boss", "submit_task", 1, "gpu", b"job")
    net.advance(0.02)  # w ran the task; its result was lost
    net.coordinator.link_closed("w", net.now)  # w's link drops: task back to unassigned
    net.block = None
    worker = net.agents["w"]
    worker.start(net.now)  # w reconnects: old delivery resent + task assigned anew
    net._flush("w", worker)
    net.advance(0.5)
    task_ids = {d.msg_id for d in net.msgs(Deliver, dst="w")}
    assert len(task_ids) == 2  # two deliveries of the same task...
    assert {r.msg_id for r in net.msgs(TaskResult, src="w")} == task_ids  # ...each acked
    assert unique(net.agents["boss"]) == [1]
    settle(net)


def test_a_dead_agent_does_not_stall_broadcasts() -> None:
    """A failed agent's backlog used to fill up and make every broadcast Busy forever.
    Now its held deliveries are bounded by dropping the oldest (``stats.dropped``)."""
    settings = ProtocolSettings(
        heartbeat_interval=0.1,
        failure_after=0.3,
        ack_timeout=0.05,
        request_timeout=0.1,
        credit=2,
        max_backlog=4,
    )
    net = started(("dead", (), ()), ("a", (), ()), ("b", (), ()), settings=settings)
    net.block = lambda src, dst, msg: "dead" in (src, dst)  # crashed, never returns
    net.advance(1.0)
    dead = net.coordinator.sessions["dead"]
    assert not dead.alive
    for op_id in range(1, 21):
        net.call("a", "broadcast", op_id, b"hi")
    deadline = net.now + 30.0  # b's own window may answer Busy for a while: flow control
    while net.agents["a"].pending and net.now < deadline:
        net.advance(0.1)
    assert net.agents["a"].pending == 0
    net.advance(1.0)
    assert sorted(unique(net.agents["b"])) == list(range(1, 21))
    assert len(dead.backlog) == settings.max_backlog
    assert net.coordinator.stats.dropped == 20 - settings.max_backlog


def test_agent_recovers_after_a_partition_heals() -> None:
    """An agent declared failed used to stay failed forever once the partition healed."""
    net = started(("sub", (), ("t",)), ("pub", (), ()))
    net.block = lambda src, dst, msg: "sub" in (src, dst)
    net.advance(1.0)
    assert not net.coordinator.sessions["sub"].alive
    net.call("pub", "publish", 1, "t", b"during")  # held for the failed agent
    net.advance(0.1)
    net.block = None  # the partition heals; the agent process never stopped
    net.advance(0.3)  # its next heartbeat revives it
    assert net.coordinator.sessions["sub"].alive
    assert any("agent sub is back" in line for line in net.coordinator.log)
    net.call("pub", "publish", 2, "t", b"after")
    net.advance(0.5)
    assert sorted(unique(net.agents["sub"])) == [1, 2]
    settle(net)


def test_busy_does_not_multiply_retries() -> None:
    """Each resend used to arm a new retry AND each Busy a new busy_retry, neither
    cancelling the other, so the resends of one refused op grew exponentially."""
    settings = ProtocolSettings(
        failure_after=1000.0,
        ack_timeout=0.05,
        request_timeout=0.1,
        credit=1,
        max_backlog=1,
        busy_retry=0.01,
    )
    net = started(("slow", (), ("t",)), ("pub", (), ()), settings=settings)
    limit = 1.0 / 0.01 + 1.0 / 0.1 + 2  # one resend per busy_retry and request_timeout

    def resends() -> int:
        return sum(1 for _, src, _, m in net.log if src == "pub" and type(m) is Publish)

    def not_exploding() -> None:  # fail fast rather than hang if it regresses
        assert resends() <= 3 + limit

    net.checks.append(not_exploding)
    net.block = lambda src, dst, msg: src == "slow"
    for op_id in (1, 2, 3):  # 1 in flight, 2 queued, 3 refused Busy until slow acks
        net.call("pub", "publish", op_id, "t", b"m")
    net.advance(1.0)
    op3 = [m for m in net.msgs(Publish, src="pub") if m.op_id == 3]
    assert 2 <= len(op3) <= limit  # retried, but paced
    net.block = None
    settle(net)
    assert sorted(unique(net.agents["slow"])) == [1, 2, 3]


# --- regression: tasks parked behind a full worker backlog ---------------------------


def test_tasks_held_back_by_a_full_backlog_run_once_it_drains() -> None:
    """Tasks parked in ``unassigned`` used to wait forever once the backlog drained."""
    settings = ProtocolSettings(
        credit=1,
        max_backlog=2,
        failure_after=1000.0,
        ack_timeout=0.05,
        request_timeout=0.1,
        busy_retry=0.01,
    )
    net = started(("w", ("gpu",), ()), ("boss", (), ()), settings=settings)
    net.block = lambda src, dst, msg: src == "w"  # the worker is slow for a while
    for op_id in range(1, 11):
        net.call("boss", "submit_task", op_id, "gpu", b"job")
    net.advance(0.3)
    net.block = None  # it catches up
    settle(net)
    assert sorted(unique(net.agents["boss"])) == list(range(1, 11))


def test_after_its_link_closed_a_node_must_say_hello_before_anything_else() -> None:
    """``link_closed`` means whoever speaks for the node next must present the token."""
    coordinator = Coordinator(COORD, SETTINGS)
    coordinator.receive("a", Hello("a", SETTINGS.token), 0.0)
    coordinator.drain()
    coordinator.link_closed("a", 0.1)
    assert not coordinator.sessions["a"].alive
    coordinator.receive("a", Heartbeat(1), 0.2)
    assert coordinator.drain() == [("a", Error("a must say hello on its new link"))]
    assert coordinator.take_closures() == ["a"]
    assert not coordinator.sessions["a"].alive  # the heartbeat did not revive it
    coordinator.receive("a", Hello("a", SETTINGS.token), 0.3)
    assert coordinator.sessions["a"].alive
    coordinator.receive("a", Heartbeat(2), 0.4)
    assert coordinator.take_closures() == []
