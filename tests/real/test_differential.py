"""Differential test: one plan through the real inproc driver and through the model.

Both drivers run the same protocol core, so they must hand the handler the
same set of operations at the same agents: the same ``(op_id, node)`` pairs,
each exactly once, with intact payloads. Timing differs; membership must not.
"""

from __future__ import annotations

from pathlib import Path

from harness.scenario.compile import compile_plan
from harness.scenario.schema import load_scenario
from protocol.records import DriverResult
from real.inproc.run import run_plan as run_real
from sim import run_plan as run_sim
from sim.calibration import load_calibration

ROOT = Path(__file__).resolve().parents[2]


def handled(result: DriverResult) -> list[tuple[int, str]]:
    return sorted((c.op_id, c.node) for c in result.completions if not c.duplicate)


def test_real_and_sim_deliver_the_same_messages_to_the_same_agents() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "smoke.yaml").with_overrides(duration=1.5)
    plan = compile_plan(scenario)
    calibration, _ = load_calibration(transport="inproc")
    real = run_real(plan)
    sim = run_sim(plan, calibration)
    real_set = handled(real)
    sim_set = handled(sim)
    assert len(real_set) == len(set(real_set)), "real handler ran an operation twice"
    assert len(sim_set) == len(set(sim_set)), "sim handler ran an operation twice"
    assert real_set == sim_set
    assert len(real_set) == plan.expected_total
    kinds = {op.kind for op in plan.operations}
    assert len(kinds) == 5, "smoke.yaml should exercise every operation kind"
    assert all(c.intact for c in real.completions + sim.completions)
