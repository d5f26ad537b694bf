"""Measuring what a Raft replica's own work costs: the model's figure (k).

A replicated coordinator does more than a coordinator: the leader turns each
batch of its coordinator's journals into a log entry (``encode_batches``),
every replica decodes the appends it receives, applies each committed entry to
its ``DurableState`` (``decode_batch``: the memory rows, the bus entries with
their ``Deliver`` bodies, the answers) and encodes what it sends. The model
charges a replica's messages as a coordinator's (``service``) and its commits as
time blocked on the disk (figure (j)); this figure is the CPU of the rest.

``measure_replica_costs`` runs a warm in-memory group of three replicas
(``Replica(wire=True)``, their storage a no-op: SQLite's own cost is figure (j))
with agents that subscribe to rooms, driven by a mix of memory writes and reads
and publishes, every message passed synchronously through a FIFO. The replicas
flush (``Replica.persist`` then ``drain``, as the real server's loop turn does)
after a random number of deliveries, 1 to ``MAX_GROUP``, so flushes of every size
are seen. Timed with ``perf_counter_ns`` (the timer's own cost taken out):

- every ``Consensus`` frame a replica receives (``receive``), by the bytes of its
  body: a fixed part and a cost per byte (least squares);
- every flush, by the bytes it encoded and applied (the entries a leader
  proposed, and the entries any replica applied): a fixed part and a cost per
  byte.

The fixed parts are kept as distributions (the residuals of the line, floored
at 0), the slopes as numbers. The first fifth of the workload is a warm-up.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass

from protocol.agent import Agent
from protocol.consensus.messages import Ready
from protocol.consensus.replica import Replica
from protocol.messages import Consensus, MemVerb, Message
from protocol.plan import Operation, OpKind
from protocol.settings import ProtocolSettings
from protocol.workload import issue
from sim.distribution import Distribution

REPLICAS = ("r1", "r2", "r3")
ROOMS = 10
MAX_GROUP = 32  # deliveries between two flushes of one replica, at most
FREEZE_EVERY = 1000


@dataclass(frozen=True)
class ReplicaCosts:
    """Figure (k): a replica's CPU for consensus frames and for its flushes."""

    receive: Distribution  # fixed part of receiving one Consensus frame
    receive_per_byte: float
    flush: Distribution  # fixed part of one flush (propose, apply, encode, drain)
    flush_per_byte: float
    method: str


def timer_overhead_ns(reads: int = 20_000) -> int:
    clock = time.perf_counter_ns
    gaps = []
    for _ in range(reads):
        start = clock()
        gaps.append(clock() - start)
    return int(statistics.median(gaps))


