"""Run folders as Parquet and DataFrames: harness.run.tables and harness.run.frames.

The timeline Parquet must equal the CSV beside it, the operations Parquet
must round-trip and agree with ``summary.json`` (every count of
``reliability``, and the latency percentiles recomputed from its rows), and
``load_run`` / ``load_history`` must read what ``swarmtwin run`` wrote. The
runs are short ``--backend sim`` runs of the shipped scenarios in a
temporary reports folder, plus one hand-made result that has every kind of
row (suppressed and handler duplicates, excess, unknown op, shed, never
sent, lost after acceptance).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.metrics.figures import summarize
from harness.metrics.summary import nearest_rank_percentiles
from harness.run.folder import TIMELINE_FIELDS, operations_file, read_run, write_run
from harness.run.frames import load_history, load_run
from harness.run.history import list_runs
from harness.run.runner import run_backend
from harness.run.tables import (
    OPERATION_COLUMNS,
    TIMELINE_COLUMNS,
    operations_frame,
    timeline_frame,
)
from harness.scenario.compile import compile_plan
from harness.scenario.schema import load_scenario
from protocol.plan import AgentSpec, Fault, FaultKind, Operation, OpKind, Plan
from protocol.records import Completion, DriverResult, WriteAck

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
RELIABILITY_SUMS = (
    "expected",
    "unique",
    "lost",
    "shed",
    "shed_ops",
    "lost_acked",
    "lost_origin_down",
    "lost_unaccepted",
    "suppressed_duplicates",
    "handler_duplicates",
    "excess",
    "unknown_op",
)


def reliability_sums(ops: pd.DataFrame) -> dict[str, int]:
    """The counts of ``summary.json``'s ``reliability``, from the operations rows."""
    arrived = ops["completed"].notna()
    return {
        "expected": int(ops["expected"].sum()),
        "unique": int(ops["counted"].sum()),
        "lost": int(ops["lost"].sum()),
        "shed": int((ops["expected"] & ops["shed"]).sum()),
        "shed_ops": int(ops.loc[ops["shed"], "op_id"].nunique()),
        "lost_acked": int((ops["lost"] & ops["accepted"]).sum()),
        "lost_origin_down": int((ops["lost"] & ops["never_sent"]).sum()),
        "lost_unaccepted": int((ops["lost"] & ~ops["accepted"] & ~ops["never_sent"]).sum()),
        "suppressed_duplicates": int(ops["duplicate"].sum()),
        "handler_duplicates": int(
            (arrived & ops["kind"].notna() & ~ops["duplicate"] & ~ops["counted"]).sum()
        ),
        "excess": int((ops["counted"] & ~ops["expected"]).sum()),
        "unknown_op": int(ops["kind"].isna().sum()),
    }


def latency_ms(ops: pd.DataFrame, warmup: float, duration: float) -> list[float]:
    """p50, p95 and p99 recomputed from the rows as the summary defines them."""
    steady = ops["scheduled"].ge(warmup) & ops["scheduled"].lt(duration)
    owed = ops["lost"] & ~ops["never_sent"]  # counts as infinitely late
    sample = ops.loc[steady & (ops["counted"] | owed), "latency_us"]
    values = sample.astype("float64").fillna(math.inf).to_numpy()
    return [float(v) / 1000 for v in nearest_rank_percentiles(values, [50, 95, 99])]


