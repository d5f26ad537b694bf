"""Fault figures: recovery, detection and reassignment times, and acknowledged-write checks.

``fault_section(plan, result, columns)`` turns the plan's fault timeline
(``Plan.faults``) and a driver's records into a
:class:`~harness.metrics.summary.FaultSection`; ``harness.metrics.figures.summarize`` calls it
for both backends. ``check_acked_writes(result)`` checks acknowledged memory
writes against the stores a coordinator restarted from.

How recovery is measured (docs/design.md, "Recovery"):

1. Sliding windows ``[t, t + 0.1 s)``, ``t`` stepped every 10 ms from 0 to
   the plan's end. In each window, *throughput* is the unique completions whose
   completion time falls in it, and it is judged *relative to the load offered*
   in the window (the expected completions of the ops scheduled in it): the
   load is open-loop, so dividing by it cancels the arrival process's own
   randomness, which at 100 ms windows is larger than a ±10 % band. (The rows
   report the absolute median rate too.) *p95* is the nearest-rank p95
   of the latencies of the ops *scheduled* in it, where an expected completion
   that never arrived counts as infinitely late (so an outage shows while it
   happens, not when its stragglers land).
2. Ops whose origin was dead (a ``KILL_AGENT`` listing the origin, scheduled
   in ``[at, end)``) were never sent: they are left out of both figures and
   counted apart. Ops due after the restart began, or during a pause, were
   sent late and count, with their latency. A window's throughput is
   divided by the share of its offered completions that were not left out, so
   losing a killed agent's own load is not a drop; a window where less than
   ``MIN_KEPT_SHARE`` of the offered completions remain has no throughput
   figure (too little is left to judge it).
3. The baseline is the windows lying wholly in ``[max(warmup, when every
   earlier fault had both ended and recovered), at)``: the tail of an earlier
   fault is not part of the normal state. When that is shorter than
   ``MIN_BASELINE_S``, or an earlier fault never recovered, the steady windows
   before the first fault are used (the row says so), and when those are
   short too the longer of the two (``... (short)``).
4. Bands: relative throughput must lie within ``[min(m (1 - b), lo), max(m (1 + b), hi)]``
   and p95 must not exceed ``max(m (1 + b), hi)``, where ``m`` is the baseline
   windows' median, ``lo``/``hi`` the range they span and ``b`` is
   ``plan.recovery_band``: noise already present before the fault is never
   called "not recovered", and a faster p95 is fine. A window without a figure
   is not held against recovery.
5. The fault has recovered at the first window start ``t >= at`` from which
   every window starting in ``[t, t + HOLD_S]`` is in band, the hold being cut
   short by the next fault's injection or the end of the plan (windows must
   end by then, and ``GUARD_S`` before an injection: ops due just before a
   fault are in flight when it hits, so they belong to it; the baseline stops
   the same guard short of its own fault). ``recovery_s = t - at``; None when
   no such ``t`` exists by the end of the plan (before the next injection:
   step 6).
6. Overlapping faults. A fault with no such ``t`` before the next injection
   (the next fault came before the system had recovered from this one, during
   it or after its heal), and faults injected at the same instant, are
   measured together with the faults they overlap as one outage, a *group*.
   The group is judged against its first fault's baseline (each of its rows
   reports that one), and step 5 is applied from its *last* injection, the
   hold cut short by the next injection after the group; while no ``t``
   exists before that injection, the fault injected then joins the group.
   The group has recovered at that ``t``, the end of the combined outage as
   the figures show it (as for a lone fault, the last heal itself is not
   waited for: a fault without visible effect does not lengthen it). Every
   fault of the group keeps its own row with ``recovery_s = t - at`` from its
   own injection, so the first fault's is the group's recovery time, from the
   first injection to the end of the combined outage, and ``group`` is the
   first fault's ``fault_id``. A group with no ``t`` by the end of the plan
   leaves every row None, "not recovered by end of run". A fault that
   overlaps no other (injected after the previous one recovered, if need be
   during its hold) has ``group`` None and is measured by steps 1 to 5 alone,
   exactly as before groups existed.

Time to detection is the first ``"failed"`` event for an affected agent at or
after injection, before the next fault hitting one of those agents. Time to
reassignment is the last ``"reassigned"`` event naming an affected agent in
that span. A coordinator crash has no detection: it reports the time until
the coordinator was live again (its ``"healed"`` event) and until every agent
of the plan had registered again (``"registered"`` or ``"returned"``); for a
node of a tree, until its own agents had registered with another coordinator
and its children had re-parented (``"reparented"``): its subtree re-attached.
A replica crash (a replicated coordinator) reports the time until a replica
served as leader again (its ``"leader"`` event), until every agent had
registered again after that, and until the first memory write issued after
the crash was acknowledged (``first_write_s``: committed by the replicas left).
Aggregates per kind (and over all faults) use nearest-rank percentiles over
outages: one recovery time for each lone fault and one for each group, the
longest ``recovery_s`` of its faults among those aggregated (over all faults
the group's recovery time; for one kind, the time from the group's first fault
of that kind), an unrecovered fault or group counting as infinitely slow.
``count`` and ``unrecovered`` count faults. The notes name each group once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harness.metrics.summary import (
    FaultRecovery,
    FaultSection,
    KindRecovery,
    WriteIntegrity,
    nearest_rank_percentiles,
)
from protocol.faults import REPLICA_FAULTS
from protocol.messages import MemVerb
from protocol.plan import Fault, FaultKind, Plan
from protocol.records import DELETED, DriverResult, MemCall, NodeEvent, StoreSnapshot

WINDOW_S = 0.1
STEP_S = 0.01
HOLD_S = 0.3
MIN_BASELINE_S = 0.5
GUARD_S = WINDOW_S  # ops due this close before a fault are hit by it (in flight when it came)
MIN_KEPT_SHARE = 0.2
MAX_LOST_KEYS = 50
BACK_KINDS: tuple[str, ...] = ("registered", "returned")
REPARENTED: tuple[str, ...] = ("reparented",)  # a child coordinator joined another parent
COORDINATOR = "coordinator"
_EPS = 1e-9
CRASHES = (FaultKind.CRASH_COORDINATOR, *REPLICA_FAULTS)  # the faults that hit no agent

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class OpColumns:
    """The plan's ops (plan order) and their unique completions, as metrics has them.

    ``origin`` holds node codes from ``codes`` (name -> code); ``done_op``
    indexes the op of each unique completion, ``done_at`` is its time.
    """

    at: FloatArray
    expected: IntArray
    origin: IntArray
    done_op: IntArray
    done_at: FloatArray
    codes: Mapping[str, int]

    def missing(self) -> IntArray:
        """Expected completions of each op that never arrived."""
        per_op = np.bincount(self.done_op, minlength=len(self.at))
        missing: IntArray = np.maximum(self.expected - per_op, 0)
        return missing


@dataclass(frozen=True, slots=True)
class _Windows:
    """Sliding-window figures: start times, throughput per second and p95 in ms."""

    starts: FloatArray
    rate: FloatArray  # nan: no figure (most offered ops left out)
    ratio: FloatArray  # completions over the completions offered in the window (nan: none)
    p95_ms: FloatArray  # nan: no op scheduled; inf: an expected completion never came


@dataclass(frozen=True, slots=True)
class _Bands:
    rate_low: float
    rate_high: float
    p95_high: float
    median_rate: float | None
    median_p95: float | None


def kind_label(kind: FaultKind) -> str:
    """``kill_agent``, ``crash_coordinator`` ... as in scenarios."""
    return kind.name.lower()


# --------------------------------------------------------------------------- origin down


def _down_by(fault: Fault, columns: OpColumns) -> BoolArray:
    """Ops this fault kept from ever being sent: a killed agent was their origin and
    they were due before its restart began. (From ``fault.end`` on the new process
    issues every op, late; a paused agent issues its ops when it resumes: both
    count, with their latency.)"""
    mask: BoolArray = np.zeros(len(columns.at), dtype=np.bool_)
    if fault.kind != FaultKind.KILL_AGENT:
        return mask
    codes = [columns.codes[a] for a in fault.agents if a in columns.codes]
    timely = (columns.at >= fault.at) & (columns.at < fault.end)
    mask |= timely & np.isin(columns.origin, codes)
    return mask


def origin_down(plan: Plan, columns: OpColumns) -> BoolArray:
    """Ops whose origin agent was dead when they were due, so they were never sent."""
    mask = np.zeros(len(columns.at), dtype=np.bool_)
    for fault in plan.faults:
        mask |= _down_by(fault, columns)
    return mask


# --------------------------------------------------------------------------- windows


def _window_starts(duration: float) -> FloatArray:
    n = max(0, math.floor((duration - WINDOW_S) / STEP_S + _EPS) + 1)
    starts: FloatArray = np.round(np.arange(n) * STEP_S, 9)
    return starts


def _count_in(times: FloatArray, starts: FloatArray, ends: FloatArray) -> IntArray:
    ordered = np.sort(times)
    counts: IntArray = np.searchsorted(ordered, ends) - np.searchsorted(ordered, starts)
    return counts


def _offered(
    columns: OpColumns, keep: BoolArray, starts: FloatArray, ends: FloatArray
) -> tuple[IntArray, IntArray]:
    """Each window's offered completions (by scheduled time): all, and of kept ops."""
    order = np.argsort(columns.at, kind="stable")
    at = columns.at[order]
    every = np.concatenate(([0], np.cumsum(columns.expected[order])))
    kept = np.concatenate(([0], np.cumsum((columns.expected * keep)[order])))
    low, high = np.searchsorted(at, starts), np.searchsorted(at, ends)
    return every[high] - every[low], kept[high] - kept[low]


