"""Turn a driver's event records into figures: the one metrics module for both backends.

``summarize(plan, result)`` is the only entry point. The real asyncio driver and
the SimPy model both return a :class:`~protocol.records.DriverResult`, and both
go through exactly this code, so a figure means the same thing for either
backend (docs/design.md, "Metrics").

How it works, in order:

1. The plan's operations and the result's completions are turned into numpy
   columns once (op index, node code, time, flags). Node names become small
   integer codes through one dict shared by origins and receivers. Completions
   naming an op id that is not in the plan are counted and otherwise ignored.
2. *Unique* completions are chosen: among non-duplicate records, the earliest
   per ``(op_id, node)`` pair. Records flagged ``duplicate=True`` were
   suppressed by the receiver; repeated non-duplicate pairs mean a handler ran
   twice (a protocol bug) and are reported as ``handler_duplicates``.
3. Latency is ``completion.at - op.at``: from the op's *scheduled* time,
   which corrects for coordinated omission as wrk2 does. Only ops scheduled
   in the steady-state window ``[warmup, duration)`` count. Values are whole
   microseconds (below 1 us clamped to 1, above 1 h to 1 h). An expected
   completion that never arrived counts as infinitely late (``incomplete``),
   unless its op was shed (step 5) or its origin was down when it was due
   (never sent, ``harness.metrics.recovery``), so a tail of missing completions
   shows in the percentiles instead of vanishing from them. The headline and
   per-kind percentiles are nearest-rank (``nearest_rank_percentiles``): the
   value at rank ``ceil(p / 100 * n)`` of the sorted sample, exact; a rank
   that lands on a missing completion gives ``math.inf`` (summary.json has
   null, ``harness.metrics.summary``); ``harness.metrics.latency`` computes them. The
   measured values are also recorded in HDR histograms (1 us .. 1 h, 3
   significant digits) that the run folder keeps; to stay fast they are
   first grouped into HDR buckets with numpy and each bucket is recorded
   once with ``record_value(value, count)``, which gives the same counts as
   recording every value one by one. The maximum comes from the histogram
   (the top of its bucket); the mean is the exact arithmetic mean; both are
   over the measured latencies only.
4. Throughput counts unique completions whose *completion* time falls in the
   window; ``ops_per_s`` counts ops whose last expected completion falls in
   the window; offered rates come from the plan.
5. Reliability is over the accepted work of the plan: expected completions
   that arrived, each ``(op, node)`` once, so deliveries to unexpected nodes
   (``excess``) never offset missing ones, over the expected completions of
   ops that were not shed. An op is shed when ``DriverResult.shed`` names it
   (its origin gave up before the coordinator accepted it), it was not
   accepted after all (an ``Accepted``, a write ack or a memory reply) and
   none of its completions arrived; shed work is neither delivered nor lost.
   Losses are split by what the origin saw: accepted, never sent (its origin
   was killed or paused, ``harness.metrics.recovery``), or neither. The run is
   *overloaded* when it shed any op or delivered less than 97 %
   (``OVERLOAD_DELIVERED_PERCENT``) of its accepted work. Uptime is the
   share of probes answered within ``plan.probe_deadline``. Agents
   coordinated are agents registered by the window start that received, or
   originated, a completed op in every quarter of the window.
6. The timeline has 100 ms bins: unique deliveries and completions by
   completion time, p95 of those completions' latencies (interpolated, over
   the completions that arrived: a bin is a completion time, which a missing
   completion does not have), and ops offered by scheduled time.
7. Faults (``harness.metrics.recovery``): per fault, recovery, detection and
   reassignment times from sliding windows and node events, aggregated per
   kind; and acknowledged memory writes checked against every store a
   coordinator restarted from. A plan without faults gets an empty section.
8. Monitoring coverage (``harness.metrics.monitoring``): the components present in
   the run's status snapshot with a health state and sane metrics.
9. Validity (``invalid_reasons``, the one place it is decided): a run whose
   driver reported errors (``DriverResult.errors``: a core exception, a failed
   worker, a coordinator that did not restart) is invalid. Its figures are
   still computed, for diagnosis, but ``Summary.valid`` is False.

The figures land in a ``harness.metrics.summary.Summary`` (re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from harness.metrics.latency import (
    HDR_HIGHEST_US,
    HDR_LOWEST_US,
    encode_histogram,
    kind_latency,
    latency_figures,
    new_histogram,
    record_many,
)
from harness.metrics.linearizable import check_integrity
from harness.metrics.monitoring import monitoring_section
from harness.metrics.recovery import OpColumns, fault_section, origin_down
from harness.metrics.spawn import spawn_section
from harness.metrics.summary import (
    MISSED_SHOWN,
    OVERLOAD_DELIVERED_PERCENT,
    PERCENTILE_FIGURES,
    Agents,
    Availability,
    Figure,
    KindLatency,
    LatencyFigures,
    Reliability,
    Resource,
    Summary,
    Throughput,
    TimelineBin,
    nearest_rank_percentiles,
)
from harness.metrics.tasks import task_section
from native.heap import gc_paused
from protocol.plan import OpKind, Plan
from protocol.records import Completion, DriverResult, ProbeResult, ProcessUsage

BIN_SECONDS = 0.1
MIB = 1024 * 1024
# a process that waited for a core this share of the run or more is named in a note
CORE_WAIT_NOTE = 0.05
DELIVERY_KINDS: tuple[OpKind, ...] = (OpKind.PUBLISH, OpKind.DIRECT, OpKind.BROADCAST)
_EPS = 1e-9

__all__ = [
    "BIN_SECONDS",
    "Figure",
    "Summary",
    "TimelineBin",
    "kind_name",
    "nearest_rank_percentiles",
    "new_histogram",
    "record_many",
    "summarize",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def kind_name(kind: OpKind) -> str:
    """The lower-case name used in keys: ``publish``, ``direct`` ..."""
    return kind.name.lower()


# --------------------------------------------------------------------------- columns


@dataclass(slots=True)
class _Ops:
    """The plan's operations as columns, in plan order."""

    ids: IntArray
    at: FloatArray
    kind: IntArray
    expected: IntArray
    origin: IntArray

    def locate(self, op_ids: IntArray) -> IntArray:
        """Index into these columns for each op id; -1 where the id is not in the plan."""
        n = len(self.ids)
        if n == 0:
            return np.full(len(op_ids), -1, dtype=np.int64)
        if self.ids[0] == 1 and np.array_equal(self.ids, np.arange(1, n + 1)):
            found = (op_ids >= 1) & (op_ids <= n)
            return np.where(found, op_ids - 1, -1)
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, op_ids), 0, n - 1)
        return np.where(sorted_ids[pos] == op_ids, order[pos], -1)


