"""The calibration's Raft commit figures: stored, loaded, measured, shipped for tcp."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from harness.calibrate.commit import filesystem, measure_commits
from sim import Calibration, Distribution, save_calibration
from sim.calibration import read_calibration, shipped_path


def test_the_commit_figures_round_trip_through_a_dict(tmp_path: Path) -> None:
    commit = Distribution.from_samples([2e-4, 3e-4, 1e-3], "three commits")
    calibration = Calibration.deterministic(1e-6, 1e-5, transport="tcp").with_changes(
        commit=commit, commit_per_byte=1.5e-9, commit_method="timed saves"
    )
    again = Calibration.from_dict(calibration.to_dict())
    assert again == calibration
    assert again.commit == commit and again.commit_per_byte == 1.5e-9
    assert again.commit_method == "timed saves"
    assert read_calibration(save_calibration(calibration, tmp_path / "c.json")) == calibration


def test_a_calibration_without_a_commit_keeps_none() -> None:
    calibration = Calibration.deterministic(1e-6, 1e-5)
    assert calibration.commit is None
    data = calibration.to_dict()
    assert data["commit"] is None
    assert Calibration.from_dict(data).commit is None


def test_a_file_written_before_the_commit_figures_still_loads() -> None:
    data = Calibration.deterministic(1e-6, 1e-5).to_dict()
    for key in ("commit", "commit_per_byte", "commit_method"):
        del data[key]
    old = Calibration.from_dict(data)
    assert old.commit is None and old.commit_per_byte == 0.0 and old.commit_method == ""
    assert read_calibration(shipped_path("inproc")).commit is None


def test_measure_commits_times_real_saves_in_a_scratch_folder(tmp_path: Path) -> None:
    commit, per_byte, method = measure_commits(
        sizes=(256, 4096), count=3, warmup=1, directory=str(tmp_path)
    )
    assert commit.samples == 6 and commit.quantile(0.5) > 0
    assert per_byte >= 0
    assert "256, 4096 B" in method and "synchronous=FULL" in method
    assert commit.method == method
    assert list(tmp_path.iterdir()) == []  # the scratch folder is gone


def test_the_filesystem_of_the_temporary_folder_is_named_when_known() -> None:
    kind = filesystem(tempfile.gettempdir())
    if Path("/proc/mounts").exists():
        assert kind and "(" in kind
    else:
        assert kind == ""


def test_the_shipped_tcp_calibration_has_a_measured_commit() -> None:
    tcp = read_calibration(shipped_path("tcp"))
    assert tcp.commit is not None and tcp.commit.samples > 0
    assert tcp.commit.quantile(0.5) > 0 and tcp.commit_per_byte >= 0
    assert "RaftStore.save()" in tcp.commit_method
    data = json.loads(shipped_path("tcp").read_text())
    assert data["commit"]["method"] == data["commit_method"]
