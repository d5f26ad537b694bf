"""Sim determinism at the report level: the same seed gives the same summary.json figures.

Wall-clock figures (``wall_seconds`` and the process's CPU and RSS) measure
the simulator, not the simulated system, so they are the only fields allowed
to differ between two runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.metrics.figures import summarize
from harness.scenario.compile import compile_plan
from harness.scenario.schema import load_scenario
from sim import run_plan
from sim.calibration import load_calibration

ROOT = Path(__file__).resolve().parents[2]
WALL_CLOCK = ("wall_seconds", "resources")


def simulated_summary(seed: int) -> dict[str, Any]:
    scenario = load_scenario(ROOT / "scenarios" / "smoke.yaml").with_overrides(seed=seed)
    plan = compile_plan(scenario)
    calibration, _ = load_calibration(transport="inproc")
    figures = summarize(plan, run_plan(plan, calibration)).to_dict()
    for key in WALL_CLOCK:
        figures.pop(key)
    return figures


def test_same_seed_gives_an_identical_summary_json() -> None:
    first = json.dumps(simulated_summary(11), sort_keys=True)
    second = json.dumps(simulated_summary(11), sort_keys=True)
    assert first == second


def test_another_seed_gives_another_summary() -> None:
    assert simulated_summary(11) != simulated_summary(12)
