"""The CPU the model charges: reported per process, scaled and charged per job as a
calibration's figure (i) says, and nothing for an op refused at the door.

Every assertion is on the simulated clock or on the model's own accounting.
"""

from __future__ import annotations

import pytest

from harness.metrics.figures import summarize
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.records import DriverResult
from sim import run_plan
from sim.calibration import POOLED, Calibration
from sim.distribution import Distribution
from sim.nodes import BUSY_PARTS

SERVICE = 0.001  # the coordinator's cost of one Direct
JOB = 0.0005


def spaced_plan(count: int = 100, gap: float = 0.01, at: float = 1.0) -> Plan:
    """``count`` Directs from ten origins to one sink, ``gap`` apart: no queueing."""
    agents = tuple(AgentSpec(f"a{i}") for i in range(10)) + (AgentSpec("sink"),)
    ops = tuple(
        Operation(i + 1, at + i * gap, OpKind.DIRECT, f"a{i % 10}", "sink", 16, 1)
        for i in range(count)
    )
    return Plan(7, at + count * gap + 1.0, 0.5, agents, ops, probe_interval=100.0)


def direct_only(agent_issue: float = 0.0, **changes: object) -> Calibration:
    """Zero cost everywhere except the coordinator's ``Direct`` (and an agent issuing one)."""
    base = Calibration.deterministic(service=0.0, hop=0.0)
    zero = Distribution.constant(0.0)
    service = {
        "coordinator": {POOLED: zero, "Direct": Distribution.constant(SERVICE)},
        "agent": {POOLED: zero, "Direct": Distribution.constant(agent_issue)},
    }
    return base.with_changes(service=service, **changes)


def charged(result: DriverResult, name: str) -> float:
    return sum(result.busy[name][part] for part in BUSY_PARTS)


def test_the_model_reports_the_cpu_it_charged_per_process() -> None:
    plan = spaced_plan()
    result = run_plan(plan, direct_only())
    assert result.busy["coordinator"]["service"] == pytest.approx(100 * SERVICE)
    assert charged(result, "agents") == 0.0  # agents cost nothing here
    assert result.busy["coordinator"]["jobs"] >= 100  # every Direct, and what else came
    assert any("CPU the model charged" in note for note in result.notes)


def test_cpu_scale_multiplies_and_job_seconds_adds_to_every_lone_job() -> None:
    plan = spaced_plan()
    calibration = direct_only(cpu_scale={"coordinator": 2.0}, job_seconds={"coordinator": JOB})
    result = run_plan(plan, calibration)
    jobs = result.busy["coordinator"]["jobs"]
    expected = 100 * 2 * SERVICE + jobs * JOB  # zero-cost messages and timers pay the job
    busy = result.busy["coordinator"]
    assert busy["service"] + busy["timers"] == pytest.approx(expected)
    latency = summarize(plan, result).latency
    assert latency.p50_ms == pytest.approx((2 * SERVICE + JOB) * 1000)  # on the sim clock


def test_a_message_reaching_a_busy_process_saves_the_job_cost() -> None:
    """Three Directs reach the coordinator at one instant. The first wakes it (its work
    and the job's cost); the second finds it still busy, so the loop reads it without
    sleeping, and the third joins the second's batch: each pays its own work only, not
    the wake-up and socket read again."""
    plan = spaced_plan(count=3, gap=0.0)
    calibration = direct_only(job_seconds={"coordinator": JOB})
    result = run_plan(plan, calibration)
    latencies = sorted(c.at - 1.0 for c in result.completions if c.op_id in (1, 2, 3))
    assert latencies == pytest.approx([SERVICE + JOB, 2 * SERVICE + JOB, 3 * SERVICE + JOB])
    assert result.busy["coordinator"]["saved"] >= 2 * JOB  # (registration batches too)


def test_each_agent_worker_process_replays_its_own_agents_ops() -> None:
    """On the tcp layout the model has a replay loop per worker process, as the real
    workers do: agent i's ops are issued by process i % N's loop."""
    from sim.calibration import Calibration as _Calibration
    from sim.driver import Layout, ModelRun

    plan = spaced_plan(count=40)
    run = ModelRun(
        plan, _Calibration.deterministic(service=0.0, hop=0.0), 0.0, layout=Layout(processes=2)
    )
    process_of = {spec.agent_id: i % 2 for i, spec in enumerate(plan.agents)}
    assert len(run.feeds) == 2
    for index, feed in enumerate(run.feeds):
        assert {process_of[op.origin] for op in feed.ops} == {index}
    assert sorted(op.op_id for feed in run.feeds for op in feed.ops) == list(range(1, 41))
    single = ModelRun(plan, _Calibration.deterministic(service=0.0, hop=0.0), 0.0)
    assert [len(feed.ops) for feed in single.feeds] == [40]


