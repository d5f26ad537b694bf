"""Certification: scoring and levels, figures from runs, the suite file, and one
end-to-end ``swarmtwin certify`` of the quick suite whose HTML report is
rendered to PNG in headless Chromium and checked."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from harness.certify.catalog import (
    TEST_KEYS,
    TESTS,
    Measurement,
    failover_worst,
    finish,
    integrity_percent,
    recovery_p95,
    with_targets,
)
from harness.certify.cli_check import cli_check
from harness.certify.html import LEVEL_COLOURS
from harness.certify.run import in_suite
from harness.certify.scoring import overall, score_of
from harness.certify.suite import load_suite, load_targets
from harness.cli import main
from harness.metrics.summary import (
    Agents,
    Availability,
    FaultRecovery,
    FaultSection,
    LatencyFigures,
    Reliability,
    Summary,
    Throughput,
)
from harness.scenario.schema import ScenarioError

SPECS = {spec.key: spec for spec in TESTS}
QUICK = Path("scenarios/certification/quick/suite.yaml")


def _measured(key: str, value: float | None) -> Measurement:
    item = finish(SPECS[key], [value], [])
    item.score = score_of(SPECS[key], value)
    return item


def _all_passing() -> dict[str, float]:
    return {
        "latency_p95_ms": 5.0,
        "throughput": 120_000.0,
        "agents_coordinated": 120.0,
        "reliability": 99.95,
        "uptime": 100.0,
        "recovery_s": 0.4,
        "security": 100.0,
        "data_integrity": 100.0,
        "monitoring_coverage": 100.0,
        "network_resilience": 99.0,
        "failover_uptime": 99.95,
        "failover_s": 0.1,
    }


def test_the_twelve_tests_and_their_targets_follow_design_md() -> None:
    assert len(TESTS) == 12
    assert sum(spec.critical for spec in TESTS) == 8
    assert SPECS["failover_uptime"].target == 99.9 and SPECS["failover_s"].target == 0.5
    assert SPECS["latency_p95_ms"].target == 10 and SPECS["latency_p95_ms"].direction == "<="
    assert SPECS["throughput"].target == 100_000 and SPECS["recovery_s"].target == 5
    assert not SPECS["monitoring_coverage"].critical and not SPECS["network_resilience"].critical


def test_a_failed_test_scores_by_how_close_it_came() -> None:
    assert score_of(SPECS["throughput"], 150_000) == 100.0
    assert score_of(SPECS["throughput"], 75_000) == pytest.approx(75.0)
    assert score_of(SPECS["latency_p95_ms"], 20.0) == pytest.approx(50.0)
    assert score_of(SPECS["recovery_s"], math.inf) == 0.0
    assert score_of(SPECS["security"], None) == 0.0
    assert score_of(SPECS["reliability"], 99.89) < 100.0  # a fail never shows as 100


def test_levels_and_the_weighted_score() -> None:
    values = _all_passing()
    full = overall([_measured(k, v) for k, v in values.items()])
    assert (full.level, full.score, full.passed) == ("FULL", 100.0, 12)
    one_minor = overall(
        [_measured(k, 0.0 if k == "network_resilience" else v) for k, v in values.items()]
    )
    assert one_minor.level == "FULL"  # every critical passes and 11 of 12 >= 90 %
    assert one_minor.score == pytest.approx(100 * 19 / 20)  # critical tests count twice
    two_minor = {**values, "network_resilience": 0.0, "failover_s": math.inf}
    assert overall([_measured(k, v) for k, v in two_minor.items()]).level == "PARTIAL"
    one_critical = overall(
        [_measured(k, 50_000 if k == "throughput" else v) for k, v in values.items()]
    )
    assert one_critical.level == "PARTIAL"  # 7 of 8 critical (>= 80 %), 11 of 12
    two_critical = {**values, "throughput": 1.0, "uptime": 1.0}
    assert overall([_measured(k, v) for k, v in two_critical.items()]).level == "FAILED"  # 6/8


def test_an_unmeasured_figure_fails_and_an_interval_is_clipped() -> None:
    assert not finish(SPECS["uptime"], [100.0, None], [], [100.0]).passed
    item = finish(SPECS["uptime"], [100.0, 99.0], [])
    assert item.ci_high == 100.0 and item.ci_low is not None and item.ci_low < 99.5
    never = finish(SPECS["recovery_s"], [0.5, math.inf], [])
    assert never.value == math.inf and not never.passed


def _summary_with_faults(times: list[float | None]) -> Summary:
    rows = [FaultRecovery(i, "kill_agent", 1.0, 1.1, recovery_s=t) for i, t in enumerate(times)]
    return Summary(
        "real",
        "inproc",
        1,
        1.0,
        0.2,
        1.0,
        1.0,
        LatencyFigures(),
        {},
        Throughput(),
        Reliability(),
        Availability(),
        Agents(),
        faults=FaultSection(faults=rows),
    )


def test_recovery_counts_a_fault_that_never_recovered_as_infinite() -> None:
    assert recovery_p95([_summary_with_faults([0.2, 0.3, 0.4])]) == pytest.approx(0.4)
    assert recovery_p95([_summary_with_faults([0.2] * 19 + [None])]) == 0.2  # p95 of 20
    assert recovery_p95([_summary_with_faults([0.2, None])]) == math.inf
    assert recovery_p95([_summary_with_faults([])]) is None


def test_failover_takes_the_slowest_leader_crash_and_never_as_infinite() -> None:
    run = _summary_with_faults([])
    run.faults.faults = [
        FaultRecovery(0, "crash_replica", 1.0, 1.0, first_write_s=0.05),
        FaultRecovery(1, "crash_replica", 3.0, 3.0, first_write_s=0.2),
        FaultRecovery(2, "kill_agent", 5.0, 5.0, first_write_s=9.0),  # not a replica's
    ]
    assert failover_worst([run]) == 0.2
    run.faults.faults[0].first_write_s = None  # no write committed after it
    assert failover_worst([run]) == math.inf
    assert failover_worst([_summary_with_faults([])]) is None


def test_integrity_counts_corruption_losses_and_lost_writes() -> None:
    clean = _summary_with_faults([])
    clean.reliability.unique, clean.reliability.expected = 900, 1000
    clean.integrity.acked_writes_checked = 100
    assert integrity_percent([clean]) == 100.0
    clean.reliability.corrupted = 2
    clean.integrity.acked_writes_lost = 2
    assert integrity_percent([clean]) == pytest.approx(100 * (2000 - 4) / 2000)


def test_suite_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "suite.yaml"
    bad.write_text(
        "name: x\nload: [a.yaml]\ncapacity: [a.yaml]\nrecovery: []\nresilience: [a.yaml]\n"
    )
    with pytest.raises(ScenarioError) as err:
        load_suite(bad, None, TEST_KEYS)
    assert err.value.file == str(bad) and err.value.field == "recovery"
    bad.write_text("name: x\nload: [missing.yaml]\ncapacity: [a]\nrecovery: [a]\nresilience: [a]\n")
    with pytest.raises(ScenarioError) as err:
        load_suite(bad, None, TEST_KEYS)
    assert err.value.field == "load[0]" and "missing" in err.value.expected
    targets = tmp_path / "targets.yaml"
    targets.write_text("latency_p95: 20\n")
    with pytest.raises(ScenarioError) as err:
        load_targets(targets, TEST_KEYS)
    assert err.value.field == "targets.latency_p95" and "latency_p95_ms" in err.value.expected
    targets.write_text("uptime: 0\n")
    with pytest.raises(ScenarioError) as err:
        load_targets(targets, TEST_KEYS)
    assert err.value.field == "targets.uptime" and "> 0" in err.value.expected
    assert main(["certify", str(bad)]) == 2
    (tmp_path / "a.yaml").write_text(Path("scenarios/smoke.yaml").read_text())
    members = "load: [a.yaml]\ncapacity: [a.yaml]\nrecovery: [a.yaml]\nresilience: [a.yaml]\n"
    bad.write_text(f"name: x\n{members}failover: [a.yaml]\n")
    with pytest.raises(ScenarioError) as err:
        load_suite(bad, None, TEST_KEYS)
    assert err.value.field == "failover[0]" and "consensus" in err.value.expected
    bad.write_text(f"name: x\n{members}")  # no failover group: its two tests are left out
    without = load_suite(bad, None, TEST_KEYS)
    kept = [spec.key for spec in TESTS if in_suite(spec, without)]
    assert len(kept) == 10 and "failover_uptime" not in kept and "failover_s" not in kept
    assert all(in_suite(spec, load_suite(QUICK, None, TEST_KEYS)) for spec in TESTS)


def test_targets_override_the_defaults(tmp_path: Path) -> None:
    targets = tmp_path / "targets.yaml"
    targets.write_text("targets: {latency_p95_ms: 20, throughput: 1000}\n")
    loaded = load_targets(targets, TEST_KEYS)
    suite = load_suite(QUICK, loaded, TEST_KEYS)
    specs = {s.key: s for s in with_targets(suite.settings.targets)}
    assert specs["latency_p95_ms"].target == 20 and specs["throughput"].target == 1000
    assert specs["uptime"].target == SPECS["uptime"].target
    assert replace(specs["uptime"]) == SPECS["uptime"]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``swarmtwin certify`` of the quick suite, with report.png."""
    reports = tmp_path_factory.mktemp("reports")
    code = main(["--reports", str(reports), "certify", str(QUICK), "--png", "yes"])
    assert code == 0
    (folder,) = list((reports / "certifications").iterdir())
    return folder


