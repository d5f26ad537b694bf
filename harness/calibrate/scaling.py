"""Two calibration figures about how cost scales: fan-out and batching.

(f) **Cost per recipient.** A coordinator's cost for one ``Publish`` grows
    with the number of subscribers it fans out to, so one mean over a mix of
    fan-outs mispredicts every fan-out but the mix's. A fresh cluster has
    topics with 1, 2, 5, 10, 20, 50 and 100 subscribers; each timed sample
    is ``Coordinator.receive(<Publish>) + drain()`` for one of them, taken
    round-robin over the fan-outs so drift affects them alike. A
    least-squares line over the per-fan-out medians gives the cost per
    ``Deliver`` produced (the slope). The model charges it for every
    ``Deliver`` a coordinator job emits, and ``harness.calibrate.measure`` takes it
    out of each timed coordinator sample, so it is not counted twice.
(g) **Batching.** The real drivers handle every message a node has queued
    and then drain its output once (``real.inproc.hub.Mailbox.process``, and
    each read of the tcp server and workers). A batch of ``k`` messages
    costs ``k`` receives and one drain. Batches of 1, 2, 4, 8 and 16 are
    timed (``Deliver`` at an agent, ``Publish`` with one subscriber at the
    coordinator), and a line over the medians gives the per-batch part (the
    intercept). That is what a message saves when it joins a batch that is
    already queued. The model applies that saving to a message that reaches
    a node whose previous job has not started yet.

Deliveries are fed back (``Ack``, ``Accepted``) without timing them, so the
coordinator's credit and in-flight tables stay in steady state.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence

from protocol.agent import Agent
from protocol.coordinator import Coordinator
from protocol.messages import Message
from protocol.nodes import COORDINATOR_ID as COORD
from protocol.payload import checksum, make_payload
from protocol.settings import ProtocolSettings

FANOUTS = (1, 2, 5, 10, 20, 50, 100)
BATCHES = (1, 2, 4, 8, 16)
PUBLISHER = "agent-pub"
TICK = 1e-6  # simulated seconds per sample: no heartbeat or timeout comes due


class FanoutCluster:
    """A coordinator, a publisher and 100 subscribers on topics ``fan.<k>``."""

    def __init__(self) -> None:
        settings = ProtocolSettings()
        self.coordinator = Coordinator(COORD, settings)
        self.agents: dict[str, Agent] = {PUBLISHER: Agent(PUBLISHER, COORD, settings)}
        for index in range(max(FANOUTS)):
            node = f"agent-{index:04d}"
            topics = tuple(f"fan.{k}" for k in FANOUTS if index < k)
            self.agents[node] = Agent(node, COORD, settings, (), topics)
        self.now = 0.0
        self.op_id = 0
        self.payload = make_payload(0, 64)
        self.wire: deque[tuple[str, str, Message]] = deque()
        for node, agent in self.agents.items():
            agent.start(self.now)
            self.wire.extend((node, dst, msg) for dst, msg in agent.drain())
        self.pump()

    def publish(self, fanout: int) -> tuple[str, Message]:
        """The publisher's next ``Publish`` to ``fan.<fanout>``, not yet delivered."""
        self.op_id += 1
        self.now += TICK
        publisher = self.agents[PUBLISHER]
        publisher.publish(self.op_id, f"fan.{fanout}", self.payload, self.now)
        ((_, msg),) = publisher.drain()
        return PUBLISHER, msg

    def job(self, node_id: str, batch: Sequence[tuple[str, Message]]) -> int:
        """Time ``receive`` of each message of ``batch`` at ``node_id`` plus one ``drain``.

        What the drain emits is queued for ``pump``; the return is nanoseconds.
        """
        node = self.coordinator if node_id == COORD else self.agents[node_id]
        start = time.perf_counter_ns()
        for src, msg in batch:
            node.receive(src, msg, self.now)
        out = node.drain()
        elapsed = time.perf_counter_ns() - start
        self.wire.extend((node_id, dst, msg) for dst, msg in out)
        return elapsed

    def pump(
        self, hold: Callable[[str, Message], bool] = lambda dst, msg: False
    ) -> list[tuple[str, str, Message]]:
        """Deliver everything in flight, untimed; return what ``hold`` keeps back."""
        held: list[tuple[str, str, Message]] = []
        while self.wire:
            src, dst, msg = self.wire.popleft()
            if hold(dst, msg):
                held.append((src, dst, msg))
                continue
            node = self.coordinator if dst == COORD else self.agents.get(dst)
            if node is None:
                continue
            node.receive(src, msg, self.now)
            self.wire.extend((dst, d, m) for d, m in node.drain())
        return held