def run_cli(reports: Path, *args: str) -> Path:
    """``swarmtwin --reports REPORTS run ...``; the new run folder."""
    before = set((reports / "runs").glob("*")) if (reports / "runs").exists() else set()
    assert main(["--reports", str(reports), "run", *args]) == 0
    (folder,) = set((reports / "runs").glob("*")) - before
    return folder


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Two short sim runs of smoke through the CLI, in a fresh reports folder."""
    reports = tmp_path_factory.mktemp("reports")
    smoke = str(SCENARIOS / "smoke.yaml")
    once = ("--backend", "sim", "--replications", "1")  # one run per backend: its own files
    first = run_cli(reports, smoke, *once, "--duration", "1.5")
    second = run_cli(reports, smoke, *once, "--duration", "1.5", "--seed", "8")
    return reports, [first, second]


def test_the_timeline_parquet_equals_the_csv(cli_runs: tuple[Path, list[Path]]) -> None:
    _, (folder, _) = cli_runs
    parquet = pd.read_parquet(folder / "timeline-sim.parquet")
    csv = pd.read_csv(folder / "timeline-sim.csv")
    assert tuple(parquet.columns) == TIMELINE_FIELDS == tuple(TIMELINE_COLUMNS)
    pd.testing.assert_frame_equal(parquet, csv.astype(TIMELINE_COLUMNS))
    timeline = read_run(folder).summaries["sim"].timeline
    pd.testing.assert_frame_equal(parquet, timeline_frame(timeline))
    assert len(parquet) >= 15 and parquet["offered"].sum() > 0


def test_load_run_reads_a_cli_run(cli_runs: tuple[Path, list[Path]]) -> None:
    _, (folder, _) = cli_runs
    frames = load_run(folder)
    document = json.loads((folder / "summary.json").read_text())
    figures = document["backends"]["sim"]
    assert frames.run_id == document["run_id"] == folder.name
    assert frames.created == document["created"]
    assert list(frames.summary.index) == ["sim"] and frames.summary.index.name == "run"
    row = frames.summary.loc["sim"]
    assert row["backend"] == "sim" and row["repetition"] == 1 and row["valid"]
    assert row["transport"] == "inproc" and row["seed"] == 7 and row["duration"] == 1.5
    assert row["expected"] == figures["reliability"]["expected"]
    assert row["deliveries_per_s"] == figures["throughput"]["deliveries_per_s"]
    assert row["p95_ms"] == figures["latency"]["p95_ms"]
    assert math.isnan(row["recovery_p95_s"])  # no faults: a missing figure
    pd.testing.assert_frame_equal(
        frames.timelines["sim"], pd.read_parquet(folder / "timeline-sim.parquet")
    )
    assert frames.comparison is None  # one backend: nothing to compare


def test_swarmtwin_run_writes_the_operations(cli_runs: tuple[Path, list[Path]]) -> None:
    _, (folder, _) = cli_runs
    ops = load_run(folder).operations["sim"]
    reliability = json.loads((folder / "summary.json").read_text())["backends"]["sim"]
    assert reliability_sums(ops) == {k: reliability["reliability"][k] for k in RELIABILITY_SUMS}


def test_load_history_has_a_row_per_run_and_backend(cli_runs: tuple[Path, list[Path]]) -> None:
    reports, folders = cli_runs
    history = load_history(reports)
    assert sorted(history["run_id"]) == sorted(folder.name for folder in folders)
    assert sorted(history["seed"]) == [7, 8] and set(history["backend"]) == {"sim"}
    assert history["created"].is_monotonic_increasing  # oldest first
    assert str(history["created"].dtype).startswith("datetime64") and history["created"].dt.tz
    newest_first = list_runs(reports / "history.sqlite")
    assert history.iloc[::-1].drop(columns="created").to_dict("records") == [
        {k: v for k, v in row.items() if k != "created"} for row in newest_first
    ]
    assert load_history(reports / "history.sqlite").equals(history)
    empty = load_history(reports / "nowhere")
    assert empty.empty and list(empty.columns) == list(history.columns)


@pytest.mark.parametrize(
    ("scenario", "duration", "kind_of_row"),
    [
        ("smoke.yaml", 1.5, "counted"),
        ("faults/agent-churn.yaml", None, "never_sent"),  # kills: ops never sent
        ("faults/loss-1pct.yaml", 5.0, "duplicate"),  # resends: suppressed duplicates
        ("overload.yaml", 1.0, "shed"),  # admission control sheds ops
    ],
)
def test_the_operations_parquet_agrees_with_summary_json(
    tmp_path: Path, scenario: str, duration: float | None, kind_of_row: str
) -> None:
    """The runner's steps by hand, with ``plan=`` and ``results=`` for ``write_run``."""
    loaded = load_scenario(SCENARIOS / scenario)
    if duration is not None:
        loaded = loaded.with_overrides(duration=duration)
    plan = compile_plan(loaded)
    result = run_backend(plan, "sim", loaded, reports=tmp_path)
    summary = summarize(plan, result)
    folder = write_run(
        tmp_path / "runs",
        "run-1",
        loaded.resolved_yaml(),
        {"sim": summary},
        None,
        plan=plan,
        results={"sim": result},
    )
    assert (folder / operations_file("sim")).stat().st_size > 0
    ops = load_run(folder).operations["sim"]
    pd.testing.assert_frame_equal(ops, operations_frame(plan, result))  # round trip
    assert dict(ops.dtypes.astype(str)) == OPERATION_COLUMNS
    assert ops[kind_of_row].any()

    figures = json.loads((folder / "summary.json").read_text())["backends"]["sim"]
    assert reliability_sums(ops) == {k: figures["reliability"][k] for k in RELIABILITY_SUMS}
    want = [figures["latency"][k] for k in ("p50_ms", "p95_ms", "p99_ms")]
    got = latency_ms(ops, plan.warmup, plan.duration)
    assert [None if math.isinf(v) else v for v in got] == want
    assert ops["op_id"].is_monotonic_increasing
    assert set(ops["op_id"]) <= {op.op_id for op in plan.operations}


