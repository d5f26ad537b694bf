"""Measuring what a Raft replica's own work costs, in its real process: figure (k).

A replicated coordinator does more than a coordinator: each flush (a loop turn
that persisted something) turns the leader's journals into a log entry, stores
entries in SQLite, applies committed entries to the replica's state (decoding
their memory rows, bus entries and ``Deliver`` bodies), encodes what it sends,
and pays the loop turn's system calls. The model charges a replica's messages
as a coordinator's (``service``, the codec by size) and its commits as time
blocked on the disk (figure (j)); this figure is the CPU of the rest, per flush
and per byte a flush stores and applies.

It is measured where it is paid. ``measure_replica_costs`` runs three real
replica processes on tcp (``real.tcp.run``) under a mix of memory requests and
publishes at ``LOADS`` offered ops/s, a short run each, and reads what every
follower did (``DriverResult.replicas``: flushes, bytes stored and applied,
consensus frames received and their bytes) and the CPU its process used. The
followers are used because their work is all replication; the leader also
serves the agents, which the coordinator's figures charge. From each
follower's CPU the model's own charge for the frames it received is taken out
(the coordinator's service time for a ``Consensus`` frame plus the codec line),
then a least-squares fit ``cpu = start + flush * flushes + per_byte * bytes``
over every follower of every run gives the figure: ``flush`` the fixed part
per flush, ``per_byte`` the slope; ``start`` (process start-up and idle ticks)
is not charged by the model. A figure the fit makes negative is 0, and the
method says so.

Measured on this machine, a follower's flush is mostly fixed cost (SQLite's
transaction, the loop turn): a replica flushing 8,000 times at 4,000 ops/s and
2,000 times at 12,500 ops/s used about the same CPU. An in-memory measurement of
the core alone (no SQLite, no sockets) had put nearly all of it on the bytes,
so the model's replicas carried under half the real capacity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.plan import Plan
from protocol.records import DriverResult
from sim.distribution import Distribution

LOADS = (500, 2000, 4000, 8000)  # offered ops/s, half memory requests, half publishes
DURATION = 3.0  # s of load per run


@dataclass(frozen=True)
class ReplicaCosts:
    """Figure (k): a replica's CPU per flush and per byte a flush stores and applies."""

    flush: Distribution
    flush_per_byte: float
    method: str


@dataclass(frozen=True)
class FollowerPoint:
    """One follower of one run: what it did and the CPU its process used."""

    load: float
    cpu: float
    flushes: float
    flush_bytes: float
    frames: float
    frame_bytes: float


def replica_plan(rate: float, duration: float = DURATION) -> Plan:
    data = {
        "name": "calibrate-replicas",
        "seed": 11,
        "duration": duration,
        "warmup": 0.5,
        "transport": "tcp",
        "backends": ["real"],
        "consensus": {"protocol": "raft", "replicas": 3},
        "agents": {"count": 40, "workers": 2},
        "topics": {"count": 10, "fanout": 5},
        "workload": [
            {"kind": "memory", "arrival": {"process": "poisson", "rate": rate / 2}, "size": 256},
            {"kind": "publish", "arrival": {"process": "poisson", "rate": rate / 2}, "size": 256},
        ],
    }
    return compile_plan(parse_scenario(data, "(replica calibration)"))


def followers(result: DriverResult, load: float) -> list[FollowerPoint]:
    """The replicas of ``result`` that never led, with their process's CPU."""
    leaders = {e.node for e in result.events if e.kind == "leader"}
    cpu = {usage.name: usage.cpu_seconds for usage in result.processes}
    points = []
    for node, counts in sorted(result.replicas.items()):
        name = f"replica {node}"
        if node in leaders or name not in cpu:
            continue
        points.append(
            FollowerPoint(
                load,
                cpu[name],
                counts["flushes"],
                counts["flush_bytes"],
                counts["frames"],
                counts["frame_bytes"],
            )
        )
    return points


def fit(
    points: Sequence[FollowerPoint], frame_cost: Callable[[float, float], float]
) -> tuple[float, float, float, list[str]]:
    """``(start, flush, per_byte, notes)``: the least-squares line of module docstring,
    each figure at least 0 (``notes`` says which were clamped)."""
    if len(points) < 3:
        raise ValueError(f"the replica fit needs 3 follower points or more, got {len(points)}")
    rows = np.array([[1.0, p.flushes, p.flush_bytes] for p in points])
    cpu = np.array([p.cpu - frame_cost(p.frames, p.frame_bytes) for p in points])
    solution, *_ = np.linalg.lstsq(rows, cpu, rcond=None)
    notes = []
    start, flush, per_byte = (float(x) for x in solution)
    if per_byte < 0:  # refit without the bytes
        notes.append(f"the fit's cost per byte ({per_byte:.3g} s/B) was negative: 0")
        per_byte = 0.0
        solution, *_ = np.linalg.lstsq(rows[:, :2], cpu, rcond=None)
        start, flush = (float(x) for x in solution)
    if flush < 0:
        notes.append(f"the fit's cost per flush ({flush:.3g} s) was negative: 0")
        flush = 0.0
    return start, flush, per_byte, notes


def measure_replica_costs(
    frame_cost: Callable[[float, float], float],
    loads: Sequence[float] = LOADS,
    duration: float = DURATION,
) -> ReplicaCosts:
    """Figure (k) from real replica processes (module docstring). ``frame_cost(frames,
    bytes)`` is what the model charges a replica for the consensus frames it receives."""
    from real.tcp.run import run_plan

    points: list[FollowerPoint] = []
    for load in loads:
        result = run_plan(replica_plan(load, duration), workers=2, connections=2)
        if result.errors:
            raise RuntimeError(
                f"the replica calibration run at {load} ops/s failed: {result.errors}"
            )
        points.extend(followers(result, load))
    start, flush, per_byte, notes = fit(points, frame_cost)
    shown = "; ".join(
        f"{p.load:g} ops/s: {p.cpu:.2f} s CPU, {p.flushes:.0f} flushes, "
        f"{p.flush_bytes / 1e6:.1f} MB stored and applied, {p.frames:.0f} frames"
        for p in points
    )
    method = (
        f"in situ: 3 real replica processes on tcp, 40 agents in 2 workers, half memory "
        f"requests and half publishes at {', '.join(f'{x:g}' for x in loads)} ops/s, "
        f"{duration:g} s each; every follower's process CPU less the model's charge for the "
        f"frames it received, fitted as start + flush x flushes + per_byte x bytes over "
        f"{len(points)} followers: start {start:.3f} s (not charged), flush "
        f"{flush * 1e6:.1f} us, per_byte {per_byte * 1e9:.3f} ns/B"
        + (f"; {'; '.join(notes)}" if notes else "")
        + f" (followers: {shown})"
    )
    return ReplicaCosts(Distribution.constant(flush, "replica flush, in situ"), per_byte, method)
