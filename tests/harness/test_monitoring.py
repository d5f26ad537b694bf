"""Monitoring coverage (``harness.metrics.monitoring``): the metric, and a run on every backend.

The metric tests build ``DriverResult``s by hand, so each shortfall (a
missing component, a bad health, empty or insane metrics, counters that
contradict the run, no reply at all) is checked on its own. The backend
tests replay one small plan that exercises every op kind on inproc, on the
model and (slow) on tcp, and check that every expected component reported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.metrics.figures import summarize
from harness.metrics.monitoring import expected_components, monitoring_section
from harness.metrics.summary import MonitoringFigures, Summary
from harness.scenario.schema import load_scenario
from protocol.messages import MemVerb
from protocol.plan import AgentSpec, Fault, FaultKind, Operation, OpKind, Plan
from protocol.records import Completion, DriverResult, StoreSnapshot
from protocol.status import CORE_COMPONENTS
from real.inproc.run import run_plan as run_inproc
from sim import run_plan as run_sim
from sim.calibration import read_calibration, shipped_path

AGENTS = tuple(
    AgentSpec(
        f"a{i}",
        capabilities=("echo",) if i >= 4 else (),
        subscriptions=("news.#",) if i in (1, 2, 3) else (),
    )
    for i in range(6)
)
EXPECTED = len(CORE_COMPONENTS) + len(AGENTS)


def every_kind_plan(rounds: int = 20, spacing: float = 0.06, duration: float = 1.5) -> Plan:
    """Publish, direct, broadcast, task and memory ops every ``spacing`` s from 0.05."""
    ops: list[Operation] = []
    for k in range(rounds):
        at = 0.05 + k * spacing
        for kind, origin, target, expected, verb in (
            (OpKind.PUBLISH, "a0", "news.x", 3, 0),
            (OpKind.DIRECT, "a1", "a2", 1, 0),
            (OpKind.BROADCAST, "a3", "", 5, 0),
            (OpKind.TASK, "a0", "echo", 1, 0),
            (OpKind.MEMORY, "a2", f"ns/k{k}", 1, MemVerb.PUT),
        ):
            ops.append(Operation(len(ops) + 1, at, kind, origin, target, 48, expected, verb))
    return Plan(7, duration, 0.2, AGENTS, tuple(ops), drain_timeout=5.0)


def healthy_status(plan: Plan) -> dict[str, Any]:
    """A status in which every expected component reports plausible figures."""
    status: dict[str, Any] = {
        name: {"health": "ok", "metrics": {"count": 1}} for name in expected_components(plan)
    }
    for spec in AGENTS:
        status[f"agent:{spec.agent_id}"]["metrics"] = {"inflight": 0, "last_seen_s": 0.1}
    status["coordinator"]["metrics"] = {"received": 50, "agents_known": 6}
    status["bus"]["metrics"] = {"msg_ids": 40, "rto_ms": 1.5}
    status["memory"]["metrics"] = {"requests": 10}
    return status


def result_with(
    status: dict[str, Any] | None, completions: list[Completion] | None = None
) -> DriverResult:
    registered = {spec.agent_id: -0.1 for spec in AGENTS}
    return DriverResult(
        "real", "inproc", completions=completions or [], registered=registered, status=status
    )


def coverage_of(plan: Plan, result: DriverResult) -> MonitoringFigures:
    return summarize(plan, result).monitoring


# --- the metric ------------------------------------------------------------------------------


def test_every_component_reporting_is_full_coverage() -> None:
    plan = every_kind_plan()
    figures = coverage_of(plan, result_with(healthy_status(plan)))
    assert (figures.expected, figures.reporting, figures.coverage) == (EXPECTED, EXPECTED, 100.0)
    assert figures.answered and figures.missing == [] and figures.problems == []
    assert figures.health == {"ok": EXPECTED}


def test_coverage_drops_when_components_are_missing() -> None:
    plan = every_kind_plan()
    status = healthy_status(plan)
    del status["journal"], status["agent:a3"]
    summary = summarize(plan, result_with(status))
    figures = summary.monitoring
    assert figures.reporting == EXPECTED - 2
    assert figures.coverage == pytest.approx(100.0 * (EXPECTED - 2) / EXPECTED)
    assert figures.missing == ["journal", "agent:a3"]
    assert figures.problems == ["journal: absent", "agent:a3: absent"]
    assert summary.figures()["monitoring_coverage"] == figures.coverage


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"health": "fine", "metrics": {"m": 1}}, "health 'fine'"),
        ({"metrics": {"m": 1}}, "health None"),
        ({"health": "ok", "metrics": {}}, "no metrics"),
        ({"health": "ok"}, "no metrics"),
        ({"health": "ok", "metrics": {"m": -1}}, "metric m = -1"),
        ({"health": "ok", "metrics": {"m": math.nan}}, "metric m = nan"),
        ({"health": "ok", "metrics": {"m": True}}, "metric m = True"),
        ({"health": "ok", "metrics": {"m": "3"}}, "metric m = '3'"),
        ("ok", "absent"),
    ],
)
def test_a_component_without_valid_health_and_sane_metrics_is_not_reporting(
    entry: object, why: str
) -> None:
    plan = every_kind_plan()
    status = healthy_status(plan)
    status["agent:a0"] = entry
    figures = coverage_of(plan, result_with(status))
    assert figures.reporting == EXPECTED - 1 and figures.missing == ["agent:a0"]
    assert figures.problems[0].startswith(f"agent:a0: {why}"), figures.problems


def test_an_agent_reports_for_itself_or_not_at_all() -> None:
    """Coverage used to count a component whenever the coordinator listed it, so it
    was 100 % by construction; an agent now counts only if it was heard lately."""
    plan = every_kind_plan()
    status = healthy_status(plan)
    status["agent:a4"]["health"] = "degraded"  # heard 0.1 s ago: it reports (degraded)
    status["agent:a5"]["health"] = "failed"
    status["agent:a5"]["metrics"]["last_seen_s"] = 1.8  # over 2 heartbeats of 0.5 s
    del status["agent:a3"]["metrics"]["last_seen_s"]
    figures = coverage_of(plan, result_with(status))
    assert figures.missing == ["agent:a3", "agent:a5"]
    assert figures.problems[1] == "agent:a5: silent for 1.80 s (over 1 s): it has not reported"
    assert figures.health == {"ok": EXPECTED - 3, "degraded": 1}


def completions_of(plan: Plan, kind: OpKind, at: float) -> list[Completion]:
    op = next(op for op in plan.operations if op.kind == kind)
    return [Completion(op.op_id, op.origin, at, False, True)]


@pytest.mark.parametrize(
    ("component", "metric", "kind"),
    [("bus", "msg_ids", OpKind.PUBLISH), ("memory", "requests", OpKind.MEMORY)],
)
def test_counters_that_contradict_the_run_do_not_count(
    component: str, metric: str, kind: OpKind
) -> None:
    plan = every_kind_plan()
    status = healthy_status(plan)
    status[component]["metrics"][metric] = 0
    completed = completions_of(plan, kind, 0.5)
    figures = coverage_of(plan, result_with(status, completed))
    assert figures.missing == [component]
    assert f"{metric} is 0 but 1 completions" in figures.problems[0]
    # a coordinator restarted after those completions starts its counters at 0: fine
    restarted = result_with(status, completed)
    restarted.restarts.append(StoreSnapshot(0.8, {}))
    assert coverage_of(plan, restarted).coverage == 100.0
    # completions after the snapshot prove nothing about it
    late = completions_of(plan, kind, plan.duration)
    assert coverage_of(plan, result_with(status, late)).coverage == 100.0


def test_a_coordinator_that_saw_no_registered_agent_does_not_count() -> None:
    plan = every_kind_plan()
    status = healthy_status(plan)
    status["coordinator"]["metrics"]["agents_known"] = 0
    figures = coverage_of(plan, result_with(status))
    assert figures.missing == ["coordinator"]
    assert "agents_known is 0 but 6 agents had registered" in figures.problems[0]


def test_no_reply_is_zero_coverage_and_no_snapshot_is_no_figure() -> None:
    plan = every_kind_plan()
    figures = coverage_of(plan, result_with(None))
    assert (figures.expected, figures.reporting, figures.coverage) == (EXPECTED, 0, 0.0)
    assert not figures.answered and figures.missing[:2] == ["coordinator", "bus"]
    assert figures.problems == [f"no status reply to the request at {plan.status_at:g} s"]
    quiet = Plan(7, 1.5, 0.2, AGENTS, plan.operations, probe_interval=0.0)
    assert quiet.status_at is None
    assert monitoring_section(quiet, result_with(None), *columns()) == MonitoringFigures()
    assert summarize(quiet, result_with(None)).figures()["monitoring_coverage"] is None


def columns() -> tuple[Any, Any]:
    """No completions, as ``monitoring_section`` takes them."""
    return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)


def test_the_snapshot_is_taken_near_the_end_of_the_steady_state_load() -> None:
    assert every_kind_plan().status_at == pytest.approx(1.25)
    short = Plan(1, 0.4, 0.2, AGENTS, ())
    assert short.status_at == pytest.approx(0.3)  # the middle of a short window


def test_summaries_round_trip_and_older_ones_read_without_the_section() -> None:
    plan = every_kind_plan()
    status = healthy_status(plan)
    del status["tasks"]
    summary = summarize(plan, result_with(status))
    data = json.loads(json.dumps(summary.to_dict()))
    again = Summary.from_dict(data)
    assert again.monitoring == summary.monitoring
    del data["monitoring"]
    old = Summary.from_dict(data)
    assert old.monitoring == MonitoringFigures()
    assert old.figures()["monitoring_coverage"] is None


def test_a_scenario_can_target_the_coverage(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(
        "name: target\nduration: 2\nagents: {count: 8}\n"
        "workload:\n  - {kind: publish, arrival: {process: constant, rate: 10}}\n"
        "targets:\n  - {threshold: 'monitoring_coverage >= 95', critical: false}\n",
        encoding="utf-8",
    )
    (target,) = load_scenario(path).targets
    assert target.metric == "monitoring_coverage" and not target.critical
    assert target.passes(100.0) and not target.passes(90.0)


# --- every backend ----------------------------------------------------------------------------


def assert_full_coverage(plan: Plan, result: DriverResult) -> Summary:
    assert result.status is not None, result.notes
    summary = summarize(plan, result)
    figures = summary.monitoring
    assert figures.expected == EXPECTED == len(expected_components(plan))
    assert figures.reporting == EXPECTED, figures.problems
    assert summary.figures()["monitoring_coverage"] == 100.0
    assert sum(figures.health.values()) == EXPECTED
    assert result.status["bus"]["metrics"]["msg_ids"] > 0
    assert result.status["memory"]["metrics"]["requests"] > 0
    return summary


def test_an_inproc_run_reports_every_component() -> None:
    plan = every_kind_plan()
    result = run_inproc(plan, use_uvloop=False)
    assert_full_coverage(plan, result)
    assert summarize(plan, result).reliability.reliability == 1.0  # asking changed nothing


def test_the_model_predicts_full_coverage_deterministically() -> None:
    plan = every_kind_plan()
    calibration = read_calibration(shipped_path("inproc"))
    first = run_sim(plan, calibration)
    assert_full_coverage(plan, first)
    assert run_sim(plan, calibration).status == first.status


def test_the_model_gets_no_status_from_a_crashed_coordinator() -> None:
    plan = every_kind_plan()
    at = plan.status_at
    assert at is not None
    crash = Fault(1, at - 0.05, FaultKind.CRASH_COORDINATOR, 0.5)
    crashed = Plan(7, plan.duration, plan.warmup, AGENTS, plan.operations, faults=(crash,))
    result = run_sim(crashed, read_calibration(shipped_path("inproc")))
    assert result.status is None
    figures = summarize(crashed, result).monitoring
    assert figures.coverage == 0.0 and not figures.answered


@pytest.mark.slow
def test_a_tcp_run_reports_every_component() -> None:
    from real.tcp.run import run_plan as run_tcp

    plan = every_kind_plan()
    result = run_tcp(plan, workers=2, connections=2)
    summary = assert_full_coverage(plan, result)
    assert summary.reliability.reliability == 1.0
