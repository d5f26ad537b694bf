"""The model's replications give the same figures wherever they run: this machine's
process pool or a Dask cluster (``harness.sweep.executor``; issue 18).

A ``LocalCluster`` of two worker processes on loopback stands in for a cluster of
hosts: the jobs are pickled to its workers exactly as they would be to remote
ones. Only what the simulating process itself cost may differ (its wall time,
CPU seconds and RSS); every simulated figure must be identical, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.run.runner import run_scenario
from harness.scenario.schema import load_scenario
from harness.sweep.executor import ClusterError, describe, sweep_executor
from harness.validate.suite import run_sim

# what the simulating process itself cost (its wall time, CPU seconds and RSS, measured
# where it ran): not figures of the simulated system
WALL_CLOCK = ("wall_seconds", "resources")


def _points() -> list[Any]:
    smoke = load_scenario(Path("scenarios/smoke.yaml"))
    tcp = smoke.model_copy(update={"name": "smoke-tcp", "transport": "tcp", "seed": 11})
    return [SimpleNamespace(scenario=s) for s in (smoke, tcp)]


def _figures(runs: list[list[Any]]) -> list[list[dict[str, Any]]]:
    out = []
    for point in runs:
        kept = []
        for summary in point:
            data = summary.to_dict(include_timeline=False)
            for name in WALL_CLOCK:
                data.pop(name)
            kept.append(data)
        out.append(kept)
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two Dask worker processes and a scheduler, on loopback."""
    import distributed

    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as local:
        yield local


def _computed(cluster: Any, prefix: str) -> float:
    """Seconds the cluster's workers spent computing jobs of ``prefix``."""
    jobs = cluster.scheduler.task_prefixes.get(prefix)
    return 0.0 if jobs is None else float(jobs.all_durations.get("compute", 0.0))


def test_a_dask_cluster_predicts_what_the_local_pool_does(cluster: Any) -> None:
    points = _points()
    local = run_sim(points, 2, 2)
    remote = run_sim(points, 2, 2, cluster=cluster.scheduler_address)
    assert _computed(cluster, "sim_job") > 0  # the cluster's workers ran the replications
    assert _figures(remote) == _figures(local)
    deliveries = [run.throughput.deliveries_per_s for point in local for run in point]
    assert min(deliveries) > 0  # the runs did something
    assert len({run.latency.p95_ms for run in local[0]}) == 2  # two seeds, two outcomes


def test_a_runs_model_replications_are_the_same_on_a_cluster(cluster: Any, tmp_path: Path) -> None:
    """``swarmtwin run --cluster``: replications 1 and 2 on the cluster, 3 here; the
    same summaries as three in a row here, and the same run folder files."""
    scenario = load_scenario(Path("scenarios/smoke.yaml"))
    scenario = scenario.model_copy(
        update={"model": scenario.model.model_copy(update={"replications": 3})}
    )
    here = run_scenario(scenario, ("sim",), tmp_path / "here")
    with sweep_executor(cluster.scheduler_address, 1) as executor:
        there = run_scenario(scenario, ("sim",), tmp_path / "there", executor=executor)
    assert _computed(cluster, "replication_job") > 0
    assert _figures([there.repetitions["sim"]]) == _figures([here.repetitions["sim"]])
    files = sorted(p.name for p in here.run_dir.iterdir())
    assert files == sorted(p.name for p in there.run_dir.iterdir())
    assert "operations-sim-3.parquet" in files  # the last replication's records, kept here
    for name in ("timeline-sim-1.csv", "timeline-sim-2.csv", "timeline-sim-3.csv"):
        assert (here.run_dir / name).read_bytes() == (there.run_dir / name).read_bytes(), name


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    refused = pytest.raises(
        ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    )
    with refused, sweep_executor("tcp://127.0.0.1:9", 1):
        pass
    assert describe(None, 2) == "2 local processes"
    assert describe("tcp://h:8786", 2) == "the Dask cluster at tcp://h:8786"
