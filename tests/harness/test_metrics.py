"""Metrics, comparison and table rendering on small synthetic runs with known answers."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from rich.console import Console

from harness.metrics.compare import (
    aggregate,
    compare,
    compare_runs,
    mean_ci,
    percent_error,
    t_critical_95,
)
from harness.metrics.figures import (
    Summary,
    invalid_reasons,
    nearest_rank_percentiles,
    new_histogram,
    record_many,
    summarize,
)
from harness.metrics.summary import InvalidRunError, require_valid
from harness.render.table import console_print, render_history, render_summary_table
from harness.scenario.schema import Target, load_scenario
from harness.scenario.targets import evaluate_targets, render_targets
from protocol.plan import AgentSpec, Fault, FaultKind, Operation, OpKind, Plan
from protocol.records import Completion, DriverResult, ProbeResult, ProcessUsage

AGENTS = ("a", "b", "c", "d")
ROOT = Path(__file__).resolve().parents[2]


def make_plan(
    ops: list[tuple[float, OpKind, str, int]],
    duration: float = 10.0,
    warmup: float = 1.0,
    first_id: int = 1,
    step: int = 1,
) -> Plan:
    """Ops given as (at, kind, origin, expected), numbered in order of ``at``."""
    operations = tuple(
        Operation(first_id + i * step, at, kind, origin, "t", 64, expected)
        for i, (at, kind, origin, expected) in enumerate(sorted(ops, key=lambda o: o[0]))
    )
    return Plan(
        seed=7,
        duration=duration,
        warmup=warmup,
        agents=tuple(AgentSpec(a) for a in AGENTS),
        operations=operations,
        probe_deadline=0.05,
    )


def make_result(
    completions: list[Completion],
    probes: list[ProbeResult] | None = None,
    registered: dict[str, float] | None = None,
    end_time: float = 10.0,
) -> DriverResult:
    return DriverResult(
        backend="sim",
        transport="inproc",
        completions=completions,
        probes=probes or [],
        registered=dict.fromkeys(AGENTS, 0.0) if registered is None else registered,
        end_time=end_time,
        wall_seconds=1.5,
        processes=[ProcessUsage("coordinator", 100 * 1024 * 1024, 2.5)],
    )


def done(op_id: int, node: str, at: float, *, dup: bool = False, ok: bool = True) -> Completion:
    return Completion(op_id, node, at, dup, ok)


def test_latency_is_measured_from_the_scheduled_time() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    summary = summarize(plan, make_result([done(1, "b", 2.003)]))
    assert summary.latency.count == 1
    assert summary.latency.p50_ms == pytest.approx(3.0, rel=1e-3)
    assert summary.latency.p99_ms == pytest.approx(3.0, rel=1e-3)
    assert summary.latency.max_ms == pytest.approx(3.0, rel=1e-3)
    assert summary.latency.mean_ms == pytest.approx(3.0)
    assert summary.latency_by_kind["direct"].count == 1
    assert summary.latency_by_kind["publish"].count == 0
    assert summary.latency_by_kind["publish"].p95_ms is None


def test_warmup_and_late_ops_are_excluded_from_latency() -> None:
    plan = make_plan(
        [
            (0.5, OpKind.DIRECT, "a", 1),  # warm-up
            (2.0, OpKind.DIRECT, "a", 1),  # steady state
            (10.0, OpKind.DIRECT, "a", 1),  # at duration: outside [warmup, duration)
        ]
    )
    result = make_result([done(1, "b", 0.6), done(2, "b", 2.003), done(3, "b", 10.2)])
    summary = summarize(plan, result)
    assert summary.latency.count == 1
    assert summary.latency.max_ms == pytest.approx(3.0, rel=1e-3)
    assert summary.reliability.unique == 3


def test_sub_microsecond_latency_is_clamped_to_one_microsecond() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    summary = summarize(plan, make_result([done(1, "b", 2.0)]))
    assert summary.latency.p50_ms == pytest.approx(0.001)


def test_completion_before_its_schedule_is_clamped_and_noted() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    summary = summarize(plan, make_result([done(1, "b", 1.9)]))
    assert summary.latency.max_ms == pytest.approx(0.001)
    assert any("before their scheduled time" in note for note in summary.notes)


def test_duplicates_are_not_unique_and_the_earliest_completion_counts() -> None:
    plan = make_plan([(2.0, OpKind.PUBLISH, "a", 2)])
    result = make_result(
        [
            done(1, "b", 2.010),  # a handler-level repeat, recorded before the earlier one
            done(1, "b", 2.004),
            done(1, "b", 2.020, dup=True),  # suppressed redelivery
            done(1, "c", 2.005),
        ]
    )
    summary = summarize(plan, result)
    rel = summary.reliability
    assert (rel.unique, rel.lost, rel.reliability) == (2, 0, 1.0)
    assert rel.suppressed_duplicates == 1
    assert rel.handler_duplicates == 1
    assert rel.duplicates == 2
    assert summary.latency.count == 2
    assert summary.latency.max_ms == pytest.approx(5.0, rel=1e-3)
    assert any("handler-level" in note for note in summary.notes)


def test_lost_reliability_and_integrity() -> None:
    plan = make_plan([(2.0, OpKind.BROADCAST, "a", 3), (3.0, OpKind.TASK, "a", 1)])
    result = make_result([done(1, "b", 2.001), done(1, "c", 2.002, ok=False), done(2, "a", 3.1)])
    rel = summarize(plan, result).reliability
    assert (rel.expected, rel.unique, rel.lost) == (4, 3, 1)
    assert rel.reliability == pytest.approx(0.75)
    assert rel.corrupted == 1
    assert rel.data_integrity == pytest.approx(1 - 1 / 3)


def test_empty_plan_is_fully_reliable_and_has_no_latency() -> None:
    summary = summarize(make_plan([]), make_result([]))
    assert summary.reliability.reliability == 1.0
    assert summary.reliability.lost == 0
    assert summary.latency.count == 0
    assert summary.latency.p95_ms is None
    assert summary.availability.uptime is None
    assert summary.throughput.deliveries_per_s == 0.0


def test_unknown_op_ids_are_counted_and_ignored() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    summary = summarize(plan, make_result([done(1, "b", 2.001), done(99, "b", 2.002)]))
    assert summary.reliability.unique == 1
    assert summary.reliability.unknown_op == 1


def test_op_ids_need_not_be_one_to_n() -> None:
    ops = [(2.0, OpKind.DIRECT, "a", 1), (3.0, OpKind.DIRECT, "a", 1)]
    plan = make_plan(ops, first_id=10, step=10)  # ids 10 and 20
    summary = summarize(plan, make_result([done(20, "b", 3.007), done(10, "b", 2.002)]))
    assert summary.reliability.unique == 2
    assert summary.latency.max_ms == pytest.approx(7.0, rel=1e-3)
    assert summary.latency.p50_ms == pytest.approx(2.0, rel=1e-3)


def test_throughput_counts_the_steady_state_window() -> None:
    ops = [
        (0.5, OpKind.PUBLISH, "a", 2),  # warm-up op, delivered in the window
        (2.0, OpKind.PUBLISH, "a", 2),  # complete
        (3.0, OpKind.PUBLISH, "a", 2),  # one recipient missing
        (4.0, OpKind.TASK, "a", 1),  # complete
    ]
    plan = make_plan(ops, duration=10.0, warmup=1.0)
    result = make_result(
        [
            done(1, "b", 1.1),
            done(1, "c", 0.9),  # before the window
            done(2, "b", 2.1),
            done(2, "c", 2.2),
            done(3, "b", 3.1),
            done(4, "a", 4.5),
        ]
    )
    thr = summarize(plan, result).throughput
    assert thr.window_s == pytest.approx(9.0)
    assert thr.deliveries == 4  # 1.1, 2.1, 2.2, 3.1
    assert thr.deliveries_per_s == pytest.approx(4 / 9)
    assert thr.completions == 5
    assert thr.ops_completed == 3  # ops 1, 2 and 4 got their last completion in the window
    assert thr.ops_per_s == pytest.approx(3 / 9)
    assert thr.offered_ops == 3
    assert thr.offered_deliveries == 4
    assert thr.offered_deliveries_per_s == pytest.approx(4 / 9)


def test_uptime_counts_late_and_missing_probes_as_down() -> None:
    probes = [
        ProbeResult(1, 1.0, 1.01),
        ProbeResult(2, 1.1, 1.15),  # exactly at the deadline: on time
        ProbeResult(3, 1.2, 1.30),  # late
        ProbeResult(4, 1.3, None),  # never answered
    ]
    availability = summarize(make_plan([]), make_result([], probes=probes)).availability
    assert (availability.on_time, availability.late, availability.unanswered) == (2, 1, 1)
    assert availability.uptime == pytest.approx(0.5)
    assert availability.missed == [[1.2, pytest.approx(0.1)], [1.3, None]]  # when, how late


def test_agents_coordinated_needs_early_registration_and_activity_throughout() -> None:
    # window [1, 9) in quarters of 2 s; "a" sends to "b" once per quarter
    ops = [(at, OpKind.DIRECT, "a", 1) for at in (1.5, 3.5, 5.5, 7.5)]
    ops += [(0.2, OpKind.DIRECT, "d", 1), (2.0, OpKind.DIRECT, "e", 1)]
    plan = make_plan(ops, duration=9.0, warmup=1.0)
    registered = {"a": 0.0, "b": 1.0, "c": 3.0, "d": 0.1, "e": 0.5}
    # ops (sorted by at): 1 = d at 0.2, 2 = a at 1.5, 3 = e at 2.0, 4..6 = a at 3.5/5.5/7.5
    records = [done(1, "d", 0.3), done(3, "c", 2.1)]
    records += [
        done(op_id, "b", at + 0.001) for op_id, at in ((2, 1.5), (4, 3.5), (5, 5.5), (6, 7.5))
    ]
    agents = summarize(plan, make_result(records, registered=registered)).agents
    assert agents.registered == 5
    assert agents.registered_before_window == 4  # a, b, d, e
    # a (origin) and b (receiver) are active in every quarter; c registered too late,
    # d only in warm-up, e only in the first quarter
    assert agents.coordinated == 2


def test_timeline_bins() -> None:
    ops = [
        (0.01, OpKind.DIRECT, "a", 1),
        (0.12, OpKind.TASK, "a", 1),
        (0.13, OpKind.DIRECT, "a", 1),
    ]
    plan = make_plan(ops, duration=0.5, warmup=0.0)
    result = make_result(
        [done(1, "b", 0.05), done(2, "a", 0.15), done(3, "b", 0.151)], end_time=0.62
    )
    timeline = summarize(plan, result).timeline
    assert len(timeline) == 7  # [0, 0.7) covers end_time 0.62
    assert [b.t for b in timeline[:3]] == [0.0, 0.1, 0.2]
    assert [b.completions for b in timeline] == [1, 2, 0, 0, 0, 0, 0]
    assert [b.deliveries for b in timeline] == [1, 1, 0, 0, 0, 0, 0]
    assert [b.offered for b in timeline] == [1, 2, 0, 0, 0, 0, 0]
    assert timeline[0].p95_ms == pytest.approx(40.0)
    expected = float(np.percentile([30.0, 21.0], 95))
    assert timeline[1].p95_ms == pytest.approx(expected)
    assert timeline[2].p95_ms is None


def test_resources_and_run_facts_are_kept() -> None:
    summary = summarize(make_plan([]), make_result([]))
    assert summary.resources[0].peak_rss_mb == pytest.approx(100.0)
    assert summary.resources[0].cpu_seconds == 2.5
    assert (summary.backend, summary.transport, summary.seed) == ("sim", "inproc", 7)
    assert (summary.duration, summary.warmup, summary.wall_seconds) == (10.0, 1.0, 1.5)


def test_record_many_matches_recording_one_by_one() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [rng.integers(1, 5_000, 5_000), rng.integers(1, 3_600_000_000, 5_000), [1, 2047, 2048]]
    )
    fast, slow = new_histogram(), new_histogram()
    record_many(fast, values)
    for value in values.tolist():
        slow.record_value(value)
    assert list(fast.counts) == list(slow.counts)
    assert fast.get_total_count() == slow.get_total_count()
    assert fast.get_min_value() == slow.get_min_value()
    assert fast.get_max_value() == slow.get_max_value()
    assert fast.encode() == slow.encode()


def test_histograms_are_encoded_and_decodable() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1), (3.0, OpKind.MEMORY, "a", 1)])
    summary = summarize(plan, make_result([done(1, "b", 2.003), done(2, "a", 3.004)]))
    assert set(summary.histograms) == {"latency", "latency-direct", "latency-memory"}
    decoded = HdrHistogram.decode(summary.histograms["latency"])
    assert decoded.get_total_count() == 2


def test_summary_round_trips_through_json() -> None:
    plan = make_plan([(2.0, OpKind.PUBLISH, "a", 2)])
    summary = summarize(plan, make_result([done(1, "b", 2.003)], [ProbeResult(1, 1.0, 1.01)]))
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert "histograms" not in data
    again = Summary.from_dict(data, summary.histograms)
    assert again == summary
    assert again.histograms == summary.histograms
    assert "timeline" not in summary.to_dict(include_timeline=False)


def _summary(p95: float, deliveries: float, reliability: float) -> Summary:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    summary = summarize(plan, make_result([done(1, "b", 2.001)], [ProbeResult(1, 1.0, 1.01)]))
    summary.latency.p50_ms = p95 / 2
    summary.latency.p95_ms = p95
    summary.latency.p99_ms = p95 * 2
    summary.throughput.deliveries_per_s = deliveries
    summary.throughput.ops_per_s = 0.0
    summary.reliability.reliability = reliability
    return summary


def test_compare_gives_the_models_percentage_error() -> None:
    real = _summary(p95=10.0, deliveries=1000.0, reliability=0.5)
    sim = _summary(p95=11.0, deliveries=900.0, reliability=0.5)
    rows = {row.metric: row for row in compare(real, sim)}
    assert list(rows) == [
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "deliveries_per_s",
        "ops_per_s",
        "reliability",
        "uptime",
        "agents_coordinated",
    ]
    assert rows["p95_ms"].error_pct == pytest.approx(10.0)
    assert rows["deliveries_per_s"].error_pct == pytest.approx(-10.0)
    assert rows["reliability"].error_pct == pytest.approx(0.0)
    assert rows["ops_per_s"].error_pct is None  # real is 0
    assert (rows["p95_ms"].real, rows["p95_ms"].sim) == (10.0, 11.0)
    assert percent_error(None, 1.0) is None


def test_aggregate_gives_mean_and_t_interval() -> None:
    summaries = [_summary(p95, 100.0, 1.0) for p95 in (1.0, 2.0, 3.0)]
    summaries[0].availability.uptime = None
    stats = aggregate(summaries)
    p95 = stats["p95_ms"]
    assert p95["n"] == 3
    assert p95["mean"] == pytest.approx(2.0)
    assert p95["stdev"] == pytest.approx(1.0)
    half = 4.302653 * 1.0 / math.sqrt(3)  # Student's t, 2 degrees of freedom
    assert 2 - half < 0 and p95["ci_low"] == 0.0  # clipped: a latency is never below 0
    assert p95["ci_high"] == pytest.approx(2 + half)
    assert p95["median"] == 2.0 and p95["infinite"] == 0
    assert stats["deliveries_per_s"]["ci_low"] == pytest.approx(100.0)
    assert stats["uptime"]["n"] == 2


def test_confidence_helpers() -> None:
    assert t_critical_95(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_critical_95(30) == pytest.approx(2.0423, abs=1e-4)
    assert t_critical_95(31) == pytest.approx(2.0395, abs=1e-4)  # not the normal's 1.96
    assert t_critical_95(1000) == pytest.approx(1.9623, abs=1e-4)
    assert mean_ci([])["mean"] is None
    single = mean_ci([5.0])
    assert single["mean"] == 5.0 and single["ci_low"] is None


def _render(table: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_summary_table_shows_backends_side_by_side_and_missing_ones() -> None:
    real = _summary(p95=10.0, deliveries=1000.0, reliability=0.5)
    sim = _summary(p95=11.0, deliveries=900.0, reliability=0.5)
    text = _render(render_summary_table({"real": real, "sim": sim}, compare(real, sim)))
    assert "latency p95" in text and "+10.0 %" in text and "-10.0 %" in text
    only_sim = _render(render_summary_table({"sim": sim}, None))
    assert "—" in only_sim and "11.000" in only_sim
    console = Console(width=200, record=True, color_system=None)
    console_print({"sim": sim}, console=console)
    assert "deliveries" in console.export_text()


def test_history_table_renders_rows() -> None:
    row = {"run_id": "r1", "created": "2026-11-24T14:30:12", "scenario": "s", "backend": "sim"}
    text = _render(render_history([{**row, "p95_ms": 1.25, "uptime": None}]))
    assert "r1" in text and "1.250" in text


# --------------------------------------------------------------------------- nearest rank


def test_nearest_rank_takes_the_value_at_rank_ceil_p_n() -> None:
    values = np.arange(1.0, 1001.0)[::-1]  # any order
    p = nearest_rank_percentiles(values, (0.0, 50.0, 95.0, 99.0, 99.9, 100.0))
    assert p.tolist() == [1.0, 500.0, 950.0, 990.0, 999.0, 1000.0]
    # 99.9 / 100 * 3000 is 2997.0000000000005 in floating point: the rank is still 2997
    assert nearest_rank_percentiles(np.arange(1.0, 3001.0), (99.9,)).tolist() == [2997.0]
    # 0.95 * 11 = 10.45: rank 11, where rounding (as HdrHistogram does) would give 10
    assert nearest_rank_percentiles(np.arange(1.0, 12.0), (95.0,)).tolist() == [11.0]
    assert nearest_rank_percentiles([3.0, math.inf], (50.0, 51.0)).tolist() == [3.0, math.inf]


def test_nearest_rank_refuses_what_has_no_percentile() -> None:
    with pytest.raises(ValueError):
        nearest_rank_percentiles([], (50.0,))
    with pytest.raises(ValueError):
        nearest_rank_percentiles([1.0, math.nan], (50.0,))
    with pytest.raises(ValueError):
        nearest_rank_percentiles([1.0], (100.5,))


def _direct_ops(latencies_ms: list[float], at: float = 2.0, step: float = 0.001) -> Plan:
    return make_plan([(at + i * step, OpKind.DIRECT, "a", 1) for i in range(len(latencies_ms))])


def _done_after(plan: Plan, latencies_ms: list[float]) -> list[Completion]:
    return [
        done(op.op_id, "b", op.at + ms / 1000.0)
        for op, ms in zip(plan.operations, latencies_ms, strict=True)
    ]


def test_headline_percentiles_are_nearest_rank_on_a_sparse_tail() -> None:
    # 3,800 ops: p99.9 is rank ceil(3796.2) = 3797, the first of the 4 slow ones.
    # HdrHistogram rounds the rank to 3796 and reports 1 ms (and bucket tops, not values)
    latencies = [1.0] * 3796 + [100.0, 200.0, 300.0, 400.0]
    plan = make_plan([(1.0 + i * 0.002, OpKind.DIRECT, "a", 1) for i in range(len(latencies))])
    summary = summarize(plan, make_result(_done_after(plan, latencies)))
    lat = summary.latency
    assert (lat.p50_ms, lat.p95_ms, lat.p99_ms, lat.p999_ms) == (1.0, 1.0, 1.0, 100.0)
    assert (lat.count, lat.incomplete) == (3800, 0)
    assert lat.max_ms == pytest.approx(400.0, rel=1e-3)  # the maximum still comes from HDR
    assert summary.histograms["latency"]  # the histograms are still kept


def test_percentiles_are_exact_values_not_histogram_buckets() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    summary = summarize(plan, make_result([done(1, "b", 2.003)]))
    assert summary.latency.p50_ms == 3.0  # HDR's bucket for 3,000 us reports 3,001
    assert summary.latency.p999_ms == 3.0


def test_per_kind_percentiles_are_nearest_rank() -> None:
    latencies = [1.0] * 10 + [50.0]  # 11 values: p95 is rank 11
    plan = _direct_ops(latencies)
    summary = summarize(plan, make_result(_done_after(plan, latencies)))
    direct = summary.latency_by_kind["direct"]
    assert (direct.count, direct.p50_ms, direct.p95_ms, direct.p99_ms) == (11, 1.0, 50.0, 50.0)
    assert summary.latency.p95_ms == 50.0


# --------------------------------------------------------------------------- incomplete


def test_missing_completions_count_as_infinitely_late() -> None:
    latencies = [float(ms) for ms in range(1, 21)]  # 20 ops in the window
    plan = _direct_ops(latencies)
    one_missing = summarize(plan, make_result(_done_after(plan, latencies)[:-1]))
    lat = one_missing.latency
    assert (lat.count, lat.incomplete) == (19, 1)
    assert lat.p95_ms == 19.0  # rank 19 of 20: 5 % missing still leaves p95 finite
    assert lat.p99_ms == math.inf
    two_missing = summarize(plan, make_result(_done_after(plan, latencies)[:-2]))
    lat = two_missing.latency
    assert (lat.count, lat.incomplete) == (18, 2)
    assert lat.p50_ms == 10.0
    assert (lat.p95_ms, lat.p99_ms, lat.p999_ms) == (math.inf, math.inf, math.inf)
    assert lat.max_ms == pytest.approx(18.0, rel=1e-3)  # max and mean: measured ones only
    assert lat.mean_ms == pytest.approx(9.5)
    assert two_missing.latency_by_kind["direct"].p95_ms == math.inf
    assert two_missing.latency_by_kind["direct"].incomplete == 2
    figures = two_missing.figures()
    assert figures["p95_ms"] is None and figures["p50_ms"] == 10.0
    assert figures["latency_incomplete"] == 2
    assert two_missing.infinite_figures() == {"p95_ms", "p99_ms", "p999_ms"}
    assert not any("cover only those that did" in note for note in two_missing.notes)
    assert any("infinitely late" in note for note in two_missing.notes)


def test_only_owed_completions_of_the_window_are_incomplete() -> None:
    ops = [
        (0.5, OpKind.DIRECT, "a", 1),  # warm-up, never completed: not in the sample
        (2.0, OpKind.DIRECT, "a", 1),  # completed
        (3.0, OpKind.DIRECT, "a", 1),  # shed, never completed: owed nothing
        (4.0, OpKind.PUBLISH, "a", 3),  # two of three recipients missing
    ]
    plan = make_plan(ops)
    result = make_result([done(2, "b", 2.001), done(4, "b", 4.002)])
    result.shed = [3]
    lat = summarize(plan, result)
    assert (lat.latency.count, lat.latency.incomplete) == (2, 2)
    assert lat.latency_by_kind["publish"].incomplete == 2
    assert lat.latency_by_kind["direct"].incomplete == 0
    assert lat.latency_by_kind["direct"].p99_ms == 1.0


def test_ops_whose_origin_was_dead_are_not_incomplete() -> None:
    ops = [(4.0, OpKind.DIRECT, "a", 1), (4.1, OpKind.DIRECT, "b", 1), (6.0, OpKind.DIRECT, "c", 1)]
    kill = Fault(0, 3.0, FaultKind.KILL_AGENT, 2.0, ("a",))
    plan = dataclasses.replace(make_plan(ops), faults=(kill,))
    summary = summarize(plan, make_result([done(3, "d", 6.002)]))
    # op 1 was never sent (its origin was dead); op 2 was sent and never arrived
    assert (summary.latency.count, summary.latency.incomplete) == (1, 1)
    assert (summary.reliability.lost, summary.reliability.lost_origin_down) == (2, 1)


def test_a_window_with_nothing_arrived_has_infinite_percentiles_and_no_mean() -> None:
    plan = _direct_ops([1.0, 1.0])
    lat = summarize(plan, make_result([])).latency
    assert (lat.count, lat.incomplete, lat.p50_ms) == (0, 2, math.inf)
    assert lat.max_ms is None and lat.mean_ms is None


def test_infinite_percentiles_survive_summary_json() -> None:
    latencies = [float(ms) for ms in range(1, 21)]
    plan = _direct_ops(latencies)
    summary = summarize(plan, make_result(_done_after(plan, latencies)[:-2]))
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert data["latency"]["p95_ms"] is None and data["latency"]["incomplete"] == 2
    assert data["latency_by_kind"]["direct"]["p99_ms"] is None
    assert data["latency_by_kind"]["publish"]["p95_ms"] is None  # no sample: stays None
    again = Summary.from_dict(data, summary.histograms)
    assert again == summary
    assert again.latency.p95_ms == math.inf
    assert again.latency_by_kind["publish"].p95_ms is None


def test_table_and_targets_show_an_infinite_percentile() -> None:
    latencies = [float(ms) for ms in range(1, 21)]
    plan = _direct_ops(latencies)
    summary = summarize(plan, make_result(_done_after(plan, latencies)[:-2]))
    text = _render(render_summary_table({"sim": summary}, None))
    p95_row = next(line for line in text.splitlines() if "latency p95" in line)
    assert "∞ (incomplete)" in p95_row
    p50_row = next(line for line in text.splitlines() if "latency p50" in line)
    assert "10.000" in p50_row
    scenario = load_scenario(ROOT / "scenarios" / "smoke.yaml")
    scenario = scenario.model_copy(
        update={"targets": [Target(threshold="p95_ms <= 10"), Target(threshold="p95_ms >= 1")]}
    )
    upper, lower = evaluate_targets(scenario, {"sim": summary})
    assert upper.actual == math.inf and not upper.passed
    assert lower.passed
    assert "∞ (incomplete)" in _render(render_targets([upper, lower]))


# --------------------------------------------------------------------------- shed


def _shed_run() -> Summary:
    ops = [(1.0 + i, OpKind.PUBLISH, "a", 2) for i in range(4)]
    plan = make_plan(ops)
    result = make_result(
        [
            done(1, "b", 1.001),
            done(1, "c", 1.002),  # op 1: delivered
            # op 2: shed, nothing arrived
            # op 3: shed, then accepted after all (a retry); nothing arrived: lost
            done(4, "b", 4.001),  # op 4: named as shed, but one completion arrived
        ]
    )
    result.shed = [2, 3, 4, 99]  # 99 is not in the plan: ignored
    result.accepted = [1, 3]
    return summarize(plan, result)


def test_shed_ops_are_neither_delivered_nor_lost() -> None:
    summary = _shed_run()
    rel = summary.reliability
    assert (rel.shed_ops, rel.shed) == (1, 2)
    assert rel.expected == 8
    assert rel.lost == 3  # op 3's two and op 4's one; op 2's are shed
    assert (rel.lost_acked, rel.lost_unaccepted, rel.lost_origin_down) == (2, 1, 0)
    assert rel.reliability == pytest.approx(3 / 6)  # delivered over expected - shed
    assert rel.overloaded
    figures = summary.figures()
    assert (figures["shed_ops"], figures["shed"], figures["overloaded"]) == (1, 2, 1)
    assert summary.latency.incomplete == 3  # op 2 is shed: it owes nothing
    assert any("shed" in note for note in summary.notes)


def test_overloaded_below_97_percent_of_accepted_work_or_when_shedding() -> None:
    plan = make_plan([(1.0 + i * 0.01, OpKind.DIRECT, "a", 1) for i in range(100)])
    completions = [done(op.op_id, "b", op.at + 0.001) for op in plan.operations]
    at_97 = summarize(plan, make_result(completions[:97])).reliability
    assert (at_97.lost, at_97.overloaded) == (3, False)
    at_96 = summarize(plan, make_result(completions[:96])).reliability
    assert (at_96.lost, at_96.overloaded) == (4, True)
    one_shed = make_result(completions[:99])
    one_shed.shed = [100]
    rel = summarize(plan, one_shed).reliability
    assert (rel.shed_ops, rel.lost, rel.reliability, rel.overloaded) == (1, 0, 1.0, True)
    assert summarize(plan, make_result(completions)).reliability.overloaded is False


def test_table_says_when_a_run_was_overloaded() -> None:
    summary = _shed_run()
    text = _render(render_summary_table({"sim": summary}, None))
    shed_row = next(line for line in text.splitlines() if line.lstrip("│ ").startswith("shed"))
    assert "1" in shed_row and "ops" in shed_row
    overloaded_row = next(line for line in text.splitlines() if "overloaded  " in line)
    assert "yes" in overloaded_row
    caption = " ".join(text.split())  # the caption wraps at the table's width
    line = "overloaded (sim): 1 ops shed (2 completions), 3 accepted completions missing"
    assert line in caption
    calm = _render(render_summary_table({"sim": _summary(10.0, 1000.0, 1.0)}, None))
    assert "overloaded (" not in calm
    assert "no" in next(line for line in calm.splitlines() if "overloaded  " in line)


def test_shed_figures_survive_summary_json() -> None:
    summary = _shed_run()
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert data["reliability"]["overloaded"] is True
    assert (data["reliability"]["shed_ops"], data["reliability"]["shed"]) == (1, 2)
    assert Summary.from_dict(data, summary.histograms) == summary


# --------------------------------------------------------------------------- validity


def test_a_driver_error_makes_the_run_invalid_but_keeps_its_figures() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    fine = summarize(plan, make_result([done(1, "b", 2.003)]))
    assert fine.valid and fine.invalid_reasons == []
    result = make_result([done(1, "b", 2.003)])
    result.notes.append("worker-0 failed: boom")  # free text never decides validity
    assert summarize(plan, result).valid
    worker, core = "worker-0 failed: boom", "coordinator: core error"
    result.errors.extend([worker, core, worker])
    assert invalid_reasons(result) == [worker, core]  # in order, each once
    bad = summarize(plan, result)
    assert not bad.valid and bad.invalid_reasons == invalid_reasons(result)
    assert bad.figures() == fine.figures()  # still measured, for diagnosis
    data = json.loads(json.dumps(bad.to_dict(), allow_nan=False))
    assert data["valid"] is False and data["invalid_reasons"] == bad.invalid_reasons
    assert Summary.from_dict(data) == bad
    del data["valid"], data["invalid_reasons"]  # a summary.json from before validity
    assert Summary.from_dict(data).valid


def test_require_valid_refuses_an_invalid_run_as_evidence() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    good = summarize(plan, make_result([done(1, "b", 2.003)]))
    result = make_result([done(1, "b", 2.003)])
    result.errors.append("the coordinator did not restart: OSError()")
    bad = summarize(plan, result)
    require_valid({"real 1/3": good}, "the check")
    with pytest.raises(InvalidRunError, match=r"evidence for the check: real 2/3: the coord"):
        require_valid({"real 1/3": good, "real 2/3": bad}, "the check")


def test_the_table_shows_an_invalid_run_prominently() -> None:
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    result = make_result([done(1, "b", 2.003)])
    result.errors.append("worker-1 failed: exited early")
    bad = summarize(plan, result)
    text = " ".join(_render(render_summary_table({"real": bad}, None)).split())
    assert "valid run" in text and "NO" in text
    assert "INVALID (real): worker-1 failed: exited early; its figures are not evidence" in text
    fine = _render(render_summary_table({"real": _summary(1.0, 10.0, 1.0)}, None))
    assert "INVALID" not in fine and "yes" in fine


def test_the_table_shows_the_median_of_repetitions_with_an_interval() -> None:
    reals = [_summary(p95, 1000.0, 1.0) for p95 in (10.0, 30.0, 11.0)]
    sim = _summary(12.0, 1000.0, 1.0)
    table = render_summary_table(
        {"real": reals[-1], "sim": sim}, compare_runs(reals, sim), repetitions={"real": reals}
    )
    text = _render(table)
    assert "real (median of 3)" in text and "real 95 % CI of mean" in text
    p95 = next(line for line in text.splitlines() if "latency p95" in line)
    assert "11.000" in p95 and "+9.1 %" in p95  # the median 11, not the last run's 11 by luck
    stats = aggregate(reals)["p95_ms"]
    assert f"{stats['ci_low']:,.3f} .. {stats['ci_high']:,.3f}" in p95


def test_an_infinite_percentile_stays_in_the_median() -> None:
    reals = [_summary(p95, 1000.0, 1.0) for p95 in (10.0, math.inf, math.inf)]
    stats = aggregate(reals)["p95_ms"]
    assert stats["n"] == 3 and stats["infinite"] == 2
    assert stats["median"] is None and stats["mean"] is None and stats["ci_low"] is None
    text = _render(render_summary_table({"real": reals[0]}, None, repetitions={"real": reals}))
    assert "∞ (incomplete)" in next(line for line in text.splitlines() if "latency p95" in line)
