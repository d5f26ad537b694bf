"""The model replays the plan's fault timeline (``sim.faults``).

Plans come from scenario dicts (``parse_scenario`` + ``compile_plan``), so
the faults are the harness's own expansion. Every figure is read off the
simulated clock. The calibration is ``Calibration.deterministic`` (every
service time ``S``, every hop ``H``), except that an agent's ``Deliver``
can be made slow so that tasks are still in flight when an agent dies.
Heartbeats are 50 ms and failures are declared after 150 ms.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.faults import REPLICA_FAULTS
from protocol.plan import FaultKind, Operation, OpKind, Plan
from protocol.records import DriverResult
from sim import Calibration, Distribution, run_plan
from sim.faults import durable_coordinator

S = 7e-6
H = 3e-5
HEARTBEAT = 0.05
FAILURE_AFTER = 0.15
PROTOCOL = {
    "heartbeat_interval": HEARTBEAT,
    "failure_after": FAILURE_AFTER,
    "ack_timeout": 0.05,
    "request_timeout": 0.1,
}
TASK = {"kind": "task", "arrival": {"process": "constant", "rate": 200}, "capability": "compute"}
PUBLISH = {"kind": "publish", "arrival": {"process": "poisson", "rate": 300}, "size": 32}
DIRECT = {"kind": "direct", "arrival": {"process": "poisson", "rate": 100}, "size": 32}
MEMORY = {
    "kind": "memory",
    "arrival": {"process": "poisson", "rate": 300},
    "size": 32,
    "mix": {"get": 0.3, "put": 0.7},
    "namespaces": 2,
    "keys": 20,
}
MIX = [TASK, PUBLISH, DIRECT, MEMORY]


def plan_for(
    faults: list[dict[str, Any]],
    workload: list[dict[str, Any]] | None = None,
    agents: int = 6,
    workers: int | None = None,
    **protocol: Any,
) -> Plan:
    data: dict[str, Any] = {
        "name": "faults",
        "seed": 5,
        "duration": 2.0,
        "warmup": 0.2,
        "backends": ["sim"],
        "transport": "tcp",
        "agents": {
            "count": agents,
            "workers": workers or agents,
            "capabilities": [{"name": "compute", "share": 1.0}],
        },
        "topics": {"count": 3, "fanout": 3},
        "protocol": {**PROTOCOL, **protocol},
        "workload": workload or MIX,
        "faults": faults,
    }
    return compile_plan(parse_scenario(data, "faults.yaml"))


def calibration(deliver: float = S) -> Calibration:
    """Deterministic; an agent spends ``deliver`` on each ``Deliver``."""
    base = Calibration.deterministic(S, H, timer=1e-6, transport="tcp")
    agent = {**base.service["agent"], "Deliver": Distribution.constant(deliver)}
    return base.with_changes(service={**base.service, "agent": agent})


def unique(result: DriverResult) -> Counter[int]:
    """Completions per op, each (op, node) counted once."""
    pairs = {(c.op_id, c.node) for c in result.completions if not c.duplicate}
    return Counter(op_id for op_id, _ in pairs)


def assert_accepted_complete(plan: Plan, result: DriverResult) -> None:
    ops = {op.op_id: op for op in plan.operations}
    done = unique(result)
    assert result.accepted, "some ops were accepted"
    missing = [op for op in result.accepted if done[op] < ops[op].expected]
    assert not missing, f"accepted ops without all their completions: {missing[:5]}"


def latency(plan: Plan, result: DriverResult) -> dict[int, float]:
    """The latest completion of each op, from its scheduled time."""
    at = {op.op_id: op.at for op in plan.operations}
    worst: dict[int, float] = {}
    for c in result.completions:
        worst[c.op_id] = max(worst.get(c.op_id, 0.0), c.at - at[c.op_id])
    return worst


def comparable(result: DriverResult) -> DriverResult:
    """The result without what depends on the wall clock."""
    return dataclasses.replace(result, wall_seconds=0.0, processes=[])


# --- kill -----------------------------------------------------------------------------


def test_a_killed_agent_is_detected_and_its_tasks_are_reassigned_while_it_is_down() -> None:
    # three workers of two agents: killing agent-00001 kills agent-00004 with it (tcp)
    kill = {"kind": "kill_agent", "at": 0.8, "agents": ["agent-00001"], "restart_after": 0.3}
    plan = plan_for([kill], [TASK], workers=3)
    (fault,) = plan.faults
    assert fault.agents == ("agent-00001", "agent-00004")
    cal = calibration(deliver=0.02)  # a task takes 20 ms at its worker: some are in flight
    result = run_plan(plan, cal)
    live = fault.end + cal.agent_restart
    for agent in fault.agents:
        events = [e for e in result.events if e.node == agent]
        kinds = [e.kind for e in events]
        assert ("injected", fault.at) in [(e.kind, e.at) for e in events]
        failed = [e.at for e in events if e.kind == "failed"]
        assert failed and fault.at <= failed[0] <= fault.at + FAILURE_AFTER + HEARTBEAT / 2
        assert ("healed", live) in [(e.kind, e.at) for e in events]
        assert "returned" in kinds
        returned = next(e.at for e in events if e.kind == "returned")
        assert live <= returned < live + 0.01  # the new life says hello at once
    reassigned = [e for e in result.events if e.kind == "reassigned"]
    assert reassigned, "the killed workers had tasks in flight"
    assert all(e.node in fault.agents and fault.at <= e.at < live for e in reassigned)
    assert_accepted_complete(plan, result)


def test_a_killed_agent_issues_nothing_while_down_and_handles_nothing_twice() -> None:
    kill = {"kind": "kill_agent", "at": 0.5, "agents": ["agent-00002"], "restart_after": 0.4}
    plan = plan_for([kill])
    cal = calibration(deliver=0.002)  # deliveries queue at the agent when it dies
    result = run_plan(plan, cal)
    (fault,) = plan.faults
    live = fault.end + cal.agent_restart
    mine = [op for op in plan.operations if op.origin == "agent-00002"]
    down = [op for op in mine if fault.at <= op.at < fault.end]
    assert down, "the plan has ops from the agent while it is down"
    done = unique(result)
    assert all(done[op.op_id] == 0 for op in down), "ops of a dead origin are never issued"
    booting = [op for op in mine if fault.end <= op.at < live]
    assert booting and all(done[op.op_id] > 0 for op in booting), "issued late once live"
    handled = [(c.op_id, c.node) for c in result.completions if not c.duplicate]
    assert len(handled) == len(set(handled)), "a restarted agent recalls what it handled"
    after = [c for c in result.completions if c.node == "agent-00002" and c.at >= live]
    assert after, "the new life works"
    # what was still queued at the kill never ran: no record is dated while it is down
    assert not [c for c in result.completions if c.node == "agent-00002" and fault.at < c.at < live]
    assert_accepted_complete(plan, result)
    assert "ops never issued (origin down)" in result.notes[-1]


# --- coordinator crash ------------------------------------------------------------------------


def test_a_coordinator_crash_with_a_durable_bus_loses_no_accepted_op_and_no_acked_write() -> None:
    crash = {"kind": "crash_coordinator", "at": 0.8, "restart_after": 0.2}
    plan = plan_for([crash], durable_bus=True)
    cal = calibration()
    result = run_plan(plan, cal)
    (fault,) = plan.faults
    live = fault.end + cal.coordinator_restart
    assert_accepted_complete(plan, result)
    (snapshot,) = result.restarts
    assert snapshot.at == live
    before = [ack for ack in result.write_acks if ack.at < fault.at]
    assert before, "writes were acknowledged before the crash"
    for ack in before:
        version, _ = snapshot.entries[(ack.namespace, ack.key)]
        assert version >= ack.version
    newest = {}
    for ack in sorted(before, key=lambda a: a.version):
        newest[(ack.namespace, ack.key)] = ack
    for slot, ack in newest.items():
        if snapshot.entries[slot][0] == ack.version:
            assert snapshot.entries[slot][1] == ack.checksum
    kinds = [(e.kind, e.node, e.at) for e in result.events if e.node == "coordinator"]
    assert kinds == [("injected", "coordinator", fault.at), ("healed", "coordinator", live)]
    # nothing completes while the coordinator is down; the agents come back after it
    assert not [c for c in result.completions if fault.at + 0.01 < c.at < live]
    returned = [e.at for e in result.events if e.kind == "returned"]
    assert len(returned) == len(plan.agents) and min(returned) >= live
    probes = [p for p in result.probes if fault.at + 0.01 < p.sent < live]
    assert probes and all(p.answered is None for p in probes)


def test_agents_reconnect_with_exponential_backoff_while_the_coordinator_is_down() -> None:
    crash = {"kind": "crash_coordinator", "at": 0.5, "restart_after": 0.1}
    plan = plan_for([crash], reconnect_min=0.01, reconnect_max=0.5)
    cal = calibration().with_changes(coordinator_restart=0.2)
    assert durable_coordinator(plan)
    result = run_plan(plan, cal)
    # live at 0.8; attempts at 0.5 + 0.01, 0.03, 0.07, 0.15, 0.31 (0.81: the first after 0.8)
    # without a durable bus the new coordinator knows no agent: each registers anew
    back = [e.at for e in result.events if e.kind == "registered" and e.at > 0.5]
    assert len(back) == len(plan.agents)
    assert all(0.81 <= at < 0.811 for at in back)


# --- links --------------------------------------------------------------------------------


def test_a_partition_delays_but_loses_nothing() -> None:
    cut = {"kind": "partition", "at": 0.8, "agents": ["agent-00002"], "duration": 0.2}
    plan = plan_for([cut])
    result = run_plan(plan, calibration())
    assert unique(result) == Counter(
        {op.op_id: op.expected for op in plan.operations if op.expected}
    )
    assert_accepted_complete(plan, result)
    (fault,) = plan.faults
    worst = latency(plan, result)
    cut_off = {c.op_id for c in result.completions if c.node == "agent-00002"}
    cut_off |= {op.op_id for op in plan.operations if op.origin == "agent-00002"}
    early = [op for op in plan.operations if op.op_id in cut_off and op.at < fault.at - 0.05]
    during = [op for op in plan.operations if op.op_id in cut_off and op.at < fault.end - 0.1]
    during = [op for op in during if op.at >= fault.at]
    assert early and during
    assert max(worst[op.op_id] for op in early) < 0.01
    assert min(worst[op.op_id] for op in during) > 0.1, "held back until the link healed"
    assert "partition" in result.notes[-1]


def test_one_percent_loss_loses_nothing_accepted_and_costs_duplicates() -> None:
    lossy = {"kind": "link_loss", "at": 0.1, "duration": 1.8, "loss": 0.01}
    plan = plan_for([lossy])
    result = run_plan(plan, calibration())
    assert_accepted_complete(plan, result)
    assert sum(unique(result).values()) == plan.expected_total
    assert any(c.duplicate for c in result.completions), "lost acks cause redeliveries"
    assert " loss" in result.notes[-1]


def test_a_link_delay_adds_to_every_hop_on_the_link() -> None:
    slow = {"kind": "link_delay", "at": 0.5, "agents": ["agent-00003"], "duration": 0.5}
    slow["delay_ms"] = 20
    plan = plan_for([slow], [DIRECT])
    result = run_plan(plan, calibration())
    (fault,) = plan.faults
    worst = latency(plan, result)
    ops = {op.op_id: op for op in plan.operations}
    inside = [
        op
        for op in ops.values()
        if op.target == "agent-00003" and fault.at + 0.05 < op.at < fault.end - 0.05
    ]
    outside = [op for op in ops.values() if op.target == "agent-00003" and op.at < fault.at]
    assert inside and outside
    # origin -> coordinator (clear) -> agent-00003 (+20 ms)
    assert all(worst[op.op_id] >= 0.02 for op in inside)
    assert all(worst[op.op_id] < 0.001 for op in outside)


# --- pause ------------------------------------------------------------------------------


def test_a_pause_queues_everything_and_the_coordinator_only_notices_by_heartbeats() -> None:
    pause = {"kind": "pause_agent", "at": 0.8, "agents": ["agent-00002"], "duration": 0.3}
    plan = plan_for([pause])
    result = run_plan(plan, calibration())
    (fault,) = plan.faults
    assert sum(unique(result).values()) == plan.expected_total, "a pause loses nothing"
    at_agent = [c for c in result.completions if c.node == "agent-00002"]
    assert not [c for c in at_agent if fault.at + 0.001 < c.at < fault.end]
    assert [c for c in at_agent if fault.end <= c.at < fault.end + 0.001], "the queue drains"
    failed = [e.at for e in result.events if e.kind == "failed"]
    assert len(failed) == 1 and fault.at + FAILURE_AFTER - HEARTBEAT <= failed[0]
    assert failed[0] <= fault.at + FAILURE_AFTER + HEARTBEAT / 2
    issued_late: list[Operation] = [
        op
        for op in plan.operations
        if op.origin == "agent-00002" and op.kind == OpKind.MEMORY and fault.at < op.at < fault.end
    ]
    mem = {c.op_id: c.at for c in at_agent}
    assert issued_late and all(mem[op.op_id] >= fault.end for op in issued_late)


def test_a_short_pause_is_not_a_failure() -> None:
    pause = {"kind": "pause_agent", "at": 0.8, "agents": ["agent-00002"], "duration": 0.05}
    result = run_plan(plan_for([pause]), calibration())
    assert not [e for e in result.events if e.kind == "failed"]


# --- determinism -------------------------------------------------------------------------


def test_the_same_plan_with_overlapping_faults_gives_identical_results() -> None:
    faults = [
        {"kind": "kill_agent", "at": 0.3, "agents": ["agent-00001"], "restart_after": 0.2},
        {"kind": "pause_agent", "at": 0.4, "agents": ["agent-00002"], "duration": 0.3},
        {"kind": "crash_coordinator", "at": 0.6, "restart_after": 0.1},
        {"kind": "link_loss", "at": 0.2, "duration": 1.5, "loss": 0.02},
        {"kind": "link_delay", "at": 0.5, "agents": ["agent-00003"], "duration": 0.4},
        {"kind": "partition", "at": 1.2, "agents": ["agent-00004"], "duration": 0.2},
    ]
    faults[4]["delay_ms"] = 5
    plan = plan_for(faults, durable_bus=True)
    # every kind but those of replicas (tests/sim/test_sim_replica_faults.py)
    assert {f.kind for f in plan.faults} == set(FaultKind) - set(REPLICA_FAULTS)
    cal = calibration(deliver=1e-3)
    first = comparable(run_plan(plan, cal))
    second = comparable(run_plan(plan, cal))
    assert first == second
    assert first.restarts and first.events and first.write_acks
    assert_accepted_complete(plan, first)


def test_a_durable_bus_without_faults_costs_nothing_in_the_model() -> None:
    durable = plan_for([], durable_bus=True)
    plain = plan_for([])
    assert durable_coordinator(durable) and not durable_coordinator(plain)
    cal = calibration()
    with_bus, without = run_plan(durable, cal), run_plan(plain, cal)
    at_with = {(c.op_id, c.node): c.at for c in with_bus.completions}
    at_without = {(c.op_id, c.node): c.at for c in without.completions}
    assert at_with.keys() == at_without.keys()
    # no commit is charged; only the order of one job's replies differs (Accepted goes
    # after the job's deliveries once durable), which moves a completion by a job or two
    assert max(abs(at - at_without[key]) for key, at in at_with.items()) <= 3 * S
    assert with_bus.accepted and sorted(with_bus.accepted) == sorted(without.accepted)
    assert not with_bus.restarts
