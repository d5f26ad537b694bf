"""Property tests: random small workloads through a lossy, duplicating, reordering network.

Each example draws 2-6 agents (random capabilities and subscription patterns,
wildcards included), 1-40 operations of every kind, and network faults. After
everything has settled, every expected delivery must have been handled exactly
once, and everything else (redeliveries the receiver suppressed) must be
flagged ``duplicate``. Expected recipients are computed here by brute force
with ``protocol.topics.matches``, never by asking the coordinator, and memory
replies are checked against a ten-line reference model of the store. The
coordinator's credit and backlog bounds are checked after every step.

Variants: tiny backlogs so that requests are refused ``Busy`` and retried;
agents partitioned away for longer than ``failure_after`` (declared failed,
tasks reassigned, revived when the partition heals); a clean network (no
duplicates at all); and determinism (same seed, same run).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import Accepted, Deliver, DeliveryKind, MemReply, MemVerb, Message, TaskDone
from protocol.payload import checksum
from protocol.settings import ProtocolSettings
from protocol.topics import matches
from tests.cluster import COORD, Cluster, Faults

SETTLE_LIMIT = 30.0  # simulated seconds; with max_rto 0.2 s everything settles in a few
NO_BUSY = 4096  # a backlog no example can fill: nothing is refused Busy

FAST = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Op:
    op_id: int
    origin: str
    kind: str  # publish | direct | broadcast | task | memory
    target: str = ""  # topic, destination, capability or memory key
    payload: bytes = b""
    verb: int = 0
    expected_version: int = 0
    gap: float = 0.0  # seconds after the previous op


@dataclass(frozen=True)
class Scenario:
    agents: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]
    ops: tuple[Op, ...]
    faults: Faults
    credit: int
    seed: int
    max_backlog: int = NO_BUSY
    request_window: int = 64
    partitions: tuple[tuple[str, float, float], ...] = ()  # (node, start, duration)
    shed_after: float = 0.0  # 0: never shed


LEVELS = ("a", "b")
topics = st.lists(st.sampled_from(LEVELS), min_size=1, max_size=3).map(".".join)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from((*LEVELS, "*")), max_size=3))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    return ".".join(levels)


@st.composite
def scenarios(
    draw: st.DrawFn, faulty: bool = True, busy: bool = False, partitions: bool = False
) -> Scenario:
    n = draw(st.integers(2, 6))
    agents = tuple(
        (
            f"a{i}",
            tuple(draw(st.lists(st.sampled_from(("c1", "c2")), unique=True, max_size=2))),
            tuple(draw(st.lists(patterns(), max_size=3))),
        )
        for i in range(n)
    )
    names = [name for name, _, _ in agents]
    # topics built from the subscriptions, so that edge cases such as "a.#" vs "a" come up
    near = sorted(
        {
            ".".join("b" if level == "*" else level for level in p.split(".") if level != "#")
            or "a"
            for _, _, subs in agents
            for p in subs
        }
    )
    publish_topics = topics | st.sampled_from(near) if near else topics
    capabilities = sorted({cap for _, caps, _ in agents for cap in caps})
    kinds = ["publish", "direct", "broadcast", "memory"]
    if capabilities:
        kinds.append("task")
    ops = []
    for op_id in range(1, draw(st.integers(1, 40)) + 1):
        kind = draw(st.sampled_from(kinds))
        origin = draw(st.sampled_from(names))
        payload = draw(st.binary(max_size=16))
        gap = draw(
            st.sampled_from((0.0, 0.0, 0.0, 0.001) if busy else (0.0, 0.0, 0.001, 0.01, 0.05))
        )
        op = Op(op_id, origin, kind, payload=payload, gap=gap)
        if kind == "publish":
            op = Op(op_id, origin, kind, draw(publish_topics), payload, gap=gap)
        elif kind == "direct":
            op = Op(op_id, origin, kind, draw(st.sampled_from([*names, "ghost"])), payload, gap=gap)
        elif kind == "task":
            op = Op(op_id, origin, kind, draw(st.sampled_from(capabilities)), payload, gap=gap)
        elif kind == "memory":
            verb = draw(st.sampled_from(list(MemVerb)))
            key = draw(st.sampled_from(("k0", "k1", "k2")))
            expected = draw(st.integers(0, 3))
            op = Op(op_id, origin, kind, key, payload, int(verb), expected, gap)
        ops.append(op)
    if faulty:
        spread = draw(st.sampled_from((0.0, 0.001, 0.005, 0.02)))
        faults = Faults(
            drop=draw(st.floats(0.0, 0.3)),
            duplicate=draw(st.floats(0.0, 0.3)),
            min_delay=0.0001,
            max_delay=0.0001 + spread,
        )
    else:
        faults = Faults()
    credit = draw(st.integers(1, 2 if busy else 8))
    seed = draw(st.integers(0, 2**32))
    window = draw(st.sampled_from((1, 2, 4, 64)))
    backlog = draw(st.integers(1, 4)) if busy else NO_BUSY
    cuts: list[tuple[str, float, float]] = []
    if partitions:
        for _ in range(draw(st.integers(1, 2))):
            node = draw(st.sampled_from(names))
            cuts.append((node, draw(st.floats(0.0, 0.3)), draw(st.floats(0.1, 1.0))))
    shed_after = draw(st.sampled_from((0.0, 0.0, 0.005, 0.03, 0.2)))
    return Scenario(
        agents, tuple(ops), faults, credit, seed, backlog, window, tuple(cuts), shed_after
    )


def protocol_settings(scenario: Scenario) -> ProtocolSettings:
    return ProtocolSettings(
        heartbeat_interval=0.05,
        # loss alone never declares anyone failed; a partition does
        failure_after=0.3 if scenario.partitions else 100.0,
        ack_timeout=0.02,
        request_timeout=0.05,
        credit=scenario.credit,
        max_backlog=scenario.max_backlog,
        busy_retry=0.01,
        max_busy_backoff=0.1,
        request_window=scenario.request_window,
        max_rto=0.2,  # retries back off, but not so far that settling takes minutes
        delay_target=0.01,
        shed_after=scenario.shed_after,
    )


class CheckedCluster(Cluster):
    """Records every send and checks the coordinator's flow-control bounds after each step."""

    def __init__(self, settings: ProtocolSettings, faults: Faults, seed: int) -> None:
        super().__init__(settings, faults, seed)
        self.log: list[tuple[str, str, Message]] = []
        self.steps = 0
        self.cuts: list[tuple[str, float, float]] = []  # (node, from, until): isolated

    def _send(self, src: str, dst: str, msg: Message) -> None:
        self.log.append((src, dst, msg))
        for node, start, end in self.cuts:
            if node in (src, dst) and start <= self.now < end:
                return
        super()._send(src, dst, msg)

    def _flush(self, src: str, node: Coordinator | Agent) -> None:
        super()._flush(src, node)
        self.steps += 1
        credit, limit = self.settings.credit, self.settings.max_backlog
        for session in self.coordinator.sessions.values():
            assert len(session.inflight) <= credit, (session.node_id, session.inflight)
            assert len(session.backlog) <= limit, session.node_id

    def quiet(self) -> bool:
        coordinator = self.coordinator
        return (
            all(agent.pending == 0 for agent in self.agents.values())
            and not coordinator.tasks
            and not coordinator.unassigned
            and not coordinator._done_pending
            and all(
                s.alive and not s.inflight and not s.backlog for s in coordinator.sessions.values()
            )
        )