def _scheduled_latencies(columns: OpColumns, keep: BoolArray) -> tuple[FloatArray, FloatArray]:
    """(scheduled time, latency) of every expected completion of the kept ops, by time."""
    done = keep[columns.done_op]
    ops = columns.done_op[done]
    missing = columns.missing()[keep]
    scheduled = np.concatenate((columns.at[ops], np.repeat(columns.at[keep], missing)))
    latency = np.concatenate(
        (columns.done_at[done] - columns.at[ops], np.full(missing.sum(), np.inf))
    )
    order = np.argsort(scheduled, kind="stable")
    return scheduled[order], latency[order]


def _window_p95_ms(
    scheduled: FloatArray, latency: FloatArray, starts: FloatArray, ends: FloatArray
) -> FloatArray:
    out = np.full(len(starts), np.nan)
    low, high = np.searchsorted(scheduled, starts), np.searchsorted(scheduled, ends)
    for i in np.flatnonzero(high > low).tolist():
        segment = latency[low[i] : high[i]]
        out[i] = nearest_rank_percentiles(segment, (95.0,))[0] * 1000.0
    return out


def _windows(plan: Plan, columns: OpColumns, excluded: BoolArray) -> _Windows:
    starts = _window_starts(plan.duration)
    ends = np.round(starts + WINDOW_S, 9)
    keep = ~excluded
    counts = _count_in(columns.done_at[keep[columns.done_op]], starts, ends)
    offered, offered_kept = _offered(columns, keep, starts, ends)
    share = np.where(offered > 0, offered_kept / np.maximum(offered, 1), 1.0)
    kept = share >= MIN_KEPT_SHARE
    rate = np.where(kept, counts / WINDOW_S / np.maximum(share, MIN_KEPT_SHARE), np.nan)
    ratio = np.where(kept & (offered_kept > 0), counts / np.maximum(offered_kept, 1), np.nan)
    scheduled, latency = _scheduled_latencies(columns, keep)
    return _Windows(starts, rate, ratio, _window_p95_ms(scheduled, latency, starts, ends))


