"""Percentiles: nearest rank on exact values, and completions that never came counted as
infinitely late."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from harness.metrics.figures import (
    Summary,
    nearest_rank_percentiles,
    summarize,
)
from harness.render.table import render_summary_table
from harness.scenario.schema import Target, load_scenario
from harness.scenario.targets import evaluate_targets, render_targets
from protocol.plan import Fault, FaultKind, OpKind, Plan
from protocol.records import Completion
from tests.harness.synthetic_runs import (
    ROOT,
    done,
    make_plan,
    make_result,
    render_text,
)

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
    text = render_text(render_summary_table({"sim": summary}, None))
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
    assert "∞ (incomplete)" in render_text(render_targets([upper, lower]))
