"""Pauses and partitions of Raft replicas in the model (``sim.replicafaults``), by the clock.

A pause stops the leader: its followers hear no heartbeat for an election
timeout and elect one of themselves; the paused leader learns of the new term
only when it resumes, and steps down then. A partition cuts the leader off
from its followers while the agents still reach it: the followers elect a
leader, the old one steps down after an election timeout without a quorum
(check-quorum), and the agents find the new one. In both, nothing
acknowledged is lost and the memory history stays linearizable.
"""

from __future__ import annotations

import pytest

from harness.metrics.figures import summarize
from protocol.plan import Plan
from protocol.records import DriverResult
from sim import run_plan
from tests.sim.test_sim_replicas import C, H, S, calibration, raft_plan

TICK = 0.05
ELECTION = 4  # ticks: an election timeout is 0.2 to 0.4 s
ROUNDS = 6 * (H + S + C)  # a pre-vote and a vote round, the new leader's first commit


def faulted(kind: str, duration: float) -> Plan:
    consensus = {"protocol": "raft", "replicas": 3, "tick_ms": TICK * 1000, "election_ticks": 4}
    fault = {"kind": kind, "at": 1.0, "node": "leader", "duration": duration}
    return raft_plan(faults=[fault], consensus=consensus)


def events(result: DriverResult, kind: str, node: str = "") -> list[float]:
    return [e.at for e in result.events if e.kind == kind and (not node or e.node == node)]


def check_nothing_lost(plan: Plan, result: DriverResult) -> None:
    summary = summarize(plan, result)
    assert summary.reliability.lost_acked == 0 and summary.integrity.acked_writes_lost == 0
    assert summary.integrity.linearizable is True
    # every op completed, or (its agent's window full while it waited) was refused early
    reliability = summary.reliability
    assert reliability.lost == 0 and reliability.unique + reliability.shed == plan.expected_total
    (row,) = summary.faults.faults
    assert row.coordinator_live_s is not None and row.first_write_s is not None


def test_a_paused_leader_is_replaced_and_steps_down_only_when_it_resumes() -> None:
    plan = faulted("pause_replica", 0.8)
    result = run_plan(plan, calibration())
    assert events(result, "injected") == [pytest.approx(1.0)]
    assert events(result, "healed") == [pytest.approx(1.8)]
    new = [e for e in result.events if e.kind == "leader" and e.at > 1.0]
    assert new and new[0].node != "r1"
    # the followers' last heartbeat came at most a tick before; then a timeout, rounds
    assert 1.0 + ELECTION * TICK - TICK <= new[0].at <= 1.0 + 2 * ELECTION * TICK + ROUNDS
    (deposed,) = events(result, "deposed", "r1")
    # it handles what waited in order (0.8 s of agents' requests, S each), and the new
    # leader's messages among them tell it of the new term
    assert 1.8 - 1e-9 <= deposed <= 1.8 + 0.1
    check_nothing_lost(plan, result)
    again = run_plan(plan, calibration())
    assert again.completions == result.completions and again.events == result.events


def test_a_partitioned_leader_steps_down_and_the_majority_elects_another() -> None:
    plan = faulted("partition_replica", 1.0)
    result = run_plan(plan, calibration())
    new = [e for e in result.events if e.kind == "leader" and e.at > 1.0]
    assert new and new[0].node != "r1"
    assert new[0].at <= 1.0 + 2 * ELECTION * TICK + ROUNDS
    (deposed,) = events(result, "deposed", "r1")
    # check-quorum: within two election timeouts of the cut, well before the heal
    assert 1.0 < deposed <= 1.0 + 2 * ELECTION * TICK + TICK
    assert any("lost to a partition" in note for note in result.notes)
    check_nothing_lost(plan, result)
    assert result.replicas["r1"]["commits"] > 0
    again = run_plan(plan, calibration())
    assert again.completions == result.completions and again.events == result.events