# --------------------------------------------------------------------------- baseline


def _period_windows(windows: _Windows, start: float, end: float) -> IntArray:
    inside = (windows.starts >= start - _EPS) & (windows.starts + WINDOW_S <= end + _EPS)
    found: IntArray = np.flatnonzero(inside)
    return found


def _baseline_windows(
    plan: Plan, fault: Fault, windows: _Windows, settled: float
) -> tuple[IntArray, str]:
    """The baseline windows of ``fault`` and where they came from; ``settled`` is when
    every earlier fault had recovered (inf after one that never did)."""
    own = (max(plan.warmup, settled), fault.at - GUARD_S)
    first = (plan.warmup, min(f.at for f in plan.faults) - GUARD_S)
    periods = [(own, "pre-fault"), (first, "before the first fault")]
    for (start, end), label in periods:
        if end - start >= MIN_BASELINE_S - _EPS:
            return _period_windows(windows, start, end), label
    (start, end), label = max(periods, key=lambda p: p[0][1] - p[0][0])
    found = _period_windows(windows, start, end)
    return found, f"{label} (short)" if len(found) else "none"


def _bands(windows: _Windows, index: IntArray, band: float) -> _Bands:
    rates = windows.ratio[index]
    rates = rates[~np.isnan(rates)]
    absolute = windows.rate[index]
    absolute = absolute[~np.isnan(absolute)]
    p95 = windows.p95_ms[index]
    p95 = p95[np.isfinite(p95)]  # an outage inside the baseline must not open the band
    low, high, mid_rate = -np.inf, np.inf, None
    if len(rates):
        mid_rate = float(np.median(rates))
        low = min(mid_rate * (1 - band), float(rates.min()))
        high = max(mid_rate * (1 + band), float(rates.max()))
    p95_high, mid_p95 = np.inf, None
    if len(p95):
        mid_p95 = float(np.median(p95))
        p95_high = max(mid_p95 * (1 + band), float(p95.max()))
    median_rate = float(np.median(absolute)) if len(absolute) else None
    return _Bands(low, high, p95_high, median_rate if mid_rate is not None else None, mid_p95)


