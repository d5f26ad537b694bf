"""Figure (i): fitting cpu_scale and job_seconds from process CPU, on synthetic samples."""

from __future__ import annotations

import pytest

from harness.calibrate.cpu import MIN_SCALE, Sample, model_cpu, real_cpu, solve
from protocol.records import DriverResult, ProcessUsage
from sim.calibration import Calibration


def sample(rate: float, charged: float, jobs: float, k: float, job: float) -> Sample:
    """A rate whose real CPU is exactly ``k * charged + job * jobs`` for both roles."""
    real = k * charged + job * jobs
    both = ("coordinator", "agent")
    return Sample(
        rate,
        dict.fromkeys(both, real),
        dict.fromkeys(both, charged),
        dict.fromkeys(both, jobs),
    )


def test_the_fit_recovers_scale_and_job_cost() -> None:
    k, job = 1.4, 60e-6
    samples = [sample(50, 0.01, 100, k, job)]  # the idle run, taken away from the others
    samples += [sample(r, r * 2e-5, r * 4, k, job) for r in (5e3, 2e4, 4.5e4, 9e4)]
    samples[2].jobs["coordinator"] *= 0.5  # batches: fewer jobs than messages at this rate
    samples[2].real["coordinator"] = (
        k * samples[2].charged["coordinator"] + job * (samples[2].jobs["coordinator"])
    )
    scale, cost = solve(samples)
    assert scale["coordinator"] == pytest.approx(k) and cost["coordinator"] == pytest.approx(job)
    assert scale["agent"] == pytest.approx(k) and cost["agent"] == pytest.approx(job)


def test_a_fit_that_puts_everything_on_jobs_keeps_some_work_cost() -> None:
    samples = [sample(50, 0.0, 0, 0.0, 0.0)]
    samples += [sample(r, r * 2e-5, r * 4, 0.0, 60e-6) for r in (5e3, 2e4, 4.5e4, 9e4)]
    scale, cost = solve(samples)
    assert scale["coordinator"] == MIN_SCALE
    assert 0 < cost["coordinator"] < 60e-6  # the rest of the cost, on the jobs


def test_cpu_per_role_from_a_real_run_and_from_the_model() -> None:
    real = DriverResult("real", "tcp")
    real.processes = [
        ProcessUsage("coordinator", 0, 2.5),
        ProcessUsage("worker-0", 0, 3.0, load_cpu_seconds=2.0),
        ProcessUsage("worker-1", 0, 3.1, load_cpu_seconds=2.1),
        ProcessUsage("harness", 0, 9.0),
    ]
    assert real_cpu(real) == pytest.approx({"coordinator": 2.5, "agent": 4.1})
    model = DriverResult("sim", "tcp")
    parts = {"service": 1.0, "recipients": 0.1, "wire": 0.5, "payload": 0.0, "timers": 0.2}
    model.busy = {
        "coordinator": {**parts, "jobs": 1000.0, "saved": 0.0},
        "worker-0": {**parts, "jobs": 500.0, "saved": 0.1},
        "worker-1": {**parts, "jobs": 500.0, "saved": 0.1},
    }
    calibration = Calibration.deterministic(service=0.0, hop=0.0).with_changes(
        cpu_scale={"coordinator": 2.0}, job_seconds={"coordinator": 1e-4}
    )
    charged, jobs = model_cpu(model, calibration)
    assert jobs == {"coordinator": 1000.0, "agent": 1000.0}
    assert charged["coordinator"] == pytest.approx((1.8 - 1000 * 1e-4) / 2.0)  # back to scale 1
    assert charged["agent"] == pytest.approx(3.6)


def test_every_mix_is_measured_against_the_one_idle_run() -> None:
    """Several mixes: each loaded run less the first (idle) run, in one fit."""
    k, job = 0.8, 100e-6
    samples = [sample(50, 0.01, 100, k, job)]
    for mix, per_job in (("a", 4), ("b", 1)):  # b: a mix whose messages batch more
        for r in (5e3, 3e4, 9e4):
            found = sample(r, r * 2e-5, r * per_job, k, job)
            samples.append(Sample(found.rate, found.real, found.charged, found.jobs, mix))
    scale, cost = solve(samples)
    assert scale["agent"] == pytest.approx(k) and cost["agent"] == pytest.approx(job)
