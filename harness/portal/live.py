"""Live points: what a run is doing right now, from its driver's ``LiveFeed``.

A driver hands over, about every ``LIVE_INTERVAL`` of run time, the op ids and
times of the unique completions since its previous call. ``LivePoints`` turns
each call into one point for the chart: the run time, completions and
deliveries per second over the interval, and the p50, p95 and p99 latency of
those completions, each measured from its op's *scheduled* time (as the
summary measures it, so a late issue counts). It looks the ops up in the
plan, sorted once by id.

These are a watcher's figures, not the run's: an interval's percentiles come
from the completions that arrived in it, and a tcp worker's last report may be
cut off at the stop. The run's own figures are in its ``summary.json``, which
the page shows at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from harness.metrics.figures import DELIVERY_KINDS
from protocol.plan import Plan

PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class LivePoint:
    """One interval of one run (``label``: ``real``, ``sim``, ``sim #2`` ...)."""

    label: str
    t: float  # run time at the end of the interval, seconds
    completions_per_s: float
    deliveries_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    count: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class LivePoints:
    """Turns ``LiveFeed`` calls into ``LivePoint`` s, per run label."""

    def __init__(self, plan: Plan) -> None:
        ops = sorted(plan.operations, key=lambda op: op.op_id)
        self.ids = np.array([op.op_id for op in ops], dtype=np.int64)
        self.at = np.array([op.at for op in ops], dtype=np.float64)
        delivering = {int(kind) for kind in DELIVERY_KINDS}
        self.delivering = np.array([int(op.kind) in delivering for op in ops], dtype=bool)
        self.last: dict[str, float] = {}  # label -> run time of its previous call

    def point(
        self, label: str, now: float, ids: Sequence[int], ats: Sequence[float]
    ) -> LivePoint | None:
        """The point for this call; None for a label's first call with nothing in it
        (the feed's start: there is no interval to divide by yet)."""
        before = self.last.get(label)
        self.last[label] = now
        if before is None and not len(ids):
            return None
        span = now - before if before is not None and now > before else None
        wanted = np.asarray(ids, dtype=np.int64)
        if len(self.ids):
            found = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
            known = self.ids[found] == wanted
        else:  # a plan without ops: nothing can complete
            found, known = np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), bool)
        index = found[known]
        latency_ms = (np.asarray(ats, dtype=np.float64)[known] - self.at[index]) * 1000.0
        deliveries = int(np.count_nonzero(self.delivering[index]))
        count = int(len(index))
        quantiles: list[float | None] = [None, None, None]
        if count:
            quantiles = [float(q) for q in np.percentile(latency_ms, PERCENTILES)]
        return LivePoint(
            label,
            round(now, 6),
            count / span if span else 0.0,
            deliveries / span if span else 0.0,
            *quantiles,
            count,
        )
