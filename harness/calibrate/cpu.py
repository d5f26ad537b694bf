"""(i) The CPU time real tcp processes spend, against what the model charges for the same plan.

The other figures time pieces of work in isolation: the core's ``receive``
and ``drain``, the codec, the payload. A real tcp process does more for each
piece of work: it wakes from ``epoll``, reads a socket, splits frames, writes,
re-arms timers and runs the event loop between them. Much of that is paid
once per *job* (one wake-up and socket read, whatever it brought) rather than
once per message, so the real cost per message falls as load rises and
batches grow. Measured on the development VM, the coordinator of the
validation base (fan-out 5) spent 0.78 s of CPU in 4 s at 5k deliveries/s and
2.04 s at 100k, where the model charged 0.10 s and 2.07 s: seven times too
little at light load, about right at heavy load (docs/validation.md, "CPU time").

So this figure replays four mixes on the real tcp system (``MIXES``: the
shipped default mix of publish, broadcast, direct, task and memory; the
validation base at fan-out 5, at fan-out 1, and with 16 KiB payloads, each at
three rates below its capacity) and one idle run, and records each process's
CPU seconds: the coordinator's whole life, and each worker's from the go to
the stop (``ProcessUsage.load_cpu_seconds``: no plan unpickling, no teardown).
The idle run's are taken away from the others, so that start-up, registration
and heartbeats cancel and what is left is the work the load caused. The
model replays the same plans and reports, per process, the CPU it charged
(``DriverResult.busy``) and its jobs: wake-ups of the process (a message or
timer that found its process idle, an op issued by an idle replay loop;
``sim.engine``). Per role (the coordinator; the agents, whose worker processes
are summed), a non-negative least-squares fit over every loaded run gives

    real CPU = cpu_scale * charged + job_seconds * jobs

where ``charged`` is what the model charges with ``cpu_scale`` 1 and
``job_seconds`` 0. The model's jobs depend on its costs (slower processes
stay busy longer and share more wake-ups), so the fit is repeated
``ITERATIONS`` times, each time on model runs (in parallel processes) with
the previous fit. A fit that would put all of a role's cost on its jobs keeps
``MIN_SCALE`` of the per-message charge and fits the job cost to the rest.
Rates past a mix's capacity are left out: there the real system refuses work
while CPU is still idle (its delays come from the kernel's time slices), so
its CPU says nothing about the cost of the work.

The fit and its residuals go into the calibration's ``cpu_method``.
``python -m harness.calibrate.cpu BASE --out FILE`` refits an existing
calibration file (about 2 minutes on 2 cores). ``swarmtwin calibrate`` does
not run it yet, and the shipped calibrations leave both figures unset: with
CPU right, the model's latency at load is still flat, because it lacks the
kernel's time slices (docs/validation.md, "Where the latency goes").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from harness.scenario.compile import compile_plan
from harness.scenario.schema import Scenario, load_scenario
from harness.scenario.shipped import scenarios_dir
from protocol.plan import Plan
from protocol.records import DriverResult
from sim.calibration import ROLES, Calibration, read_calibration, save_calibration
from sim.nodes import BUSY_PARTS

SCENARIO = "default.yaml"
RATES = (5_000.0, 30_000.0, 90_000.0)  # offered deliveries/s, below capacity
LOW_RATES = (3_000.0, 15_000.0, 35_000.0)  # for mixes that carry less
MIXES: tuple[tuple[str, dict[str, Any], tuple[float, ...]], ...] = (
    # (name, changes to the validation base, offered deliveries/s); SCENARIO first
    ("default", {}, RATES),
    ("fan-out 5, 256 B", {"base": True}, RATES),
    ("fan-out 1", {"base": True, "topics": {"fanout": 1}}, LOW_RATES),
    ("16 KiB", {"base": True, "workload": {0: {"size": 16384}}}, LOW_RATES),
)
IDLE_RATE = 50.0
DURATION = 4.0
WARMUP = 1.0
ITERATIONS = 3
MIN_SCALE = 0.25  # the least share of the model's per-message charge a fit may keep
Progress = Callable[[str], None]


@dataclass
class Sample:
    """One rate: the real processes' CPU and the model's charge and jobs, per role."""

    rate: float
    real: dict[str, float]
    charged: dict[str, float]
    jobs: dict[str, float]
    mix: str = SCENARIO


def calibration_scenario(changes: dict[str, Any] | None = None) -> Scenario:
    """A mix of ``MIXES`` on tcp, ``DURATION`` seconds with no faults: the shipped
    default mix, or (``changes["base"]``) the validation base with ``changes``."""
    from harness.validate.suite import _variant

    changes = dict(changes or {})
    name = "validation/base.yaml" if changes.pop("base", False) else SCENARIO
    base = load_scenario(scenarios_dir() / name)
    changes.update(duration=DURATION, warmup=WARMUP, transport="tcp", faults=[], repetitions=1)
    return _variant(base, changes)


def fit_cpu(calibration: Calibration, progress: Progress = lambda line: None) -> Calibration:
    """``calibration`` with ``cpu_scale``, ``job_seconds`` and ``cpu_method`` measured here."""
    from harness.run.runner import run_backend
    from harness.validate.suite import scale_to

    runs = []  # (mix, rate, scenario, plan, real CPU)
    for name, changes, mix_rates in MIXES:
        scenario = calibration_scenario(changes)
        for rate in (IDLE_RATE, *mix_rates) if not runs else mix_rates:
            plan = compile_plan(scale_to(scenario, rate))
            result = run_backend(plan, "real", scenario)
            if result.errors:
                raise RuntimeError(
                    f"the real run of {name} at {rate:,.0f}/s was invalid: {result.errors}"
                )
            measured = real_cpu(result)
            runs.append((name, rate, scenario, plan, measured))
            shown = ", ".join(f"{role} {seconds:.2f} s" for role, seconds in measured.items())
            progress(f"(i) real tcp, {name}, at {rate:,.0f} deliveries/s: CPU {shown}")
    fitted = calibration.with_changes(cpu_scale={}, job_seconds={}, cpu_method="")
    samples: list[Sample] = []
    for _ in range(ITERATIONS):
        models = _models([(plan, scenario) for _, _, scenario, plan, _ in runs], fitted)
        samples = []
        for (name, rate, _, _, measured), model in zip(runs, models, strict=True):
            charged, jobs = model_cpu(model, fitted)
            samples.append(Sample(rate, measured, charged, jobs, name))
        scale, job = solve(samples)
        fitted = calibration.with_changes(cpu_scale=scale, job_seconds=job)
    method = describe(samples, fitted)
    progress(f"(i) {method}")
    return fitted.with_changes(cpu_method=method)


def real_cpu(result: DriverResult) -> dict[str, float]:
    """CPU seconds per role of a real tcp run: the coordinator's process; the agents'
    worker processes summed, from the go to the stop where they measured it."""
    cpu = dict.fromkeys(ROLES, 0.0)
    for process in result.processes:
        if process.name == "coordinator":
            cpu["coordinator"] += process.cpu_seconds
        elif process.name.startswith("worker-"):
            seconds = process.load_cpu_seconds
            cpu["agent"] += process.cpu_seconds if seconds is None else seconds
    return cpu


def model_cpu(
    result: DriverResult, calibration: Calibration
) -> tuple[dict[str, float], dict[str, float]]:
    """Per role: what the model charged, brought back to ``cpu_scale`` 1 and
    ``job_seconds`` 0 (every charge is ``scale * x`` plus ``job`` per job), and its jobs."""
    charged = dict.fromkeys(ROLES, 0.0)
    jobs = dict.fromkeys(ROLES, 0.0)
    for name, parts in result.busy.items():
        role = "coordinator" if name == "coordinator" else "agent"
        charged[role] += sum(parts[part] for part in BUSY_PARTS)
        jobs[role] += parts["jobs"]
    for role in ROLES:
        scale = calibration.cpu_scale.get(role, 1.0)
        job = calibration.job_seconds.get(role, 0.0)
        charged[role] = (charged[role] - job * jobs[role]) / scale
    return charged, jobs


def _less_idle(samples: list[Sample]) -> list[tuple[Sample, Sample]]:
    """Each loaded sample with the idle one (the first: the first mix at ``IDLE_RATE``)."""
    return [(sample, samples[0]) for sample in samples[1:]]


def solve(samples: list[Sample]) -> tuple[dict[str, float], dict[str, float]]:
    """Per role, ``cpu_scale`` and ``job_seconds`` by non-negative least squares on the
    loaded runs less the idle run (the first sample)."""
    pairs = _less_idle(samples)
    scale: dict[str, float] = {}
    job: dict[str, float] = {}
    for role in ROLES:
        a = np.array(
            [
                [s.charged[role] - idle.charged[role], s.jobs[role] - idle.jobs[role]]
                for s, idle in pairs
            ]
        )
        b = np.array([s.real[role] - idle.real[role] for s, idle in pairs])
        (k, j), _ = nnls(a, b)
        if k < MIN_SCALE:  # the data put all the cost on jobs: keep some on the work itself
            k = MIN_SCALE
            (j,), _ = nnls(a[:, 1:], b - k * a[:, 0])
        scale[role] = float(k)
        job[role] = float(j)
    return scale, job


def describe(samples: list[Sample], calibration: Calibration) -> str:
    """The method line: what was run, the fit, and measured against fitted per rate."""
    pairs = _less_idle(samples)
    fits = []
    for role in ROLES:
        k = calibration.cpu_scale[role]
        j = calibration.job_seconds[role]
        rows = []
        for s, idle in pairs:
            real = s.real[role] - idle.real[role]
            fitted = k * (s.charged[role] - idle.charged[role]) + j * (
                s.jobs[role] - idle.jobs[role]
            )
            rows.append(f"{s.mix} {s.rate / 1000:g}k: {real:.2f} s real, {fitted:.2f} s fitted")
        fits.append(f"{role}: cpu_scale {k:.3f}, job_seconds {j * 1e6:.1f} us ({'; '.join(rows)})")
    mixes = "; ".join(
        f"{name} at {', '.join(f'{rate:,.0f}' for rate in rates)}" for name, _, rates in MIXES
    )
    return (
        f"process CPU of real tcp runs ({DURATION:g} s) of {mixes} deliveries/s, each "
        f"less an idle run of the first at {IDLE_RATE:g}/s, fitted per role as cpu_scale x the "
        f"model's charge + job_seconds x its jobs (non-negative least squares, {ITERATIONS} "
        f"iterations): " + " | ".join(fits)
    )


def _models(runs: list[tuple[Plan, Scenario]], calibration: Calibration) -> list[DriverResult]:
    """The model's runs of ``runs``, in parallel processes."""
    from concurrent.futures import ProcessPoolExecutor

    from harness.sweep.executor import local_workers as sim_workers

    jobs = [(plan, scenario, calibration) for plan, scenario in runs]
    with ProcessPoolExecutor(max_workers=sim_workers()) as pool:
        return list(pool.map(_model, jobs))


def _model(job: tuple[Plan, Scenario, Calibration]) -> DriverResult:
    from harness.run.runner import run_backend

    plan, scenario, calibration = job
    result = run_backend(plan, "sim", scenario, calibration=calibration)
    result.completions = []  # only the CPU figures travel back
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="the tcp calibration file to refit")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result")
    args = parser.parse_args(argv)
    base = read_calibration(args.base)
    if base.transport != "tcp":
        parser.error(f"{args.base} is a {base.transport} calibration; figure (i) is tcp's")
    fitted = fit_cpu(base, print)
    given = argv if argv is not None else sys.argv[1:]
    how = f"{base.how}; then python -m harness.calibrate.cpu {' '.join(given)}"
    print(f"calibration written to {save_calibration(fitted.with_changes(how=how), args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
