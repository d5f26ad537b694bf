"""Spawn time: from when a driver began starting agents to each one's registration.

The seed's "35 ms spawn time" and "100 agents in ~3.5 s", measured: each agent's
time is its registration (``DriverResult.registered``, when the coordinator's
``Welcome`` was seen) less ``DriverResult.spawn_at``. On tcp ``spawn_at`` is
taken before the worker processes are started, so an agent's time includes its
process's start-up and imports, its connection and its ``Hello`` round trip.
The figures are the first, the nearest-rank median and p95, and the last (all
registered).
"""

from __future__ import annotations

from harness.metrics.summary import SpawnFigures, nearest_rank_percentiles
from protocol.records import DriverResult


def spawn_section(result: DriverResult) -> SpawnFigures:
    """The spawn figures of one run (empty when the driver gave no start time)."""
    if result.spawn_at is None or not result.registered:
        return SpawnFigures()
    times = [at - result.spawn_at for at in result.registered.values()]
    p50, p95 = nearest_rank_percentiles(times, (50, 95))
    return SpawnFigures(
        agents=len(times),
        first_s=min(times),
        p50_s=float(p50),
        p95_s=float(p95),
        all_s=max(times),
    )