@dataclass(slots=True)
class _Records:
    """Completion records as columns; ``op`` is an index into ``_Ops`` (-1 unknown)."""

    op: IntArray
    node: IntArray
    at: FloatArray
    duplicate: BoolArray
    intact: BoolArray


@dataclass(slots=True)
class _Unique:
    """The earliest non-duplicate completion of each ``(op, node)`` pair."""

    op: IntArray
    node: IntArray
    at: FloatArray
    latency_us: IntArray
    kind: IntArray
    scheduled: FloatArray
    handler_duplicates: int
    early: int  # completions more than 1 us before their op's scheduled time


def _encode_names(names: Sequence[str], codes: dict[str, int]) -> IntArray:
    """Map names to integer codes, adding new names to ``codes``."""
    for name in dict.fromkeys(names):
        codes.setdefault(name, len(codes))
    return np.fromiter(map(codes.__getitem__, names), dtype=np.int64, count=len(names))


def _ops_columns(plan: Plan, codes: dict[str, int]) -> _Ops:
    ops = plan.operations
    n = len(ops)

    def column(attr: str, dtype: type) -> npt.NDArray[Any]:
        return np.fromiter(map(attrgetter(attr), ops), dtype=dtype, count=n)

    origins = list(map(attrgetter("origin"), ops))
    return _Ops(
        ids=column("op_id", np.int64),
        at=column("at", np.float64),
        kind=column("kind", np.int64),
        expected=column("expected", np.int64),
        origin=_encode_names(origins, codes),
    )


