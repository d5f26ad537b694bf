"""The scenario's ``consensus`` section: what it compiles to, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario.compile import compile_plan
from tests.harness.test_scenario import error_for, scenario

RAFT = "consensus: {protocol: raft, replicas: 3}\n"
QUORUM = "consensus: {protocol: quorum, replicas: 3}\n"
BASE = """name: r
transport: tcp
backends: [real]
agents: {count: 20}
workload: [{kind: memory, arrival: {process: poisson, rate: 10}}]
"""


def test_a_raft_section_compiles_to_replicas_and_agents_start_at_the_first() -> None:
    loaded = scenario(
        transport="tcp",
        backends=["real"],
        consensus={"protocol": "raft", "replicas": 5, "tick_ms": 20.0, "election_ticks": 8},
    )
    plan = compile_plan(loaded)
    assert plan.replication is not None
    assert plan.replication.replicas == ("r1", "r2", "r3", "r4", "r5")
    assert plan.replication.tick == 0.02 and plan.replication.election_ticks == 8
    assert {agent.coordinator for agent in plan.agents} == {"r1"}
    assert compile_plan(scenario()).replication is None
    both = scenario(transport="tcp", backends=["real", "sim"], consensus={"protocol": "raft"})
    assert compile_plan(both).replication is not None  # the model runs replicas too
    pbft = scenario(
        transport="tcp", backends=["real"], consensus={"protocol": "pbft", "replicas": 4}
    )
    replication = compile_plan(pbft).replication
    assert replication is not None and replication.protocol == "pbft"
    crash = [{"kind": "crash_replica", "at": 1.0}]
    crashed = scenario(transport="tcp", backends=["sim"], consensus={}, faults=crash)
    assert compile_plan(crashed).faults  # and crashes them
    others = [
        {"kind": "pause_replica", "at": 1.0, "duration": 0.5},
        {"kind": "partition_replica", "at": 2.0, "duration": 0.5, "node": "r2"},
    ]
    faulted = scenario(transport="tcp", backends=["real", "sim"], consensus={}, faults=others)
    pause, cut = compile_plan(faulted).faults
    assert (pause.kind.name, pause.node, pause.duration) == ("PAUSE_REPLICA", "leader", 0.5)
    assert (cut.kind.name, cut.node, cut.end) == ("PARTITION_REPLICA", "r2", 2.5)


def test_a_quorum_section_keeps_one_coordinator_and_configures_the_agents_store() -> None:
    loaded = scenario(
        transport="tcp",
        backends=["real", "sim"],
        consensus={"protocol": "quorum", "replicas": 5, "write": 4, "tick_ms": 20.0},
        faults=[{"kind": "crash_replica", "at": 1.0, "node": "r5"}],
    )
    plan = compile_plan(loaded)
    assert plan.replication is None and plan.quorum is not None
    assert {agent.coordinator for agent in plan.agents} == {"coord"}  # the bus stays
    quorum = plan.quorum
    assert quorum.replicas == ("r1", "r2", "r3", "r4", "r5")
    assert (quorum.read, quorum.write, quorum.repair, quorum.retry) == (3, 4, "sync", 0.02)
    assert quorum.overlapping and "N 5, R 3, W 4" in quorum.note()
    weak = scenario(
        transport="tcp", backends=["sim"], consensus={"protocol": "quorum", "read": 1, "write": 1}
    )
    weak_quorum = compile_plan(weak).quorum
    assert weak_quorum is not None and not weak_quorum.overlapping
    assert "may miss an acknowledged write" in weak_quorum.note()


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ("consensus: {protocol: raft, read: 2}\n", "consensus.read", "protocol: quorum"),
        ("consensus: {protocol: pbft, repair: async}\n", "consensus.repair", "quorum's"),
        ("consensus: {protocol: quorum, read: 4}\n", "consensus.read", "at most replicas (3)"),
        ("consensus: {protocol: quorum, repair: later}\n", "consensus.repair", "sync"),
        (
            QUORUM + "faults: [{kind: crash_replica, at: 1.0}]\n",
            "faults[0].node",
            "no leader",
        ),
        (
            QUORUM + "faults: [{kind: partition_replica, at: 1.0, duration: 1, node: r1}]\n",
            "faults[0].kind",
            "not partitioned yet",
        ),
        ("consensus: {protocol: pbft}\n", "consensus.replicas", "4 or 7"),
        ("consensus: {protocol: fast-paxos, replicas: 2}\n", "consensus.replicas", "3 to 7"),
        ("consensus: {protocol: paxos}\n", "consensus.protocol", "raft"),
        ("consensus: {replicas: 9}\n", "consensus.replicas", "7"),
        (RAFT + "transport: inproc\n", "transport", "expected transport: tcp"),
        (
            RAFT + "topology: {kind: hierarchical, branching: 5, levels: 2}\n",
            "topology.kind",
            "flat",
        ),
        (
            RAFT + "faults: [{kind: crash_coordinator, at: 1.0}]\n",
            "faults[0].kind",
            "crash_replica, pause_replica, partition_replica",
        ),
        (RAFT + "faults: [{kind: crash_replica, at: 1.0, node: r9}]\n", "faults[0].node", "r1, r2"),
        ("faults: [{kind: crash_replica, at: 1.0}]\n", "faults[0].kind", "consensus section"),
        (
            "faults: [{kind: partition_replica, at: 1.0, duration: 1}]\n",
            "faults[0].kind",
            "consensus section",
        ),
        (
            RAFT + "faults: [{kind: pause_replica, at: 1.0, duration: 1, node: x}]\n",
            "faults[0].node",
            "leader or a replica id",
        ),
        (RAFT + "faults: [{kind: pause_replica, at: 1.0}]\n", "faults[0].duration", "required"),
    ],
)
def test_what_cannot_run_is_refused_naming_the_field(
    tmp_path: Path, change: str, field: str, says: str
) -> None:
    lines = [line for line in BASE.splitlines(keepends=True) if line.split(":")[0] not in change]
    error = error_for(tmp_path, "".join(lines) + change)
    assert error.field == field
    assert says in str(error)
