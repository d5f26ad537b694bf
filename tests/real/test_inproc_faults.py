"""Faults on the real in-process transport: kill, pause and link faults lose nothing acked."""

from __future__ import annotations

from collections import Counter

from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.plan import Plan
from protocol.records import DriverResult
from real.inproc.run import run_plan

SCENARIO = {
    "name": "inproc-faults",
    "duration": 3.0,
    "warmup": 0.5,
    "agents": {"count": 12, "capabilities": [{"name": "compute", "share": 0.5}]},
    "protocol": {"heartbeat_interval": 0.05, "failure_after": 0.15, "ack_timeout": 0.05},
    "topics": {"count": 4, "fanout": 3},
    "workload": [
        {"kind": "publish", "arrival": {"process": "constant", "rate": 300}},
        {"kind": "task", "capability": "compute", "arrival": {"process": "constant", "rate": 100}},
    ],
}


def run(faults: list[dict[str, object]]) -> tuple[Plan, DriverResult]:
    plan = compile_plan(parse_scenario({**SCENARIO, "faults": faults}))
    return plan, run_plan(plan, use_uvloop=False)


def losses(plan: Plan, result: DriverResult) -> tuple[int, int, int]:
    """(handler duplicates, lost expected completions, lost among accepted ops)."""
    pairs = Counter((c.op_id, c.node) for c in result.completions if not c.duplicate)
    handled_twice = sum(count - 1 for count in pairs.values())
    got = Counter(op_id for op_id, _ in pairs)
    accepted = set(result.accepted)
    lost = lost_acked = 0
    for op in plan.operations:
        missing = max(op.expected - got[op.op_id], 0)
        lost += missing
        lost_acked += missing if op.op_id in accepted else 0
    return handled_twice, lost, lost_acked


def test_killed_agent_is_detected_restarted_and_nothing_acked_is_lost() -> None:
    plan, result = run([{"kind": "kill_agent", "at": 1.0, "agents": ["agent-00003"]}])
    handled_twice, _, lost_acked = losses(plan, result)
    assert handled_twice == 0 and lost_acked == 0
    kinds = [(e.kind, e.node) for e in result.events]
    for kind in ("injected", "failed", "healed", "returned"):
        assert (kind, "agent-00003") in kinds


def test_pause_and_link_faults_lose_nothing_acked() -> None:
    plan, result = run(
        [
            {"kind": "pause_agent", "at": 0.8, "duration": 0.3, "agents": ["agent-00001"]},
            {"kind": "partition", "at": 1.4, "duration": 0.2, "agents": ["agent-00002"]},
            {"kind": "link_loss", "at": 1.8, "duration": 0.6, "loss": 0.05},
        ]
    )
    handled_twice, lost, lost_acked = losses(plan, result)
    assert handled_twice == 0 and lost == 0 and lost_acked == 0
    assert sum(c.duplicate for c in result.completions) > 0  # loss caused redeliveries
    failed = {e.node for e in result.events if e.kind == "failed"}
    assert {"agent-00001", "agent-00002"} <= failed  # 0.3 s and 0.2 s > failure_after
