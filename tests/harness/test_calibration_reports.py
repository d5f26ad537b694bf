"""The model finds a calibration under ``--reports``, where ``swarmtwin calibrate`` wrote it.

Before, ``swarmtwin --reports DIR calibrate`` wrote to ``DIR/calibrations``
but the model looked in ``reports/calibrations`` under the working directory,
warned and used the shipped default. Each test runs from an empty folder, so
only the calibration under ``--reports`` can be this host's.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from harness.cli import main
from harness.validate.model import _header
from harness.validate.suite import load_suite
from sim.calibration import (
    calibration_filename,
    calibrations_dir,
    read_calibration,
    save_calibration,
    shipped_path,
)


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _measured_here(out_dir: Path, transport: str = "inproc") -> Path:
    """A calibration for this host in ``out_dir``, as ``calibrate`` would write it."""
    shipped = read_calibration(shipped_path(transport))
    here = shipped.with_changes(host=socket.gethostname(), date="2099-01-01T00:00:00Z")
    return save_calibration(here, out_dir / calibration_filename(here))


def _sim_notes(reports: Path) -> list[str]:
    (run_dir,) = (reports / "runs").iterdir()
    notes: list[str] = json.loads((run_dir / "summary.json").read_text())["backends"]["sim"][
        "notes"
    ]
    return notes


def test_calibrate_then_run_with_the_same_reports_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    written: list[Path] = []

    def calibrate(transport: str, out_dir: Path) -> Path:  # the 40 s measurement, stubbed
        written.append(_measured_here(out_dir, transport))
        return written[-1]

    monkeypatch.setattr("harness.calibrate.measure.calibrate", calibrate)
    reports = tmp_path / "out"
    assert main(["--reports", str(reports), "calibrate", "--transport", "inproc"]) == 0
    assert written and written[0].parent == calibrations_dir(reports)

    args = ["--reports", str(reports), "run", "smoke", "--backend", "sim", "--duration", "1"]
    args += ["--replications", "1"]
    assert main(args) == 0
    assert "no calibration for host" not in capsys.readouterr().err
    notes = _sim_notes(reports)
    assert any(note.startswith(f"calibration: {written[0]} ") for note in notes), notes


def test_without_one_under_reports_the_warning_names_that_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _measured_here(tmp_path / "cwd" / "reports" / "calibrations")  # the old, wrong place
    reports = tmp_path / "out"
    args = ["--reports", str(reports), "run", "smoke", "--backend", "sim", "--duration", "1"]
    args += ["--replications", "1"]
    assert main(args) == 0
    err = " ".join(capsys.readouterr().err.split())  # undo the console's line wrapping
    assert f"in {calibrations_dir(reports)}; using the shipped default default.json" in err
    shipped = f"calibration: {shipped_path('inproc')} "
    assert any(note.startswith(shipped) for note in _sim_notes(reports))


def test_validate_model_reports_the_calibration_under_reports(tmp_path: Path) -> None:
    reports = tmp_path / "out"
    path = _measured_here(calibrations_dir(reports))
    suite = load_suite(Path(__file__).resolve().parents[2] / "scenarios/validation/suite.yaml")
    header = _header(suite, "test", 0.0, reports, None)
    assert header["calibration"]["source"] == str(path)
    assert header["calibration"]["warning"] is None


def test_calibrate_says_which_figures_moved_from_the_shipped_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two figures moved (one by +60 %, one by -10 %, under the threshold): the table and
    the file's notes name the first only; an unchanged calibration says none moved."""
    from harness.calibrate.moved import THRESHOLD

    def calibrate(transport: str, out_dir: Path) -> Path:
        path = _measured_here(out_dir, transport)
        found = read_calibration(path)
        changed = found.with_changes(
            per_recipient_seconds=found.per_recipient_seconds * 1.6,
            payload_issue_per_byte=found.payload_issue_per_byte * 0.9,
        )
        return save_calibration(changed, path)

    monkeypatch.setattr("harness.calibrate.measure.calibrate", calibrate)
    reports = tmp_path / "out"
    assert main(["--reports", str(reports), "calibrate", "--transport", "inproc"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"figures that moved by more than {THRESHOLD:.0%} from the shipped default" in out
    assert "per_recipient_seconds" in out and "+60 %" in out
    assert "payload_issue_per_byte" not in out
    (path,) = calibrations_dir(reports).iterdir()
    notes = read_calibration(path).notes
    assert [n.split(": ", 1)[1].split(":")[0] for n in notes if "shipped" in n] == [
        "per_recipient_seconds"
    ]

    monkeypatch.setattr(
        "harness.calibrate.measure.calibrate", lambda transport, out_dir: _measured_here(out_dir)
    )
    assert main(["--reports", str(tmp_path / "again"), "calibrate", "--transport", "inproc"]) == 0
    assert "no figure moved by more than" in capsys.readouterr().out
