"""The real in-process driver runs a tree of coordinators: every coordinator and agent
on one event loop, the load starting once every subscription has reached every
coordinator, and a burst of tasks at one leaf stolen by the others. Nothing here
asserts a time."""

from __future__ import annotations

from harness.metrics.figures import summarize
from protocol.plan import Plan
from protocol.records import DriverResult
from real.inproc.run import run_plan
from tests.sim.test_sim_tree import burst, tree_plan


def test_a_tree_on_one_loop_delivers_everything_once() -> None:
    plan = tree_plan(
        duration=1.5,
        workload=[
            {"kind": "publish", "arrival": {"process": "poisson", "rate": 300}},
            {"kind": "direct", "arrival": {"process": "poisson", "rate": 100}},
            {"kind": "broadcast", "arrival": {"process": "poisson", "rate": 10}},
            {"kind": "memory", "arrival": {"process": "poisson", "rate": 50}},
        ],
    )
    result = run_plan(plan, use_uvloop=False)
    got = [(c.op_id, c.node) for c in result.completions if not c.duplicate]
    assert len(got) == len(set(got)) == plan.expected_total
    assert all(c.intact for c in result.completions)
    status = result.status
    assert status is not None
    peers = sorted(name for name in status if name.startswith("peer:"))
    assert peers == ["peer:coord.1", "peer:coord.2", "peer:coord.3"]  # the root's children
    assert not any(name.startswith("agent:") for name in status)  # agents are on the leaves
    assert any(note.startswith("tree of 13 coordinators: level 1: 1") for note in result.notes)


def test_a_burst_of_tasks_is_stolen_across_the_tree_and_each_runs_once() -> None:
    plan = burst("steal")
    result = run_plan(plan, use_uvloop=False)
    done = [c.op_id for c in result.completions if not c.duplicate]
    assert sorted(done) == [op.op_id for op in plan.operations]  # every result, once
    rows = {row.node_id: row for row in result.coordinators}
    assert sum(row.tasks_run for row in rows.values()) >= len(plan.operations)
    assert rows["coord.1.1"].tasks_run < len(plan.operations)  # others ran some
    assert sum(row.steals_granted for row in rows.values()) > 0
    summary = summarize(plan, result)
    assert summary.tasks.submitted == 60 and summary.tasks.unfinished == 0
    assert summary.tasks.tasks_moved > 0 and summary.tasks.makespan_s is not None
    tasks = summary.tasks  # latency split from the coordinators' stamps
    assert tasks.wait_p95_ms is not None and tasks.service_mean_ms is not None
    assert tasks.service_mean_ms >= 20.0  # every task works 20 ms where it runs
    # the burst waited at its leaf: the most seconds of work queued there at a Load
    assert rows["coord.1.1"].occupancy_peak_s >= 0.02 * 3
    assert tasks.occupancy_imbalance is not None and tasks.occupancy_imbalance > 1.0
    assert len(result.task_stamps) >= len(plan.operations)  # one where each ran, at least


def crashing_tree(**protocol: object) -> Plan:
    """A 3x3 tree under a mixed load in which a leaf (coord.2.3) and then an inner
    node (coord.3) crash and restart 0.3 s later, its bus durable; ``protocol``
    adds settings."""
    return tree_plan(
        duration=2.0,
        agents={"count": 27, "capabilities": [{"name": "c", "share": 0.5}]},
        protocol={"durable_bus": True, "heartbeat_interval": 0.05, "ack_timeout": 0.05, **protocol},
        workload=[
            {"kind": "publish", "arrival": {"process": "poisson", "rate": 300}},
            {"kind": "direct", "arrival": {"process": "poisson", "rate": 100}},
            {"kind": "task", "arrival": {"process": "poisson", "rate": 50}, "capability": "c"},
            {"kind": "memory", "arrival": {"process": "poisson", "rate": 50}},
        ],
        faults=[
            {"kind": "crash_coordinator", "node": "coord.2.3", "at": 0.6, "restart_after": 0.3},
            {"kind": "crash_coordinator", "node": "coord.3", "at": 1.2, "restart_after": 0.3},
        ],
    )


def test_a_crashed_leaf_and_inner_node_lose_nothing_on_one_loop() -> None:
    """A leaf, then an inner node, dies under load and restarts from its journal:
    their agents and children re-attach upwards, and every accepted op is still
    handled once where it should be."""
    plan = crashing_tree()
    result = run_plan(plan, use_uvloop=False)
    kinds = healed(plan, result)
    assert ("orphaned", "coord.2.3") in kinds and ("reparented", "coord.3.1") in kinds


def healed(plan: Plan, result: DriverResult) -> set[tuple[str, str]]:
    """Check that ``crashing_tree``'s run lost nothing acknowledged and that both
    crashed nodes' subtrees re-attached and both nodes came back; the run's
    (event kind, node) pairs."""
    summary = summarize(plan, result)
    assert summary.reliability.lost_acked == 0
    assert summary.integrity.acked_writes_lost == 0
    assert summary.integrity.linearizable is True, summary.integrity.linearizability
    rows = summary.faults.faults
    assert [row.reregistered_s is not None for row in rows] == [True, True]  # re-attached
    assert [row.coordinator_live_s is not None for row in rows] == [True, True]  # restarted
    return {(e.kind, e.node) for e in result.events}
