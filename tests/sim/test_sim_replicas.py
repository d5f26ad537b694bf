"""Raft-replicated coordinators in the model (``sim.replicas``), read off the simulated clock.

With ``Calibration.deterministic`` (every service exactly ``S``, every hop ``H``,
each process a CPU of its own) and a commit of exactly ``C``, a memory write's
path can be counted by hand: the agent issues it, the leader serves it and
commits the new entry before it sends the appends, each follower serves an
append and commits it before it acks, the leader serves the acks and commits
the new commit index, and only then does the reply leave.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.metrics.figures import summarize
from harness.metrics.linearizable import check, from_calls
from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.messages import MemVerb
from protocol.plan import Operation, OpKind, Plan
from sim import Calibration, run_plan
from sim.distribution import Distribution

S, H, C = 0.0001, 0.001, 0.0005  # service, hop and commit, seconds


def raft_plan(rate: float = 200.0, **fields: object) -> Plan:
    data = {
        "name": "raft",
        "seed": 5,
        "duration": 2.0,
        "warmup": 0.5,
        "transport": "tcp",
        "backends": ["sim"],
        # one heartbeat a second: no tick falls inside the write timed below
        "consensus": {"protocol": "raft", "replicas": 3, "tick_ms": 1000.0},
        "agents": {"count": 6},
        "topics": {"count": 2, "fanout": 3},
        "workload": [
            {"kind": "memory", "arrival": {"process": "poisson", "rate": rate}},
            {"kind": "publish", "arrival": {"process": "poisson", "rate": rate}},
        ],
    }
    data.update(fields)
    return compile_plan(parse_scenario(data, "raft.yaml"))


def calibration(commit: float = C) -> Calibration:
    return Calibration.deterministic(S, H).with_changes(commit=Distribution.constant(commit))


def test_a_write_pays_two_round_trips_of_hops_and_three_commits() -> None:
    plan = raft_plan()
    agent = plan.agents[0].agent_id
    ops = (Operation(1, 1.0, OpKind.MEMORY, agent, "ns/k", 64, 1, MemVerb.PUT),)
    result = run_plan(replace(plan, operations=ops), calibration())
    (done,) = [c for c in result.completions if c.op_id == 1]
    # agent -> leader -> followers -> leader -> agent: four hops. Services: the agent's
    # issue, the leader's, a follower's, the leader's of each of the two acks (the
    # second queues behind the first, so the flush comes after both), the agent's.
    # Commits: the leader's entry, the follower's, the leader's commit index.
    assert done.at - 1.0 == pytest.approx(6 * S + 4 * H + 3 * C, abs=S / 10)
    # without a commit cost the same path is three commits shorter
    free = run_plan(replace(plan, operations=ops), calibration(0.0))
    (quick,) = [c for c in free.completions if c.op_id == 1]
    assert done.at - quick.at == pytest.approx(3 * C, abs=S / 10)
    # each of those three flushes also costs the replica's own CPU (figure (k))
    busy = calibration().with_changes(replica_flush=Distribution.constant(S))
    slow = run_plan(replace(plan, operations=ops), busy)
    (late,) = [c for c in slow.completions if c.op_id == 1]
    assert late.at - done.at == pytest.approx(3 * S, abs=S / 10)


def test_a_replicated_run_completes_every_op_linearizably_and_deterministically() -> None:
    plan = raft_plan()
    first = run_plan(plan, calibration())
    again = run_plan(plan, calibration())
    assert first.completions == again.completions and first.probes == again.probes
    expected = plan.expected_total
    assert len({(c.op_id, c.node) for c in first.completions}) == expected
    assert all(p.answered is not None for p in first.probes)  # the prober finds the leader
    verdict = check(from_calls(first.mem_history or []))
    assert first.mem_history and verdict.linearizable is True, verdict.describe()
    busy = first.busy
    assert set(busy) >= {"replica-r1", "replica-r2", "replica-r3"}
    # the leader serves the agents and the followers only the log; every replica
    # waited on its disk for each of its commits
    assert busy["replica-r1"]["service"] > 2 * busy["replica-r2"]["service"]
    for name in ("replica-r1", "replica-r2", "replica-r3"):
        assert busy[name]["blocked"] > 0
        assert busy[name]["blocked"] == pytest.approx(C * round(busy[name]["blocked"] / C))


def test_commits_are_grouped_per_flush_under_load() -> None:
    """Messages that queue while a replica is busy share one flush, so at high load
    a replica commits far less often than it serves messages (a group commit)."""
    plan = raft_plan(rate=1000.0)
    result = run_plan(plan, calibration())
    commits = result.busy["replica-r1"]["blocked"] / C
    served = result.busy["replica-r1"]["service"] / S  # every message costs S here
    assert len(result.completions) == plan.expected_total and 0 < commits < served / 4


def test_a_crashed_leader_is_replaced_within_a_tick_and_nothing_is_lost() -> None:
    """The leader dies at 1.0 s: one longest hop later its followers see its links
    close, the first of them in rank campaigns at its next tick (50 ms), the agents
    follow the refusals to it, and the dead replica restarts from its log."""
    crash = {"kind": "crash_replica", "at": 1.0, "restart_after": 0.3}
    consensus = {"protocol": "raft", "replicas": 3, "tick_ms": 50.0}
    plan = raft_plan(faults=[crash], consensus=consensus)
    result = run_plan(plan, calibration())
    kinds = [(e.kind, e.node) for e in result.events if e.kind in ("injected", "healed", "leader")]
    assert kinds[0] == ("leader", "r1") and ("injected", "r1") in kinds
    (killed,) = [e.at for e in result.events if e.kind == "injected"]
    new = [e for e in result.events if e.kind == "leader" and e.at > killed]
    assert new and new[0].node != "r1"
    # the FIN after a hop, then at most a tick, a pre-vote and a vote round, a commit
    assert new[0].at - killed <= H + 0.05 + 6 * (H + S + C)
    summary = summarize(plan, result)
    assert summary.reliability.lost_acked == 0 and summary.integrity.acked_writes_lost == 0
    assert summary.integrity.linearizable is True
    assert len({(c.op_id, c.node) for c in result.completions}) == plan.expected_total
    (healed,) = [e.at for e in result.events if e.kind == "healed"]
    assert healed == pytest.approx(1.3 + Calibration.deterministic(S, H).coordinator_restart)
    assert result.replicas["r1"]["commits"] > 0  # it caught up after its restart
    again = run_plan(plan, calibration())
    assert again.completions == result.completions and again.events == result.events


def test_pbft_replicas_complete_every_op_linearizably_and_deterministically() -> None:
    """Four PBFT replicas in the model: the primary opens view 0 at no simulated cost,
    then every op completes, the memory history is linearizable, the run repeats."""
    plan = raft_plan(consensus={"protocol": "pbft", "replicas": 4, "tick_ms": 1000.0})
    result = run_plan(plan, calibration())
    summary = summarize(plan, result)
    assert len({(c.op_id, c.node) for c in result.completions}) == plan.expected_total
    assert summary.reliability.lost_acked == 0 and summary.integrity.linearizable is True
    assert sorted(result.replicas) == ["r1", "r2", "r3", "r4"]
    assert run_plan(plan, calibration()).completions == result.completions


@pytest.mark.parametrize("replicas", [3, 5])
def test_fast_paxos_replicas_complete_every_op_linearizably_and_deterministically(
    replicas: int,
) -> None:
    """Fast Paxos in the model: the first replica wins a ballot at no simulated cost,
    then every op completes, the memory history is linearizable, the run repeats."""
    plan = raft_plan(consensus={"protocol": "fast-paxos", "replicas": replicas, "tick_ms": 1000.0})
    result = run_plan(plan, calibration())
    summary = summarize(plan, result)
    assert len({(c.op_id, c.node) for c in result.completions}) == plan.expected_total
    assert summary.reliability.lost_acked == 0 and summary.integrity.linearizable is True
    assert len(result.replicas) == replicas
    assert all(counts["commits"] > 0 for counts in result.replicas.values())
    assert run_plan(plan, calibration()).completions == result.completions


@pytest.mark.parametrize(
    ("protocol", "replicas", "delays"),
    [("raft", 3, 2), ("fast-paxos", 3, 2), ("pbft", 4, 3)],
)
def test_replicas_on_other_sites_pay_each_protocols_message_delays(
    protocol: str, replicas: int, delays: int
) -> None:
    """``model.tree_hop_ms`` with a consensus section lengthens every hop between two
    replicas (not an agent's): a write then waits for the protocol's message delays
    between replicas, each one hop longer. Raft's leader appends and hears back (2);
    Fast Paxos's coordinator proposes to the acceptors, which vote back to it (2);
    PBFT's primary pre-prepares, then the backups prepare and commit (3)."""
    wan = 0.05
    plan = raft_plan(consensus={"protocol": protocol, "replicas": replicas, "tick_ms": 1000.0})
    agent = plan.agents[0].agent_id
    ops = (Operation(1, 1.0, OpKind.MEMORY, agent, "ns/k", 64, 1, MemVerb.PUT),)
    one = replace(plan, operations=ops)
    near = [c.at for c in run_plan(one, calibration()).completions if c.op_id == 1]
    far = [c.at for c in run_plan(one, calibration(), tree_hop=wan).completions if c.op_id == 1]
    assert far[0] - near[0] == pytest.approx(delays * wan, abs=S)
