"""Overload in the pure core: a coordinator that serves one message at a time.

``ServedCluster`` gives the in-memory cluster's coordinator a service time:
every message to it joins one FIFO queue (control and data alike, as on a
real socket) and is handled ``service`` seconds after the one before. The
agents are offered many times what that server can carry, and the tests
check what admission control promises (``protocol.requests``,
``protocol.bus``): the queue stays short, nobody alive is declared failed,
nothing is redelivered in a storm, shed ops are never delivered, every
accepted op is delivered exactly once, and goodput holds as the offered
load grows. Everything is on the cluster's simulated clock.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.messages import Message
from protocol.settings import ProtocolSettings
from tests.cluster import COORD, Cluster

SETTINGS = ProtocolSettings(  # timeouts above the queue 4 agents x 64 requests can build
    heartbeat_interval=0.1,
    failure_after=0.6,
    ack_timeout=0.2,
    request_timeout=0.2,
    busy_retry=0.005,
    max_busy_backoff=0.05,
    max_rto=0.2,
    delay_target=0.01,
    shed_after=0.05,
)
SERVICE = 0.0001  # seconds per coordinator message: 10,000 messages/s
HOP = 0.0002


class ServedCluster(Cluster):
    """A cluster whose coordinator is a single FIFO server of ``service`` seconds."""

    def __init__(self, settings: ProtocolSettings, service: float, seed: int = 0) -> None:
        super().__init__(settings, seed=seed)
        self.service = service
        self.busy_until = 0.0
        self.busy_time = 0.0
        self.peak_wait = 0.0  # the longest a message queued before its service began

    def _send(self, src: str, dst: str, msg: Message) -> None:
        if dst != COORD:
            super()._send(src, dst, msg)
            return
        self.sent += 1
        arrival = self.now + HOP
        start = max(arrival, self.busy_until)
        self.busy_until = start + self.service
        self.busy_time += self.service
        self.peak_wait = max(self.peak_wait, start - arrival)
        heapq.heappush(self._wire, (self.busy_until, next(self._seq), src, dst, msg))


@dataclass
class Outcome:
    net: ServedCluster
    issued: int
    delivered: Counter[int]  # op id -> unique deliveries
    accepted: set[int]
    shed: set[int]
    duration: float


AGENTS = ("a0", "a1", "a2", "a3")


def overload(rate: float, duration: float = 0.5, service: float = SERVICE) -> Outcome:
    """Every agent publishes to topic ``t`` (all four follow it) at ``rate`` ops/s in all."""
    net = ServedCluster(SETTINGS, service)
    for name in AGENTS:
        net.add_agent(name, (), ("t",))
    net.run_until(0.05)
    assert all(agent.registered for agent in net.agents.values())
    start = net.now
    gap = 1.0 / rate
    count = int(duration * rate)
    for op_id in range(1, count + 1):
        net.run_until(start + op_id * gap)
        origin = AGENTS[op_id % len(AGENTS)]
        net.issue(origin, op_id, "publish", "t", b"x" * 16)
    net.run_until(start + duration + 1.0)  # the accepted backlog drains
    delivered: Counter[int] = Counter()
    for agent in net.agents.values():
        for c in agent.completions:
            if not c.duplicate:
                delivered[c.op_id] += 1
    accepted = {op_id for agent in net.agents.values() for op_id in agent.accepted}
    shed = {op_id for agent in net.agents.values() for op_id in agent.shed} - accepted
    return Outcome(net, count, delivered, accepted, shed, duration)


def goodput(outcome: Outcome) -> float:
    """Deliveries of accepted ops per second of offered load."""
    return sum(outcome.delivered[op_id] for op_id in outcome.accepted) / outcome.duration


def test_ten_times_the_service_rate_keeps_queues_short_and_nobody_failed() -> None:
    # each publish costs the coordinator about 1 + 4 ack messages: ~2,000 ops/s is capacity
    out = overload(rate=20_000)
    coordinator = out.net.coordinator
    assert out.shed, "10x the capacity must shed"
    assert out.accepted and out.accepted | out.shed == set(range(1, out.issued + 1))
    assert not out.accepted & out.shed
    assert all(out.delivered[op_id] == 0 for op_id in out.shed), "a shed op was delivered"
    assert all(out.delivered[op_id] == 4 for op_id in out.accepted), "accepted, not delivered"
    assert coordinator.stats.failures_detected == 0, "a live agent was declared failed"
    assert all(session.alive for session in coordinator.sessions.values())
    assert coordinator.stats.redelivered <= 0.01 * sum(out.delivered.values())
    # the queue in front of the coordinator stays well under failure_after
    assert out.net.peak_wait < SETTINGS.failure_after / 3, out.net.peak_wait
    assert all(len(s.backlog) <= SETTINGS.max_backlog for s in coordinator.sessions.values())


def test_goodput_holds_from_two_to_ten_times_capacity() -> None:
    two, ten = overload(rate=4_000), overload(rate=20_000)
    assert two.shed and ten.shed
    assert goodput(ten) >= 0.8 * goodput(two), (goodput(two), goodput(ten))
    # and the server stays busy with work, not with refusals
    assert ten.net.coordinator.stats.busy <= ten.issued


def test_without_shedding_the_excess_waits_in_the_agents() -> None:
    """``shed_after: 0`` keeps the old behaviour: nothing is shed, the queue is local."""
    net = ServedCluster(ProtocolSettings(**{**_fields(SETTINGS), "shed_after": 0.0}), SERVICE)
    for name in AGENTS:
        net.add_agent(name, (), ("t",))
    net.run_until(0.05)
    for op_id in range(1, 2001):
        net.run_until(0.05 + op_id / 20_000)
        net.issue(AGENTS[op_id % 4], op_id, "publish", "t", b"x")
    assert sum(agent.pending for agent in net.agents.values()) > 0.5 * 2000
    assert not any(agent.shed for agent in net.agents.values())
    assert net.coordinator.stats.failures_detected == 0


def _fields(s: ProtocolSettings) -> dict[str, object]:
    return {name: getattr(s, name) for name in s.__dataclass_fields__}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from((500.0, 2_000.0, 8_000.0, 30_000.0)),
    service=st.sampled_from((0.00005, 0.0001, 0.0003)),
)
def test_any_offered_load_every_accepted_op_completes_exactly_once(
    rate: float, service: float
) -> None:
    out = overload(rate=rate, duration=0.2, service=service)
    assert out.accepted | out.shed == set(range(1, out.issued + 1))
    for op_id in out.accepted:
        assert out.delivered[op_id] == 4
    for op_id in out.shed:
        assert out.delivered[op_id] == 0
    assert out.net.coordinator.stats.failures_detected == 0
