"""Live points: what a run is doing right now, from its driver's ``LiveFeed``.

A driver hands over ``LiveBatch`` es (``protocol.records``): the op ids, times
and receivers of the unique completions since its previous batch, the ops
their origins shed, and the prober's results as they stand. ``LivePoints``
gathers a label's batches and, once ``LIVE_INTERVAL`` (less a quarter) of run
time has passed since its previous point, makes one point for the charts:

- completions and deliveries per second over the interval, and the p50, p95
  and p99 latency of those completions, each measured from its op's
  *scheduled* time, as the summary measures it (a late issue counts);
- ops shed per second over the interval;
- **reliability so far**: of the expected completions of the ops scheduled at
  least ``DUE_AFTER`` ago and not shed, the share that has arrived (each
  ``(op, node)`` once, never more than an op expects);
- **uptime so far**: the share of settled probes answered within the plan's
  probe deadline (a probe is settled once answered, or once its deadline has
  passed unanswered), by the rule the summary uses (``ProbeResult.on_time``);
- **agents active**: agents that received, or originated, a completed op in
  a batch of the last ``ACTIVE_WINDOW`` seconds.

It looks ops up in the plan, sorted once by id, and keeps per op only a count
of arrivals, so a batch costs time in its own size, not the plan's (numpy, but
for one dict lookup per distinct receiver). In the in-process driver that time
is taken from the run's own event loop (docs/portal.md, "What watching costs").

These are a watcher's figures, not the run's: an interval's percentiles come
from the completions that arrived in it, reliability so far gives a late op
``DUE_AFTER`` to arrive, and a tcp worker's last report may be cut off at the
stop. The run's own figures are in its ``summary.json``, which the page shows
at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

from harness.metrics.figures import DELIVERY_KINDS
from protocol.plan import Plan
from protocol.records import LIVE_INTERVAL, LiveBatch, ProbeResult

PERCENTILES = (50.0, 95.0, 99.0)
DUE_AFTER = 1.0  # seconds after its scheduled time an op counts in reliability so far
ACTIVE_WINDOW = 1.0  # seconds: an agent that did nothing for longer is not active
EMIT_AFTER = 0.75 * LIVE_INTERVAL  # run time between two points of a label, at least


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
    shed_per_s: float = 0.0
    reliability: float | None = None  # so far, 0..1
    uptime: float | None = None  # so far, 0..1
    agents: int = 0  # active over the last ACTIVE_WINDOW

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(slots=True)
class _Track:
    """One label's state between points."""

    arrived: npt.NDArray[np.int64]  # unique completions per op (plan order by id)
    shed: npt.NDArray[np.bool_]
    due: npt.NDArray[np.bool_]
    # by agent code (``LivePoints.codes``): the last batch time it was active
    active: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    due_upto: int = 0  # ops in ``LivePoints.by_time`` order that are due
    due_expected: int = 0
    due_arrived: int = 0
    last: float | None = None  # run time of the previous point
    ids: list[npt.NDArray[np.int64]] = field(default_factory=list)  # since that point
    ats: list[npt.NDArray[np.float64]] = field(default_factory=list)
    shed_count: int = 0
    probes: Sequence[ProbeResult] = ()


