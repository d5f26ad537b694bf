"""The model's queueing against queueing theory, on the simulated clock.

Every cost is zero except the coordinator's service time for ``Direct``;
hops are zero too, so an operation's latency is exactly its sojourn (wait
plus service) at the coordinator, a single-server FIFO queue with Poisson
arrivals. Theory then gives the answer:

- M/M/1 (exponential service, rate mu): sojourn ~ Exp(mu - lambda), so the
  mean is 1 / (mu - lambda) and the p95 is ln(20) / (mu - lambda).
- M/D/1 (constant service S): mean wait ``rho * S / (2 * (1 - rho))``
  (Pollaczek-Khinchine), sojourn = wait + S.

Tolerances are statistical (tens of thousands of correlated samples at
rho = 0.7, 200 simulated seconds); the runs are seeded, so the tests are deterministic.
"""

from __future__ import annotations

import math
import random

import pytest

from harness.metrics.figures import summarize
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from sim import run_plan
from sim.calibration import POOLED, Calibration
from sim.distribution import Distribution

MU = 1000.0  # coordinator services per second
LAMBDA = 700.0  # Poisson arrivals per second (rho = 0.7)
DURATION = 200.0
WARMUP = 5.0
ORIGINS = 10


def poisson_plan(seed: int) -> Plan:
    rng = random.Random(seed)
    agents = tuple(AgentSpec(f"a{i}") for i in range(ORIGINS)) + (AgentSpec("sink"),)
    ops, at = [], 0.0
    while True:
        at += rng.expovariate(LAMBDA)
        if at >= DURATION:
            break
        origin = f"a{rng.randrange(ORIGINS)}"
        ops.append(Operation(len(ops) + 1, at, OpKind.DIRECT, origin, "sink", 16, 1))
    return Plan(seed, DURATION, WARMUP, agents, tuple(ops), probe_interval=DURATION)


def coordinator_only(direct_service: Distribution) -> Calibration:
    """Zero cost everywhere except the coordinator's handling of ``Direct``."""
    base = Calibration.deterministic(service=0.0, hop=0.0)
    zero = Distribution.constant(0.0)
    service = {
        "coordinator": {POOLED: zero, "Direct": direct_service},
        "agent": {POOLED: zero},
    }
    return base.with_changes(service=service)


def sojourn_ms(calibration: Calibration, seed: int = 5) -> tuple[float, float]:
    plan = poisson_plan(seed)
    latency = summarize(plan, run_plan(plan, calibration)).latency
    assert latency.mean_ms is not None and latency.p95_ms is not None
    return latency.mean_ms, latency.p95_ms


def exponential(rate: float, seed: int = 3, n: int = 400_000) -> Distribution:
    rng = random.Random(seed)
    samples = [rng.expovariate(rate) for _ in range(n)]
    probs = [i / 1000 for i in range(1000)] + [0.9995, 0.9999, 1.0]
    return Distribution.from_samples(samples, "synthetic exponential", probs)


def test_mm1_mean_and_p95_sojourn() -> None:
    mean_ms, p95_ms = sojourn_ms(coordinator_only(exponential(MU)))
    expected_mean = 1000.0 / (MU - LAMBDA)  # 3.33 ms
    expected_p95 = 1000.0 * math.log(20) / (MU - LAMBDA)  # 9.99 ms
    assert mean_ms == pytest.approx(expected_mean, rel=0.05)
    assert p95_ms == pytest.approx(expected_p95, rel=0.06)


def test_md1_mean_sojourn_is_pollaczek_khinchine() -> None:
    service = 1.0 / MU
    mean_ms, _ = sojourn_ms(coordinator_only(Distribution.constant(service)))
    rho = LAMBDA / MU
    wait = rho * service / (2 * (1 - rho))
    assert mean_ms == pytest.approx(1000.0 * (wait + service), rel=0.04)  # 2.17 ms


def test_light_load_sojourn_is_just_the_service_time() -> None:
    """Sanity: at rho -> 0 nobody waits, so M/D/1 sojourn equals S."""
    plan = poisson_plan(9)
    sparse = Plan(plan.seed, plan.duration, plan.warmup, plan.agents, plan.operations[::50])
    latency = summarize(sparse, run_plan(sparse, coordinator_only(Distribution.constant(0.001))))
    assert latency.latency.p50_ms == pytest.approx(1.0, rel=0.01)