def _in_band(windows: _Windows, bands: _Bands) -> BoolArray:
    rate, p95 = windows.ratio, windows.p95_ms
    rate_ok = np.isnan(rate) | ((rate >= bands.rate_low) & (rate <= bands.rate_high))
    ok: BoolArray = rate_ok & (np.isnan(p95) | (p95 <= bands.p95_high))
    return ok


# --------------------------------------------------------------------------- recovery


def _first_recovered(ok: BoolArray) -> int | None:
    """The first index from which every window of the hold (or to the end) is in band."""
    n = len(ok)
    if n == 0:
        return None
    positions = np.arange(n)
    bad_at = np.where(ok, n, positions)
    next_bad = np.minimum.accumulate(bad_at[::-1])[::-1]
    hold_end = np.minimum(positions + round(HOLD_S / STEP_S), n - 1)
    good = np.flatnonzero(next_bad > hold_end)
    return int(good[0]) if len(good) else None


def _back_in_band(
    plan: Plan, start: float, following: float | None, windows: _Windows, ok: BoolArray
) -> float | None:
    """The first window start from ``start`` on whose hold is in band, the hold cut short
    by the ``following`` injection or the end of the plan; None when there is none."""
    # ops scheduled just before the next fault are that fault's: stop a window short
    limit = plan.duration if following is None else min(following - GUARD_S, plan.duration)
    candidates = _period_windows(windows, start, limit)
    found = _first_recovered(ok[candidates])
    return None if found is None else float(windows.starts[candidates[found]])