class CompletionColumns(NamedTuple):
    """``Completion`` records as columns, in the records' order."""

    op_id: npt.NDArray[np.int64]
    node: list[str]
    at: npt.NDArray[np.float64]
    duplicate: npt.NDArray[np.bool_]
    intact: npt.NDArray[np.bool_]


@gc_paused()  # zip makes an iterator per record: with the records alive, each pass touches all
def completion_columns(completions: Sequence[Completion]) -> CompletionColumns:
    """The records' fields as columns, read in one pass over the records.

    Millions of records lie scattered over the heap, so every pass over them is
    mostly cache misses: one ``zip`` pass, then arrays from the packed tuples,
    took 0.47 s for 800k model records where a ``fromiter`` per field took 0.75 s."""
    n = len(completions)
    if n == 0:
        fields: list[tuple[Any, ...]] = [()] * len(Completion._fields)
    else:
        fields = list(zip(*completions, strict=True))
    return CompletionColumns(
        op_id=np.fromiter(fields[0], dtype=np.int64, count=n),
        node=list(fields[1]),
        at=np.fromiter(fields[2], dtype=np.float64, count=n),
        duplicate=np.fromiter(fields[3], dtype=np.bool_, count=n),
        intact=np.fromiter(fields[4], dtype=np.bool_, count=n),
    )


def _record_columns(columns: CompletionColumns, ops: _Ops, codes: dict[str, int]) -> _Records:
    return _Records(
        op=ops.locate(columns.op_id),
        node=_encode_names(columns.node, codes),
        at=columns.at,
        duplicate=columns.duplicate,
        intact=columns.intact,
    )


def _unique_completions(records: _Records, ops: _Ops, n_nodes: int) -> _Unique:
    """Pick the earliest non-duplicate record per (op, node); count the repeats."""
    candidates = np.flatnonzero(~records.duplicate & (records.op >= 0))
    times = records.at[candidates]
    if len(times) > 1 and bool(np.any(times[1:] < times[:-1])):
        by_time = candidates[np.argsort(times, kind="stable")]
    else:
        by_time = candidates
    keys = records.op[by_time] * max(n_nodes, 1) + records.node[by_time]
    _, first = np.unique(keys, return_index=True)  # stable: earliest of each pair
    chosen = by_time[first]
    op = records.op[chosen]
    at = records.at[chosen]
    scheduled = ops.at[op]
    latency = at - scheduled
    return _Unique(
        op=op,
        node=records.node[chosen],
        at=at,
        latency_us=_to_microseconds(latency),
        kind=ops.kind[op],
        scheduled=scheduled,
        handler_duplicates=len(candidates) - len(chosen),
        early=int(np.count_nonzero(latency < -1e-6)),
    )


def _to_microseconds(seconds: FloatArray) -> IntArray:
    """Seconds to whole microseconds, clamped to the histogram's range."""
    micros = np.rint(seconds * 1e6)
    return np.clip(micros, HDR_LOWEST_US, HDR_HIGHEST_US).astype(np.int64)


# --------------------------------------------------------------------------- figures


def _in_window(times: FloatArray, plan: Plan) -> BoolArray:
    return (times >= plan.warmup) & (times < plan.duration)


def _is_delivery(kinds: IntArray) -> BoolArray:
    return np.isin(kinds, [int(k) for k in DELIVERY_KINDS])


def _rate(count: int, window: float) -> float:
    return count / window if window > 0 else 0.0


