"""CLI tests: the thin command line, its exit codes and its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_check_accepts_every_shipped_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        assert main(["check", str(path)]) == 0, path
    assert "ok" in capsys.readouterr().out


def test_bad_scenario_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nagents: {count: 3}\ntopics: {fanout: 2}\n"
        "workload:\n  - kind: publish\n    arrival: {process: poisson, rate: -5}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(bad), "--backend", "real"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stderr
    assert "workload[0].arrival.rate" in proc.stderr
    assert "> 0" in proc.stderr


def test_missing_scenario_exits_2(tmp_path: Path) -> None:
    assert main(["check", str(tmp_path / "nope.yaml")]) == 2


def test_run_writes_run_folder_and_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    code = main(
        [
            "--reports",
            str(reports),
            "run",
            str(ROOT / "scenarios" / "smoke.yaml"),
            "--backend",
            "real",
            "--duration",
            "1.5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "latency p95" in out and "reliability" in out
    (run_dir,) = list((reports / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    real = summary["backends"]["real"]
    assert real["reliability"]["lost"] == 0
    assert (run_dir / "scenario.yaml").exists()
    assert (run_dir / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--reports", str(reports), "history"]) == 0
    assert run_dir.name in capsys.readouterr().out


def test_fail_on_targets_exits_1(tmp_path: Path) -> None:
    scenario = tmp_path / "strict.yaml"
    scenario.write_text(
        "name: strict\nduration: 1.0\nwarmup: 0.2\nagents: {count: 3}\ntopics: {fanout: 2}\n"
        "workload:\n  - kind: direct\n    arrival: {process: constant, rate: 50}\n"
        "targets:\n  - deliveries_per_s >= 1000000000\n"
    )
    args = ["--reports", str(tmp_path / "r"), "run", str(scenario), "--backend", "real"]
    assert main([*args, "--fail-on-targets"]) == 1
    assert main(args) == 0


def test_repetitions_are_all_kept_and_each_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "reps.yaml"
    scenario.write_text(
        "name: reps\nduration: 1.0\nwarmup: 0.2\nrepetitions: 2\nagents: {count: 3}\n"
        "topics: {fanout: 2}\n"
        "workload:\n  - kind: direct\n    arrival: {process: constant, rate: 50}\n"
        "targets:\n  - reliability >= 0.999\n"
    )
    reports = tmp_path / "r"
    args = ["--reports", str(reports), "run", str(scenario), "--backend", "both"]
    assert main([*args, "--transport", "inproc"]) == 0
    out = capsys.readouterr().out
    assert "real #1" in out and "real #2" in out
    (run_dir,) = list((reports / "runs").iterdir())
    reps = json.loads((run_dir / "repetitions.json").read_text())
    assert len(reps["real"]["repetitions"]) == 2
    assert len(reps["sim"]["repetitions"]) == 3  # the model's seeded replications
    assert reps["real"]["aggregate"]["reliability"]["mean"] == 1.0
    # summary.json describes every repetition, not the last one (issue 12, section 6)
    assert "real (median of 2)" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    real = summary["backends"]["real"]
    assert [r["backend"] for r in real["repetitions"]] == ["real", "real"]
    assert real["figures"]["reliability"]["median"] == 1.0 and real["figures"]["p95_ms"]["n"] == 2
    assert {row["real_n"] for row in summary["comparison"]} == {2}
    assert {row["sim_n"] for row in summary["comparison"]} == {3}
    assert "sim (median of 3)" in out
    sim = summary["backends"]["sim"]
    seeded = [
        [n for n in r["notes"] if n.startswith("model replication")] for r in sim["repetitions"]
    ]
    assert seeded[0] == [] and [s[0].split()[7] for s in seeded[1:]] == ["1000045", "2000048"]
    assert summary["valid"] is True


def test_a_reader_that_leaves_ends_the_command_quietly(tmp_path: Path) -> None:
    """``swarmtwin history | head``: a closed stdout is 141, as a shell reports SIGPIPE,
    with neither a traceback nor the crash message (it was 3, "crashed")."""
    write = pipe_without_reader()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "--reports", str(tmp_path), "history"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


def pipe_without_reader() -> int:
    """A pipe whose read end is already closed: every write to it fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    return write


def test_no_operations_skips_only_the_per_operation_records(tmp_path: Path) -> None:
    from harness.run.frames import load_run

    reports = tmp_path / "reports"
    code = main(
        ["run", "smoke", "--backend", "sim", "--duration", "0.5", "--no-operations"]
        + ["--reports", str(reports)]
    )
    assert code == 0
    (folder,) = (reports / "runs").iterdir()
    assert not list(folder.glob("operations-*.parquet"))
    timelines = sorted(p.name for p in folder.glob("timeline-sim*.parquet"))
    assert timelines == [f"timeline-sim-{k}.parquet" for k in (1, 2, 3)]  # 3 replications
    assert (folder / "summary.json").exists()
    assert load_run(folder).operations == {}