def measure_fanout(samples: int = 2000) -> tuple[float, float, str]:
    """(seconds per recipient, intercept, method) for a coordinator ``Publish``."""
    cluster = FanoutCluster()
    timings: dict[int, list[int]] = {k: [] for k in FANOUTS}
    for index in range(samples * len(FANOUTS)):
        fanout = FANOUTS[index % len(FANOUTS)]
        timings[fanout].append(cluster.job(COORD, [cluster.publish(fanout)]))
        cluster.pump()
    medians = [statistics.median(timings[k]) / 1e9 for k in FANOUTS]
    slope, intercept = statistics.linear_regression([float(k) for k in FANOUTS], medians)
    method = (
        f"median of {samples} timed Coordinator.receive(<Publish>) + drain() per fan-out "
        f"({', '.join(map(str, FANOUTS))} subscribers, round-robin), then a least-squares "
        f"line: {slope * 1e9:.0f} ns per recipient, intercept {intercept * 1e6:.2f} us"
    )
    return max(slope, 0.0), intercept, method


def measure_batching(samples: int = 1000) -> tuple[dict[str, float], str]:
    """Per role, what a message saves by joining a queued batch (the drain's share)."""
    cluster = FanoutCluster()
    subscriber = "agent-0000"  # the one subscriber of fan.1
    agent_times: dict[int, list[int]] = {k: [] for k in BATCHES}
    coord_times: dict[int, list[int]] = {k: [] for k in BATCHES}
    for index in range(samples * len(BATCHES)):
        size = BATCHES[index % len(BATCHES)]
        publishes = [cluster.publish(1) for _ in range(size)]
        coord_times[size].append(cluster.job(COORD, publishes))
        held = cluster.pump(lambda dst, msg: dst == subscriber)
        batch = [(src, msg) for src, _, msg in held]
        agent_times[size].append(cluster.job(subscriber, batch))
        cluster.pump()
    saving = {"agent": _intercept(agent_times), "coordinator": _intercept(coord_times)}
    method = (
        f"median of {samples} timed batches of {', '.join(map(str, BATCHES))} messages "
        "(each receive(), then one drain()): Deliver at an agent, Publish to one "
        "subscriber at the coordinator; the intercept of a least-squares line over batch "
        "size is the per-batch cost a message saves by joining a queued batch: "
        f"agent {saving['agent'] * 1e6:.2f} us, coordinator {saving['coordinator'] * 1e6:.2f} us"
    )
    return saving, method


PAYLOAD_SIZES = (64, 1024, 4096, 16384, 65536)


def measure_payload(repeats: int = 300) -> tuple[float, float, str]:
    """Seconds per payload byte at the sender (build + CRC-32) and at a receiver (CRC-32)."""
    send: list[float] = []
    receive: list[float] = []
    clock = time.perf_counter_ns
    for size in PAYLOAD_SIZES:
        sent, checked = [], []
        for op_id in range(repeats):
            start = clock()
            payload = make_payload(op_id, size)
            checksum(payload)
            middle = clock()
            checksum(payload)
            sent.append(middle - start)
            checked.append(clock() - middle)
        send.append(statistics.median(sent) / 1e9)
        receive.append(statistics.median(checked) / 1e9)
    sizes = [float(s) for s in PAYLOAD_SIZES]
    issue_slope, _ = statistics.linear_regression(sizes, send)
    receive_slope, _ = statistics.linear_regression(sizes, receive)
    method = (
        f"median of {repeats} timed make_payload() + checksum() (the sender) and checksum() "
        f"(a receiver) per size ({', '.join(map(str, PAYLOAD_SIZES))} B), then least-squares "
        f"lines: {issue_slope * 1e9:.3f} ns/B to issue, {receive_slope * 1e9:.3f} ns/B to verify"
    )
    return max(issue_slope, 0.0), max(receive_slope, 0.0), method


def _intercept(timings: dict[int, list[int]]) -> float:
    sizes = sorted(timings)
    medians = [statistics.median(timings[k]) / 1e9 for k in sizes]
    _, intercept = statistics.linear_regression([float(k) for k in sizes], medians)
    return max(intercept, 0.0)