class LivePoints:
    """Turns ``LiveBatch`` es into ``LivePoint`` s, per run label."""

    def __init__(self, plan: Plan) -> None:
        ops = sorted(plan.operations, key=lambda op: op.op_id)
        self.ids = np.array([op.op_id for op in ops], dtype=np.int64)
        self.at = np.array([op.at for op in ops], dtype=np.float64)
        self.expected = np.array([op.expected for op in ops], dtype=np.int64)
        delivering = {int(kind) for kind in DELIVERY_KINDS}
        self.delivering = np.array([int(op.kind) in delivering for op in ops], dtype=bool)
        self.by_time = np.argsort(self.at, kind="stable")
        self.at_by_time = self.at[self.by_time]
        codes: dict[str, int] = {}
        self.origin_code = np.array(
            [codes.setdefault(op.origin, len(codes)) for op in ops], dtype=np.int64
        )
        self.codes = codes  # agent -> code, for ``_Track.active``
        self.deadline = plan.probe_deadline
        self.tracks: dict[str, _Track] = {}

    def _locate(self, ids: Sequence[int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Index of each op id in the plan's columns, ids not in the plan left out; and
        which of ``ids`` are in it."""
        wanted = np.asarray(ids, dtype=np.int64)
        if not len(self.ids) or not len(wanted):
            return np.zeros(0, dtype=np.int64), np.zeros(len(wanted), dtype=bool)
        found = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
        known = self.ids[found] == wanted
        return found[known], known

    def _track(self, label: str) -> _Track:
        track = self.tracks.get(label)
        if track is None:
            n = len(self.ids)
            track = _Track(np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool))
            track.active = np.full(len(self.codes), -np.inf)
            self.tracks[label] = track
        return track

    def point(self, label: str, batch: LiveBatch) -> LivePoint | None:
        """Take ``batch``; the label's next point once its interval is over, else None
        (a label's first batch with nothing in it, the feed's start, starts the clock)."""
        track = self._track(label)
        self._take(track, batch)
        before, now = track.last, batch.now
        if before is None:
            if not track.ids and not track.shed_count:
                track.last = now
                return None
        elif now - before < EMIT_AFTER:
            return None
        track.last = now
        return self._emit(label, track, now, now - before if before is not None else None)

    def _take(self, track: _Track, batch: LiveBatch) -> None:
        if batch.probes:
            track.probes = batch.probes
        if len(batch.shed):
            index = np.unique(self._locate(batch.shed)[0])
            index = index[~track.shed[index]]
            track.shed_count += len(index)
            track.shed[index] = True
            was_due = index[track.due[index]]
            track.due_expected -= int(self.expected[was_due].sum())
            track.due_arrived -= int(np.minimum(track.arrived, self.expected)[was_due].sum())
        if len(batch.ids):
            index, known = self._locate(batch.ids)
            ats = np.asarray(batch.ats, dtype=np.float64)[known]
            track.ids.append(index)
            track.ats.append(ats)
            ops, counts = np.unique(index, return_counts=True)
            old = track.arrived[ops]
            track.arrived[ops] = old + counts
            expected = self.expected[ops]
            gained = np.minimum(old + counts, expected) - np.minimum(old, expected)
            counted = track.due[ops] & ~track.shed[ops]
            track.due_arrived += int(gained[counted].sum())
            # active at this batch's time: the receivers and the completed ops' origins
            track.active[np.unique(self.origin_code[index])] = batch.now
            codes = self.codes
            for node in set(batch.nodes):
                code = codes.get(node)
                if code is None:  # an agent that originates nothing
                    code = codes[node] = len(codes)
                    track.active = np.append(track.active, -np.inf)
                track.active[code] = batch.now
        self._advance_due(track, batch.now)

    def _advance_due(self, track: _Track, now: float) -> None:
        upto = int(np.searchsorted(self.at_by_time, now - DUE_AFTER, side="right"))
        if upto <= track.due_upto:
            return
        newly = self.by_time[track.due_upto : upto]
        track.due_upto = upto
        track.due[newly] = True
        counted = newly[~track.shed[newly]]
        track.due_expected += int(self.expected[counted].sum())
        track.due_arrived += int(np.minimum(track.arrived[counted], self.expected[counted]).sum())

    def _emit(self, label: str, track: _Track, now: float, span: float | None) -> LivePoint:
        index = np.concatenate(track.ids) if track.ids else np.zeros(0, np.int64)
        ats = np.concatenate(track.ats) if track.ats else np.zeros(0, np.float64)
        shed = track.shed_count
        track.ids, track.ats, track.shed_count = [], [], 0
        latency_ms = (ats - self.at[index]) * 1000.0
        count = int(len(index))
        quantiles: list[float | None] = [None, None, None]
        if count:
            quantiles = [float(q) for q in np.percentile(latency_ms, PERCENTILES)]
        deliveries = int(np.count_nonzero(self.delivering[index]))
        deadline = self.deadline
        settled = [p for p in track.probes if p.answered is not None or p.sent + deadline < now]
        on_time = sum(1 for p in settled if p.on_time(self.deadline))
        active = int(np.count_nonzero(track.active >= now - ACTIVE_WINDOW))
        return LivePoint(
            label,
            round(now, 6),
            count / span if span else 0.0,
            deliveries / span if span else 0.0,
            *quantiles,
            count,
            shed_per_s=shed / span if span else 0.0,
            reliability=track.due_arrived / track.due_expected if track.due_expected else None,
            uptime=on_time / len(settled) if settled else None,
            agents=active,
        )
