"""Measuring a Raft replica's commit to SQLite: the model's ``commit`` figures.

A replica (``real.tcp.replicacore.ReplicaCore.persist``) saves every Raft
``Ready`` to its own SQLite file in one transaction before it sends the
ready's messages (``real.tcp.raftstore.RaftStore``: WAL, ``synchronous=FULL``,
so every commit waits for an fsync). Its event loop does nothing else
meanwhile.

``measure_commits()`` opens a ``RaftStore`` (default durability, as real
replicas do) in a fresh directory under the default temporary folder, where
real runs keep their replica databases (``real.tcp.run``'s scratch folder),
and saves the readies a leader produces while it takes writes: one new entry
of ``size`` bytes at the next index, and a hard state whose commit index
moves up to the entry before it (the term and vote stay, as they do between
elections). The sizes take turns, one ready each per round, and the time
budget is checked between rounds, so every size keeps the same count; the first
``warmup`` saves (the schema's first pages, the WAL file's creation) are
not kept. Each ``save`` is timed with ``time.perf_counter()``. Checkpoints
of the WAL happen when they would in a real replica (SQLite's default, every
1000 pages), so they land in the tail of the commit that triggers them.

The per-byte cost (``commit_per_byte``) is the slope of a least-squares line
through the median commit time of each size, over the bytes of entry data;
a negative slope (fsync noise larger than the cost of the bytes) is clamped
to 0 and the method says so. The fixed part (``commit``) is the distribution
of every kept commit less the slope times its bytes, so it keeps the spread
and the tail of the fsync. The directory is removed afterwards.

Run it on a quiet machine. A process that sleeps on the fsync while other
processes keep every core busy waits for a time slice before it runs again,
so on a busy 2-core machine each commit reads about 4 ms (the ``timeslice``)
instead of about 0.2 ms; the model charges that wait apart (``timeslice``).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from protocol.consensus.log import Entry
from protocol.consensus.messages import HardState, Ready, Role
from real.tcp.raftstore import RaftStore
from sim.distribution import Distribution

COMMIT_SIZES = (256, 4096, 65536)  # bytes of entry data per ready: a small op, a payload, a big one
COUNT = 200  # kept commits per size, at most (the budget may stop it sooner)
WARMUP = 5  # commits not kept, before the timed ones
BUDGET = 3.0  # s, after which no new round starts (but at least MIN_ROUNDS run)
MIN_ROUNDS = 2
LEADER = "replica-0"
TERM = 3


def leader_ready(index: int, data: bytes) -> Ready:
    """What a leader persists as it takes one write: the entry at ``index``, and the
    commit index moved to the entry before it (acknowledged by a quorum meanwhile)."""
    return Ready(
        hard_state=HardState(TERM, LEADER, index - 1),
        snapshot=None,
        entries=(Entry(TERM, index, data),),
        messages=(),
        committed=(),
        read_states=(),
        role=Role.LEADER,
        leader=LEADER,
    )


def filesystem(path: str | os.PathLike[str]) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts), or "" if unknown."""
    target = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        return ""
    return f"{kind} ({best})" if kind else ""


def measure_commits(
    sizes: Sequence[int] = COMMIT_SIZES,
    count: int = COUNT,
    warmup: int = WARMUP,
    budget: float = BUDGET,
    directory: str | None = None,
) -> tuple[Distribution, float, str]:
    """The fixed part of one ready's commit (s), the cost per byte of entry data
    (s/B), and how they were measured. ``directory``: where to make the scratch
    folder (default: the default temporary folder)."""
    if not sizes or count < 1:
        raise ValueError("need at least one size and one commit per size")
    rng = random.Random(11)
    data = {size: rng.randbytes(size) for size in sizes}
    timed: dict[int, list[float]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="swarmtwin-commit-", dir=directory) as scratch:
        fs = filesystem(scratch)
        store = RaftStore(Path(scratch) / "replica.db")
        try:
            index = 0
            for i in range(warmup):
                index += 1
                store.save(leader_ready(index, data[sizes[i % len(sizes)]]))
            start = time.perf_counter()
            rounds = 0
            while rounds < count and (rounds < MIN_ROUNDS or time.perf_counter() - start < budget):
                for size in sizes:
                    index += 1
                    ready = leader_ready(index, data[size])
                    began = time.perf_counter()
                    store.save(ready)
                    timed[size].append(time.perf_counter() - began)
                rounds += 1
            elapsed = time.perf_counter() - start
        finally:
            store.close()
    medians = {size: statistics.median(times) for size, times in timed.items()}
    if len(sizes) > 1:
        slope, intercept = statistics.linear_regression(
            [float(s) for s in sizes], [medians[s] for s in sizes]
        )
    else:
        slope, intercept = 0.0, medians[sizes[0]]
    line = f"slope {slope * 1e9:.3f} ns/B, intercept {intercept * 1e3:.3f} ms"
    if slope < 0:
        line += "; the negative slope is clamped to 0 (noise larger than the bytes' cost)"
        slope = 0.0
    fixed = [max(t - slope * size, 0.0) for size, times in timed.items() for t in times]
    where = f" on {fs}" if fs else ""
    method = (
        f"{rounds * len(sizes)} timed RaftStore.save() calls (SQLite WAL, synchronous=FULL, "
        f"fsync included) in a fresh file under {tempfile.gettempdir()}{where}, after "
        f"{warmup} discarded: leader readies of one new entry of "
        f"{', '.join(str(s) for s in sizes)} B in turn ({rounds} each, {elapsed:.2f} s) with a "
        f"hard state whose commit index advances; medians "
        + ", ".join(f"{s} B {medians[s] * 1e3:.3f} ms" for s in sizes)
        + f"; a least-squares line through the medians over entry bytes: {line}; the fixed "
        f"part is each commit less the slope times its bytes"
    )
    commit = Distribution.from_samples(fixed, method)
    method += (
        f": median {commit.quantile(0.5) * 1e3:.3f} ms, p95 {commit.quantile(0.95) * 1e3:.3f} ms"
    )
    return replace(commit, method=method), slope, method