def test_a_calibration_without_figure_i_charges_as_before() -> None:
    plan = spaced_plan()
    plain = run_plan(plan, direct_only())
    neutral = run_plan(plan, direct_only(cpu_scale={"coordinator": 1.0, "agent": 1.0}))
    assert [c.at for c in plain.completions] == [c.at for c in neutral.completions]
    assert plain.busy == neutral.busy


def overload_plan(rate: float, duration: float = 4.0) -> Plan:
    agents = tuple(AgentSpec(f"a{i}") for i in range(10)) + (AgentSpec("sink"),)
    count = int(rate * duration)
    ops = tuple(
        Operation(i + 1, 0.5 + i / rate, OpKind.DIRECT, f"a{i % 10}", "sink", 16, 1)
        for i in range(count)
    )
    return Plan(7, 0.5 + duration, 1.0, agents, ops, probe_interval=100.0)


def test_an_op_refused_at_the_door_costs_the_model_nothing() -> None:
    """The coordinator carries 1,000 Directs/s and each issue costs its origin 1 ms.
    Offered 10x that, the origins refuse most ops at the door. As in the real drivers
    (``protocol.workload.issue``: nothing is built) only the ops built cost their
    origin CPU: the model used to charge every offered op, 40 s of CPU here."""
    plan = overload_plan(10_000.0)
    result = run_plan(plan, direct_only(agent_issue=0.001))
    assert summarize(plan, result).reliability.shed_ops > len(plan.operations) // 2
    offered_cost = len(plan.operations) * 0.001
    assert result.busy["agents"]["service"] < 0.3 * offered_cost


def fanout_plan(subscribers: int = 10, publishes: int = 50) -> Plan:
    """One publisher, ``subscribers`` agents on one topic, publishes 10 ms apart."""
    agents = (AgentSpec("pub"),) + tuple(
        AgentSpec(f"s{i}", subscriptions=("news",)) for i in range(subscribers)
    )
    ops = tuple(
        Operation(i + 1, 1.0 + i * 0.01, OpKind.PUBLISH, "pub", "news", 64, subscribers)
        for i in range(publishes)
    )
    return Plan(7, 2.0, 0.5, agents, ops, probe_interval=100.0)


def test_a_fanned_out_deliver_is_decoded_once_per_worker_process() -> None:
    """On tcp the coordinator sends a fanned-out Deliver as one fan-out frame per worker
    connection, and the worker decodes it once for all its recipients: the model charges
    the codec once per process batch, where agents with a CPU each decode it each."""
    calibration = Calibration.deterministic(
        service=0.0, hop=0.0, transport="tcp", per_message=1e-5
    ).with_changes(batch_saving={})
    plan = fanout_plan()
    alone = run_plan(plan, calibration)
    workers = run_plan(plan, calibration, agent_processes=1)
    delivered = 50 * 10
    assert alone.busy["agents"]["wire"] >= delivered * 1e-5
    assert workers.busy["worker-0"]["wire"] < alone.busy["agents"]["wire"] / 5
    assert len(workers.completions) == len(alone.completions) == delivered


def test_a_process_that_ran_its_share_while_others_wait_is_descheduled_for_a_slice() -> None:
    """Three busy processes on two cores, slices of 4 ms: a process that has run back to
    back for two slices waits one; with a core to spare, or after idling, it never does.
    What counts is the CPU it got (``Server.ran``): time it spent waiting for a core
    is not running, so it is not descheduled for it."""
    import random

    import simpy

    from sim.engine import Engine
    from sim.nodes import Server

    calibration = Calibration.deterministic(service=0.0, hop=0.0).with_changes(timeslice=0.004)
    engine = Engine(simpy.Environment(), calibration, random.Random(1))
    engine.share_cores(2)
    servers = [Server(0.0) for _ in range(3)]
    engine._cpus = servers
    a, b, c = servers
    b.busy_until = c.busy_until = 1.0  # both others have work until t = 1 s
    a.busy_until, a.run_since, a.ran = 0.0079, 0.0, 0.0079
    assert engine._sliced(a, 0.0079) == 0.0079  # ran 7.9 ms: under its two slices
    a.busy_until, a.ran = 0.0081, 0.0081
    assert engine._sliced(a, 0.0081) == pytest.approx(0.0121)  # ran 8.1 ms: waits a slice
    assert a.run_since == pytest.approx(0.0121) and a.ran == 0.0
    a.busy_until, a.run_since, a.ran = 0.03, 0.0, 0.002  # 30 ms busy, mostly waiting
    assert engine._sliced(a, 0.03) == 0.03  # for a core: it ran 2 ms, under its share
    c.busy_until = 0.0  # one of the others idles: two busy processes on two cores
    a.busy_until, a.run_since, a.ran = 0.02, 0.0, 0.02
    assert engine._sliced(a, 0.02) == 0.02
    assert engine._sliced(a, 0.5) == 0.5 and a.run_since == 0.5  # after idling: a new run
