"""Metrics, comparison and table rendering on small synthetic runs with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from rich.console import Console

from harness.metrics.compare import (
    aggregate,
    compare,
    mean_ci,
    percent_error,
    t_critical_95,
)
from harness.metrics.figures import (
    Summary,
    new_histogram,
    record_many,
    summarize,
)
from harness.render.table import console_print, render_history, render_summary_table
from protocol.plan import OpKind
from protocol.records import ProbeResult, ProcessUsage
from tests.harness.synthetic_runs import done, make_plan, make_result, render_text, summary_with


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


def test_a_process_that_waited_for_a_core_is_named_in_a_note() -> None:
    result = make_result([])
    result.processes = [
        ProcessUsage("coordinator", 0, 2.5, wait_seconds=0.9),  # 9 % of a 10 s run
        ProcessUsage("worker-0", 0, 2.0, wait_seconds=0.2),  # 2 %: not named
        ProcessUsage("harness", 0, 1.0),  # not measured
    ]
    summary = summarize(make_plan([]), result)
    assert [r.cpu_wait_seconds for r in summary.resources] == [0.9, 0.2, None]
    (note,) = [n for n in summary.notes if "waited for a core" in n]
    assert "coordinator 0.90 s (9%)" in note and "worker-0" not in note
    result.processes = result.processes[1:]
    assert not [n for n in summarize(make_plan([]), result).notes if "waited for a core" in n]


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


def test_compare_gives_the_models_percentage_error() -> None:
    real = summary_with(p95=10.0, deliveries=1000.0, reliability=0.5)
    sim = summary_with(p95=11.0, deliveries=900.0, reliability=0.5)
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
    summaries = [summary_with(p95, 100.0, 1.0) for p95 in (1.0, 2.0, 3.0)]
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


def test_summary_table_shows_backends_side_by_side_and_missing_ones() -> None:
    real = summary_with(p95=10.0, deliveries=1000.0, reliability=0.5)
    sim = summary_with(p95=11.0, deliveries=900.0, reliability=0.5)
    text = render_text(render_summary_table({"real": real, "sim": sim}, compare(real, sim)))
    assert "latency p95" in text and "+10.0 %" in text and "-10.0 %" in text
    only_sim = render_text(render_summary_table({"sim": sim}, None))
    assert "—" in only_sim and "11.000" in only_sim
    console = Console(width=200, record=True, color_system=None)
    console_print({"sim": sim}, console=console)
    assert "deliveries" in console.export_text()


def test_history_table_renders_rows() -> None:
    row = {"run_id": "r1", "created": "2026-11-24T14:30:12", "scenario": "s", "backend": "sim"}
    text = render_text(render_history([{**row, "p95_ms": 1.25, "uptime": None}]))
    assert "r1" in text and "1.250" in text
