"""The cluster's side of ``test_sweep.py``, run as ``python -m tests.harness.sweep_cluster OUT``.

It starts a Dask ``LocalCluster`` of two worker processes on loopback, runs the
test's points and scenario on it, and writes what came back to the JSON file
``OUT``. It runs in a process of its own because a process cluster starts
multiprocessing's resource tracker, which would outlive the cluster in the
test process and count as a process left behind by every later test.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import distributed

from harness.run.runner import run_scenario
from harness.sweep.executor import sweep_executor
from harness.validate.suite import run_sim
from tests.harness.test_sweep import figures, points, three_replications, timelines


def _computed(cluster: distributed.LocalCluster, prefix: str) -> float:
    """Seconds the cluster's workers spent computing jobs of ``prefix``."""
    jobs = cluster.scheduler.task_prefixes.get(prefix)
    return 0.0 if jobs is None else float(jobs.all_durations.get("compute", 0.0))


def main(out: Path) -> None:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        tempfile.TemporaryDirectory() as folder,
    ):
        address = cluster.scheduler_address
        swept = run_sim(points(), 2, 2, cluster=address)
        with sweep_executor(address, 1) as executor:
            outcome = run_scenario(three_replications(), ("sim",), Path(folder), executor=executor)
        result = {
            "run_sim": figures(swept),
            "run_scenario": figures([outcome.repetitions["sim"]]),
            "timelines": timelines(outcome.run_dir),
            "computed": {name: _computed(cluster, name) for name in ("sim_job", "replication_job")},
        }
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
