"""The model's seeded replications of one scenario, sent to an executor.

How it works. ``run_scenario`` runs a scenario's ``model.replications`` one
after another in its own process, unless it is given an executor
(``harness.sweep.executor``: this machine's process pool, or a Dask cluster
with ``--cluster``). Then ``farm_out`` submits every replication but the last
to it, once the real runs are over (so none competes with them for a core),
and the last runs here as before: it alone keeps its per-operation records
for the run folder and feeds the progress bar and a live view.

A job (``harness.run.runner.replication_job``, handed in by ``run_scenario``)
takes plain data: the scenario as a dict, the replication number, the
calibration resolved here (a worker on another host needs no file) and the
notes on where the scenario leaves the validated range. It compiles the same
plan, replays replication ``i`` of it (``replication_plan``: the same
operations and faults, its draws seeded with ``seed + i * SEED_STRIDE``) and
returns its summary as a dict. The model is deterministic, so a replication gives
the same figures wherever it ran (``tests/harness/test_sweep.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.scenario.schema import Scenario
from protocol.plan import Plan
from protocol.records import DriverResult

if TYPE_CHECKING:
    from sim.calibration import Calibration

SEED_STRIDE = 1_000_003  # model seed of replication i: the scenario's seed + i * stride
Job = tuple[dict[str, Any], int, "Calibration", list[str]]


def farm_out(
    executor: Executor,
    job: Callable[[Job], dict[str, Any]],
    scenario: Scenario,
    reports: Path,
    outside: list[str],
) -> dict[int, Future[dict[str, Any]]]:
    """Submit replications ``0 .. n-2`` of the scenario's model; their futures by number."""
    from sim.calibration import calibrations_dir, load_calibration

    count = scenario.model.replications
    if count < 2:
        return {}
    calibration, _ = load_calibration(
        transport=scenario.transport, directory=calibrations_dir(reports)
    )
    data = scenario.model_dump(by_alias=True)
    return {
        rep: executor.submit(job, (data, rep, calibration, outside)) for rep in range(count - 1)
    }


def replication_plan(plan: Plan, replication: int) -> Plan:
    """The plan the model replays as replication ``replication`` (from 0): the same
    operations and faults, its random draws (service times, hops, losses) seeded with
    ``plan.seed + replication * SEED_STRIDE``; replication 0 is the plan itself."""
    if replication == 0:
        return plan
    return dataclasses.replace(plan, seed=plan.seed + replication * SEED_STRIDE)


def add_model_notes(
    result: DriverResult, outside: list[str], rep: int, plan: Plan, replayed: Plan
) -> None:
    """What a model run's notes say beyond the driver's: where the scenario leaves the
    validated range, and the seed of a replication other than the first."""
    result.notes += [f"extrapolation: {text}" for text in outside]
    if replayed.seed != plan.seed:
        result.notes.append(
            f"model replication {rep + 1}: its draws seeded with {replayed.seed} "
            f"(the scenario's seed + {rep} x {SEED_STRIDE})"
        )