@dataclass(frozen=True, slots=True)
class _Outage:
    """Faults measured as one outage (step 6 of the module docstring) and its end.

    ``members`` index ``plan.faults`` in time order, the first giving the baseline;
    ``bands`` is None when it has none. ``back`` is the window start from which the
    figures stayed in band (None: never).
    """

    members: tuple[int, ...]
    source: str
    bands: _Bands | None
    back: float | None
    status: str

    @property
    def group(self) -> int | None:
        """Index (in ``plan.faults``) of the first fault of a group; None for a lone fault."""
        return self.members[0] if len(self.members) > 1 else None


def _outages(plan: Plan, windows: _Windows) -> list[_Outage]:
    """Every fault of ``plan.faults`` in exactly one outage, in time order."""
    order = sorted(range(len(plan.faults)), key=lambda i: plan.faults[i].at)
    outages: list[_Outage] = []
    settled = plan.warmup
    position = 0
    while position < len(order):
        first = plan.faults[order[position]]
        members = [order[position]]
        position += 1
        index, source = _baseline_windows(plan, first, windows, settled)
        bands = _bands(windows, index, plan.recovery_band) if len(index) else None
        ok = None if bands is None else _in_band(windows, bands)
        back, status = None, "no baseline before the fault"
        while True:
            last = plan.faults[members[-1]]
            if position < len(order) and plan.faults[order[position]].at <= last.at + _EPS:
                members.append(order[position])  # injected at the same instant
                position += 1
                continue
            if ok is None:
                break
            following = plan.faults[order[position]].at if position < len(order) else None
            back = _back_in_band(plan, last.at, following, windows, ok)
            if back is not None:
                status = "recovered"
                break
            if following is None or following >= plan.duration:
                status = "not recovered by end of run"
                break
            members.append(order[position])  # not back before the next fault: it joins
            position += 1
        outages.append(_Outage(tuple(members), source, bands, back, status))
        # after an outage that never recovered there is no normal state to compare
        # with: later faults fall back to the windows before the first fault
        if back is None:
            settled = math.inf
        else:
            recovered = first.at + round(max(back - first.at, 0.0), 6)
            settled = max(settled, recovered, *(plan.faults[i].end for i in members))
    return outages


# --------------------------------------------------------------------------- events


def _horizon(plan: Plan, fault: Fault) -> float:
    """The next injection hitting the same agents (or the same coordinator or replica),
    else infinity."""
    hit = set(fault.agents)
    for other in plan.faults:
        if other.at <= fault.at + _EPS:
            continue
        same = other.kind == fault.kind and fault.kind in CRASHES and other.node == fault.node
        if same or hit & set(other.agents):
            return other.at
    return math.inf


def _matching(
    events: Sequence[NodeEvent],
    kinds: Iterable[str],
    nodes: Iterable[str],
    start: float,
    end: float,
) -> list[NodeEvent]:
    wanted, names = set(kinds), set(nodes)
    return [
        e for e in events if e.kind in wanted and e.node in names and start - _EPS <= e.at < end
    ]


def _since(fault: Fault, events: list[NodeEvent], last: bool = False) -> float | None:
    if not events:
        return None
    chosen = max(e.at for e in events) if last else min(e.at for e in events)
    return round(chosen - fault.at, 6)


def _agent_times(
    plan: Plan, fault: Fault, events: Sequence[NodeEvent]
) -> tuple[float | None, float | None]:
    """(time to detection, time until the last reassignment) of an agent fault."""
    end = _horizon(plan, fault)
    failed = _matching(events, ("failed",), fault.agents, fault.at, end)
    moved = _matching(events, ("reassigned",), fault.agents, fault.at, end)
    return _since(fault, failed), _since(fault, moved, last=True)


