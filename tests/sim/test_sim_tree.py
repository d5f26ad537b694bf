"""A tree of coordinators in the model, read off the simulated clock.

With ``Calibration.deterministic`` (every service exactly ``S``, every hop exactly
``H``, each node a CPU of its own) a direct message's latency is its path's hops
and services, which can be counted by hand: within one leaf, agent -> leaf ->
agent; across the tree, agent -> leaf -> inner -> root -> inner -> leaf -> agent.
A burst of tasks at one leaf shows stealing at work: where they ran, and the
makespan against a tree that does not steal.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.metrics.figures import summarize
from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.plan import Operation, OpKind, Plan
from protocol.records import DriverResult
from sim import Calibration, run_plan

S, H = 0.0001, 0.001  # service and hop, seconds


def tree_plan(**fields: object) -> Plan:
    data = {
        "name": "tree",
        "seed": 3,
        "duration": 2.0,
        "warmup": 0.5,
        "topology": {"kind": "hierarchical", "branching": 3, "levels": 3},
        "agents": {"count": 27},
        "topics": {"count": 6, "fanout": 4},
        "workload": [{"kind": "publish", "arrival": {"process": "poisson", "rate": 300}}],
    }
    data.update(fields)
    return compile_plan(parse_scenario(data, "tree.yaml"))


def test_a_direct_across_the_tree_takes_its_path_of_hops() -> None:
    plan = tree_plan()
    leaf = {spec.agent_id: spec.coordinator for spec in plan.agents}
    a = plan.agents[0].agent_id  # under coord.1.1
    near = next(x for x, c in leaf.items() if c == leaf[a] and x != a)
    far = next(x for x, c in leaf.items() if c.startswith("coord.3."))
    ops = (
        Operation(1, 1.0, OpKind.DIRECT, a, near, 64, 1),
        Operation(2, 1.5, OpKind.DIRECT, a, far, 64, 1),
    )
    result = run_plan(replace(plan, operations=ops), Calibration.deterministic(S, H))
    done = {c.op_id: c.at for c in result.completions if not c.duplicate}
    near_latency = done[1] - 1.0
    far_latency = done[2] - 1.5
    # agent's request, then each hop: 2 hops within a leaf, 6 across, one service per node
    assert near_latency == pytest.approx(2 * H + 3 * S, abs=S)
    assert far_latency == pytest.approx(6 * H + 7 * S, abs=S)
    tasks = summarize(replace(plan, operations=ops), result).tasks
    assert tasks.coordinators_per_op == (1 + 5) / 2  # the leaf; leaf, inner, root, inner, leaf
    assert tasks.root_share == 1 / 2


def test_a_wan_between_levels_lengthens_only_the_hops_between_coordinators() -> None:
    """``model.tree_hop_ms``: the 4 hops between coordinators of a direct across the
    tree take W more each; the 2 between agents and their leaves do not."""
    plan = tree_plan()
    a = plan.agents[0].agent_id
    far = next(s.agent_id for s in plan.agents if s.coordinator.startswith("coord.3."))
    ops = (Operation(1, 1.0, OpKind.DIRECT, a, far, 64, 1),)
    w = 0.02
    result = run_plan(replace(plan, operations=ops), Calibration.deterministic(S, H), tree_hop=w)
    (done,) = [c.at for c in result.completions if not c.duplicate]
    assert done - 1.0 == pytest.approx(6 * H + 4 * w + 7 * S, abs=S)


def test_coordinators_hosted_by_one_process_share_its_cpu() -> None:
    """``coordinator_processes``: as on tcp, the tree's nodes share their process's CPU,
    so 20 directs sent at once across the tree queue for it (each of the 20 is
    served by 5 coordinators: the last one waits for nearly 100 services), where
    with a CPU per coordinator they pass through the levels side by side."""
    plan = tree_plan()
    far = [s.agent_id for s in plan.agents if s.coordinator.startswith("coord.3.")]
    near = [s.agent_id for s in plan.agents if s.coordinator.startswith("coord.1.")]
    ops = tuple(
        Operation(k + 1, 1.0, OpKind.DIRECT, near[k % len(near)], far[k % len(far)], 64, 1)
        for k in range(20)
    )
    calibration = Calibration.deterministic(S, H)
    latest = {}
    for count in (None, 1):
        result = run_plan(replace(plan, operations=ops), calibration, coordinator_processes=count)
        done = [c.at for c in result.completions if not c.duplicate]
        assert len(done) == 20
        latest[count] = max(done) - 1.0
        charged = next(n for n in result.notes if n.startswith("CPU the model charged"))
        assert ("coordinators-0" in charged) == (count == 1)
    assert latest[None] < 6 * H + 30 * S  # the levels work side by side
    assert latest[1] >= 6 * H + 95 * S  # one CPU serves 20 x 5 coordinator steps


def test_the_model_delivers_every_publish_in_a_tree_and_repeats_itself() -> None:
    plan = tree_plan()
    calibration = Calibration.deterministic(S, H)
    first, second = run_plan(plan, calibration), run_plan(plan, calibration)
    got = [(c.op_id, c.node) for c in first.completions if not c.duplicate]
    assert len(got) == len(set(got)) == plan.expected_total
    assert first.completions == second.completions
    assert first.status is not None and "peer:coord.1" in first.status
    (tree,) = [note for note in first.notes if note.startswith("tree of 13 coordinators")]
    assert "level 1: 1 sent" in tree and "level 3: 9 sent" in tree


# --- tasks: work stealing on the simulated clock ------------------------------------


def burst(placement: str) -> Plan:
    """60 tasks of 20 ms at once, all from the agents of leaf coord.1.1 (3 of 27)."""
    return tree_plan(
        duration=0.03,
        warmup=0.0,
        topology={"kind": "hierarchical", "branching": 3, "levels": 3, "tasks": placement},
        protocol={"task_slots": 1},
        agents={"count": 27, "capabilities": [{"name": "gpu", "share": 1.0}]},
        workload=[
            {
                "kind": "task",
                "capability": "gpu",
                "arrival": {"process": "constant", "rate": 2000},
                "work": 0.02,
                "submitted_at": "coord.1.1",
            }
        ],
    )


def makespan(result: DriverResult, plan: Plan) -> float:
    done = [c.at for c in result.completions if not c.duplicate]
    assert len(done) == len(plan.operations) == 60
    return max(done) - min(op.at for op in plan.operations)


def test_stealing_moves_the_burst_off_its_leaf() -> None:
    """Alone, the 3 agents of coord.1.1 need 20 rounds of 20 ms; the tree's 27 agents
    about 3. With stealing the makespan is within a few rounds of that, and the
    tasks ran under other leaves (the coordinators' rows say where)."""
    calibration = Calibration.deterministic(S, H)
    local, steal = burst("local"), burst("steal")
    local_result, steal_result = run_plan(local, calibration), run_plan(steal, calibration)
    assert makespan(local_result, local) >= 20 * 0.02
    assert makespan(steal_result, steal) < 6 * 0.02
    ran = {row.node_id: row.tasks_run for row in steal_result.coordinators}
    assert ran["coord.1.1"] < 60 and sum(ran.values()) == 60
    assert sum(ran[f"coord.{i}.{j}"] for i in (2, 3) for j in (1, 2, 3)) > 0  # cousins
    assert sum(row.steals_granted for row in steal_result.coordinators) > 0
    assert run_plan(steal, calibration).completions == steal_result.completions


def test_a_crashed_leafs_agents_re_attach_one_reconnect_later_and_nothing_is_lost() -> None:
    """A leaf dies at 1 s for 0.5 s under publishes, directs and tasks: its agents see
    their links close, wait the reconnect backoff's first step (``reconnect_min``)
    and register with the leaf's parent, one hop and one service later; nothing
    accepted is lost, and the restarted leaf rejoins its parent."""
    plan = tree_plan(
        agents={"count": 27, "capabilities": [{"name": "c", "share": 0.5}]},
        protocol={"durable_bus": True, "reconnect_min": 0.01},
        workload=[
            {"kind": "publish", "arrival": {"process": "poisson", "rate": 300}},
            {"kind": "direct", "arrival": {"process": "constant", "rate": 100}},
            {"kind": "task", "arrival": {"process": "poisson", "rate": 50}, "capability": "c"},
        ],
        faults=[
            {"kind": "crash_coordinator", "node": "coord.2.3", "at": 1.0, "restart_after": 0.5}
        ],
        backends=["sim"],
    )
    result = run_plan(plan, Calibration.deterministic(S, H))
    moved = [spec.agent_id for spec in plan.agents if spec.coordinator == "coord.2.3"]
    back = {e.node: e.at for e in result.events if e.kind == "registered" and e.at >= 1.0}
    # link closed at 1.0, hello after reconnect_min, one hop and the parent's service
    assert sorted(back) == sorted(moved)
    assert max(back.values()) == pytest.approx(1.0 + 0.01 + H + S, abs=2 * S)
    assert any(e.kind == "orphaned" and e.node == "coord.2.3" for e in result.events)
    accepted = set(result.accepted)
    got = {(c.op_id, c.node) for c in result.completions if not c.duplicate}
    owed = {(op.op_id, op.origin) for op in plan.operations if op.kind == OpKind.TASK}
    assert {key for key in owed if key[0] in accepted} <= got  # every accepted task's result
    expected = sum(op.expected for op in plan.operations if op.op_id in accepted)
    assert sum(1 for c in result.completions if not c.duplicate) == expected
