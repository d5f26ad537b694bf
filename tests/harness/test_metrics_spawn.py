"""Spawn time: each agent's registration less the time the driver began starting
agents, on each backend's records."""

from __future__ import annotations

import pytest

from harness.metrics.figures import summarize
from harness.metrics.spawn import spawn_section
from protocol.records import DriverResult
from real.inproc.run import run_plan as run_inproc
from sim import Calibration
from sim import run_plan as run_model
from tests.sim.test_sim_tree import tree_plan


def test_spawn_figures_are_registrations_less_the_start() -> None:
    result = DriverResult("real", "tcp", registered={"a": -0.9, "b": -0.7, "c": -0.5, "d": -0.2})
    result.spawn_at = -1.0
    figures = spawn_section(result)
    assert figures.agents == 4
    assert figures.first_s == pytest.approx(0.1) and figures.all_s == pytest.approx(0.8)
    assert figures.p50_s == pytest.approx(0.3)  # rank ceil(0.5 * 4) = 2
    assert figures.p95_s == pytest.approx(0.8)


def test_no_start_time_no_spawn_figures() -> None:
    figures = spawn_section(DriverResult("real", "tcp", registered={"a": -0.5}))
    assert figures.agents == 0 and figures.all_s is None


def test_both_backends_report_spawn_time() -> None:
    plan = tree_plan(duration=0.5, warmup=0.1)
    for result in (
        run_inproc(plan, use_uvloop=False),
        run_model(plan, Calibration.deterministic(1e-4, 1e-3)),
    ):
        spawn = summarize(plan, result).spawn
        assert spawn.agents == len(plan.agents) == 27
        assert spawn.first_s is not None and spawn.all_s is not None
        assert 0 < spawn.first_s <= spawn.all_s
        assert result.spawn_at is not None and result.spawn_at < 0  # before the load
