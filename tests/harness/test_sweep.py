"""The model's replications give the same figures wherever they run: this machine's
process pool or a Dask cluster (``harness.sweep.executor``; issue 18).

A ``LocalCluster`` of two worker processes on loopback stands in for a cluster of
hosts: the jobs are pickled to its workers exactly as they would be to remote
ones. It runs in a process of its own (``tests/harness/sweep_cluster.py``), which
writes what came back to a JSON file; JSON keeps every float exactly. Only what
the simulating process itself cost may differ (its wall time, CPU seconds and
RSS); every simulated figure must be identical, bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.run.runner import run_scenario
from harness.scenario.schema import Scenario, load_scenario
from harness.sweep.executor import ClusterError, describe, sweep_executor
from harness.validate.suite import run_sim

# what the simulating process itself cost (its wall time, CPU seconds and RSS, measured
# where it ran): not figures of the simulated system
WALL_CLOCK = ("wall_seconds", "resources")
CLUSTER_TIMEOUT = 600  # s for the cluster's side, start to finish


def points() -> list[Any]:
    """Two points (inproc and tcp), as ``run_sim`` takes them."""
    smoke = load_scenario(Path("scenarios/smoke.yaml"))
    tcp = smoke.model_copy(update={"name": "smoke-tcp", "transport": "tcp", "seed": 11})
    return [SimpleNamespace(scenario=s) for s in (smoke, tcp)]


def three_replications() -> Scenario:
    scenario = load_scenario(Path("scenarios/smoke.yaml"))
    model = scenario.model.model_copy(update={"replications": 3})
    return scenario.model_copy(update={"model": model})


def figures(runs: list[list[Any]]) -> list[list[dict[str, Any]]]:
    """Every summary's simulated figures, as JSON would carry them."""
    out = []
    for point in runs:
        kept = []
        for summary in point:
            data = summary.to_dict(include_timeline=False)
            for name in WALL_CLOCK:
                data.pop(name)
            kept.append(data)
        out.append(kept)
    return json.loads(json.dumps(out))


def timelines(run_dir: Path) -> dict[str, str]:
    """The run folder's timeline files by name, and the names of all its files."""
    found = {p.name: p.read_text() for p in run_dir.glob("timeline-sim-*.csv")}
    found["(files)"] = " ".join(sorted(p.name for p in run_dir.iterdir()))
    return found


@pytest.fixture(scope="module")
def on_cluster(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("cluster") / "result.json"
    subprocess.run(
        [sys.executable, "-m", "tests.harness.sweep_cluster", str(out)],
        check=True,
        timeout=CLUSTER_TIMEOUT,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_a_dask_cluster_predicts_what_the_local_pool_does(on_cluster: dict[str, Any]) -> None:
    local = run_sim(points(), 2, 2)
    assert on_cluster["computed"]["sim_job"] > 0  # the cluster's workers ran them
    assert on_cluster["run_sim"] == figures(local)
    deliveries = [run.throughput.deliveries_per_s for point in local for run in point]
    assert min(deliveries) > 0  # the runs did something
    assert len({run.latency.p95_ms for run in local[0]}) == 2  # two seeds, two outcomes


def test_a_runs_model_replications_are_the_same_on_a_cluster(
    on_cluster: dict[str, Any], tmp_path: Path
) -> None:
    """``swarmtwin run --cluster``: replications 1 and 2 on the cluster, 3 here; the
    same summaries and timelines as three in a row here, and the same files."""
    here = run_scenario(three_replications(), ("sim",), tmp_path)
    assert on_cluster["computed"]["replication_job"] > 0
    assert on_cluster["run_scenario"] == figures([here.repetitions["sim"]])
    assert on_cluster["timelines"] == timelines(here.run_dir)
    assert "operations-sim-3.parquet" in on_cluster["timelines"]["(files)"]  # kept here


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    refused = pytest.raises(
        ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    )
    with refused, sweep_executor("tcp://127.0.0.1:9", 1):
        pass
    assert describe(None, 2) == "2 local processes"
    assert describe("tcp://h:8786", 2) == "the Dask cluster at tcp://h:8786"
