"""``swarmtwin calibrate``: measure this machine's costs for the model (``sim.calibration``).

The kinds of figure below, each measured here and described in its ``method``:

(a) **Service times.** A warm in-memory cluster (a ``Coordinator`` and, by
    default, 100 ``Agent`` objects with topic subscriptions and a
    capability) is driven by a mixed workload: publishes to rooms of 10
    subscribers and to a topic all agents follow, direct messages,
    broadcasts, tasks, memory gets/puts/compare-and-sets, availability
    probes, plus the heartbeats and resends the timers produce. Messages
    are passed synchronously through a FIFO, so nothing but the core runs.
    Every call is timed on its own with ``time.perf_counter_ns()``:
    ``Coordinator.receive(...) + drain()`` and ``Agent.receive(...) +
    drain()`` per received message type, and ``issue(agent, op) + drain()``
    per request type (the agent's cost of sending a request). The timer's
    own overhead (median of back-to-back reads) is subtracted. Registration
    (``Hello``/``Welcome``) is sampled over several fresh clusters. The first
    fifth of the workload is a warm-up and is not recorded. The garbage
    collector stays enabled, so young-generation passes land in the tail of
    whichever call triggers them; but the heap is frozen (``gc.freeze()``)
    every 1000 ops and the agents' completion records are dropped every 100
    ops, because a full collection costs in proportion to the whole heap, a
    property of the run and not of the message type that happened to
    trigger it (such pauses are not modelled). The whole workload runs
    three times with the same seed and each figure keeps the repeat with
    the lowest mean, which drops the milliseconds that other processes
    steal by preempting this one (one repeat) but keeps pauses the code
    itself causes (every repeat).
(b) **Codec cost.** ``encode_body`` plus ``decode_body`` of ``Deliver``
    messages with payloads from 16 B to 64 KiB; the median per size, then a
    least-squares line over the encoded size: the slope is
    ``per_byte_measured``, the intercept ``per_message_measured``. Both are
    charged only on ``tcp``; ``inproc`` passes messages by reference.
(c) **Hop delay**, in ``harness.calibrate.loop``.
(d) **Timer cost.** ``on_timer(now) + drain()`` on the coordinator and on
    agents whenever their deadline passes during (a)'s workload. The timer
    granularity (``timer_slack``) is not measured: it is the real tcp
    driver's ``real.tcp.server.TIMER_SLACK``, and 0 on ``inproc``.
(e) **Wake-up lateness**, in ``harness.calibrate.loop``.
(f) **Cost per recipient** and (g) **batching**, and the payload's cost
    per byte (building it and its CRC-32, verifying it), in
    ``harness.calibrate.scaling``. (f) is measured first: each timed
    coordinator sample in (a) has ``per_recipient_seconds`` times the
    ``Deliver`` messages it emitted taken out, because the model charges
    that part apart, by the job's actual fan-out.
(h) **In situ** (``inproc`` only), in ``harness.calibrate.insitu``: the
    real driver replays a mixed workload with every mailbox job timed. Its
    single-message jobs replace (a)'s figures for the types it saw, and its
    cost per recipient and batching saving replace (f) and (g): they
    include what the core alone does not do (routing through
    ``call_soon``, reading the clock, re-arming timers) and the cache
    misses of a loop that serves a hundred nodes in turn.
(j) **Raft commit** (``tcp`` only), in ``harness.calibrate.commit``: timed
    ``RaftStore.save`` of a leader's readies (SQLite WAL, ``synchronous=FULL``)
    at 256 B, 4 KiB and 64 KiB of entry data; a fixed part and a cost per byte.
(k) **A replica's own CPU** (``tcp`` only), in ``harness.calibrate.replicas``:
    three real replica processes at four loads; each follower's CPU, less what
    the model charges for the frames it received, fitted per flush and per
    byte stored and applied.

``calibrate()`` writes ``<host>-<transport>-<date>.json`` into
``reports/calibrations/``; ``load_calibration`` then prefers it to the
shipped default. The shipped defaults were made with
``python -m harness.calibrate.measure --transport inproc --samples 50000 --out
sim/calibrations/default.json`` (and ``--transport tcp ... default-tcp.json``);
each file's ``how`` field records the exact command. Run it on a quiet
machine: other processes' CPU use shows up in the figures.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import socket
import statistics
import sys
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from harness.calibrate import insitu
from harness.calibrate.commit import measure_commits
from harness.calibrate.insitu import measure_in_situ
from harness.calibrate.loop import measure_hop, measure_timeslice, measure_wakeup
from harness.calibrate.replicas import measure_replica_costs
from harness.calibrate.restart import measure_restarts
from harness.calibrate.scaling import measure_batching, measure_fanout, measure_payload
from protocol.agent import Agent
from protocol.codec import decode_body, encode_body
from protocol.coordinator import Coordinator
from protocol.messages import Deliver, DeliveryKind, MemVerb, Message, Probe
from protocol.nodes import COORDINATOR_ID as COORD
from protocol.payload import checksum, make_payload
from protocol.plan import Operation, OpKind
from protocol.settings import ProtocolSettings
from protocol.workload import issue
from real.tcp.server import TIMER_SLACK
from real.tcp.workers import LOOP_RESOLUTION
from sim.calibration import (
    POOLED,
    REPORTS_DIR,
    Calibration,
    calibration_filename,
    save_calibration,
)
from sim.distribution import Distribution

PROBER = "probe"
ROOMS = 10
CODEC_SIZES = (16, 256, 1024, 4096, 16384, 65536)
MIN_SAMPLES = 20
FREEZE_EVERY = 1000
REQUEST_NAMES = {
    OpKind.PUBLISH: "Publish",
    OpKind.DIRECT: "Direct",
    OpKind.BROADCAST: "Broadcast",
    OpKind.TASK: "TaskSubmit",
    OpKind.MEMORY: "MemRequest",
}
Samples = dict[tuple[str, str], list[float]]


# --- (a) and (d): the core on a warm in-memory cluster ------------------------------------


def timer_overhead_ns(reads: int = 20_000) -> int:
    """Median cost of one ``perf_counter_ns()`` pair, subtracted from every sample."""
    clock = time.perf_counter_ns
    gaps = []
    for _ in range(reads):
        start = clock()
        gaps.append(clock() - start)
    return int(statistics.median(gaps))


class WarmCluster:
    """A coordinator and agents wired through a synchronous FIFO, every call timed."""

    def __init__(
        self,
        agents: int,
        seed: int,
        overhead_ns: int,
        tick: float = 100e-6,
        per_recipient_ns: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.settings = ProtocolSettings()
        self.coordinator = Coordinator(COORD, self.settings)
        self.ids = [f"agent-{i:04d}" for i in range(agents)]
        self.agents = {
            node: Agent(node, COORD, self.settings, ("compute",), (f"room.{i % ROOMS}.#", "all.*"))
            for i, node in enumerate(self.ids)
        }
        self.overhead = overhead_ns
        self.per_recipient = per_recipient_ns
        self.tick = tick
        self.now = 0.0
        self.samples: Samples = defaultdict(list)
        self.recording = True
        self._wire: deque[tuple[str, str, Message]] = deque()
        self._next_op = 1

    def _record(self, role: str, name: str, elapsed_ns: int) -> None:
        if self.recording:
            self.samples[(role, name)].append(max(elapsed_ns - self.overhead, 0) / 1e9)

    def _node(self, node_id: str) -> tuple[str, Coordinator | Agent] | None:
        if node_id == COORD:
            return "coordinator", self.coordinator
        agent = self.agents.get(node_id)
        return ("agent", agent) if agent is not None else None

    def _send(self, src: str, out: list[tuple[str, Message]]) -> None:
        self._wire.extend((src, dst, msg) for dst, msg in out)

    def pump(self) -> None:
        """Deliver everything in flight, timing each ``receive + drain``."""
        clock = time.perf_counter_ns
        while self._wire:
            src, dst, msg = self._wire.popleft()
            found = self._node(dst)
            if found is None:
                continue  # probe replies: the prober is not modelled here
            role, node = found
            start = clock()
            node.receive(src, msg, self.now)
            out = node.drain()
            elapsed = clock() - start
            if role == "coordinator" and self.per_recipient:
                delivers = sum(1 for _, sent in out if type(sent) is Deliver)
                elapsed -= int(self.per_recipient * delivers)  # the model charges it apart
            self._record(role, type(msg).__name__, elapsed)
            self._send(dst, out)

    def register(self) -> None:
        for node_id, agent in self.agents.items():
            agent.start(self.now)
            self._send(node_id, agent.drain())
        self.pump()

    def fire_timers(self) -> None:
        """Run ``on_timer + drain`` on every node whose deadline has passed, timed."""
        clock = time.perf_counter_ns
        for role, node_id, node in self._timed_nodes():
            deadline = node.next_deadline()
            if deadline is None or deadline > self.now:
                continue
            start = clock()
            node.on_timer(self.now)
            out = node.drain()
            self._record(role, "timer", clock() - start)
            self._send(node_id, out)

    def _timed_nodes(self) -> list[tuple[str, str, Coordinator | Agent]]:
        nodes: list[tuple[str, str, Coordinator | Agent]] = [
            ("coordinator", COORD, self.coordinator)
        ]
        nodes.extend(("agent", node_id, agent) for node_id, agent in self.agents.items())
        return nodes

    def random_op(self) -> Operation:
        """One operation from the calibration mix."""
        rng, op_id = self.rng, self._next_op
        self._next_op += 1
        origin = rng.choice(self.ids)
        roll = rng.random()
        if roll < 0.35:
            topic = f"room.{rng.randrange(ROOMS)}.t" if roll < 0.32 else "all.news"
            expected = len(self.ids) // ROOMS if roll < 0.32 else len(self.ids)
            return Operation(op_id, self.now, OpKind.PUBLISH, origin, topic, 64, expected)
        if roll < 0.60:
            return Operation(op_id, self.now, OpKind.DIRECT, origin, rng.choice(self.ids), 64, 1)
        if roll < 0.62:
            return Operation(op_id, self.now, OpKind.BROADCAST, origin, "", 64, len(self.ids) - 1)
        if roll < 0.77:
            return Operation(op_id, self.now, OpKind.TASK, origin, "compute", 64, 1)
        verb = rng.choice((MemVerb.GET, MemVerb.PUT, MemVerb.PUT, MemVerb.CAS))
        target = f"ns{rng.randrange(4)}/key{rng.randrange(200)}"
        return Operation(op_id, self.now, OpKind.MEMORY, origin, target, 64, 1, int(verb))

    def run_op(self, op: Operation) -> None:
        """Issue ``op`` (timed as the agent's request cost), deliver, fire due timers."""
        agent = self.agents[op.origin]
        start = time.perf_counter_ns()
        issue(agent, op, self.now)
        out = agent.drain()
        self._record("agent", REQUEST_NAMES[op.kind], time.perf_counter_ns() - start)
        self._send(op.origin, out)
        if op.op_id % 50 == 0:
            self._wire.append((PROBER, COORD, Probe(op.op_id)))
        self.pump()
        self.now += self.tick
        self.fire_timers()
        self.pump()
        if op.op_id % 100 == 0:
            self.forget_completions()

    def forget_completions(self) -> None:
        """Drop the agents' completion records, which only a driver reads.

        Left to grow they would make the heap, and so each full GC pass,
        grow with the length of the calibration rather than with the code.
        """
        for agent in self.agents.values():
            agent.completions.clear()


def measure_core(
    samples: int,
    agents: int,
    seed: int,
    repeats: int = 3,
    rounds: int = 10,
    span: float = 6.0,
    per_recipient: float = 0.0,
) -> Samples:
    """Per-call service and timer samples (seconds) keyed by ``(role, name)``.

    The same workload (same seed) runs ``repeats`` times; for each figure the
    repeat with the lowest mean is kept. A pause that belongs to the code (a
    GC pass the workload triggers) recurs in every repeat and stays; another
    process preempting this one lands in one repeat and is dropped.
    """
    overhead = timer_overhead_ns()
    best: Samples = {}
    for _ in range(repeats):
        run = _one_repeat(samples, agents, seed, rounds, span, overhead, per_recipient * 1e9)
        for key, values in run.items():
            if key not in best or statistics.fmean(values) < statistics.fmean(best[key]):
                best[key] = values
    best[("meta", "overhead_ns")] = [float(overhead)]
    best[("meta", "repeats")] = [float(repeats)]
    return best


def _one_repeat(
    samples: int,
    agents: int,
    seed: int,
    rounds: int,
    span: float,
    overhead: int,
    per_recipient_ns: float,
) -> Samples:
    """One pass: registration on ``rounds`` fresh clusters, then the warm workload.

    The recorded workload covers ``span`` seconds of the cluster's clock, so
    heartbeats, failure sweeps and ack timeouts all come due.
    """
    collected: Samples = defaultdict(list)
    for round_index in range(rounds):
        cluster = WarmCluster(agents, seed + round_index, overhead, 100e-6, per_recipient_ns)
        gc.collect()
        cluster.register()
        for key in (("coordinator", "Hello"), ("agent", "Welcome")):
            collected[key].extend(cluster.samples.pop(key, []))
    cluster = WarmCluster(agents, seed, overhead, span / samples, per_recipient_ns)
    cluster.recording = False
    cluster.register()
    for _ in range(samples // 5):
        cluster.run_op(cluster.random_op())
    cluster.recording = True
    gc.collect()
    try:
        for index in range(samples):
            if index % FREEZE_EVERY == 0:
                gc.freeze()  # full collections then only scan what is new since
            cluster.run_op(cluster.random_op())
    finally:
        gc.unfreeze()
    for key, values in cluster.samples.items():
        collected[key].extend(values)
    return collected


def core_method(
    role: str, name: str, agents: int, samples: int, overhead: float, repeats: int
) -> str:
    """The ``method`` line of one service or timer figure."""
    if name == "timer":
        call = "Coordinator.on_timer(now)" if role == "coordinator" else "Agent.on_timer(now)"
    elif role == "agent" and name in REQUEST_NAMES.values():
        call = f"protocol.workload.issue(agent, <{name} op>, now)"
    elif name == POOLED:
        call = f"every timed {role} call above, pooled"
    else:
        call = f"{role.capitalize()}.receive(src, <{name}>, now)"
        if role == "coordinator":
            call += " (less per_recipient_seconds for each Deliver it emitted)"
    return (
        f"time.perf_counter_ns() around {call} + drain(), one call per sample, on a warm "
        f"in-memory cluster of {agents} agents ({ROOMS} topic rooms, tasks, memory, probes) "
        f"after a {samples // 5}-op warm-up of a {samples}-op mix; minus the timer's own "
        f"{overhead:.0f} ns; GC enabled, heap frozen every {FREEZE_EVERY} ops; the "
        f"lowest-mean of {repeats} identical repeats; CPython {platform.python_version()}"
    )


def core_figures(
    collected: Samples, agents: int, samples: int
) -> tuple[dict[str, dict[str, Distribution]], dict[str, Distribution]]:
    """Service and timer distributions per role, with a pooled ``"*"`` per role."""
    overhead = collected.pop(("meta", "overhead_ns"), [0.0])[0]
    repeats = int(collected.pop(("meta", "repeats"), [1.0])[0])
    service: dict[str, dict[str, Distribution]] = {"coordinator": {}, "agent": {}}
    timer: dict[str, Distribution] = {}
    pooled: dict[str, list[float]] = defaultdict(list)
    for (role, name), values in sorted(collected.items()):
        method = core_method(role, name, agents, samples, overhead, repeats)
        if name == "timer":
            timer[role] = Distribution.from_samples(values, method)
            continue
        pooled[role].extend(values)
        if len(values) >= MIN_SAMPLES:
            service[role][name] = Distribution.from_samples(values, method)
    for role, values in pooled.items():
        service[role][POOLED] = Distribution.from_samples(
            values, core_method(role, POOLED, agents, samples, overhead, repeats)
        )
    return service, timer


# --- (b): the codec ------------------------------------------------------------------------


def measure_codec(
    sizes: Sequence[int] = CODEC_SIZES, repeats: int = 400
) -> tuple[float, float, str]:
    """Least-squares (slope s/byte, intercept s) of encode+decode time over encoded size."""
    xs: list[float] = []
    ys: list[float] = []
    for size in sizes:
        payload = make_payload(size, size)
        msg = Deliver(
            1, DeliveryKind.PUBLISH, "agent-0001", size, "room.1.t", payload, checksum(payload)
        )
        timings = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            decode_body(encode_body(msg))
            timings.append(time.perf_counter_ns() - start)
        xs.append(float(len(encode_body(msg))))
        ys.append(statistics.median(timings) / 1e9)
    slope, intercept = statistics.linear_regression(xs, ys)
    method = (
        f"median of {repeats} timed encode_body()+decode_body() calls on Deliver messages with "
        f"payloads of {', '.join(str(s) for s in sizes)} B, then a least-squares line over the "
        f"encoded size: slope {slope * 1e9:.4f} ns/B, intercept {intercept * 1e6:.3f} us"
    )
    return slope, max(intercept, 0.0), method


# --- putting it together ------------------------------------------------------------------


def calibrate(
    transport: str = "inproc",
    samples: int = 20_000,
    out_dir: Path = REPORTS_DIR,
    out: Path | None = None,
    agents: int = 100,
    seed: int = 1,
    how: str | None = None,
    repeats: int = 3,
) -> Path:
    """Measure this machine for ``transport`` and write the calibration; return its path."""
    payload_issue, payload_receive, payload_method = measure_payload()
    per_recipient, _, recipient_method = measure_fanout()
    batch_saving, batch_method = measure_batching()
    collected = measure_core(samples, agents, seed, repeats, per_recipient=per_recipient)
    service, timer = core_figures(collected, agents, samples)
    if transport == "inproc":  # the real driver's own cost per message, where measured
        situ = measure_in_situ()
        per_recipient = situ.per_recipient()
        recipient_method = insitu.recipient_method(situ, per_recipient)
        batch_saving, batch_method = situ.batch_saving(), insitu.batching_method(situ)
        for role, table in situ.service(per_recipient, MIN_SAMPLES).items():
            service[role].update(table)
    slope, intercept, codec_method = measure_codec()
    hop = measure_hop(transport, min(samples, 20_000))
    min_sleep = LOOP_RESOLUTION if transport == "tcp" else 0.0
    wakeup = measure_wakeup(max(30, min(samples // 50, 1000)), seed, min_sleep)
    wire = transport == "tcp"
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    )
    timeslice, timeslice_method = measure_timeslice(cores) if wire else (0.0, "")
    if wire:
        agent_restart, coordinator_restart, restart_method = measure_restarts()
    else:
        agent_restart, coordinator_restart = 0.0, 0.0
        restart_method = "inproc: a killed agent is replaced at once; the coordinator cannot crash"
    commit: Distribution | None = None
    replica_flush: Distribution | None = None
    if wire:
        commit, commit_per_byte, commit_method = measure_commits()
        frame = service["coordinator"][POOLED].mean + intercept  # the model's charge per frame
        replicas = measure_replica_costs(lambda frames, size: frames * frame + size * slope)
        replica_flush, replica_flush_per_byte = replicas.flush, replicas.flush_per_byte
        replica_method = replicas.method
    else:
        commit_per_byte = replica_flush_per_byte = 0.0
        commit_method = "inproc: not measured (Raft replicas run on tcp only)"
        replica_method = commit_method
    calibration = Calibration(
        host=socket.gethostname(),
        python=platform.python_version(),
        date=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        transport=transport,
        service=service,
        timer=timer,
        hop=hop,
        per_byte_seconds=slope if wire else 0.0,
        per_message_seconds=intercept if wire else 0.0,
        per_byte_measured=slope,
        per_message_measured=intercept,
        per_byte_method=codec_method + ("" if wire else "; not charged on inproc"),
        per_recipient_seconds=per_recipient,
        payload_issue_per_byte=payload_issue,
        payload_receive_per_byte=payload_receive,
        payload_method=payload_method,
        per_recipient_method=recipient_method,
        batch_saving=batch_saving,
        batch_method=batch_method,
        timer_slack=TIMER_SLACK if wire else 0.0,
        cores=cores,
        timeslice=timeslice,
        timeslice_method=timeslice_method,
        wakeup=wakeup,
        agent_restart=agent_restart,
        coordinator_restart=coordinator_restart,
        restart_method=restart_method,
        commit=commit,
        commit_per_byte=commit_per_byte,
        commit_method=commit_method,
        replica_flush=replica_flush,
        replica_flush_per_byte=replica_flush_per_byte,
        replica_method=replica_method,
        how=how or f"swarmtwin calibrate --transport {transport}",
        notes=(f"{platform.platform()}; {platform.processor() or platform.machine()}",),
    )
    path = out if out is not None else out_dir / calibration_filename(calibration)
    return save_calibration(calibration, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["inproc", "tcp"], default="inproc")
    parser.add_argument("--samples", type=int, default=20_000, help="workload ops timed")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="keep each figure's best repeat")
    parser.add_argument("--out", type=Path, default=None, help="write exactly this file")
    parser.add_argument("--out-dir", type=Path, default=REPORTS_DIR)
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m harness.calibrate " + " ".join(given)
    path = calibrate(
        args.transport,
        args.samples,
        args.out_dir,
        args.out,
        args.agents,
        how=command.strip(),
        repeats=args.repeats,
    )
    print(f"calibration written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