def test_certify_writes_the_three_reports_from_measured_runs(quick_report: Path) -> None:
    data = json.loads((quick_report / "report.json").read_text())
    assert [t["key"] for t in data["tests"]] == list(TEST_KEYS)
    assert data["level"] in ("FULL", "PARTIAL", "FAILED") and data["machine"]["cores"] >= 1
    by_key = {t["key"]: t for t in data["tests"]}
    assert by_key["reliability"]["samples"] and len(by_key["reliability"]["samples"]) == 2
    assert by_key["agents_coordinated"]["value"] == 20  # the quick suite's 20 agents
    assert not by_key["throughput"]["passed"]  # 1.5k/s offered: far below 100k
    assert by_key["latency_p95_ms"]["model"] is not None  # the model's prediction
    assert data["security"]["checks"] and by_key["security"]["value"] is not None
    for test in data["tests"]:
        for run in test["runs"]:
            assert (quick_report / run / "summary.json").is_file()
    markdown = (quick_report / "report.md").read_text()
    assert data["level"] in markdown.splitlines()[0]
    html = (quick_report / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") == len(data["plots"]) >= 3
    assert "http://" not in html and "https://" not in html  # self-contained


def test_the_html_report_renders_in_headless_chromium(quick_report: Path) -> None:
    png = quick_report / "report.png"
    assert png.is_file(), "report.png missing: is Chromium installed (make browser)?"
    pixels = matplotlib.image.imread(png)[:, :, :3]
    height, width, _ = pixels.shape
    assert width == 1200 and height > 1000
    level = json.loads((quick_report / "report.json").read_text())["level"]
    banner = np.array([int(LEVEL_COLOURS[level][i : i + 2], 16) / 255 for i in (1, 3, 5)])
    close = np.all(np.abs(pixels[:400] - banner) < 0.02, axis=2)
    assert close.sum(axis=1).max() > width * 0.5, "the level banner is not drawn near the top"
    plots = pixels[1000:]
    assert plots.std() > 0.05, "the page below the tables is blank: the plots did not render"


def test_the_cli_refuses_a_public_bind_with_the_default_token() -> None:
    (check,) = cli_check()
    assert check.passed, check.detail
    assert "python -m real.tcp.server, public host, default token: exit 2, never listened" in (
        check.detail
    )
    assert "swarmtwin coordinator, public host, default token: exit 2" in check.detail
    assert "loopback host (control): exit 0, listened" in check.detail


def test_certify_adds_the_cli_check_to_the_security_report(quick_report: Path) -> None:
    names = [
        c["name"]
        for c in json.loads((quick_report / "report.json").read_text())["security"]["checks"]
    ]
    assert names[-1] == "cli_refuses_public_bind_with_default_token"