def _finish_times(ops: _Ops, unique: _Unique, per_op: IntArray) -> FloatArray:
    """When each op got its last expected completion (inf if it never did).

    An op that expects nothing finishes at its scheduled time.
    """
    last = np.full(len(ops.at), -np.inf)
    np.maximum.at(last, unique.op, unique.at)
    last = np.where(ops.expected == 0, ops.at, last)
    return np.where(per_op >= ops.expected, last, np.inf)


def _throughput(plan: Plan, ops: _Ops, unique: _Unique, per_op: IntArray) -> Throughput:
    window = max(plan.duration - plan.warmup, 0.0)
    done = _in_window(unique.at, plan)
    deliveries = int(np.count_nonzero(done & _is_delivery(unique.kind)))
    completions = int(np.count_nonzero(done))
    scheduled = _in_window(ops.at, plan)
    finished = _in_window(_finish_times(ops, unique, per_op), plan)
    ops_completed = int(np.count_nonzero(finished))
    offered_ops = int(np.count_nonzero(scheduled))
    offered_deliveries = int(ops.expected[scheduled & _is_delivery(ops.kind)].sum())
    return Throughput(
        window_s=window,
        deliveries=deliveries,
        ops_completed=ops_completed,
        completions=completions,
        offered_ops=offered_ops,
        offered_deliveries=offered_deliveries,
        deliveries_per_s=_rate(deliveries, window),
        ops_per_s=_rate(ops_completed, window),
        completions_per_s=_rate(completions, window),
        offered_ops_per_s=_rate(offered_ops, window),
        offered_deliveries_per_s=_rate(offered_deliveries, window),
    )


def _accepted(result: DriverResult, ops: _Ops, per_op: IntArray) -> BoolArray:
    """Ops their origin saw accepted: an ``Accepted``, a write ack or a memory reply."""
    named = [*result.accepted, *(ack.op_id for ack in result.write_acks)]
    mask = np.zeros(len(ops.ids), dtype=np.bool_)
    found = ops.locate(np.array(named, dtype=np.int64))
    mask[found[found >= 0]] = True
    return mask | ((ops.kind == int(OpKind.MEMORY)) & (per_op > 0))


def _shed(result: DriverResult, ops: _Ops, per_op: IntArray, accepted: BoolArray) -> BoolArray:
    """Ops shed before acceptance: named in ``result.shed``, not accepted, never completed.

    Ids that are not in the plan are ignored.
    """
    mask = np.zeros(len(ops.ids), dtype=np.bool_)
    found = ops.locate(np.array(result.shed, dtype=np.int64))
    mask[found[found >= 0]] = True
    shed: BoolArray = mask & ~accepted & (per_op == 0)
    return shed


def _loss_split(
    missing: IntArray, accepted: BoolArray, down: BoolArray, shed: BoolArray
) -> dict[str, int]:
    """Lost completions of accepted ops, of ops never sent (origin down), of the rest.

    Shed ops are not lost, so none of the three counts them.
    """
    never_sent = down & ~accepted & ~shed
    return {
        "lost_acked": int(missing[accepted].sum()),
        "lost_origin_down": int(missing[never_sent].sum()),
        "lost_unaccepted": int(missing[~accepted & ~never_sent & ~shed].sum()),
    }