def issue(net: Cluster, op: Op) -> None:
    """``op``'s origin sends it now."""
    agent, now = net.agents[op.origin], net.now
    if op.kind == "publish":
        agent.publish(op.op_id, op.target, op.payload, now)
    elif op.kind == "direct":
        agent.direct(op.op_id, op.target, op.payload, now)
    elif op.kind == "broadcast":
        agent.broadcast(op.op_id, op.payload, now)
    elif op.kind == "task":
        agent.submit_task(op.op_id, op.target, op.payload, now)
    else:
        agent.memory(op.op_id, op.verb, "ns", op.target, op.payload, now, op.expected_version)
    net._flush(op.origin, agent)


def run(scenario: Scenario) -> CheckedCluster:
    net = CheckedCluster(protocol_settings(scenario), scenario.faults, scenario.seed)
    for name, caps, subs in scenario.agents:
        net.add_agent(name, caps, subs)
    while not all(agent.registered for agent in net.agents.values()):
        assert net.now < 10.0, "registration did not complete"
        net.run_until(net.now + 0.05)
    net.cuts = [
        (node, net.now + start, net.now + start + span) for node, start, span in scenario.partitions
    ]
    for op in scenario.ops:
        net.run_until(net.now + op.gap)
        issue(net, op)
    net.run_until(max([net.now] + [end for _, _, end in net.cuts]))  # every partition heals
    while not net.quiet():
        assert net.now < SETTLE_LIMIT, "the cluster did not settle"
        net.run_until(net.now + 0.25)
    net.run_until(net.now + 0.5)  # stray duplicates still on the wire arrive too
    # with loss and failure_after 0.3 s (partition runs), six heartbeats lost in a row
    # can fail a live agent for a moment; its next heartbeat revives it
    while not net.quiet():
        assert net.now < SETTLE_LIMIT, "the cluster did not settle again"
        net.run_until(net.now + 0.05)
    return net


