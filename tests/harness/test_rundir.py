"""Run directories and the SQLite run history."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from hdrh.histogram import HdrHistogram

from harness.metrics.compare import compare, compare_runs
from harness.metrics.figures import Summary, summarize
from harness.run.folder import new_run_id, read_run, write_run
from harness.run.history import list_runs, record_run
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.records import Completion, DriverResult, ProbeResult

CREATED = datetime(2026, 11, 24, 14, 30, 12, tzinfo=UTC)


def make_summary(backend: str, latency: float) -> Summary:
    ops = tuple(
        Operation(i + 1, 1.0 + i * 0.05, OpKind.PUBLISH, "a", "t", 64, 2) for i in range(20)
    )
    plan = Plan(
        seed=3,
        duration=2.5,
        warmup=1.0,
        agents=(AgentSpec("a"), AgentSpec("b"), AgentSpec("c")),
        operations=ops,
    )
    completions = [
        Completion(op.op_id, node, op.at + latency, False, True) for op in ops for node in "bc"
    ]
    result = DriverResult(
        backend=backend,
        transport="inproc",
        completions=completions[:-1],  # one delivery lost
        probes=[ProbeResult(1, 1.0, 1.001), ProbeResult(2, 1.1, None)],
        registered={"a": 0.0, "b": 0.0, "c": 0.0},
        wall_seconds=2.6,
        end_time=2.5,
    )
    return summarize(plan, result)


def test_new_run_id_format() -> None:
    run_id = new_run_id("Default Scenario!", datetime(2026, 11, 24, 14, 30, 12))
    assert re.fullmatch(r"20261124-143012-default-scenario-[0-9a-f]{4}", run_id)


def test_write_run_writes_the_files_and_round_trips(tmp_path: Path) -> None:
    summaries = {"real": make_summary("real", 0.004), "sim": make_summary("sim", 0.003)}
    comparison = compare(summaries["real"], summaries["sim"])
    directory = write_run(
        tmp_path / "runs", "run-1", "name: default\n", summaries, comparison, created=CREATED
    )
    assert directory == tmp_path / "runs" / "run-1"
    assert (directory / "scenario.yaml").read_text() == "name: default\n"
    header = (directory / "timeline-sim.csv").read_text().splitlines()[0]
    assert header == "t,deliveries,completions,p95_ms,offered"
    hdr = directory / "histograms" / "real-latency.hdr"
    assert (
        HdrHistogram.decode(hdr.read_text().strip()).get_total_count() == 39
    )  # 20 ops x 2, one lost

    document = json.loads((directory / "summary.json").read_text())
    assert document["created"] == "2026-11-24T14:30:12+00:00"
    assert "created" not in json.dumps(document["backends"])
    assert (
        Summary.from_dict(document["backends"]["sim"]).reliability == summaries["sim"].reliability
    )

    record = read_run(directory)
    assert record.run_id == "run-1"
    assert record.summaries == summaries  # timeline from CSV, figures from JSON
    assert record.summaries["real"].histograms == summaries["real"].histograms
    assert record.comparison == comparison


def test_summary_json_is_deterministic(tmp_path: Path) -> None:
    first = write_run(tmp_path, "a", "", {"sim": make_summary("sim", 0.003)}, None, created=CREATED)
    second = write_run(
        tmp_path, "a2", "", {"sim": make_summary("sim", 0.003)}, None, created=CREATED
    )
    one = json.loads((first / "summary.json").read_text())
    two = json.loads((second / "summary.json").read_text())
    assert one.pop("run_id") == "a" and two.pop("run_id") == "a2"
    assert one == two
    text = (first / "summary.json").read_text()
    assert text == json.dumps({**one, "run_id": "a"}, sort_keys=True, indent=2) + "\n"


def test_history_records_one_row_per_backend(tmp_path: Path) -> None:
    db = tmp_path / "reports" / "history.sqlite"
    assert list_runs(db) == []
    summaries = {"real": make_summary("real", 0.004), "sim": make_summary("sim", 0.003)}
    assert record_run(db, "run-1", "default", CREATED, summaries, run_dir="reports/runs/run-1") == 2
    later = datetime(2026, 11, 25, tzinfo=UTC)
    record_run(db, "run-2", "default", later, {"sim": summaries["sim"]})
    record_run(db, "run-2", "default", later, {"sim": summaries["sim"]})  # replaces, no double
    rows = list_runs(db)
    assert [(r["run_id"], r["backend"]) for r in rows] == [
        ("run-2", "sim"),
        ("run-1", "real"),
        ("run-1", "sim"),
    ]
    sim = rows[2]
    assert sim["scenario"] == "default" and sim["seed"] == 3 and sim["transport"] == "inproc"
    assert sim["lost"] == 1 and sim["uptime"] == 0.5
    assert sim["agents_coordinated"] == summaries["sim"].figures()["agents_coordinated"]
    assert abs(sim["p95_ms"] - 3.0) < 0.01
    assert sim["run_dir"] == "reports/runs/run-1"
    assert len(list_runs(db, limit=1)) == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_repetitions_are_described_by_median_and_interval_and_each_kept(tmp_path: Path) -> None:
    """A backend that ran several times: summary.json describes all of them, not the last."""
    reals = [make_summary("real", latency) for latency in (0.004, 0.002, 0.009)]
    sim = make_summary("sim", 0.003)
    summaries = {"real": reals[-1], "sim": sim}
    comparison = compare_runs(reals, [sim])
    directory = write_run(
        tmp_path,
        "reps",
        "",
        summaries,
        comparison,
        created=CREATED,
        repetitions={"real": reals, "sim": [sim]},
    )
    document = json.loads((directory / "summary.json").read_text())
    real = document["backends"]["real"]
    assert real["valid"] is True and real["invalid_reasons"] == []
    assert [r["latency"]["p95_ms"] for r in real["repetitions"]] == [4.0, 2.0, 9.0]
    p95 = real["figures"]["p95_ms"]
    assert p95["n"] == 3 and p95["median"] == 4.0  # not the last repetition's 9.0
    assert p95["mean"] == 5.0 and p95["ci_low"] < 4.0 < p95["ci_high"]
    row = next(r for r in document["comparison"] if r["metric"] == "p95_ms")
    assert row["real"] == 4.0 and row["real_n"] == 3
    assert row["error_pct"] == -25.0  # sim 3.0 against the median 4.0
    assert (row["real_ci_low"], row["real_ci_high"]) == (p95["ci_low"], p95["ci_high"])
    assert "latency" in document["histograms"]["sim"]
    assert [sorted(h) for h in document["histograms"]["real"]] == [sorted(reals[0].histograms)] * 3
    for k in (1, 2, 3):  # each repetition's own files
        assert (directory / f"timeline-real-{k}.csv").is_file()
        assert (directory / "histograms" / f"real-{k}-latency.hdr").is_file()
    assert not (directory / "timeline-real.csv").exists()

    record = read_run(directory)
    assert record.repetitions["real"] == reals
    assert record.repetitions["real"][1].histograms == reals[1].histograms
    assert record.summaries == {"sim": sim} and record.repetitions["sim"] == [sim]
    assert record.comparison == comparison


def test_one_repetition_is_compared_as_before() -> None:
    real, sim = make_summary("real", 0.004), make_summary("sim", 0.003)
    assert compare_runs([real], [sim]) == compare(real, sim)