def _reliability(
    records: _Records,
    ops: _Ops,
    unique: _Unique,
    per_op: IntArray,
    shed: BoolArray,
    split: dict[str, int],
) -> Reliability:
    expected = int(ops.expected.sum())
    shed_ops = int(np.count_nonzero(shed))
    shed_expected = int(ops.expected[shed].sum())
    accepted = expected - shed_expected  # the work the system took on
    n_unique = len(unique.op)
    delivered = int(np.minimum(per_op, ops.expected).sum())  # excess never hides a loss
    suppressed = int(np.count_nonzero(records.duplicate))
    corrupted = int(np.count_nonzero(~records.intact & ~records.duplicate))
    if n_unique:
        integrity = min(max(1.0 - corrupted / n_unique, 0.0), 1.0)
    else:
        integrity = 1.0 if corrupted == 0 else 0.0
    short = delivered * 100 < OVERLOAD_DELIVERED_PERCENT * accepted  # integers: exact
    return Reliability(
        expected=expected,
        unique=n_unique,
        lost=accepted - delivered,
        duplicates=suppressed + unique.handler_duplicates,
        suppressed_duplicates=suppressed,
        handler_duplicates=unique.handler_duplicates,
        excess=int(np.maximum(per_op - ops.expected, 0).sum()),
        unknown_op=int(np.count_nonzero(records.op < 0)),
        corrupted=corrupted,
        reliability=delivered / accepted if accepted else 1.0,
        data_integrity=integrity,
        shed_ops=shed_ops,
        shed=shed_expected,
        overloaded=shed_ops > 0 or short,
        **split,
    )


def _availability(probes: Sequence[ProbeResult], deadline: float) -> Availability:
    on_time = late = unanswered = 0
    missed: list[list[float | None]] = []
    for probe in probes:
        if probe.on_time(deadline):
            on_time += 1
            continue
        if probe.answered is None:
            unanswered += 1
        else:
            late += 1
        if len(missed) < MISSED_SHOWN:
            delay = None if probe.answered is None else round(probe.answered - probe.sent, 6)
            missed.append([round(probe.sent, 6), delay])
    return Availability(
        probes=len(probes),
        on_time=on_time,
        late=late,
        unanswered=unanswered,
        deadline_s=deadline,
        uptime=on_time / len(probes) if probes else None,
        missed=missed,
    )


ACTIVITY_SLICES = 4  # "throughout the window": active in each quarter of it


def _agents(
    plan: Plan, result: DriverResult, ops: _Ops, unique: _Unique, codes: dict[str, int]
) -> Agents:
    early = [agent for agent, at in result.registered.items() if at <= plan.warmup]
    active: set[int] | None = None
    edges = np.linspace(plan.warmup, plan.duration, ACTIVITY_SLICES + 1)
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        done = (unique.at >= start) & (unique.at < end)
        both = np.concatenate((unique.node[done], ops.origin[unique.op[done]]))
        seen = set(np.unique(both).tolist())
        active = seen if active is None else active & seen
    coordinated = sum(1 for agent in early if codes.get(agent, -1) in (active or set()))
    return Agents(
        registered=len(result.registered),
        registered_before_window=len(early),
        coordinated=coordinated,
    )


def _bin_index(times: FloatArray, n_bins: int) -> IntArray:
    index = np.floor(times / BIN_SECONDS + _EPS).astype(np.int64)
    return np.clip(index, 0, n_bins - 1)


def _per_bin_p95_ms(bins: IntArray, latency_us: IntArray, n_bins: int) -> FloatArray:
    """p95 (linear interpolation, as numpy's default) of the latencies in each bin.

    Deliberately not nearest-rank like the headline figures: this is a plot
    line, and a bin holds completions by completion time, so it has only
    the latencies that arrived (none count as infinite here).
    """
    out = np.full(n_bins, np.nan)
    if len(bins) == 0:
        return out
    ordered = np.sort(bins * (HDR_HIGHEST_US + 1) + latency_us)
    sorted_bins = ordered // (HDR_HIGHEST_US + 1)
    sorted_lat = (ordered % (HDR_HIGHEST_US + 1)).astype(np.float64)
    counts = np.bincount(sorted_bins, minlength=n_bins)
    starts = np.cumsum(counts) - counts
    filled = counts > 0
    pos = starts[filled] + (counts[filled] - 1) * 0.95
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, starts[filled] + counts[filled] - 1)
    frac = pos - low
    out[filled] = (sorted_lat[low] + (sorted_lat[high] - sorted_lat[low]) * frac) / 1000.0
    return out