def expected_recipients(scenario: Scenario, op: Op) -> list[str]:
    """Who must complete ``op``: brute force over the agent specs."""
    names = [name for name, _, _ in scenario.agents]
    if op.kind == "publish":
        return [n for n, _, subs in scenario.agents if any(matches(p, op.target) for p in subs)]
    if op.kind == "direct":
        return [op.target] if op.target in names else []
    if op.kind == "broadcast":
        return [n for n in names if n != op.origin]
    return [op.origin]  # a task result or a memory reply comes back to the origin


def reference_memory(applied: list[Op]) -> dict[int, MemReply]:
    """The replies a correct store gives for ``applied``, in that order."""
    data: dict[str, tuple[int, bytes]] = {}
    replies = {}
    for op in applied:
        version, value = data.get(op.target, (0, b""))
        if op.verb == MemVerb.GET:
            reply = MemReply(op.op_id, version > 0, version, value, "" if version else "absent")
        elif op.verb == MemVerb.PUT or (op.verb == MemVerb.CAS and op.expected_version == version):
            data[op.target] = (version + 1, op.payload)
            reply = MemReply(op.op_id, True, version + 1, b"")
        elif op.verb == MemVerb.CAS:
            reply = MemReply(op.op_id, False, version, b"", "version mismatch")
        elif version:
            del data[op.target]
            reply = MemReply(op.op_id, True, version, b"")
        else:
            reply = MemReply(op.op_id, False, 0, b"", "absent")
        replies[op.op_id] = reply
    return replies


