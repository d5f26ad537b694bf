"""Regression checks: the baseline file, the exact sim part, the real decision, the CLI.

The real-system runs here are tiny and their outcome is never asserted on
timing alone: the slowdown hook is checked by the CPU it adds per message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.regress.baseline import BaselineError, read_baseline, write_baseline
from harness.regress.decide import RULES, check_repetitions, compare_sim, decide, parse_min_effects
from harness.regress.update import load_sources, make_baseline, plan_update
from harness.scenario.schema import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
SIM_ONLY = """\
name: regress-sim
seed: 4
duration: 1.0
warmup: 0.2
backends: [sim]
agents: {count: 6, capabilities: [{name: compute, share: 0.5}]}
topics: {count: 3, fanout: 2}
workload:
  - kind: publish
    arrival: {process: poisson, rate: 300}
  - kind: task
    arrival: {process: poisson, rate: 40}
    capability: compute
"""
REAL_INPROC = """\
name: regress-real
seed: 9
duration: 0.6
warmup: 0.1
backends: [real]
agents: {count: 4}
topics: {count: 2, fanout: 2}
workload:
  - kind: direct
    arrival: {process: constant, rate: 200}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def sim_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sim-only baseline made through the library, written to a temporary folder."""
    folder = tmp_path_factory.mktemp("baseline")
    scenario = _write(folder, "sim.yaml", SIM_ONLY)
    planned, _ = load_sources([str(scenario)])
    baseline = make_baseline("sim", planned, 4, [str(scenario)], lambda _: None, command="test")
    return write_baseline(folder / "baselines" / "sim.json", baseline)


# --------------------------------------------------------------------------- the file


def test_baseline_round_trip(sim_baseline: Path) -> None:
    baseline = read_baseline(sim_baseline, tuple(RULES))
    again = sim_baseline.with_name("again.json")
    write_baseline(again, baseline)
    assert read_baseline(again, tuple(RULES)) == baseline
    assert again.read_text() == sim_baseline.read_text()
    data = json.loads(sim_baseline.read_text())
    assert data["format"] == "swarmtwin-baseline" and data["version"] == 1
    assert set(data["machine"]) == {"hostname", "cpu_model", "cores", "python", "platform"}
    (entry,) = data["scenarios"]
    assert entry["real"] is None and "wall_seconds" not in entry["sim"]["figures"]
    assert entry["calibration"]["data"]["format"] == 1  # the whole calibration, embedded
    assert entry["calibration"]["source"]
    assert "workload:" in entry["scenario_yaml"]


def _broken(tmp_path: Path, baseline: Path, change: object) -> Path:
    data = json.loads(baseline.read_text())
    change(data)  # type: ignore[operator]
    return _write(tmp_path, "broken.json", json.dumps(data))


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        (lambda d: d["machine"].pop("cores"), "machine.cores", "required field is missing"),
        (lambda d: d["machine"].update(cores=2.5), "machine.cores", "expected an integer"),
        (lambda d: d["machine"].update(cores=-1), "machine.cores", "expected a number >= 0"),
        (lambda d: d.update(version=7), "version", "expected 1 (the format this swarmtwin reads)"),
        (lambda d: d.update(version="1"), "version", "expected an integer, got '1'"),
        (lambda d: d.update(format="other"), "format", "expected 'swarmtwin-baseline'"),
        (lambda d: d.update(git_dirty="no"), "git_dirty", "expected true, false or null"),
        (lambda d: d.update(sources=["a", 3]), "sources[1]", "expected a string, got 3"),
        (lambda d: d.update(scenarios=[]), "scenarios", "expected at least 1 item"),
        (lambda d: d.update(repetitions=True), "repetitions", "expected an integer, got true"),
        (
            lambda d: d["scenarios"][0]["sim"]["figures"].update(p95_ms="fast"),
            "scenarios[0].sim.figures.p95_ms",
            "expected a number or null, got 'fast'",
        ),
        (
            lambda d: d["scenarios"][0]["sim"]["figures"].update(p95_ms=False),
            "scenarios[0].sim.figures.p95_ms",
            "expected a number or null, got false",
        ),
        (
            lambda d: d["scenarios"][0].update(checks=["p42_ms"]),
            "scenarios[0].checks[0]",
            "expected one of deliveries_per_s, p95_ms, reliability, got 'p42_ms'",
        ),
        (
            lambda d: d["scenarios"][0].update(calibration=None),
            "scenarios[0].calibration",
            "expected the calibration the sim ran with",
        ),
        (
            lambda d: d["scenarios"][0]["calibration"].update(data={}),
            "scenarios[0].calibration.data",
            "expected a calibration (format 1)",
        ),
        (
            lambda d: d["scenarios"][0]["calibration"].update(data=[]),
            "scenarios[0].calibration.data",
            "expected a mapping, got a list",
        ),
        (
            lambda d: d["scenarios"][0].update(sim=None),
            "scenarios[0]",
            "expected sim or real figures (both are null)",
        ),
        (lambda d: d["scenarios"][0]["sim"].pop("notes"), "scenarios[0].sim.notes", "missing"),
        (
            lambda d: d["scenarios"][0].update(scenario_yaml="name: x\nworkload: []\n"),
            "scenarios[0].scenario_yaml",
            "workload: expected at least 1 item(s), got 0",
        ),
        (
            lambda d: d["scenarios"][0].update(scenario_yaml="a: [\n"),
            "scenarios[0].scenario_yaml",
            "expected a scenario in YAML",
        ),
    ],
)
def test_bad_baseline_exits_2_naming_file_and_field(
    tmp_path: Path,
    sim_baseline: Path,
    change: object,
    field: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = _broken(tmp_path, sim_baseline, change)
    with pytest.raises(ScenarioError):  # BaselineError, or the embedded scenario's own error
        read_baseline(broken, tuple(RULES))
    assert main(["regress", "--baseline", str(broken)]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and field in err and expected in err


def _real_only(baseline: Path, runs: int) -> dict:
    """``baseline`` as JSON data, its scenario turned real-only with ``runs`` made-up runs."""
    data = json.loads(baseline.read_text())
    figures = {"p95_ms": 2.0, "deliveries_per_s": 800.0, "reliability": 1.0, "p50_ms": None}
    entry = data["scenarios"][0]
    entry.update(sim=None, calibration=None)
    entry["real"] = {"repetitions": [{"figures": dict(figures), "notes": []} for _ in range(runs)]}
    data["repetitions"] = runs
    return data


def test_real_runs_are_checked_against_the_file(tmp_path: Path, sim_baseline: Path) -> None:
    data = _real_only(sim_baseline, 4)
    good = _write(tmp_path, "good.json", json.dumps(data))
    (entry,) = read_baseline(good, tuple(RULES)).scenarios
    assert entry.real is not None and len(entry.real) == 4 and entry.sim is None
    assert entry.real[0]["p50_ms"] is None  # an unchecked figure may be null
    data["repetitions"] = 5
    with pytest.raises(BaselineError) as short:
        read_baseline(_write(tmp_path, "short.json", json.dumps(data)), tuple(RULES))
    assert short.value.field == "scenarios[0].real.repetitions"
    assert short.value.expected == "expected a list of 5 runs (the file's repetitions), got 4"
    data["repetitions"] = 4
    runs = data["scenarios"][0]["real"]["repetitions"]
    runs[2] = {"figures": {**runs[2]["figures"], "p95_ms": None}, "notes": []}
    with pytest.raises(BaselineError) as unchecked:
        read_baseline(_write(tmp_path, "null.json", json.dumps(data)), tuple(RULES))
    assert unchecked.value.field == "scenarios[0].real.repetitions[2].figures.p95_ms"
    assert "expected a number for the checked figure 'p95_ms'" in unchecked.value.expected


def test_every_problem_is_listed_but_a_wrong_version_alone(
    tmp_path: Path, sim_baseline: Path
) -> None:
    def damage(data: dict) -> None:
        data["machine"]["cores"] = "two"
        data["sources"] = "one"

    with pytest.raises(BaselineError) as both:
        read_baseline(_broken(tmp_path, sim_baseline, damage), tuple(RULES))
    assert [field for field, _ in both.value.problems] == ["machine.cores", "sources"]

    def future(data: dict) -> None:
        damage(data)
        data["version"] = 2

    with pytest.raises(BaselineError) as version:
        read_baseline(_broken(tmp_path, sim_baseline, future), tuple(RULES))
    assert version.value.problems == [
        ("version", "expected 1 (the format this swarmtwin reads), got 2")
    ]
    with pytest.raises(BaselineError) as listed:
        read_baseline(_write(tmp_path, "list.json", "[]"), tuple(RULES))
    assert (listed.value.field, listed.value.expected) == (
        "(file)",
        "expected a mapping, got a list",
    )


def test_unreadable_baseline_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regress", "--baseline", str(tmp_path / "nope.json")]) == 2
    assert "file not found" in capsys.readouterr().err
    bad = _write(tmp_path, "bad.json", "{not json")
    assert main(["regress", "--baseline", str(bad)]) == 2
    assert "(json)" in capsys.readouterr().err


# --------------------------------------------------------------------------- the sim part


def test_exact_sim_part_passes_then_fails_when_a_figure_is_edited(
    tmp_path: Path, sim_baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["regress", "--baseline", str(sim_baseline), "--json", str(tmp_path / "r.json")]) == 0
    )
    out = capsys.readouterr().out
    assert "all identical" in out and "no regression" in out
    assert json.loads((tmp_path / "r.json").read_text())["regressed"] is False

    def nudge(data: dict) -> None:
        figures = data["scenarios"][0]["sim"]["figures"]
        figures["p95_ms"] = figures["p95_ms"] * 1.001

    edited = _broken(tmp_path, sim_baseline, nudge)
    assert main(["regress", "--baseline", str(edited)]) == 1
    out = capsys.readouterr().out
    assert "p95_ms" in out and "REGRESSED" in out


def test_compare_sim_lists_moved_added_and_removed_figures() -> None:
    old = {"p95_ms": 1.0, "lost": 0, "gone": 3, "wall_seconds": 9.0}
    new = {"p95_ms": 1.5, "lost": 0, "fresh": 1, "wall_seconds": 2.0}
    result = compare_sim("s", old, new)
    assert [(c.figure, c.change_pct) for c in result.changes] == [("p95_ms", 50.0)]
    assert result.compared == 2 and result.added == ["fresh"] and result.removed == ["gone"]


# --------------------------------------------------------------------------- the real part


def _noisy(center: float, n: int, seed: int, spread: float = 0.04) -> list[float]:
    return list(np.random.default_rng(seed).normal(center, center * spread, n))


def test_a_30_percent_slower_sample_is_flagged() -> None:
    base = _noisy(1000.0, 10, 1)
    slower = decide("s", RULES["deliveries_per_s"], _noisy(700.0, 5, 2), base)
    assert slower.verdict == "regressed" and slower.p_worse is not None and slower.p_worse < 0.05
    assert slower.ratio == pytest.approx(0.7, abs=0.05)
    assert slower.ci_low is not None and slower.ci_high is not None and slower.ci_high < 0.9
    p95 = decide("s", RULES["p95_ms"], _noisy(2.6, 5, 3), _noisy(2.0, 10, 4))
    assert p95.verdict == "regressed"


def test_the_same_distribution_is_not_flagged() -> None:
    for seed in range(20):
        base, new = _noisy(1000.0, 10, seed, 0.15), _noisy(1000.0, 5, 100 + seed, 0.15)
        for metric in ("deliveries_per_s", "p95_ms"):
            assert decide("s", RULES[metric], new, base).verdict != "regressed", seed


def test_a_significant_but_tiny_effect_is_not_flagged() -> None:
    base = _noisy(1000.0, 10, 5, 0.002)
    verdict = decide("s", RULES["deliveries_per_s"], _noisy(970.0, 5, 6, 0.002), base)
    assert verdict.p_worse is not None and verdict.p_worse < 0.01
    assert verdict.verdict == "small change"
    looser = decide("s", RULES["deliveries_per_s"], _noisy(970.0, 5, 6, 0.002), base, 0.05, 0.02)
    assert looser.verdict == "regressed"  # a smaller --min-effect catches it


def test_an_improvement_is_shown_but_does_not_fail() -> None:
    verdict = decide("s", RULES["p95_ms"], _noisy(1.0, 5, 7), _noisy(2.0, 10, 8))
    assert verdict.verdict == "improved"


def test_too_few_repetitions_are_refused() -> None:
    with pytest.raises(ScenarioError, match="smallest p-value"):
        check_repetitions(3, 3, 0.05, "b.json")
    check_repetitions(4, 4, 0.05, "b.json")


def test_min_effect_option_parsing() -> None:
    assert parse_min_effects(["p95_ms=30", "deliveries_per_s=5"]) == {
        "p95_ms": 0.3,
        "deliveries_per_s": 0.05,
    }
    for bad in ("p42_ms=3", "p95_ms=lots", "p95_ms"):
        with pytest.raises(ScenarioError, match="--min-effect"):
            parse_min_effects([bad])


# --------------------------------------------------------------------------- CLI and update


def test_cli_baseline_update_then_regress_on_the_real_system(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = _write(tmp_path, "real.yaml", REAL_INPROC)
    reports = tmp_path / "reports"
    update = ["--reports", str(reports), "baseline", "update", "tiny", "--scenario", str(scenario)]
    assert main([*update, "--repetitions", "4"]) == 0
    path = reports / "baselines" / "tiny.json"
    baseline = read_baseline(path, tuple(RULES))
    (entry,) = baseline.scenarios
    assert baseline.repetitions == 4 and entry.real is not None and len(entry.real) == 4
    assert entry.sim is None and entry.calibration is None
    capsys.readouterr()
    loose = ["--min-effect", "p95_ms=900", "--min-effect", "deliveries_per_s=90"]
    code = main(["regress", "--baseline", str(path), "--real-only", *loose])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "real regress-real 4/4" in out and "p95 ms" in out and "no regression" in out


def test_update_reuses_the_recorded_sources_and_repetitions(sim_baseline: Path) -> None:
    planned, reps, sources = plan_update("sim", [], sim_baseline, None, lambda _: None)
    assert [p.scenario.name for p in planned] == ["regress-sim"]
    assert reps == 4 and sources == tuple(read_baseline(sim_baseline).sources)


def test_the_ci_suite_loads_with_its_checks() -> None:
    planned, reps = load_sources([str(ROOT / "scenarios" / "regression" / "ci.yaml")])
    assert reps is not None and reps >= 5
    checks = {p.scenario.name: p.checks for p in planned}
    assert any("p95_ms" in c for c in checks.values())
    assert all("deliveries_per_s" in c for c in checks.values())
    committed = read_baseline(ROOT / "reports" / "baselines" / "ci.json", tuple(RULES))
    assert {e.name for e in committed.scenarios} == set(checks)


def test_bad_names_and_options_exit_2(tmp_path: Path, sim_baseline: Path) -> None:
    assert main(["--reports", str(tmp_path), "baseline", "update", "../x"]) == 2
    assert main(["--reports", str(tmp_path), "baseline", "update", "no-such-suite"]) == 2
    regress = ["regress", "--baseline", str(sim_baseline)]
    for option in (["--repetitions", "-1"], ["--alpha", "1.5"]):  # argparse's own check
        with pytest.raises(SystemExit) as refused:
            main([*regress, *option])
        assert refused.value.code == 2
    assert main([*regress, "--only", "nope"]) == 2
    assert main([*regress, "--min-effect", "p95_ms=x"]) == 2


# --------------------------------------------------------------------------- the slowdown hook

_HOOK_RUN = """
import json, sys
from harness.scenario.schema import parse_scenario
from harness.scenario.compile import compile_plan
from harness.run.runner import run_backend
import yaml
scenario = parse_scenario(yaml.safe_load(sys.argv[1]))
plan = compile_plan(scenario)
result = run_backend(plan, "real", scenario)
print(json.dumps({"cpu": result.processes[0].cpu_seconds, "directs": len(result.completions),
                  "notes": result.notes}))