def _coordinator_times(
    plan: Plan, fault: Fault, events: Sequence[NodeEvent]
) -> tuple[float | None, float | None]:
    """(time until the coordinator was live, until every agent registered again).
    For a node of a tree (``fault.node``), the second is the time until its subtree
    had re-attached elsewhere: each of its agents registered with another
    coordinator and each of its children re-parented (``protocol.failover``)."""
    end = _horizon(plan, fault)
    if fault.node:
        healed = _matching(events, ("healed",), (fault.node,), fault.at, end)
        return _since(fault, healed), _reattached(plan, fault, events, end)
    healed = _matching(events, ("healed",), (COORDINATOR,), fault.at, end)
    live = _since(fault, healed)
    back_from = fault.at + live if live is not None else fault.end
    agents = [spec.agent_id for spec in plan.agents]
    firsts = []
    for agent in agents:
        back = _matching(events, BACK_KINDS, (agent,), back_from, end)
        if not back:
            return live, None
        firsts.append(min(e.at for e in back))
    return live, (round(max(firsts) - fault.at, 6) if firsts else None)


def _failover_times(
    plan: Plan, fault: Fault, events: Sequence[NodeEvent]
) -> tuple[float | None, float | None]:
    """A replica's crash, pause or partition: (time until a replica served as leader
    again, its ``"leader"`` event; time until every agent had registered again after
    that). A fault of a replica that did not lead changes neither: the leader's
    ``"leader"`` event came before it, so both are None and the row's recovery says
    what it cost."""
    end = _horizon(plan, fault)
    leaders = _matching(
        events, ("leader",), plan.replication.replicas if plan.replication else (), fault.at, end
    )
    live = _since(fault, leaders)
    if live is None:
        return None, None
    back_from = fault.at + live
    firsts = []
    for spec in plan.agents:
        back = _matching(events, BACK_KINDS, (spec.agent_id,), back_from - _EPS, end)
        if not back:
            return live, None
        firsts.append(min(e.at for e in back))
    return live, (round(max(firsts) - fault.at, 6) if firsts else None)


def _first_write(plan: Plan, fault: Fault, calls: Sequence[MemCall] | None) -> float | None:
    """Seconds from the fault until the first memory write issued after it was
    acknowledged (committed by a quorum of the replicas); None without one."""
    end = _horizon(plan, fault)
    answered = [
        call.returned
        for call in calls or ()
        if call.verb != MemVerb.GET and call.ok and fault.at <= call.invoked < end
    ]
    return round(min(answered) - fault.at, 6) if answered else None


def _reattached(plan: Plan, fault: Fault, events: Sequence[NodeEvent], end: float) -> float | None:
    """Seconds from a tree node's crash until its agents and children had all
    re-attached (None if one never did, or it had none)."""
    agents = [spec.agent_id for spec in plan.agents if spec.coordinator == fault.node]
    children = [node.node_id for node in plan.tree if node.parent == fault.node]
    firsts = []
    for name, kinds in [*((a, BACK_KINDS) for a in agents), *((c, REPARENTED) for c in children)]:
        back = _matching(events, kinds, (name,), fault.at, end)
        if not back:
            return None
        firsts.append(min(e.at for e in back))
    return round(max(firsts) - fault.at, 6) if firsts else None


# --------------------------------------------------------------------------- per fault


