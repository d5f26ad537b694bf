"""A quorum store in the model (``sim.stores``), read off the simulated clock.

With ``Calibration.deterministic`` (every service exactly ``S``, every hop ``H``,
each process a CPU of its own) and a commit of exactly ``C``, an operation's
path can be counted by hand: a read is one round trip to the storage replicas
(the agent decides at the second of the three answers), a write is a read round
then a write round, and only the write round commits.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.metrics.linearizable import check, from_calls
from harness.metrics.recovery import check_acked_writes
from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.messages import MemVerb
from protocol.plan import Operation, OpKind, Plan
from sim import Calibration, run_plan
from sim.distribution import Distribution

S, H, C = 0.0001, 0.001, 0.0005  # service, hop and commit, seconds


def quorum_plan(rate: float = 200.0, faults: list[dict[str, object]] | None = None) -> Plan:
    data = {
        "name": "quorum",
        "seed": 5,
        "duration": 2.0,
        "warmup": 0.5,
        "transport": "tcp",
        "backends": ["sim"],
        "consensus": {"protocol": "quorum", "replicas": 3},
        "agents": {"count": 6},
        "topics": {"count": 2, "fanout": 3},
        "workload": [
            {"kind": "memory", "arrival": {"process": "poisson", "rate": rate}},
            {"kind": "publish", "arrival": {"process": "poisson", "rate": rate}},
        ],
        "faults": faults or [],
    }
    return compile_plan(parse_scenario(data, "quorum.yaml"))


def calibration(commit: float = C) -> Calibration:
    return Calibration.deterministic(S, H).with_changes(commit=Distribution.constant(commit))


def one_op(plan: Plan, verb: MemVerb, at: float = 1.0) -> float:
    """When an op alone on the key, issued at ``at``, completes (seconds after ``at``)."""
    agent = plan.agents[0].agent_id
    ops = (
        Operation(1, 0.9, OpKind.MEMORY, agent, "ns/k", 64, 1, MemVerb.PUT),
        Operation(2, at, OpKind.MEMORY, agent, "ns/k", 64, 1, verb),
    )
    result = run_plan(replace(plan, operations=ops), calibration())
    (done,) = [c for c in result.completions if c.op_id == 2]
    return done.at - at


def test_a_read_is_one_round_trip_and_a_write_two_with_one_commit() -> None:
    plan = quorum_plan()
    # issue, a replica's read, the first two answers (the agent decides at the second)
    assert one_op(plan, MemVerb.GET) == pytest.approx(4 * S + 2 * H, abs=S / 10)
    # then the write round: a replica's write and its commit, the agent's two acks;
    # the third answer of the read round is served while the writes travel
    assert one_op(plan, MemVerb.PUT) == pytest.approx(7 * S + 4 * H + C, abs=S / 10)


def test_a_quorum_run_answers_every_op_counts_the_replicas_and_checks_acked_writes() -> None:
    plan = quorum_plan()
    first = run_plan(plan, calibration())
    again = run_plan(plan, calibration())
    assert first.completions == again.completions  # the same seed, the same run
    memory = [op for op in plan.operations if op.kind == OpKind.MEMORY]
    history = first.mem_history
    assert history is not None and len(history) == len(memory)
    assert all(call.returned < float("inf") for call in history)
    assert set(first.stores) == {"r1", "r2", "r3"}
    for counts in first.stores.values():  # every op reads all three replicas
        assert counts["reads"] == len(memory) and counts["refused"] == 0
    assert first.final_store is not None
    integrity = check_acked_writes(first)
    assert integrity.acked_writes_checked > 0 and integrity.acked_writes_lost == 0
    assert check(from_calls(history)).linearizable is not None


def test_a_crashed_storage_replica_costs_no_operation_and_restarts_from_its_file() -> None:
    crash = [{"kind": "crash_replica", "at": 1.0, "node": "r2", "restart_after": 0.3}]
    plan = quorum_plan(faults=crash)
    result = run_plan(plan, calibration())
    history = result.mem_history
    assert history is not None and all(call.returned < float("inf") for call in history)
    assert result.stores["r2"]["reads"] < result.stores["r1"]["reads"]
    assert [e.kind for e in result.events if e.node == "r2"] == ["injected", "healed"]
    assert check_acked_writes(result).acked_writes_lost == 0