"""


def _hook_run(delay: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "SWARMTWIN_TEST_DELAY_US"}
    if delay is not None:
        env["SWARMTWIN_TEST_DELAY_US"] = delay
    proc = subprocess.run(
        [sys.executable, "-c", _HOOK_RUN, REAL_INPROC],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_slowdown_hook_costs_cpu_per_message_and_says_so() -> None:
    delay_us = 1000
    normal, slowed = _hook_run(None), _hook_run(str(delay_us))
    assert not any("TEST SLOWDOWN" in n for n in normal["notes"])  # type: ignore[attr-defined]
    assert any("TEST SLOWDOWN ACTIVE" in n for n in slowed["notes"])  # type: ignore[attr-defined]
    # every direct message passes through the coordinator at least once
    added = float(slowed["cpu"]) - float(normal["cpu"])  # type: ignore[arg-type]
    expected = int(slowed["directs"]) * delay_us / 1e6  # type: ignore[call-overload]
    assert added > 0.5 * expected, (normal, slowed)


def test_the_hook_is_off_and_free_without_the_variable() -> None:
    from real import slowdown

    if slowdown.ACTIVE:
        pytest.skip("SWARMTWIN_TEST_DELAY_US is set for this test run")

    class Node:
        def receive(self, src: str, msg: object, now: float) -> None:
            pass

    node = Node()
    assert slowdown.slow_coordinator(node) is node and "receive" not in vars(node)
    assert slowdown.note() is None
    assert slowdown.parse_delay(None) == 0 and slowdown.parse_delay(" 25 ") == 25
    for bad in ("fast", "-3", "1.5"):
        with pytest.raises(ValueError, match="SWARMTWIN_TEST_DELAY_US"):
            slowdown.parse_delay(bad)


def test_a_bad_slowdown_variable_is_a_clear_error_with_exit_2() -> None:
    env = {**os.environ, "SWARMTWIN_TEST_DELAY_US": "fast"}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "scenarios/smoke.yaml", "--backend", "real"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert "SWARMTWIN_TEST_DELAY_US must be a whole number" in done.stderr
    assert "Traceback" not in done.stderr
