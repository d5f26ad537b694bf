"""Locust as the real load (``real.locust``): a master and two worker processes on
loopback replay a small plan against a real tcp coordinator; the run's figures
come from the records the workers sent, and equal their sum."""

from __future__ import annotations

import re
from pathlib import Path

import psutil

from harness.cli.main import main
from harness.metrics.figures import summarize
from harness.scenario.compile import compile_plan
from harness.scenario.schema import load_scenario
from real.locust.run import run_plan

SMOKE = Path(__file__).parents[2] / "scenarios" / "smoke.yaml"
PER_WORKER = re.compile(r"completions recorded per Locust worker: (.*)$")


def test_master_and_two_workers_cover_the_plan_and_their_records_add_up(
    tmp_path: Path,
) -> None:
    scenario = load_scenario(SMOKE).with_overrides(transport="tcp", duration=1.5)
    plan = compile_plan(scenario)
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    result = run_plan(plan, processes=2, out_dir=tmp_path)

    assert result.errors == []
    counts = [
        int(n.replace(",", ""))
        for note in result.notes
        if (m := PER_WORKER.search(note))
        for n in m.group(1).split(", ")
    ]
    assert len(counts) == 2 and all(counts)  # both workers ran agents
    assert sum(counts) == len(result.completions)
    assert set(result.registered) == {spec.agent_id for spec in plan.agents}
    summary = summarize(plan, result).to_dict()
    reliability = summary["reliability"]
    assert reliability["unique"] == reliability["expected"] > 0
    assert reliability["lost"] == 0
    assert result.probes  # the driver probed the coordinator from t0
    assert (tmp_path / "locust_stats.csv").exists() and (tmp_path / "locust.html").exists()
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before  # the master, its workers and the coordinator are gone


def test_locust_refuses_a_scenario_with_faults(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    faults = Path(__file__).parents[2] / "scenarios" / "faults" / "coordinator-crash.yaml"
    code = main(["--reports", str(tmp_path), "locust", str(faults)])
    assert code == 2
    err = capsys.readouterr().err
    assert "coordinator-crash.yaml" in err and "faults" in err