def _counts(fault: Fault, columns: OpColumns, missing: IntArray) -> tuple[int, int, int]:
    """Ops scheduled in the fault window, their lost completions, ops with origin down."""
    during = (columns.at >= fault.at) & (columns.at < fault.end)
    down = int(np.count_nonzero(_down_by(fault, columns)))
    return int(np.count_nonzero(during)), int(missing[during].sum()), down


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def _row(
    plan: Plan,
    fault: Fault,
    events: Sequence[NodeEvent],
    outage: _Outage,
    counts: tuple[int, int, int],
    mem_history: Sequence[MemCall] | None,
) -> FaultRecovery:
    row = FaultRecovery(fault.fault_id, kind_label(fault.kind), fault.at, fault.end)
    row.agents, row.baseline = len(fault.agents), outage.source
    row.ops, row.lost, row.origin_down_ops = counts
    row.status = outage.status
    if outage.group is not None:
        row.group = plan.faults[outage.group].fault_id
    if outage.bands is not None:
        row.baseline_completions_per_s = outage.bands.median_rate
        row.baseline_p95_ms = _finite(outage.bands.median_p95)
    if outage.back is not None:
        row.recovery_s = round(max(outage.back - fault.at, 0.0), 6)
    if fault.kind == FaultKind.CRASH_COORDINATOR:
        row.coordinator_live_s, row.reregistered_s = _coordinator_times(plan, fault, events)
    elif fault.kind in REPLICA_FAULTS:
        row.coordinator_live_s, row.reregistered_s = _failover_times(plan, fault, events)
        row.first_write_s = _first_write(plan, fault, mem_history)
    else:
        row.detection_s, row.reassigned_s = _agent_times(plan, fault, events)
    return row


def fault_figures(plan: Plan, result: DriverResult, columns: OpColumns) -> list[FaultRecovery]:
    """One row per fault of ``plan.faults``: recovery, detection, reassignment, counts."""
    if not plan.faults:
        return []
    windows = _windows(plan, columns, origin_down(plan, columns))
    events = sorted(result.events, key=lambda e: e.at)
    missing = columns.missing()
    rows: dict[int, FaultRecovery] = {}
    for outage in _outages(plan, windows):
        for i in outage.members:
            fault = plan.faults[i]
            counts = _counts(fault, columns, missing)
            rows[i] = _row(plan, fault, events, outage, counts, result.mem_history)
    return [rows[i] for i in range(len(plan.faults))]


# --------------------------------------------------------------------------- aggregates


def nearest_rank(values: Sequence[float], percent: float) -> float | None:
    """The nearest-rank percentile; None for no values or an infinite result."""
    if not values:
        return None
    value = float(nearest_rank_percentiles(values, (percent,))[0])
    return None if math.isinf(value) else value


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def outage_recovery_times(rows: Sequence[FaultRecovery]) -> list[float]:
    """One recovery time per outage among ``rows``: a lone fault's, and for each group
    the longest of its rows' (its first row's), never recovered counting as infinite."""
    times: dict[tuple[str, int], float] = {}
    for position, row in enumerate(rows):
        key = ("row", position) if row.group is None else ("group", row.group)
        value = math.inf if row.recovery_s is None else row.recovery_s
        times[key] = max(times.get(key, value), value)
    return list(times.values())


def aggregate(rows: Sequence[FaultRecovery]) -> KindRecovery:
    """Count, recovery p50/p95/max, detection p50/p95, reassign p95 of some faults.

    ``count`` and ``unrecovered`` count faults; the recovery percentiles are over
    outages, one value per group of overlapping faults (``outage_recovery_times``)."""
    recovery = outage_recovery_times(rows)
    detection = _present(r.detection_s for r in rows)
    return KindRecovery(
        count=len(rows),
        unrecovered=sum(1 for r in rows if r.recovery_s is None),
        recovery_p50_s=nearest_rank(recovery, 50),
        recovery_p95_s=nearest_rank(recovery, 95),
        recovery_max_s=nearest_rank(recovery, 100),
        detection_p50_s=nearest_rank(detection, 50),
        detection_p95_s=nearest_rank(detection, 95),
        reassign_p95_s=nearest_rank(_present(r.reassigned_s for r in rows), 95),
        reregistered_p95_s=nearest_rank(_present(r.reregistered_s for r in rows), 95),
        lost=sum(r.lost for r in rows),
    )


def _group_note(row: FaultRecovery, rows: Sequence[FaultRecovery]) -> str:
    ids = ", ".join(str(r.fault_id) for r in rows if r.group == row.group)
    ended = row.status if row.recovery_s is None else f"recovered after {row.recovery_s:g} s"
    return f"faults {ids} overlap: measured as one outage from {row.at:g} s, {ended}"


