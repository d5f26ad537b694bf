"""``LivePoints``: the figures the page draws while a run goes, from hand-made batches."""

from __future__ import annotations

import pytest

from harness.jobs.live import ACTIVE_WINDOW, DUE_AFTER, LivePoints
from harness.scenario.compile import compile_plan
from harness.scenario.schema import load_scenario
from harness.scenario.shipped import scenarios_dir
from protocol.plan import Operation, Plan
from protocol.records import LiveBatch, ProbeResult


@pytest.fixture(scope="module")
def plan() -> Plan:
    scenario = load_scenario(scenarios_dir() / "smoke.yaml").with_overrides(duration=3.0)
    return compile_plan(scenario)


def receivers(op: Operation, plan: Plan) -> list[str]:
    """``op.expected`` distinct node names (who they are does not matter to reliability)."""
    names = [agent.agent_id for agent in plan.agents]
    return names[: op.expected]


def deliver(ops: list[Operation], plan: Plan, now: float, late: float = 0.001) -> LiveBatch:
    ids, ats, nodes = [], [], []
    for op in ops:
        for node in receivers(op, plan):
            ids.append(op.op_id)
            ats.append(op.at + late)
            nodes.append(node)
    return LiveBatch(now, ids, ats, nodes)


def test_reliability_so_far_counts_only_ops_due_and_not_shed(plan: Plan) -> None:
    points = LivePoints(plan)
    now = 2.5
    due = [op for op in plan.operations if op.at <= now - DUE_AFTER and op.expected]
    assert len(due) > 10
    half, rest = due[::2], due[1::2]
    shed = rest[:3]
    not_due = [op for op in plan.operations if op.at > now - DUE_AFTER and op.expected]
    points.point("real", LiveBatch(0.0))
    points.point("real", deliver(half + not_due, plan, 1.0))  # the later ones do not count
    point = points.point("real", LiveBatch(now, shed=[op.op_id for op in shed]))
    assert point is not None
    counted = [op for op in due if op not in shed]
    wanted = sum(op.expected for op in half) / sum(op.expected for op in counted)
    assert point.reliability == pytest.approx(wanted)
    # the same completions again (a redelivery the watcher sees twice) change nothing,
    # and the rest arriving brings it to exactly 1
    points.point("real", deliver(half, plan, now + 0.01))
    point = points.point("real", deliver(rest[3:], plan, now + 0.2))
    assert point is not None and point.reliability == pytest.approx(1.0)


def test_points_gather_the_batches_of_an_interval(plan: Plan) -> None:
    """A tcp parent may hand over one batch per worker report: one point for all of them."""
    points = LivePoints(plan)
    ops = [op for op in plan.operations if op.expected][:40]
    assert points.point("real", LiveBatch(0.0)) is None
    assert points.point("real", deliver(ops[:20], plan, 0.05)) is None  # too soon
    point = points.point("real", deliver(ops[20:], plan, 0.1))
    assert point is not None
    count = sum(op.expected for op in ops)
    assert point.count == count
    assert point.completions_per_s == pytest.approx(count / 0.1)
    assert point.p50_ms == pytest.approx(1.0)
    assert points.point("real", LiveBatch(0.11)) is None
    # labels are apart
    assert points.point("sim", deliver(ops[:1], plan, 0.1)) is not None


def test_uptime_so_far_counts_settled_probes_by_the_summary_rule(plan: Plan) -> None:
    points = LivePoints(plan)
    deadline = plan.probe_deadline
    probes = [
        ProbeResult(1, 0.0, 0.001),  # on time
        ProbeResult(2, 0.1, 0.1 + deadline * 2),  # late
        ProbeResult(3, 0.2, None),  # unanswered, its deadline passed
        ProbeResult(4, 1.0 - deadline / 2, None),  # unanswered, not settled yet
    ]
    points.point("real", LiveBatch(0.0))
    point = points.point("real", LiveBatch(1.0, probes=probes))
    assert point is not None and point.uptime == pytest.approx(1 / 3)
    # a batch without probes keeps the last ones seen; time settles probe 4
    point = points.point("real", LiveBatch(1.0 + deadline + 0.1))
    assert point is not None and point.uptime == pytest.approx(1 / 4)


def test_agents_active_are_receivers_and_origins_of_recent_completions(plan: Plan) -> None:
    points = LivePoints(plan)
    op = next(op for op in plan.operations if op.expected == 1)
    receiver = next(a.agent_id for a in plan.agents if a.agent_id != op.origin)
    points.point("real", LiveBatch(0.0))
    point = points.point("real", LiveBatch(op.at + 0.1, [op.op_id], [op.at + 0.01], [receiver]))
    assert point is not None and point.agents == 2  # the receiver and the op's origin
    later = op.at + 0.01 + ACTIVE_WINDOW + 0.1
    point = points.point("real", LiveBatch(later))
    assert point is not None and point.agents == 0


def test_shed_ops_per_second_and_unknown_ids(plan: Plan) -> None:
    points = LivePoints(plan)
    ids = [op.op_id for op in plan.operations[:5]]
    points.point("real", LiveBatch(0.0))
    unknown = max(op.op_id for op in plan.operations) + 1
    point = points.point("real", LiveBatch(0.5, [unknown], [0.1], ["nobody"], shed=ids + ids))
    assert point is not None
    assert point.shed_per_s == pytest.approx(5 / 0.5)  # each op once
    assert point.count == 0