def _timeline(plan: Plan, result: DriverResult, ops: _Ops, unique: _Unique) -> list[TimelineBin]:
    last = float(unique.at.max()) if len(unique.at) else 0.0
    span = max(plan.duration, result.end_time, last + _EPS)
    n_bins = max(1, math.ceil(span / BIN_SECONDS - _EPS))
    bins = _bin_index(unique.at, n_bins)
    completions = np.bincount(bins, minlength=n_bins)
    deliveries = np.bincount(bins[_is_delivery(unique.kind)], minlength=n_bins)
    offered = np.bincount(_bin_index(ops.at, n_bins), minlength=n_bins)
    p95 = _per_bin_p95_ms(bins, unique.latency_us, n_bins)
    return [
        TimelineBin(
            t=round(i * BIN_SECONDS, 6),
            deliveries=int(deliveries[i]),
            completions=int(completions[i]),
            p95_ms=None if math.isnan(p95[i]) else float(p95[i]),
            offered=int(offered[i]),
        )
        for i in range(n_bins)
    ]


def _resources(processes: Sequence[ProcessUsage]) -> list[Resource]:
    return [
        Resource(
            name=p.name,
            peak_rss_mb=p.peak_rss_bytes / MIB,
            cpu_seconds=p.cpu_seconds,
            cpu_wait_seconds=p.wait_seconds,
        )
        for p in processes
    ]


def _core_wait_note(processes: Sequence[ProcessUsage], duration: float) -> str | None:
    """A note naming the processes that waited for a core for at least
    ``CORE_WAIT_NOTE`` of the run: part of their latency was the machine's."""
    waited = [
        (p.name, p.wait_seconds)
        for p in processes
        if p.wait_seconds is not None
        and duration > 0
        and p.wait_seconds >= CORE_WAIT_NOTE * duration
    ]
    if not waited:
        return None
    listed = ", ".join(f"{name} {wait:.2f} s ({wait / duration:.0%})" for name, wait in waited)
    return (
        f"processes were ready to run but waited for a core (the kernel's run-queue delay, "
        f"over each process's life, against the {duration:g} s run): {listed}; that wait "
        "is part of the latency measured: the processes share too few cores (with each other "
        "or with anything else this machine runs)"
    )


def _notes(
    result: DriverResult,
    reliability: Reliability,
    latency: LatencyFigures,
    unique: _Unique,
    duration: float,
) -> list[str]:
    notes = list(result.notes)
    waited = _core_wait_note(result.processes, duration)
    if waited is not None:
        notes.append(waited)
    if reliability.unknown_op:
        notes.append(f"{reliability.unknown_op} completions named op ids not in the plan")
    if reliability.handler_duplicates:
        notes.append(f"{reliability.handler_duplicates} handler-level duplicate completions")
    if reliability.shed_ops:
        notes.append(
            f"{reliability.shed_ops} ops ({reliability.shed} expected completions) were shed "
            "before the coordinator accepted them: neither delivered nor lost, and left out "
            "of reliability"
        )
    if reliability.lost:
        notes.append(f"{reliability.lost} expected completions of ops not shed never arrived")
    if latency.incomplete:
        infinite = [name for name in PERCENTILE_FIGURES if getattr(latency, name) == math.inf]
        notes.append(
            f"{latency.incomplete} expected completions of ops scheduled in the steady-state "
            "window never arrived and count as infinitely late in the latency percentiles"
            + (f" ({', '.join(infinite)} infinite)" if infinite else "")
        )
    if unique.early:
        notes.append(f"{unique.early} completions came before their scheduled time (clock?)")
    clamped = int(np.count_nonzero(unique.latency_us >= HDR_HIGHEST_US))
    if clamped:
        notes.append(f"{clamped} latencies at or above 1 h were clamped to 1 h")
    return notes


