"""The model's cost refinements, on the simulated clock, and the measurements behind them.

Cost per recipient, the batching saving and the payload's cost per byte are
each checked against a hand computation with ``Calibration.deterministic``
(every service exactly ``S``, every hop exactly ``H``). The calibration
measurements are checked for shape only: timings are the machine's.
"""

from __future__ import annotations

import math

import pytest

from harness.calibrate.insitu import measure_in_situ
from harness.calibrate.scaling import measure_batching, measure_fanout, measure_payload
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.settings import ProtocolSettings
from sim import Calibration, run_plan
from sim.cores import Cores

S = 7e-6
H = 3e-5
QUIET = ProtocolSettings(heartbeat_interval=10.0, failure_after=30.0)


def fanout_plan(subscribers: int, size: int = 16) -> Plan:
    """One publish from ``pub`` to a topic that ``subscribers`` agents follow."""
    specs = [AgentSpec("pub")] + [AgentSpec(f"s{i:02d}", (), ("t",)) for i in range(subscribers)]
    op = Operation(1, 1.0, OpKind.PUBLISH, "pub", "t", size, subscribers)
    return Plan(1, 2.0, 0.5, tuple(specs), (op,), QUIET, probe_interval=0.0)


def completion_times(plan: Plan, calibration: Calibration) -> list[float]:
    return sorted(c.at for c in run_plan(plan, calibration).completions)


@pytest.mark.parametrize("subscribers", [1, 5, 20])
def test_each_recipient_adds_its_cost_to_the_coordinators_job(subscribers: int) -> None:
    per_recipient = 2e-6
    base = Calibration.deterministic(S, H)
    plain = completion_times(fanout_plan(subscribers), base)
    charged = completion_times(
        fanout_plan(subscribers), base.with_changes(per_recipient_seconds=per_recipient)
    )
    assert len(charged) == subscribers
    for before, after in zip(plain, charged, strict=True):
        assert after - before == pytest.approx(subscribers * per_recipient, abs=1e-12)


def test_payload_cost_is_charged_at_issue_and_at_each_receipt() -> None:
    issue, receive, size = 1e-9, 2e-9, 4096
    base = Calibration.deterministic(S, H)
    plain = completion_times(fanout_plan(3, size), base)
    charged = completion_times(
        fanout_plan(3, size),
        base.with_changes(payload_issue_per_byte=issue, payload_receive_per_byte=receive),
    )
    for before, after in zip(plain, charged, strict=True):
        assert after - before == pytest.approx(size * (issue + receive), abs=1e-12)


def burst_to_coordinator(n: int) -> Plan:
    """``n`` agents each send a direct message to their own receiver at the same instant."""
    origins = [AgentSpec(f"o{i:03d}") for i in range(n)]
    receivers = [AgentSpec(f"r{i:03d}") for i in range(n)]
    ops = tuple(
        Operation(i + 1, 1.0, OpKind.DIRECT, f"o{i:03d}", f"r{i:03d}", 16, 1) for i in range(n)
    )
    return Plan(2, 2.0, 0.5, (*origins, *receivers), ops, QUIET, probe_interval=0.0)


def test_messages_that_queue_behind_their_nodes_job_pay_less() -> None:
    n, saving = 30, 3e-6
    base = Calibration.deterministic(S, H)
    plain = completion_times(burst_to_coordinator(n), base)
    batched = completion_times(
        burst_to_coordinator(n), base.with_changes(batch_saving={"coordinator": saving})
    )
    # All n Directs reach the coordinator at once. The first job starts on arrival;
    # each later one arrives while its predecessor is still queued, so it saves.
    coordinator_saving = (n - 2) * saving
    assert plain[-1] - batched[-1] == pytest.approx(coordinator_saving, abs=1e-12)
    assert batched == sorted(batched) and len(batched) == n


def test_a_batched_message_keeps_a_floor_of_its_service() -> None:
    n = 10
    base = Calibration.deterministic(S, H)
    huge = completion_times(
        burst_to_coordinator(n), base.with_changes(batch_saving={"coordinator": 1.0})
    )
    assert all(t > 1.0 for t in huge)
    gaps = [b - a for a, b in zip(huge, huge[1:], strict=False)]
    assert min(gaps) >= 0.1 * S - 1e-12


def test_scaling_measurements_have_the_right_shape() -> None:
    slope, intercept, method = measure_fanout(samples=40)
    # the intercept (the op's cost apart from its recipients) is a few hundred ns
    # since an op stopped arming a retransmission entry of its own, and a busy
    # machine's noise can take the fitted value below zero: the calibration uses
    # only the slope, so only that the intercept is a number is checked
    assert slope > 0 and math.isfinite(intercept) and "per recipient" in method
    saving, batch_method = measure_batching(samples=30)
    assert set(saving) == {"agent", "coordinator"} and min(saving.values()) >= 0
    assert "batch" in batch_method
    issue, receive, payload_method = measure_payload(repeats=20)
    assert issue > 0 and receive > 0 and "ns/B" in payload_method


def test_in_situ_calibration_times_the_real_drivers_jobs() -> None:
    samples = measure_in_situ(rate_scale=4.0, duration=1.0)
    assert ("agent", "Deliver") in samples.single
    assert ("coordinator", "Publish") in samples.single
    per_recipient = samples.per_recipient()
    assert per_recipient >= 0
    table = samples.service(per_recipient, min_samples=5)
    deliver = table["agent"]["Deliver"]
    assert deliver.mean > 0 and "in situ" in deliver.method


def test_cores_are_claimed_best_fit_and_released() -> None:
    cores = Cores(2, 0.0)
    assert cores.claim(1.0) == 1.0
    cores.release(3.0)  # core A busy until 3
    assert cores.claim(1.5) == 1.5  # core B is free
    cores.release(2.0)  # core B busy until 2
    assert cores.claim(2.5) == 2.5  # B (free since 2) fits; A is busy until 3
    cores.release(4.0)
    assert cores.claim(2.5) == 3.0  # both busy: wait for the first to free up
    with pytest.raises(ValueError):
        Cores(0, 0.0)


def test_three_busy_processes_on_two_cores_wait_for_each_other() -> None:
    """A burst through the coordinator: with one core, the workers' jobs queue behind it."""
    plan = burst_to_coordinator(40)
    calibration = Calibration.deterministic(S, H)
    own = completion_times_with(plan, calibration, None)
    shared = completion_times_with(plan, calibration, 1)
    # one core runs every job of every process in turn: the last completes later
    assert shared[-1] > own[-1] + 30 * S
    assert completion_times_with(plan, calibration, 3) == own


def completion_times_with(plan: Plan, calibration: Calibration, cores: int | None) -> list[float]:
    result = run_plan(plan, calibration, agent_processes=2, cores=cores)
    return sorted(c.at for c in result.completions)