class ReplicaGroup:
    """Three replicas and their agents on a synchronous FIFO; replicas' work timed."""

    def __init__(self, agents: int, seed: int, overhead_ns: int) -> None:
        self.rng = random.Random(seed)
        self.settings = ProtocolSettings()
        self.replicas = {
            node: Replica(node, REPLICAS, self.settings, tick=0.05, wire=True) for node in REPLICAS
        }
        self.ids = [f"agent-{i:04d}" for i in range(agents)]
        self.agents = {
            node: Agent(
                node, REPLICAS[0], self.settings, (), (f"room.{i % ROOMS}.#",), "", REPLICAS[1:]
            )
            for i, node in enumerate(self.ids)
        }
        self.overhead = overhead_ns
        self.now = 0.0
        self.recording = False
        self.receives: list[tuple[int, float]] = []  # (body bytes, seconds)
        self.flushes: list[tuple[int, float]] = []  # (bytes encoded and applied, seconds)
        self._wire: deque[tuple[str, str, Message]] = deque()
        self._due = dict.fromkeys(REPLICAS, 1)  # deliveries until each one's next flush
        self._bytes = 0
        self._next_op = 1

    def _seconds(self, elapsed_ns: int) -> float:
        return max(elapsed_ns - self.overhead, 0) / 1e9

    def _save(self, ready: Ready) -> None:
        self._bytes += ready.stored_bytes + sum(len(e.data) for e in ready.committed)

    def flush(self, node: str) -> None:
        replica = self.replicas[node]
        self._bytes = 0
        start = time.perf_counter_ns()
        replica.persist(self._save, self.now)
        out = replica.drain()
        elapsed = time.perf_counter_ns() - start
        if self.recording and (out or self._bytes):
            self.flushes.append((self._bytes, self._seconds(elapsed)))
        self._wire.extend((node, dst, msg) for dst, msg in out)
        self._due[node] = self.rng.randint(1, MAX_GROUP)

    def pump(self) -> None:
        """Deliver everything in flight; flush replicas when their group is full, and
        all of them once the wire is empty, until nothing moves."""
        clock = time.perf_counter_ns
        while True:
            while self._wire:
                src, dst, msg = self._wire.popleft()
                replica = self.replicas.get(dst)
                if replica is None:
                    agent = self.agents.get(dst)
                    if agent is not None:
                        agent.receive(src, msg, self.now)
                        self._wire.extend((dst, d, m) for d, m in agent.drain())
                    continue
                start = clock()
                replica.receive(src, msg, self.now)
                elapsed = clock() - start
                if self.recording and type(msg) is Consensus:
                    self.receives.append((len(msg.body), self._seconds(elapsed)))
                self._due[dst] -= 1
                if self._due[dst] <= 0:
                    self.flush(dst)
            for node in REPLICAS:
                self.flush(node)
            if not self._wire:
                return

    def start(self) -> None:
        for replica in self.replicas.values():
            replica.start(self.now)
        self.replicas[REPLICAS[0]].raft.campaign()
        self.pump()
        for node, agent in self.agents.items():
            agent.start(self.now)
            self._wire.extend((node, dst, msg) for dst, msg in agent.drain())
        self.pump()
        if not self.replicas[REPLICAS[0]].serving:
            raise RuntimeError("the first replica was not elected")

    def run_op(self) -> None:
        rng, op_id = self.rng, self._next_op
        self._next_op += 1
        origin = rng.choice(self.ids)
        if rng.random() < 0.5:
            topic = f"room.{rng.randrange(ROOMS)}.t"
            op = Operation(op_id, self.now, OpKind.PUBLISH, origin, topic, 256, 1)
        else:
            verb = rng.choice((MemVerb.GET, MemVerb.PUT, MemVerb.PUT, MemVerb.CAS))
            target = f"ns{rng.randrange(4)}/key{rng.randrange(200)}"
            op = Operation(op_id, self.now, OpKind.MEMORY, origin, target, 256, 1, int(verb))
        agent = self.agents[origin]
        issue(agent, op, self.now)
        self._wire.extend((origin, dst, msg) for dst, msg in agent.drain())
        self.now += 0.0002
        for node, replica in self.replicas.items():
            deadline = replica.next_deadline()
            if deadline is not None and deadline <= self.now:
                replica.on_timer(self.now)
                self._wire.extend((node, dst, msg) for dst, msg in replica.drain())
        for node, agent in self.agents.items():
            deadline = agent.next_deadline()
            if deadline is not None and deadline <= self.now:
                agent.on_timer(self.now)
                self._wire.extend((node, dst, msg) for dst, msg in agent.drain())
        if op_id % 4 == 0:
            self.pump()
        if op_id % 100 == 0:
            for each in self.agents.values():
                each.completions.clear()


def _line(points: list[tuple[int, float]]) -> tuple[list[float], float]:
    """Least squares ``seconds = fixed + slope * bytes``: the fixed parts (each point's
    residual plus the intercept, floored at 0) and the slope (0 if negative)."""
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    slope = max(slope, 0.0)
    return [max(y - slope * x, 0.0) for x, y in zip(xs, ys, strict=True)], slope


def measure_replica_costs(ops: int = 20_000, agents: int = 20, seed: int = 7) -> ReplicaCosts:
    """Figure (k) (module docstring)."""
    overhead = timer_overhead_ns()
    group = ReplicaGroup(agents, seed, overhead)
    group.start()
    for _ in range(ops // 5):
        group.run_op()
    group.pump()
    group.recording = True
    gc.collect()
    try:
        for index in range(ops):
            if index % FREEZE_EVERY == 0:
                gc.freeze()
            group.run_op()
        group.pump()
    finally:
        gc.unfreeze()
    receive, receive_slope = _line(group.receives)
    flush, flush_slope = _line(group.flushes)
    sizes = sorted(x for x, _ in group.flushes)
    method = (
        f"in-memory group of 3 replicas (wire frames, no storage) and {agents} agents, "
        f"{ops:,} ops (half publishes to rooms, half memory) after {ops // 5:,} of warm-up; "
        f"{len(group.receives):,} consensus frames received (median "
        f"{statistics.median(y for _, y in group.receives) * 1e6:.1f} us, "
        f"{receive_slope * 1e9:.3f} ns/B), {len(group.flushes):,} flushes of 1 to {MAX_GROUP} "
        f"deliveries (median {statistics.median(y for _, y in group.flushes) * 1e6:.1f} us, "
        f"median {sizes[len(sizes) // 2]:,} B encoded and applied, {flush_slope * 1e9:.3f} ns/B); "
        f"timer overhead {overhead} ns taken out"
    )
    return ReplicaCosts(
        Distribution.from_samples(receive, "consensus frame received, fixed part"),
        receive_slope,
        Distribution.from_samples(flush, "replica flush, fixed part"),
        flush_slope,
        method,
    )
