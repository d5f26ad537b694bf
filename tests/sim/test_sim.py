"""Tests for the SimPy model (``sim/``) and its calibration files.

Plans are built by hand (``Plan``/``AgentSpec``/``Operation``) so these tests
do not depend on the scenario compiler. The latency tests use
``Calibration.deterministic``: every service time exactly ``S`` and every
hop exactly ``H``, with heartbeats pushed out of the way, so each simulated
completion time can be computed by hand.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest

from harness.calibrate.loop import measure_hop
from harness.calibrate.measure import calibrate, measure_codec
from protocol.messages import MemVerb
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.settings import ProtocolSettings
from protocol.topics import matches
from sim import Calibration, Distribution, last_stats, load_calibration, run_plan, save_calibration
from sim.calibration import read_calibration, shipped_path
from sim.driver import Layout, ModelRun

S = 7e-6
H = 3e-5
QUIET = ProtocolSettings(heartbeat_interval=10.0, failure_after=30.0)


def mixed_plan(seed: int = 3, agents: int = 6, ops: int = 300, duration: float = 1.0) -> Plan:
    """Every op kind, spread over ``duration``; ``expected`` computed from subscriptions."""
    rng = random.Random(seed)
    specs = tuple(
        AgentSpec(f"a{i}", ("compute",) if i % 2 else (), (f"room.{i % 3}.#",))
        for i in range(agents)
    )
    ids = [spec.agent_id for spec in specs]
    plan_ops = []
    for op_id in range(1, ops + 1):
        at = rng.uniform(0.0, duration * 0.9)
        origin = rng.choice(ids)
        plan_ops.append(_random_op(rng, op_id, at, origin, specs))
    return Plan(seed, duration, duration / 4, specs, tuple(plan_ops), probe_interval=0.1)


def _random_op(
    rng: random.Random, op_id: int, at: float, origin: str, specs: tuple[AgentSpec, ...]
) -> Operation:
    kind = rng.choice(list(OpKind))
    if kind == OpKind.PUBLISH:
        topic = f"room.{rng.randrange(3)}.x"
        expected = sum(any(matches(p, topic) for p in s.subscriptions) for s in specs)
        return Operation(op_id, at, kind, origin, topic, 32, expected)
    if kind == OpKind.DIRECT:
        return Operation(op_id, at, kind, origin, rng.choice(specs).agent_id, 32, 1)
    if kind == OpKind.BROADCAST:
        return Operation(op_id, at, kind, origin, "", 32, len(specs) - 1)
    if kind == OpKind.TASK:
        return Operation(op_id, at, kind, origin, "compute", 32, 1)
    verb = rng.choice([MemVerb.GET, MemVerb.PUT])
    return Operation(op_id, at, kind, origin, f"ns/k{rng.randrange(5)}", 32, 1, int(verb))


def random_hop_calibration() -> Calibration:
    """Deterministic service, hop drawn uniformly from 10 to 100 us."""
    hop = Distribution.from_samples([10e-6 + i * 90e-6 / 999 for i in range(1000)], "uniform")
    return Calibration.deterministic(S, H, timer=1e-6).with_changes(hop=hop)


def single_op_plan(kind: OpKind, target: str, at: float = 1.2) -> Plan:
    specs = (AgentSpec("a", (), ()), AgentSpec("b", ("compute",), ()))
    op = Operation(1, at, kind, "a", target, 16, 1)
    return Plan(1, 2.0, 0.5, specs, (op,), QUIET, probe_interval=0.0)


# --- determinism and reliability ------------------------------------------------------


def test_same_plan_calibration_and_seed_give_identical_results() -> None:
    plan = mixed_plan()
    calibration = read_calibration(shipped_path("inproc"))
    first = run_plan(plan, calibration)
    second = run_plan(plan, calibration)
    assert first.completions == second.completions
    assert first.probes == second.probes
    assert first.registered == second.registered
    assert first.end_time == second.end_time
    assert first.notes == second.notes
    assert first.backend == "sim" and first.transport == "inproc"


def test_every_expected_completion_arrives_and_every_probe_is_answered() -> None:
    plan = mixed_plan()
    result = run_plan(plan, read_calibration(shipped_path("inproc")))
    unique = {(c.op_id, c.node) for c in result.completions if not c.duplicate}
    assert len(unique) == plan.expected_total
    assert all(c.intact for c in result.completions)
    assert len(result.probes) == 10
    assert all(p.answered is not None and p.answered > p.sent for p in result.probes)
    assert set(result.registered) == {spec.agent_id for spec in plan.agents}
    # registration is simulated first; load starts 50 ms after the last Welcome
    assert max(result.registered.values()) == pytest.approx(-0.05, abs=1e-6)


def test_a_different_seed_with_a_random_hop_gives_a_different_result() -> None:
    plan = mixed_plan()
    calibration = random_hop_calibration()
    first = run_plan(plan, calibration)
    again = run_plan(plan, calibration)
    other = run_plan(dataclasses.replace(plan, seed=plan.seed + 1), calibration)
    assert first.completions == again.completions
    assert sorted(first.completions) != sorted(other.completions)


# --- the model's arithmetic --------------------------------------------------------------


def test_a_direct_message_takes_exactly_the_path_sum() -> None:
    plan = single_op_plan(OpKind.DIRECT, "b")
    result = run_plan(plan, Calibration.deterministic(S, H))
    (completion,) = result.completions
    # issue at a, hop, coordinator handles Direct, hop, b handles Deliver
    assert completion.node == "b"
    assert completion.at == pytest.approx(1.2 + S + H + S + H + S, abs=1e-9)


def test_a_task_takes_exactly_the_round_trip_sum() -> None:
    plan = single_op_plan(OpKind.TASK, "compute")
    result = run_plan(plan, Calibration.deterministic(S, H))
    (completion,) = result.completions
    # a -> coordinator -> worker b -> coordinator -> a: five services, four hops
    assert completion.node == "a"
    assert completion.at == pytest.approx(1.2 + 5 * S + 4 * H, abs=1e-9)


def test_the_codec_cost_is_charged_per_received_message() -> None:
    plan = single_op_plan(OpKind.DIRECT, "b")
    plain = run_plan(plan, Calibration.deterministic(S, H)).completions[0].at
    wired = run_plan(plan, Calibration.deterministic(S, H, per_message=1e-6)).completions[0].at
    # Direct at the coordinator and Deliver at b are received; the issue is not
    assert wired - plain == pytest.approx(2e-6, abs=1e-9)


def burst_plan(n: int, at: float = 1.0) -> Plan:
    """``n`` origins each send one direct message to their own receiver at the same instant."""
    origins = [AgentSpec(f"o{i:03d}") for i in range(n)]
    receivers = [AgentSpec(f"r{i:03d}") for i in range(n)]
    ops = tuple(
        Operation(i + 1, at, OpKind.DIRECT, f"o{i:03d}", f"r{i:03d}", 16, 1) for i in range(n)
    )
    return Plan(2, 2.0, 0.5, tuple(origins + receivers), ops, QUIET, probe_interval=0.0)


def test_a_burst_queues_at_the_coordinator() -> None:
    n = 60
    result = run_plan(burst_plan(n), Calibration.deterministic(S, H))
    ends = sorted(c.at for c in result.completions)
    assert len(ends) == n
    # all n Directs reach the coordinator at 1 + S + H and are served one by one
    assert ends[-1] == pytest.approx(1.0 + 2 * H + (n + 2) * S, abs=1e-9)
    assert ends[-1] - 1.0 == pytest.approx(n * S, abs=2 * H + 3 * S)
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    assert gaps == pytest.approx([S] * (n - 1), abs=1e-9)


def test_one_shared_loop_serialises_every_node() -> None:
    plan = burst_plan(20)
    per_node = run_plan(plan, Calibration.deterministic(S, H))
    shared = run_plan(plan, Calibration.deterministic(S, H, cpu_sharing="one-loop"))
    last_per_node = max(c.at for c in per_node.completions)
    last_shared = max(c.at for c in shared.completions)
    # on one loop the 20 issues, 20 Directs and the 20 Delivers all take turns
    assert last_shared - 1.0 >= 3 * 20 * S
    assert last_shared > last_per_node


def test_the_drain_timeout_bounds_a_run_that_cannot_complete() -> None:
    specs = (AgentSpec("a"),)
    op = Operation(1, 0.1, OpKind.DIRECT, "a", "nobody", 16, 1)
    plan = Plan(1, 0.5, 0.1, specs, (op,), QUIET, probe_interval=0.0, drain_timeout=0.25)
    result = run_plan(plan, Calibration.deterministic(S, H))
    assert result.completions == []
    assert result.end_time == pytest.approx(0.75)
    assert any("drain timeout" in note for note in result.notes)


def test_timer_slack_groups_deadlines_into_fewer_wake_ups() -> None:
    plan = mixed_plan(ops=600, duration=4.0)  # long enough for ack and request timeouts
    run_plan(plan, Calibration.deterministic(S, H))
    exact = last_stats()["timers"]
    result = run_plan(plan, Calibration.deterministic(S, H, timer_slack=0.005))
    # few deadlines to group (one retransmission timer per link and per window):
    # 187 wake-ups exact, 172 with the slack, deterministic
    assert last_stats()["timers"] < 0.95 * exact
    assert len({(c.op_id, c.node) for c in result.completions}) == plan.expected_total


def test_last_stats_counts_simulated_messages() -> None:
    plan = single_op_plan(OpKind.DIRECT, "b")
    run_plan(plan, Calibration.deterministic(S, H))
    stats = last_stats()
    # registration: 2 Hello + 2 Welcome; the op: Direct, then Accepted and Deliver
    # (the run stops at the last completion, so b's Ack is never simulated)
    assert stats["messages"] == 7
    assert stats["wall_seconds"] > 0


def test_progress_is_reported_up_to_one() -> None:
    seen: list[float] = []
    run_plan(single_op_plan(OpKind.DIRECT, "b"), Calibration.deterministic(S, H), seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)


# --- distributions and calibration files -----------------------------------------------


def test_a_distribution_samples_inside_its_range_with_its_model_mean() -> None:
    values = [random.Random(5).expovariate(1e5) for _ in range(5000)]
    dist = Distribution.from_samples(values, "exponential")
    draw = dist.sampler(random.Random(9))
    draws = [draw() for _ in range(20000)]
    assert min(values) <= min(draws) and max(draws) <= max(values)
    assert sum(draws) / len(draws) == pytest.approx(dist.model_mean(), rel=0.05)
    assert dist.model_mean() == pytest.approx(dist.mean, rel=1e-9)


def test_one_rare_outlier_keeps_its_rare_weight() -> None:
    samples = [1e-6 + i * 1e-9 for i in range(9999)] + [0.05]  # one 50 ms pause in 10,000
    dist = Distribution.from_samples(samples, "one pause")
    assert dist.values[-1] == 0.05 and dist.quantile(0.99) < 2e-5
    assert dist.model_mean() == pytest.approx(dist.mean, rel=1e-9)
    draw = dist.sampler(random.Random(4))
    assert sum(draw() > 1e-3 for _ in range(20000)) <= 10


def test_a_constant_distribution_draws_no_random_numbers() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    assert Distribution.constant(3e-6).sampler(rng)() == 3e-6
    assert rng.getstate() == state


def test_calibration_round_trips_through_json(tmp_path: Path) -> None:
    calibration = read_calibration(shipped_path("inproc"))
    path = save_calibration(calibration, tmp_path / "copy.json")
    assert read_calibration(path) == calibration


def test_the_shipped_defaults_describe_how_they_were_made() -> None:
    for transport in ("inproc", "tcp"):
        data = json.loads(shipped_path(transport).read_text())
        assert data["transport"] == transport
        assert "python -m harness.calibrate " in data["how"]
        assert data["hop"]["method"] and data["per_byte_method"]
        for table in data["service"].values():
            assert all(entry["method"] for entry in table.values())
    assert read_calibration(shipped_path("inproc")).per_byte_seconds == 0.0
    assert read_calibration(shipped_path("tcp")).per_byte_seconds > 0.0


def test_load_falls_back_to_the_shipped_default_with_a_warning(tmp_path: Path) -> None:
    calibration, warning = load_calibration(transport="tcp", directory=tmp_path)
    assert calibration.transport == "tcp"
    assert warning is not None and "swarmtwin calibrate" in warning


def test_load_prefers_the_newest_calibration_for_this_host(tmp_path: Path) -> None:
    import socket

    base = read_calibration(shipped_path("inproc")).with_changes(host=socket.gethostname())
    save_calibration(base.with_changes(date="2030-01-01T00:00:00Z"), tmp_path / "old.json")
    save_calibration(base.with_changes(date="2031-01-01T00:00:00Z"), tmp_path / "new.json")
    save_calibration(
        base.with_changes(date="2032-01-01T00:00:00Z", host="elsewhere"), tmp_path / "x.json"
    )
    calibration, warning = load_calibration(transport="inproc", directory=tmp_path)
    assert warning is None
    assert calibration.date == "2031-01-01T00:00:00Z"


# --- the calibration harness, in miniature ----------------------------------------------


def test_calibrate_writes_a_loadable_file(tmp_path: Path) -> None:
    path = calibrate("inproc", samples=400, out_dir=tmp_path, agents=20)
    calibration, warning = load_calibration(transport="inproc", directory=tmp_path)
    assert warning is None and calibration.source == str(path)
    assert calibration.service["coordinator"]["Publish"].mean > 0
    assert calibration.timer["agent"].samples > 0
    result = run_plan(mixed_plan(ops=50), calibration)
    assert len(result.completions) >= 50


def test_codec_and_tcp_hop_measurements_are_positive() -> None:
    slope, intercept, method = measure_codec(sizes=(16, 4096, 65536), repeats=20)
    assert slope > 0 and intercept >= 0 and "least-squares" in method
    hop = measure_hop("tcp", 200)
    assert 0 <= hop.values[0] <= hop.mean and hop.mean > 0
    assert "between two processes" in hop.method


def test_one_busy_process_more_than_cores_stalls_for_a_slice() -> None:
    from harness.calibrate.loop import measure_timeslice
    from harness.sweep.executor import local_workers as sim_workers

    cores = sim_workers()
    timeslice, method = measure_timeslice(cores)
    assert timeslice > 0 and f"{cores + 1} processes spinning" in method


def test_the_tcp_layout_registers_a_voucher_per_link_and_its_agents_send_no_heartbeats() -> None:
    plan = mixed_plan(agents=12, ops=200, duration=2.0)
    calibration = Calibration.deterministic(S, H)
    run = ModelRun(plan, calibration, start=0.0, layout=Layout(2, 1, None, 2))
    run.register()
    run.load(None)
    run.env.run(until=run.stop)
    sessions = run.engine.nodes["coord"].core.sessions  # type: ignore[union-attr]
    vouchers = [f"worker-{w}.link{k}" for w in (0, 1) for k in (0, 1)]
    assert sorted(n for n, s in sessions.items() if not s.voucher) == vouchers
    assert {s.voucher for s in sessions.values() if s.voucher} == set(vouchers)
    # welcomed with heartbeat interval 0: no heartbeat is ever due
    assert all(node.core._next_heartbeat is None for node in run.agents)  # type: ignore[union-attr]
    assert len(run.registered) == 12  # the plan's agents only
    unique = {(c.op_id, c.node) for node in run.agents for c in node.core.completions}  # type: ignore[union-attr]
    assert len(unique) == plan.expected_total
    assert run.missing == 0  # the vouchers' broadcast deliveries are owed to nobody