def _latency_section(
    plan: Plan, ops: _Ops, unique: _Unique, owed: IntArray
) -> tuple[LatencyFigures, dict[str, KindLatency], dict[str, str]]:
    """Overall and per-kind latency; ``owed`` is each op's missing completions that
    count as infinitely late (zero for shed ops and ops whose origin was down)."""
    steady = _in_window(unique.scheduled, plan)
    latency_us = unique.latency_us[steady]
    kinds = unique.kind[steady]
    owed = np.where(_in_window(ops.at, plan), owed, 0)
    overall, hist = latency_figures(latency_us, int(owed.sum()))
    histograms = {"latency": encode_histogram(hist)}
    by_kind: dict[str, KindLatency] = {}
    for kind in OpKind:
        missing = int(owed[ops.kind == int(kind)].sum())
        figures, kind_hist = kind_latency(latency_us[kinds == int(kind)], missing)
        by_kind[kind_name(kind)] = figures
        if figures.count:
            histograms[f"latency-{kind_name(kind)}"] = encode_histogram(kind_hist)
    return overall, by_kind, histograms


def _op_columns(ops: _Ops, unique: _Unique, codes: dict[str, int]) -> OpColumns:
    return OpColumns(ops.at, ops.expected, ops.origin, unique.op, unique.at, codes)


def invalid_reasons(result: DriverResult) -> list[str]:
    """Why the run itself is invalid (empty when its figures are evidence).

    The one place validity is decided, from the driver's explicit signals:
    every entry of ``DriverResult.errors``, in order, each once. Free-text
    ``notes`` never decide it.
    """
    return list(dict.fromkeys(result.errors))


@gc_paused()  # the run's records are alive: the collector's passes would touch each
def summarize(plan: Plan, result: DriverResult, made: CompletionColumns | None = None) -> Summary:
    """Turn one driver's records for ``plan`` into a :class:`Summary`; ``made``:
    ``completion_columns(result.completions)`` when the caller has made them already."""
    codes: dict[str, int] = {}
    ops = _ops_columns(plan, codes)
    if made is None:
        made = completion_columns(result.completions)
    records = _record_columns(made, ops, codes)
    unique = _unique_completions(records, ops, len(codes))
    per_op = np.bincount(unique.op, minlength=len(ops.ids))
    columns = _op_columns(ops, unique, codes)
    missing = np.maximum(ops.expected - per_op, 0)
    down = origin_down(plan, columns)
    accepted = _accepted(result, ops, per_op)
    shed = _shed(result, ops, per_op, accepted)
    owed = np.where(shed | (down & ~accepted), 0, missing)  # never sent: not late
    latency, by_kind, histograms = _latency_section(plan, ops, unique, owed)
    split = _loss_split(missing, accepted, down, shed)
    reliability = _reliability(records, ops, unique, per_op, shed, split)
    return Summary(
        backend=result.backend,
        transport=result.transport,
        seed=plan.seed,
        duration=plan.duration,
        warmup=plan.warmup,
        wall_seconds=result.wall_seconds,
        end_time=result.end_time,
        latency=latency,
        latency_by_kind=by_kind,
        throughput=_throughput(plan, ops, unique, per_op),
        reliability=reliability,
        availability=_availability(result.probes, plan.probe_deadline),
        agents=_agents(plan, result, ops, unique, codes),
        timeline=_timeline(plan, result, ops, unique),
        resources=_resources(result.processes),
        notes=_notes(result, reliability, latency, unique, plan.duration),
        faults=fault_section(plan, result, columns),
        integrity=check_integrity(result),
        monitoring=monitoring_section(plan, result, unique.at, unique.kind),
        tasks=task_section(
            ops.ids,
            ops.at,
            ops.kind,
            unique.op,
            unique.at,
            result.coordinators,
            result.task_stamps,
        ),
        spawn=spawn_section(result),
        invalid_reasons=invalid_reasons(result),
        histograms=histograms,
    )
