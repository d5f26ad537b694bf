"""The model-validation suite: suite loading, the sweep, the error arithmetic, the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.scenario.schema import ScenarioError, load_scenario
from harness.validate.fidelity import error_pct, evaluate_goals, summarize_errors
from harness.validate.suite import (
    capacity_point,
    load_suite,
    offered_deliveries,
    scale_rates,
    sweep_points,
)

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "scenarios" / "validation" / "suite.yaml"


def test_shipped_suite_loads_and_sweeps_every_axis() -> None:
    suite = load_suite(SUITE)
    names = [variant.name for variant in suite.variants]
    assert names[0] == "base" and "default" in names
    axes = {variant.axis for variant in suite.variants}
    assert axes == {"base", "agents", "size", "fanout", "mix"}
    points = sweep_points(suite, dict.fromkeys(names, 100_000.0))
    assert {point.kind for point in points} == {"load", "overload", "axis", "mix", "nominal"}
    loads = [p for p in points if p.kind == "load"]
    assert min(p.fraction for p in loads) == pytest.approx(0.1)
    assert max(p.fraction for p in loads) == pytest.approx(0.9)
    assert sorted(p.value for p in points if p.kind == "overload") == [1.5, 3.0, 10.0]
    assert sorted(p.scenario.agents.count for p in points if p.axis == "agents") == [10, 1000]
    assert max(p.value for p in points if p.axis == "size") == 65536
    assert max(p.value for p in points if p.axis == "fanout") == 100
    # the mix runs on the suite's transport, not on its own file's (tcp)
    assert {p.scenario.transport for p in points} == {"inproc"}


def test_every_point_offers_its_fraction_of_its_own_variants_capacity() -> None:
    suite = load_suite(SUITE)
    capacities = {variant.name: 40_000.0 + 1000 * i for i, variant in enumerate(suite.variants)}
    for point in sweep_points(suite, capacities):
        offered = offered_deliveries(point.scenario)
        capacity = capacities[point.variant]
        assert offered == pytest.approx(point.fraction * capacity, rel=0.02), point.label


def test_a_mix_keeps_its_proportions_when_scaled() -> None:
    default = load_scenario(ROOT / "scenarios" / "default.yaml")
    doubled = scale_rates(default, 2.0)
    for before, after in zip(default.workload, doubled.workload, strict=True):
        assert after.arrival.rate == pytest.approx(2 * before.arrival.rate)  # type: ignore[union-attr]
    assert offered_deliveries(doubled) == pytest.approx(2 * offered_deliveries(default), rel=0.02)


def test_a_variant_without_a_measured_capacity_gets_no_points() -> None:
    suite = load_suite(SUITE)
    points = sweep_points(suite, {"base": 50_000.0})  # every other capacity run was invalid
    assert {p.variant for p in points} == {"base"}


def test_capacity_points_offer_past_the_larger_of_nominal_and_base_capacity() -> None:
    suite = load_suite(SUITE)
    base, *others = suite.variants
    point = capacity_point(suite, base, None)
    assert offered_deliveries(point.scenario) == pytest.approx(2 * base.nominal, rel=0.02)
    default = next(v for v in others if v.name == "default")
    for capacity in (10_000.0, 500_000.0):
        offered = offered_deliveries(capacity_point(suite, default, capacity).scenario)
        assert offered == pytest.approx(2 * max(default.nominal, capacity), rel=0.02)


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


def _point(
    below: bool,
    p95_err: float | None,
    rate_err: float | None,
    kind: str = "load",
    value: float = 0.5,
) -> dict[str, object]:
    errors = {"p50_ms": 0.0, "p95_ms": p95_err, "p99_ms": 0.0, "deliveries_per_s": rate_err}
    return {"below_saturation": below, "errors": errors, "kind": kind, "value": value}


def _goals(points: list[dict[str, object]]) -> dict[str, dict[str, Any]]:
    errors = summarize_errors(points)
    return {goal["goal"]: goal for goal in evaluate_goals(errors, points)}


def test_latency_goals_use_only_points_below_saturation() -> None:
    points = [_point(True, -5.0, 1.0), _point(True, 20.0, -2.0), _point(False, 900.0, -50.0)]
    errors = summarize_errors(points)
    below = errors["below_saturation"]["p95_ms"]
    assert below["n"] == 2 and below["median"] == pytest.approx(12.5) and below["worst"] == 20.0
    assert errors["all"]["p95_ms"]["worst"] == 900.0
    goals = _goals(points)
    median = goals["p95, median absolute error below saturation"]
    assert median["value"] == pytest.approx(12.5) and median["met"] and not median["met_target"]
    assert goals["p95, worst absolute error below saturation"]["met"] is True


def test_capacity_and_overload_goals_can_fail() -> None:
    """The throughput goals are on capacity, heavy overload and the mixes as written:
    places where the model can be wrong (under open loop, below saturation, it cannot)."""
    points = [
        _point(False, None, 8.0, "capacity"),
        _point(False, None, -12.0, "capacity"),
        _point(False, 50.0, 30.0, "overload", 1.5),  # 1.5x: outside the overload goal
        _point(False, 50.0, -14.0, "overload", 3.0),
        _point(False, 50.0, 9.0, "overload", 10.0),
        _point(True, 30.0, 2.0, "nominal", 1.0),
    ]
    goals = _goals(points)
    capacity = goals["saturation throughput, worst absolute error over every variant"]
    assert capacity["value"] == pytest.approx(12.0) and capacity["met"] is False
    overload = goals["goodput at 3x capacity and more, worst absolute error"]
    assert overload["value"] == pytest.approx(14.0) and overload["met"] is True
    assert overload["met_target"] is False
    written = goals["mixes as written: p95, worst absolute error"]
    assert written["value"] == pytest.approx(30.0) and written["met"] is False
    assert goals["mixes as written: deliveries/s, worst absolute error"]["met"] is True


def test_a_goal_with_nothing_to_measure_is_not_met() -> None:
    goals = _goals([_point(True, 5.0, 0.0), _point(False, None, None, "capacity")])
    assert goals["saturation throughput, worst absolute error over every variant"]["met"] is False
    assert goals["goodput at 3x capacity and more, worst absolute error"]["value"] is None


def test_validate_model_end_to_end_writes_report_and_plots(tmp_path: Path) -> None:
    """A tiny suite through the CLI: capacities, points of every kind, the report, the plots."""
    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        f"name: tiny\nbase: {SUITE.parent / 'base.yaml'}\nrepetitions: 2\nreplications: 2\n"
        "duration: 1.0\nwarmup: 0.25\nsaturation_factor: 1.5\n"
        "axes: {load: [0.3], overload: [3], agents: [50], size: [], fanout: []}\n"
        f"mixes: [{{file: {ROOT / 'scenarios' / 'default.yaml'}, load: [0.3]}}]\n"
    )
    assert main(["--reports", str(tmp_path / "reports"), "validate-model", str(suite)]) == 0
    (folder,) = (tmp_path / "reports" / "validation").iterdir()
    report = json.loads((folder / "report.json").read_text())
    assert [c["label"] for c in report["capacity"]] == [
        "capacity base",
        "capacity agents=50",
        "capacity default",
    ]
    assert [p["label"] for p in report["points"]] == [
        "load=0.3",
        "overload=3x",
        "agents=50",
        "default at 0.3",
        "default as written",
    ]
    for point in [*report["capacity"], *report["points"]]:
        assert point["real"]["deliveries_per_s"]["n"] == 2
        assert point["sim"]["deliveries_per_s"]["n"] == 2
        assert len(point["runs"]["real"]) == 2 and len(point["runs"]["sim"]) == 2
        assert point["real"]["deliveries_per_s"]["median"] > 0
    assert report["points"][1]["real"]["shed_share"]["median"] is not None
    assert len(report["goals"]) == 6
    for plot in ("latency_vs_load.png", "predicted_vs_measured.png", "capacity.png"):
        assert (folder / plot).stat().st_size > 10_000
    markdown = (folder / "report.md").read_text()
    assert "## Saturation throughput per variant" in markdown and "## Overload" in markdown


def _tiny_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "tiny.yaml"
    suite.write_text(
        f"name: tiny\nbase: {SUITE.parent / 'base.yaml'}\nrepetitions: 2\nreplications: 1\n"
        "duration: 0.5\nwarmup: 0.1\nsaturation_factor: 1.5\n"
        "axes: {load: [0.3], overload: [], agents: [], size: [], fanout: []}\n"
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
    """Without one valid run at the capacity the sweep cannot be sized: exit 3."""
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
    assert "capacity" in capsys.readouterr().err
    assert not (reports / "validation").exists()


def test_reuse_predicts_a_reports_real_runs_again_and_refuses_a_changed_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``validate-model --reuse``: the same real figures, new sim replications with the
    calibration asked for, the old report named; a suite that changed is refused (exit 2)."""
    from sim.calibration import shipped_path

    suite = _tiny_suite(tmp_path)
    reports = tmp_path / "reports"
    assert main(["--reports", str(reports), "validate-model", str(suite)]) == 0
    (first,) = (reports / "validation").iterdir()
    old = json.loads((first / "report.json").read_text())
    calibration = shipped_path("inproc")
    args = ["--reports", str(reports), "validate-model", "--reuse", str(first)]
    assert main([*args, "--replications", "2", "--calibration", str(calibration)]) == 0
    (second,) = set((reports / "validation").iterdir()) - {first}
    new = json.loads((second / "report.json").read_text())
    assert new["reused"]["report"] == str(first / "report.json")
    assert new["calibration"]["source"] == str(calibration)
    for before, after in zip(
        [*old["capacity"], *old["points"]], [*new["capacity"], *new["points"]], strict=True
    ):
        assert after["label"] == before["label"]
        assert after["scenario_digest"] == before["scenario_digest"]
        assert after["runs"]["real"] == before["runs"]["real"]
        assert after["real"] == before["real"]
        assert len(after["runs"]["sim"]) == 2
    assert "the real runs are reused" in (second / "report.md").read_text()

    assert main([*args, "--repetitions", "3"]) == 2
    assert "--repetitions has no meaning with --reuse" in capsys.readouterr().err
    suite.write_text(suite.read_text().replace("load: [0.3]", "load: [0.4]"))
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "load=0.3" in err and "the suite now gives 'load=0.4'" in err
