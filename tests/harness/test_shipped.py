"""Shipped files: scenario names resolve to the package's copy from any directory.

Every test runs in an empty temporary working directory, as an installed
``swarmtwin`` would be run from a project of its own.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from harness.calibrate.insitu import SCENARIO as INSITU_SCENARIO
from harness.cli import main, options
from harness.cli import regress as cli_regress
from harness.regress.update import plan_update
from harness.scenario import shipped
from harness.scenario.errors import ScenarioError
from harness.scenario.shipped import find_shipped, listing, resolve, scenarios_dir

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test from an empty folder outside the checkout."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_the_checkout_ships_its_scenarios_folder() -> None:
    assert scenarios_dir() == SCENARIOS
    assert INSITU_SCENARIO == SCENARIOS / "smoke.yaml"


def test_an_installed_package_ships_its_own_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site-packages" / "harness" / "scenario"
    (package / "files" / "faults").mkdir(parents=True)
    (package / "files" / "faults" / "partition.yaml").write_text("name: x\n")
    monkeypatch.setattr(shipped, "PACKAGE_DIR", package)
    assert scenarios_dir() == package / "files"
    assert resolve("faults/partition") == package / "files" / "faults" / "partition.yaml"


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("smoke", "smoke.yaml"),
        ("smoke.yaml", "smoke.yaml"),
        ("scenarios/default.yaml", "default.yaml"),
        ("./scenarios/default.yaml", "default.yaml"),
        ("faults/partition", "faults/partition.yaml"),
        ("scenarios/faults/loss-1pct.yaml", "faults/loss-1pct.yaml"),
        ("validation/suite", "validation/suite.yaml"),
        ("certification/quick", "certification/quick/suite.yaml"),
        ("scenarios/certification", "certification/suite.yaml"),
    ],
)
def test_a_name_resolves_to_the_shipped_file(argument: str, expected: str) -> None:
    assert resolve(argument) == SCENARIOS / expected


def test_an_existing_path_is_used_as_given(elsewhere: Path) -> None:
    own = elsewhere / "scenarios" / "smoke.yaml"
    own.parent.mkdir()
    own.write_text("name: mine\n")
    assert resolve("scenarios/smoke.yaml") == Path("scenarios/smoke.yaml")
    assert resolve(str(own)) == own
    assert resolve("scenarios/default.yaml") == SCENARIOS / "default.yaml"  # not here: shipped


def test_nothing_matching_names_what_was_looked_for_and_where(elsewhere: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        resolve("faults/partitio", "certification suite")
    message = str(caught.value)
    assert message.startswith("faults/partitio: (file): file not found")
    assert f"no faults/partitio in the working directory {elsewhere}" in message
    tried = "faults/partitio or faults/partitio.yaml"
    assert f"no shipped certification suite {tried} in {SCENARIOS}" in message
    assert "did you mean 'faults/partition'?" in message
    assert "shipped in faults/: agent-churn, coordinator-crash, fast-paxos-leader-crash," in message


def test_escapes_and_absolute_paths_are_never_shipped_names() -> None:
    assert find_shipped("../scenarios/smoke.yaml") is None
    assert find_shipped("/nowhere/smoke.yaml") is None
    with pytest.raises(ScenarioError, match="a shipped scenario is named by a relative path"):
        resolve("/nowhere/smoke.yaml")


def test_listing_shows_names_then_folders() -> None:
    names = listing(SCENARIOS)
    assert "smoke" in names and "faults/" in names
    assert names.index("task") < names.index("certification/")


def test_check_and_run_take_a_shipped_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "scenarios/smoke.yaml"]) == 0
    assert f"ok {SCENARIOS / 'smoke.yaml'}: scenario 'smoke'" in capsys.readouterr().out
    assert main(["check", "faults/partition"]) == 0


def test_an_unknown_scenario_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "smok", "--backend", "sim"]) == 2
    err = capsys.readouterr().err
    assert "smok: (file): file not found" in err and "did you mean 'smoke'?" in err


def test_regress_baseline_name_is_looked_up_under_reports(
    elsewhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = elsewhere / "out"
    assert main(["--reports", str(reports), "regress", "--baseline", "nightly"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # undo the console's line wrapping
    assert f"no nightly in the working directory {elsewhere}" in err
    assert str(reports / "baselines" / "nightly.json") in err
    named = reports / "baselines" / "nightly.json"
    named.parent.mkdir(parents=True)
    named.write_text("{}")
    assert cli_regress.baseline_argument("nightly", reports) == named
    assert cli_regress.baseline_argument("nightly.json", reports) == named


def test_baseline_update_defaults_to_the_shipped_regression_suite(elsewhere: Path) -> None:
    lines: list[str] = []
    existing = elsewhere / "reports" / "baselines" / "ci.json"
    planned, reps, sources = plan_update("ci", [], existing, None, lines.append)
    assert sources == ("scenarios/regression/ci.yaml",)
    default = SCENARIOS / "regression" / "ci.yaml"
    assert lines == [f"scenarios: {default} (the default for baseline 'ci')"]
    assert all(Path(p.source).is_relative_to(SCENARIOS / "regression") for p in planned)
    assert reps >= 1
    with pytest.raises(ScenarioError, match="no regression/nope.yaml in"):
        plan_update("nope", [], existing, None, lines.append)


def test_version_comes_from_metadata_else_pyproject(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    installed = importlib.metadata.version("swarmtwin")
    assert capsys.readouterr().out == f"swarmtwin {installed}\n"

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert options.package_version() == pyproject["project"]["version"]