def test_every_kind_of_row_of_a_hand_made_result() -> None:
    """Duplicates, excess, unknown ops, shed, never sent and lost, against summarize."""
    ops = (
        Operation(1, 1.0, OpKind.PUBLISH, "a", "t", 64, 2),  # b twice (one flagged), c late
        Operation(2, 1.1, OpKind.DIRECT, "a", "b", 64, 1),  # b, and c in excess
        Operation(3, 1.2, OpKind.BROADCAST, "a", "", 64, 2),  # accepted, one lost
        Operation(4, 1.3, OpKind.DIRECT, "b", "a", 64, 1),  # shed
        Operation(5, 1.4, OpKind.DIRECT, "c", "a", 64, 1),  # origin killed: never sent
        Operation(6, 1.5, OpKind.MEMORY, "a", "ns/k", 64, 1),  # memory reply: accepted
        Operation(7, 1.6, OpKind.TASK, "b", "compute", 64, 1),  # handler ran twice
    )
    plan = Plan(
        seed=1,
        duration=2.0,
        warmup=0.5,
        agents=(AgentSpec("a"), AgentSpec("b"), AgentSpec("c")),
        operations=ops,
        faults=(Fault(1, 1.35, FaultKind.KILL_AGENT, 0.2, ("c",)),),
    )
    completions = [
        Completion(1, "c", 1.009, False, True),
        Completion(1, "b", 1.002, True, True),  # flagged duplicate of the next
        Completion(1, "b", 1.001, False, True),
        Completion(2, "b", 1.101, False, False),  # corrupted
        Completion(2, "c", 1.102, False, True),  # excess
        Completion(3, "b", 1.203, False, True),
        Completion(6, "a", 1.504, False, True),
        Completion(7, "b", 1.605, False, True),
        Completion(7, "b", 1.606, False, True),  # handler duplicate
        Completion(99, "a", 1.7, False, True),  # not in the plan
    ]
    result = DriverResult(
        backend="sim",
        transport="inproc",
        completions=completions,
        accepted=[3],
        shed=[4, 3],  # 3 was accepted after all: not shed
        write_acks=[WriteAck(1, "ns", "k", 1, 7, 1.0)],
    )
    frame = operations_frame(plan, result)
    summary = summarize(plan, result)
    reliability = summary.to_dict()["reliability"]
    assert reliability_sums(frame) == {k: reliability[k] for k in RELIABILITY_SUMS}
    assert reliability["lost"] == 2 and reliability["shed_ops"] == 1

    def rows(op_id: int) -> pd.DataFrame:
        return frame[frame["op_id"] == op_id].reset_index(drop=True)

    one = rows(1)
    assert list(one["node"]) == ["b", "b", "c"]  # by completion time
    assert list(one["duplicate"]) == [False, True, False]
    assert list(one["counted"]) == [True, False, True]
    assert list(one["latency_us"]) == [1000, 2000, 9000]
    assert list(rows(2)["expected"]) == [True, False] and not rows(2)["intact"][0]
    three = rows(3)
    assert three["accepted"].all() and not three["shed"].any()
    assert list(three["lost"]) == [False, True] and three["node"].isna().tolist() == [False, True]
    assert three["latency_us"].isna().tolist() == [False, True]
    assert rows(4)["shed"].all() and not rows(4)["lost"].any() and rows(4)["expected"].all()
    assert rows(5)["never_sent"].all() and rows(5)["lost"].all()
    assert rows(6)["accepted"].all()
    assert list(rows(7)["counted"]) == [True, False]
    unknown = rows(99)
    assert unknown["kind"].isna().all() and np.isnan(unknown["scheduled"][0])
    assert not unknown[["counted", "expected", "accepted", "shed", "lost"]].any(axis=None)
    assert dict(frame.dtypes.astype(str)) == OPERATION_COLUMNS