def _notes(rows: Sequence[FaultRecovery]) -> list[str]:
    notes = []
    for row in rows:
        if row.group is not None and row.group == row.fault_id:
            notes.append(_group_note(row, rows))
        where = f"fault {row.fault_id} ({row.kind} at {row.at:g} s)"
        if row.baseline != "pre-fault":
            notes.append(f"{where}: baseline taken from {row.baseline} windows")
        if row.recovery_s is None:
            notes.append(f"{where}: {row.status}")
        if row.kind == kind_label(FaultKind.CRASH_COORDINATOR) and row.reregistered_s is None:
            notes.append(f"{where}: not every agent was seen registering again")
    return notes


def fault_section(plan: Plan, result: DriverResult, columns: OpColumns) -> FaultSection:
    """Per-fault rows, aggregates per kind and over all faults, and notes."""
    rows = fault_figures(plan, result, columns)
    if not rows:
        return FaultSection()
    kinds = sorted({r.kind for r in rows})
    return FaultSection(
        faults=rows,
        by_kind={k: aggregate([r for r in rows if r.kind == k]) for k in kinds},
        overall=aggregate(rows),
        notes=_notes(rows),
    )


# --------------------------------------------------------------------------- integrity


def _latest_acked(result: DriverResult, before: float) -> dict[tuple[str, str], tuple[int, int]]:
    """For each key, its last write acknowledged before ``before`` (by acknowledgement
    time, then version). A key whose last acknowledged write was a delete
    (``DELETED``) is left out: a later write may have been persisted before its
    reply, so either state is right."""
    latest: dict[tuple[str, str], tuple[float, int, int]] = {}
    for ack in result.write_acks:
        key = (ack.namespace, ack.key)
        if ack.at < before and (key not in latest or (ack.at, ack.version) > latest[key][:2]):
            latest[key] = (ack.at, ack.version, ack.checksum)
    return {key: (version, crc) for key, (_, version, crc) in latest.items() if crc != DELETED}


def _lost_in(
    snapshot: StoreSnapshot, acked: Mapping[tuple[str, str], tuple[int, int]]
) -> list[str]:
    lost = []
    for key, (version, crc) in sorted(acked.items()):
        stored = snapshot.entries.get(key)
        intact = stored is not None and (
            stored[0] > version or (stored[0] == version and stored[1] == crc)
        )
        if not intact:
            lost.append(f"{key[0]}/{key[1]}")
    return lost


def check_acked_writes(result: DriverResult) -> WriteIntegrity:
    """Every write acknowledged before a restart must be in the store it restarted from;
    with a quorum store, every key's last acknowledged write must be in the store at
    the end (its newest cell over every storage replica): one a concurrent writer's
    cell of the same version overwrote (last writer wins) counts as lost."""
    final = result.final_store
    if final is not None:
        acked = _latest_acked(result, math.inf)
        lost = _lost_in(final, acked)
        note = (
            f"{len(acked)} acknowledged writes (each key's last) checked against the "
            "quorum store's newest cells at the end"
        )
        return WriteIntegrity(0, len(acked), len(lost), lost[:MAX_LOST_KEYS], note)
    if not result.restarts:
        return WriteIntegrity(note="no coordinator restart: no acknowledged write to check")
    checked, lost = 0, []
    for snapshot in sorted(result.restarts, key=lambda s: s.at):
        acked = _latest_acked(result, snapshot.at)
        checked += len(acked)
        lost.extend(_lost_in(snapshot, acked))
    restarts = len(result.restarts)
    note = f"{checked} acknowledged writes checked over {restarts} restart(s)"
    return WriteIntegrity(restarts, checked, len(lost), lost[:MAX_LOST_KEYS], note)
