"""The model-validation suite: suite loading, the sweep, the error arithmetic, the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.scenario.schema import ScenarioError
from harness.validate.fidelity import error_pct, evaluate_goals, summarize_errors
from harness.validate.suite import deliveries_per_publish, load_suite, sweep_points

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "scenarios" / "validation" / "suite.yaml"


def test_shipped_suite_loads_and_sweeps_every_axis() -> None:
    suite = load_suite(SUITE)
    points = sweep_points(suite, capacity=100_000.0)
    axes = {point.axis for point in points}
    assert axes == {"load", "agents", "size", "fanout"}
    loads = [p for p in points if p.axis == "load"]
    assert min(p.fraction for p in loads) == pytest.approx(0.1)
    assert max(p.fraction for p in loads) == pytest.approx(1.2)
    agents = sorted(p.scenario.agents.count for p in points if p.axis == "agents")
    assert agents[0] == 10 and agents[-1] == 1000


def test_load_axis_offers_the_fraction_of_capacity_in_deliveries() -> None:
    suite = load_suite(SUITE)
    point = next(p for p in sweep_points(suite, 50_000.0) if p.axis == "load")
    rate = point.scenario.workload[0].arrival.rate  # type: ignore[union-attr]
    offered = rate * deliveries_per_publish(point.scenario)
    assert offered == pytest.approx(point.fraction * 50_000.0, rel=0.01)


def test_bad_suite_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "suite.yaml"
    bad.write_text(f"name: x\nbase: {SUITE.parent / 'base.yaml'}\nrepetitions: 0\n")
    with pytest.raises(ScenarioError) as err:
        load_suite(bad)
    assert "suite.yaml" in str(err.value) and "repetitions" in str(err.value)
    assert main(["validate-model", str(bad)]) == 2


def test_missing_base_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "suite.yaml"
    bad.write_text("name: x\nbase: nowhere.yaml\n")
    with pytest.raises(ScenarioError, match="base"):
        load_suite(bad)


def test_error_is_relative_to_the_measurement() -> None:
    assert error_pct(10.0, 12.0) == pytest.approx(20.0)
    assert error_pct(10.0, 8.0) == pytest.approx(-20.0)
    assert error_pct(0.0, 1.0) is None
    assert error_pct(None, 1.0) is None


def _point(below: bool, p95_err: float, rate_err: float) -> dict[str, object]:
    errors = {"p50_ms": 0.0, "p95_ms": p95_err, "p99_ms": 0.0, "deliveries_per_s": rate_err}
    return {"below_saturation": below, "errors": errors}


def test_goals_use_only_points_below_saturation() -> None:
    points = [_point(True, -5.0, 1.0), _point(True, 20.0, -2.0), _point(False, 900.0, -50.0)]
    errors = summarize_errors(points)  # type: ignore[arg-type]
    below = errors["below_saturation"]["p95_ms"]
    assert below["n"] == 2 and below["median"] == pytest.approx(12.5) and below["worst"] == 20.0
    assert errors["all"]["p95_ms"]["worst"] == 900.0
    goals = {g["goal"]: g["met"] for g in evaluate_goals(errors, saturation_error=-12.0)}
    assert goals["median absolute error of p95_ms below saturation <= 10 %"] is False
    assert goals["worst absolute error of p95_ms below saturation <= 25 %"] is True
    assert goals["saturation throughput within 10 %"] is False


def test_validate_model_end_to_end_writes_report_and_plots(tmp_path: Path) -> None:
    """A tiny suite through the CLI: both backends, the report, both plots."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        f"name: tiny\nbase: {SUITE.parent / 'base.yaml'}\nrepetitions: 2\nreplications: 2\n"
        "duration: 1.0\nwarmup: 0.25\nsaturation_factor: 1.5\n"
        "axes: {load: [0.3], agents: [10], size: [], fanout: []}\n"
    )
    assert main(["--reports", str(tmp_path / "reports"), "validate-model", str(suite)]) == 0
    (folder,) = (tmp_path / "reports" / "validation").iterdir()
    report = json.loads((folder / "report.json").read_text())
    assert [p["label"] for p in report["points"]] == ["load=0.3", "agents=10"]
    for point in report["points"]:
        assert point["real"]["deliveries_per_s"]["n"] == 2
        assert point["sim"]["deliveries_per_s"]["n"] == 2
        assert len(point["runs"]["real"]) == 2 and len(point["runs"]["sim"]) == 2
        assert point["runs"]["real"][0]["p95_ms"] is not None
    assert report["saturation"]["real"]["mean"] > 0
    assert len(report["goals"]) == 5
    assert (folder / "latency_vs_load.png").stat().st_size > 10_000
    assert (folder / "predicted_vs_measured.png").stat().st_size > 10_000
    assert "## Every point" in (folder / "report.md").read_text()


def _tiny_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        f"name: tiny\nbase: {SUITE.parent / 'base.yaml'}\nrepetitions: 2\nreplications: 1\n"
        "duration: 0.5\nwarmup: 0.1\nsaturation_factor: 1.5\n"
        "axes: {load: [0.3], agents: [], size: [], fanout: []}\n"
    )
    return suite


def test_validate_model_refuses_invalid_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An invalid real run is left out of its point's figures and listed with its reasons."""
    from harness.validate import model

    measure = model.run_real

    def one_invalid(point: Any, repetitions: int) -> list[Any]:
        runs = measure(point, repetitions)
        if point.label == "load=0.3":
            runs[0].invalid_reasons.append("worker-0 failed: injected by the test")
        return runs

    monkeypatch.setattr(model, "run_real", one_invalid)
    reports = tmp_path / "reports"
    assert main(["--reports", str(reports), "validate-model", str(_tiny_suite(tmp_path))]) == 0
    (folder,) = (reports / "validation").iterdir()
    (point,) = json.loads((folder / "report.json").read_text())["points"]
    assert point["real"]["deliveries_per_s"]["n"] == 1 and len(point["runs"]["real"]) == 1
    assert point["refused_runs"] == [["worker-0 failed: injected by the test"]]
    markdown = (folder / "report.md").read_text()
    assert "## Runs refused as evidence" in markdown and "injected by the test" in markdown


def test_validate_model_stops_when_the_saturation_point_has_no_valid_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without one valid run at the saturation point the sweep cannot be sized: exit 3."""
    from harness.validate import model

    measure = model.run_real

    def all_invalid(point: Any, repetitions: int) -> list[Any]:
        runs = measure(point, repetitions)
        for run in runs:
            run.invalid_reasons.append("the coordinator did not report")
        return runs

    monkeypatch.setattr(model, "run_real", all_invalid)
    reports = tmp_path / "reports"
    assert main(["--reports", str(reports), "validate-model", str(_tiny_suite(tmp_path))]) == 3
    assert "saturation point" in capsys.readouterr().err
    assert not (reports / "validation").exists()