def test_repetitions_are_filed_and_loaded_under_their_labels(tmp_path: Path) -> None:
    """A backend that ran twice: a summary row, a timeline and operations per repetition."""
    ops = tuple(Operation(i + 1, 0.5 + i * 0.1, OpKind.DIRECT, "a", "b", 64, 1) for i in range(8))
    plan = Plan(
        seed=3, duration=1.5, warmup=0.5, agents=(AgentSpec("a"), AgentSpec("b")), operations=ops
    )

    def result(backend: str, latency: float, lose: int) -> DriverResult:
        done = [Completion(op.op_id, "b", op.at + latency, False, True) for op in ops]
        return DriverResult(
            backend=backend, transport="inproc", completions=done[lose:], end_time=1.5
        )

    results = {
        "real #1": result("real", 0.002, 0),
        "real #2": result("real", 0.004, 1),
        "sim": result("sim", 0.003, 0),
    }
    summaries = {label: summarize(plan, r) for label, r in results.items()}
    folder = write_run(
        tmp_path,
        "reps",
        "",
        {"real": summaries["real #2"], "sim": summaries["sim"]},
        None,
        plan=plan,
        results=results,
        repetitions={"real": [summaries["real #1"], summaries["real #2"]]},
    )
    frames = load_run(folder)
    assert list(frames.summary.index) == ["real #1", "real #2", "sim"]
    assert list(frames.summary["backend"]) == ["real", "real", "sim"]
    assert list(frames.summary["repetition"]) == [1, 2, 1]
    assert list(frames.summary["lost"]) == [0, 1, 0]
    assert frames.summary.groupby("backend")["lost"].sum().to_dict() == {"real": 1, "sim": 0}
    assert set(frames.timelines) == set(frames.operations) == set(results)
    assert (folder / "timeline-real-2.parquet").exists()
    assert (folder / "operations-real-2.parquet").exists()
    for label, r in results.items():
        pd.testing.assert_frame_equal(frames.operations[label], operations_frame(plan, r))
        pd.testing.assert_frame_equal(
            frames.timelines[label], timeline_frame(summaries[label].timeline)
        )
    assert int(frames.operations["real #2"]["lost"].sum()) == 1


def test_write_run_without_plan_writes_no_operations(tmp_path: Path) -> None:
    plan = Plan(seed=1, duration=1.0, warmup=0.0, agents=(AgentSpec("a"),), operations=())
    summary = summarize(plan, DriverResult(backend="sim", transport="inproc"))
    folder = write_run(tmp_path, "r", "", {"sim": summary}, None)
    assert not (folder / operations_file("sim")).exists()
    frames = load_run(folder)
    assert frames.operations == {} and len(frames.timelines["sim"]) == 10
    empty = operations_frame(plan, DriverResult(backend="sim", transport="inproc"))
    assert empty.empty and dict(empty.dtypes.astype(str)) == OPERATION_COLUMNS