def check(scenario: Scenario, net: CheckedCluster, failures: bool = False) -> None:
    ops = {op.op_id: op for op in scenario.ops}

    # an op is shed only if never accepted: then nobody handles it and it is never answered
    # (one shed and then accepted after all, through a stray copy, counts as accepted)
    answered = {c.op_id for agent in net.agents.values() for c in agent.completions}
    accepted = {op_id for agent in net.agents.values() for op_id in agent.accepted}
    shed = {op_id for agent in net.agents.values() for op_id in agent.shed}
    shed -= accepted | {op.op_id for op in scenario.ops if op.kind == "memory"} & answered
    if not scenario.shed_after:
        assert not shed
    for src, _, msg in net.log:
        if src == COORD and type(msg) in (Accepted, MemReply, Deliver, TaskDone):
            assert msg.op_id not in shed, msg

    # every expected (op, recipient) of an op not shed handled exactly once, nothing else
    expected = Counter(
        (op.op_id, node)
        for op in scenario.ops
        if op.op_id not in shed
        for node in expected_recipients(scenario, op)
    )
    completions = [c for agent in net.agents.values() for c in agent.completions]
    handled = Counter((c.op_id, c.node) for c in completions if not c.duplicate)
    assert handled == expected
    assert all(c.intact for c in completions)
    for agent in net.agents.values():  # the first completion of a key is the real one
        seen: set[int] = set()
        for c in agent.completions:
            assert c.duplicate == (c.op_id in seen), c
            seen.add(c.op_id)

    # the origin was told how many recipients were routed, the same on every retry
    for src, dst, msg in net.log:
        if type(msg) is Accepted and src == COORD:
            op = ops[msg.op_id]
            assert dst == op.origin
            want = 1 if op.kind == "task" else len(expected_recipients(scenario, op))
            assert msg.recipients == want, (op, msg)

    # an operation is routed once: one msg_id, to its expected recipients only
    msg_ids: dict[int, set[int]] = {}
    for src, dst, msg in net.log:
        if type(msg) is Deliver and msg.kind != DeliveryKind.TASK:
            msg_ids.setdefault(msg.op_id, set()).add(msg.msg_id)
            assert src == COORD and dst in expected_recipients(scenario, ops[msg.op_id])
    assert all(len(ids) == 1 for ids in msg_ids.values()), msg_ids

    # a task's result is the echo of its payload, reported by a capable worker
    capable = {name: caps for name, caps, _ in scenario.agents}
    for _, dst, msg in net.log:
        if type(msg) is TaskDone:
            op = ops[msg.op_id]
            assert (op.kind, dst) == ("task", op.origin)
            assert msg.payload == op.payload and msg.checksum == checksum(op.payload)
            assert op.target in capable[msg.worker]

    # memory: one distinct reply per write (applied once), matching a reference store
    # that applies the ops in the order the coordinator first answered them (a
    # retried GET is not remembered: it reads again, so only its first answer counts)
    first: dict[int, MemReply] = {}
    for src, _, msg in net.log:
        if type(msg) is MemReply and src == COORD:
            kept = first.setdefault(msg.op_id, msg)
            if ops[msg.op_id].verb != MemVerb.GET:
                assert kept == msg, "a retried write was re-applied"
    memory_ops = {op.op_id for op in scenario.ops if op.kind == "memory"} - shed
    assert set(first) == memory_ops
    assert first == reference_memory([ops[op_id] for op_id in first])

    # nothing left in flight, no agent declared failed
    assert net.quiet()
    if not failures:
        assert net.coordinator.stats.failures_detected == 0
    assert all(session.alive for session in net.coordinator.sessions.values())


@FAST
@given(scenarios())
def test_lossy_network_every_delivery_exactly_once(scenario: Scenario) -> None:
    check(scenario, run(scenario))


@settings(FAST, max_examples=60)
@given(scenarios(busy=True))
def test_busy_refusals_lose_nothing(scenario: Scenario) -> None:
    """Tiny backlogs: publishes, directs and broadcasts are refused Busy and retried."""
    net = run(scenario)
    check(scenario, net)
    assert all(len(s.backlog) <= scenario.max_backlog for s in net.coordinator.sessions.values())


@settings(FAST, max_examples=40)
@given(scenarios(partitions=True))
def test_partitioned_agents_are_failed_revived_and_lose_nothing(scenario: Scenario) -> None:
    """Agents cut off for longer than failure_after are declared failed, their tasks
    reassigned; when the partition heals they are revived and get what was held."""
    net = run(scenario)
    check(scenario, net, failures=True)


@settings(FAST, max_examples=30)
@given(scenarios(faulty=False))
def test_clean_network_has_no_duplicates_and_no_redelivery(scenario: Scenario) -> None:
    net = run(scenario)
    check(scenario, net)
    assert not any(c.duplicate for agent in net.agents.values() for c in agent.completions)
    assert net.coordinator.stats.redelivered == 0
    assert net.coordinator.stats.busy == 0


@settings(FAST, max_examples=15)
@given(scenarios())
def test_same_seed_same_run(scenario: Scenario) -> None:
    first, second = run(scenario), run(scenario)
    assert [a.completions for a in first.agents.values()] == [
        a.completions for a in second.agents.values()
    ]
    assert first.log == second.log
