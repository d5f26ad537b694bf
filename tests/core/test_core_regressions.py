"""Regression tests: core bugs found by the example and property tests, now fixed.

Each test's docstring or section says what used to break.
"""

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import (
    Accepted,
    Busy,
    Deliver,
    Error,
    Heartbeat,
    Hello,
    Publish,
    Reject,
    TaskResult,
)
from protocol.settings import ProtocolSettings
from tests.cluster import COORD
from tests.core_net import QUIET, SETTINGS, Net, settle, started, unique

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
        credit=1,
        max_backlog=2,
        failure_after=1000.0,
        ack_timeout=0.05,
        busy_retry=0.01,
        shed_after=0.0,  # never shed: refused tasks wait for the worker
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
    Its held deliveries are bounded by ``Busy`` (nothing accepted is dropped) until
    ``session_expiry``, when they are dropped (``stats.dropped``) and it stops
    being a recipient."""
    settings = ProtocolSettings(
        heartbeat_interval=0.1,
        failure_after=0.3,
        ack_timeout=0.05,
        request_timeout=0.1,
        credit=2,
        max_backlog=4,
        session_expiry=2.0,
        shed_after=0.0,  # never shed: refused broadcasts wait for the expiry
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
    dropped = net.coordinator.stats.dropped
    assert 0 < dropped <= 20  # only what was held for it when it expired
    assert any(e.kind == "expired" and e.node == "dead" for e in net.coordinator.events)
    assert net.now - 1.0 >= settings.session_expiry  # nothing was dropped before expiry


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
        shed_after=0.0,  # never shed: the refused op is retried until slow acks
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
        shed_after=0.0,  # never shed: the tasks wait for the worker
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
