"""Fault figures on hand-made driver results: recovery, detection, loss split, integrity."""

from __future__ import annotations

import json

import pytest

from harness.metrics.figures import Summary, summarize
from harness.metrics.recovery import STEP_S, nearest_rank
from protocol.plan import AgentSpec, Fault, FaultKind, Operation, OpKind, Plan
from protocol.records import (
    DELETED,
    Completion,
    DriverResult,
    NodeEvent,
    StoreSnapshot,
    WriteAck,
)

AGENTS = ("a", "b", "c", "d")
RATE = 1000  # ops per second, a to b
LATENCY = 0.002


def make_plan(faults: tuple[Fault, ...] = (), duration: float = 10.0) -> Plan:
    """One direct op a -> b every millisecond, and a memory op from c every 100 ms."""
    count = round(duration * RATE)
    ops = [Operation(i + 1, i / RATE, OpKind.DIRECT, "a", "b", 64, 1) for i in range(count)]
    memory = [
        Operation(count + j + 1, j * 0.1 + 0.0005, OpKind.MEMORY, "c", "ns/k", 64, 1, 1)
        for j in range(round(duration * 10))
    ]
    operations = tuple(sorted(ops + memory, key=lambda op: op.at))
    agents = tuple(AgentSpec(a) for a in AGENTS)
    return Plan(7, duration, 1.0, agents, operations, faults=faults)


def complete_all(plan: Plan, lost: tuple[float, float] | None = None) -> list[Completion]:
    """Every op completes after LATENCY, except those scheduled in ``lost``."""
    records = []
    for op in plan.operations:
        if lost is not None and lost[0] <= op.at < lost[1]:
            continue
        node = "b" if op.kind == OpKind.DIRECT else "c"
        records.append(Completion(op.op_id, node, op.at + LATENCY, False, True))
    return records


def make_result(completions: list[Completion], **fields: object) -> DriverResult:
    result = DriverResult(
        backend="sim",
        transport="inproc",
        completions=completions,
        registered=dict.fromkeys(AGENTS, 0.0),
        end_time=10.0,
    )
    for name, value in fields.items():
        setattr(result, name, value)
    return result


def partition(at: float = 5.0, duration: float = 0.5, fault_id: int = 0) -> Fault:
    return Fault(fault_id, at, FaultKind.PARTITION, duration, ("b",))


def test_a_clean_dip_recovers_when_the_outage_ends() -> None:
    plan = make_plan((partition(),))
    summary = summarize(plan, make_result(complete_all(plan, (5.0, 5.5))))
    (row,) = summary.faults.faults
    assert row.status == "recovered"
    assert row.baseline == "pre-fault"
    assert row.recovery_s == pytest.approx(0.5, abs=STEP_S + 1e-9)
    assert row.baseline_completions_per_s == pytest.approx(RATE + 10, rel=0.02)
    assert row.ops == 505 and row.lost == 505
    assert summary.faults.by_kind["partition"].recovery_p95_s == row.recovery_s
    assert summary.figures()["recovery_p95_s"] == row.recovery_s
    assert summary.faults.notes == []


def test_a_fault_without_effect_recovers_at_once() -> None:
    plan = make_plan((partition(),))
    (row,) = summarize(plan, make_result(complete_all(plan))).faults.faults
    assert row.recovery_s is not None and row.recovery_s <= STEP_S


def test_a_fault_that_never_recovers_has_no_recovery_time() -> None:
    plan = make_plan((partition(),))
    summary = summarize(plan, make_result(complete_all(plan, (5.0, 99.0))))
    (row,) = summary.faults.faults
    assert row.recovery_s is None
    assert row.status == "not recovered by end of run"
    assert summary.faults.overall.unrecovered == 1
    assert summary.figures()["recovery_p95_s"] is None
    assert any("not recovered by end of run" in note for note in summary.faults.notes)


def with_slow_tail(completions: list[Completion]) -> list[Completion]:
    """The completions due in [5.5, 6.0) arrive 50 ms late: p95 up 25x for 0.5 s."""
    return [c._replace(at=c.at + 0.05) if 5.5 <= c.at < 6.0 else c for c in completions]


def test_slow_tail_after_the_outage_delays_recovery() -> None:
    plan = make_plan((partition(),))
    records = with_slow_tail(complete_all(plan, (5.0, 5.5)))
    (row,) = summarize(plan, make_result(records)).faults.faults
    # p95 is back for windows from 6.0; the late completions land in [6.0, 6.05) on top
    # of the on-time ones, and throughput is within +10 % once a window holds < 11 ms of them
    assert row.recovery_s == pytest.approx(1.04, abs=STEP_S + 1e-9)


# --------------------------------------------------------------------------- overlapping faults


def quiet(at: float, duration: float, fault_id: int) -> Fault:
    """A fault with no effect of its own: agent d sends and receives nothing."""
    return Fault(fault_id, at, FaultKind.PAUSE_AGENT, duration, ("d",))


def test_overlapping_faults_recover_as_one_outage_from_the_first_injection() -> None:
    plan = make_plan((partition(5.0, 0.5, 0), partition(5.2, 0.5, 1)))
    summary = summarize(plan, make_result(complete_all(plan, (5.0, 5.7))))
    # back in band when the combined outage ends at 5.7 s: 0.7 s after the first injection
    assert summary.figures()["recovery_p95_s"] == pytest.approx(0.7, abs=STEP_S + 1e-9)
    first, second = summary.faults.faults
    assert (first.group, second.group) == (0, 0)
    assert (first.status, second.status) == ("recovered", "recovered")
    assert first.recovery_s == summary.figures()["recovery_p95_s"]
    assert first.recovery_s is not None
    assert second.recovery_s == pytest.approx(first.recovery_s - 0.2)  # from its own injection
    assert second.baseline == first.baseline == "pre-fault"  # judged against the group's
    assert second.baseline_completions_per_s == first.baseline_completions_per_s
    overall = summary.faults.overall
    assert (overall.count, overall.unrecovered) == (2, 0)
    # one value per group: the median is the group's time, not the second fault's
    assert overall.recovery_p50_s == overall.recovery_max_s == first.recovery_s
    assert summary.faults.by_kind["partition"].recovery_p95_s == first.recovery_s
    assert summary.faults.notes == [
        f"faults 0, 1 overlap: measured as one outage from 5 s, recovered after "
        f"{first.recovery_s:g} s"
    ]
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert [f["group"] for f in data["faults"]["faults"]] == [0, 0]
    assert Summary.from_dict(data, summary.histograms) == summary


def test_a_fault_inside_another_s_recovery_leaves_that_recovery_unchanged() -> None:
    alone = make_plan((partition(),))
    records = with_slow_tail(complete_all(alone, (5.0, 5.5)))
    (expected,) = summarize(alone, make_result(records)).faults.faults
    # injected after the partition healed but before the figures were back, and healed
    # before they were
    plan = make_plan((partition(), quiet(5.7, 0.1, 1)))
    summary = summarize(plan, make_result(records))
    first, inside = summary.faults.faults
    assert (first.group, inside.group) == (0, 0)
    assert first.recovery_s == expected.recovery_s == pytest.approx(1.04, abs=STEP_S + 1e-9)
    assert first.recovery_s is not None
    assert inside.recovery_s == pytest.approx(first.recovery_s - 0.7)
    assert summary.figures()["recovery_p95_s"] == first.recovery_s
    assert summary.faults.by_kind["partition"].recovery_p95_s == first.recovery_s
    assert summary.faults.by_kind["pause_agent"].recovery_p95_s == inside.recovery_s


def test_overlapping_faults_that_never_recover_are_still_not_recovered() -> None:
    plan = make_plan((partition(5.0, 0.5, 0), partition(5.2, 0.5, 1)))
    summary = summarize(plan, make_result(complete_all(plan, (5.0, 99.0))))
    rows = summary.faults.faults
    assert [row.group for row in rows] == [0, 0]
    assert all(row.recovery_s is None for row in rows)
    assert all(row.status == "not recovered by end of run" for row in rows)
    assert summary.faults.overall.unrecovered == 2
    assert summary.figures()["recovery_p95_s"] is None
    assert summary.faults.by_kind["partition"].recovery_p50_s is None
    assert "faults 0, 1 overlap: measured as one outage from 5 s, not recovered by end of run" in (
        summary.faults.notes
    )


def test_a_fault_after_the_recovery_does_not_join_it() -> None:
    # the partition's figures are back at 5.5 s; the hold is cut short by the next
    # injection, as for any fault followed closely by another
    plan = make_plan((partition(), quiet(5.8, 0.1, 1)))
    summary = summarize(plan, make_result(complete_all(plan, (5.0, 5.5))))
    first, second = summary.faults.faults
    assert (first.group, second.group) == (None, None)
    assert first.recovery_s == pytest.approx(0.5, abs=STEP_S + 1e-9)
    assert second.recovery_s is not None and second.recovery_s <= STEP_S
    assert summary.figures()["recovery_p95_s"] == first.recovery_s
    assert summary.faults.notes == [
        "fault 1 (pause_agent at 5.8 s): baseline taken from before the first fault windows"
    ]


def test_faults_injected_together_are_one_group() -> None:
    plan = make_plan((partition(5.0, 0.5, 0), quiet(5.0, 0.5, 1)))
    summary = summarize(plan, make_result(complete_all(plan, (5.0, 5.5))))
    rows = summary.faults.faults
    assert [row.group for row in rows] == [0, 0]
    assert rows[0].recovery_s == rows[1].recovery_s == pytest.approx(0.5, abs=STEP_S + 1e-9)
    assert summary.faults.overall.count == 2
    assert summary.faults.overall.recovery_p95_s == rows[0].recovery_s


def test_a_fault_after_a_recovered_group_has_a_pre_fault_baseline() -> None:
    later = partition(7.0, 0.2, 2)
    plan = make_plan((partition(5.0, 0.5, 0), partition(5.2, 0.5, 1), later))
    lost = [(5.0, 5.7), (7.0, 7.2)]
    records = [
        c for c in complete_all(plan) if not any(lo <= c.at - LATENCY < hi for lo, hi in lost)
    ]
    summary = summarize(plan, make_result(records))
    first, _, third = summary.faults.faults
    assert third.group is None and third.baseline == "pre-fault"  # from 5.7 s, the group's end
    assert third.recovery_s == pytest.approx(0.2, abs=STEP_S + 1e-9)
    overall = summary.faults.overall
    assert overall.recovery_p95_s == first.recovery_s == pytest.approx(0.7, abs=STEP_S + 1e-9)
    assert overall.recovery_p50_s == third.recovery_s  # two groups: 0.2 and 0.7


def test_detection_and_reassignment_times_come_from_events() -> None:
    fault = Fault(0, 5.0, FaultKind.KILL_AGENT, 2.0, ("b",))
    events = [
        NodeEvent(1.0, "failed", "b"),  # before the fault: ignored
        NodeEvent(6.5, "failed", "b"),
        NodeEvent(6.6, "reassigned", "b"),
        NodeEvent(6.9, "reassigned", "b"),
        NodeEvent(6.95, "reassigned", "d"),  # another agent: ignored
    ]
    plan = make_plan((fault,))
    summary = summarize(plan, make_result(complete_all(plan), events=events))
    (row,) = summary.faults.faults
    assert row.detection_s == pytest.approx(1.5)
    assert row.reassigned_s == pytest.approx(1.9)
    assert summary.figures()["detection_p95_s"] == pytest.approx(1.5)


def test_a_short_pause_has_no_detection_and_nothing_reassigned() -> None:
    plan = make_plan((Fault(0, 5.0, FaultKind.PAUSE_AGENT, 0.2, ("b",)),))
    (row,) = summarize(plan, make_result(complete_all(plan))).faults.faults
    assert row.detection_s is None and row.reassigned_s is None


def test_coordinator_crash_reports_live_and_reregistered_times() -> None:
    plan = make_plan((Fault(0, 5.0, FaultKind.CRASH_COORDINATOR, 0.3),))
    events = [NodeEvent(5.3, "healed", "coordinator")]
    events += [NodeEvent(5.35 + i * 0.01, "registered", a) for i, a in enumerate(AGENTS)]
    (row,) = summarize(plan, make_result(complete_all(plan), events=events)).faults.faults
    assert row.detection_s is None
    assert row.coordinator_live_s == pytest.approx(0.3)
    assert row.reregistered_s == pytest.approx(0.38)
    missing = [e for e in events if e.node != "d"]
    (row,) = summarize(plan, make_result(complete_all(plan), events=missing)).faults.faults
    assert row.reregistered_s is None


def test_losses_split_into_acked_unaccepted_and_origin_down() -> None:
    kill = Fault(0, 5.0, FaultKind.KILL_AGENT, 0.5, ("a",))
    plan = make_plan((kill,))
    # lost: a's ops scheduled in [5.0, 5.5) (origin dead: never sent)
    # and in [8.0, 8.1); of the latter, those before 8.05 were accepted
    gone = [(5.0, 5.5), (8.0, 8.1)]
    records = [
        Completion(op.op_id, "b" if op.origin == "a" else "c", op.at + LATENCY, False, True)
        for op in plan.operations
        if op.origin != "a" or not any(lo <= op.at < hi for lo, hi in gone)
    ]
    accepted = [op.op_id for op in plan.operations if 8.0 <= op.at < 8.05]
    summary = summarize(plan, make_result(records, accepted=accepted))
    rel = summary.reliability
    assert rel.lost_origin_down == 500
    assert rel.lost_acked == 50
    assert rel.lost_unaccepted == 50
    assert rel.lost == rel.lost_acked + rel.lost_unaccepted + rel.lost_origin_down
    (row,) = summary.faults.faults
    assert row.origin_down_ops == 500
    assert row.recovery_s is not None and row.recovery_s <= STEP_S  # a's own load left out


def test_a_lost_acked_write_is_caught_and_a_later_overwrite_is_not_flagged() -> None:
    plan = make_plan((Fault(0, 5.0, FaultKind.CRASH_COORDINATOR, 0.3),))
    acks = [
        WriteAck(1, "ns", "kept", 1, 11, 1.0),
        WriteAck(2, "ns", "kept", 2, 22, 2.0),
        WriteAck(3, "ns", "overwritten", 4, 44, 3.0),
        WriteAck(4, "ns", "gone", 1, 55, 4.0),
        WriteAck(5, "ns", "corrupt", 3, 66, 4.5),
        WriteAck(6, "ns", "after", 1, 77, 6.0),  # acked after the restart: not checked
    ]
    entries = {("ns", "kept"): (2, 22), ("ns", "overwritten"): (5, 99), ("ns", "corrupt"): (3, 1)}
    snapshot = StoreSnapshot(5.3, entries)
    result = make_result(complete_all(plan), write_acks=acks, restarts=[snapshot])
    integrity = summarize(plan, result).integrity
    assert integrity.restarts == 1
    assert integrity.acked_writes_checked == 4
    assert integrity.acked_writes_lost == 2
    assert integrity.lost_keys == ["ns/corrupt", "ns/gone"]


def test_acknowledged_deletes_are_not_flagged_as_lost_writes() -> None:
    plan = make_plan((Fault(0, 5.0, FaultKind.CRASH_COORDINATOR, 0.3),))
    acks = [
        WriteAck(1, "ns", "deleted", 3, 11, 1.0),
        WriteAck(2, "ns", "deleted", 3, DELETED, 2.0),  # the key is gone: fine
        WriteAck(3, "ns", "reborn", 4, 22, 1.0),
        WriteAck(4, "ns", "reborn", 4, DELETED, 2.0),
        WriteAck(5, "ns", "reborn", 1, 33, 3.0),  # versions start again after a delete
    ]
    snapshot = StoreSnapshot(5.3, {("ns", "reborn"): (1, 33)})
    result = make_result(complete_all(plan), write_acks=acks, restarts=[snapshot])
    integrity = summarize(plan, result).integrity
    assert (integrity.acked_writes_checked, integrity.acked_writes_lost) == (1, 0)


def test_no_fault_results_have_empty_fault_figures() -> None:
    plan = make_plan()
    summary = summarize(plan, make_result(complete_all(plan)))
    assert summary.faults.faults == [] and summary.faults.by_kind == {}
    assert summary.integrity.acked_writes_checked == 0
    assert summary.integrity.acked_writes_lost == 0
    assert "nothing" in summary.integrity.note or "no " in summary.integrity.note
    figures = summary.figures()
    assert figures["recovery_p95_s"] is None and figures["detection_p95_s"] is None
    assert figures["faults"] == 0 and figures["lost_acked"] == 0
    assert summary.notes == []


def test_fault_section_round_trips_through_json() -> None:
    plan = make_plan((partition(), partition(8.0, 0.2, 1)))
    summary = summarize(plan, make_result(complete_all(plan, (5.0, 5.5))))
    assert [row.group for row in summary.faults.faults] == [None, None]  # apart: no group
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert Summary.from_dict(data, summary.histograms) == summary
    old = {k: v for k, v in data.items() if k not in ("faults", "integrity")}
    assert Summary.from_dict(old).faults.faults == []


def test_nearest_rank_treats_infinity_as_missing() -> None:
    assert nearest_rank([1.0, 2.0, 3.0], 50) == 2.0
    assert nearest_rank([1.0, float("inf")], 95) is None
    assert nearest_rank([], 95) is None


def test_restart_calibration_reads_restart_times_from_healed_events() -> None:
    from harness.calibrate.restart import restart_plan, restart_times

    plan = restart_plan()
    kill, crash = plan.faults
    result = DriverResult("real", "tcp")
    result.events = [
        NodeEvent(kill.at, "injected", kill.agents[0]),
        *(NodeEvent(kill.end + 0.10 + 0.01 * i, "healed", a) for i, a in enumerate(kill.agents)),
        NodeEvent(crash.at, "injected", "coordinator"),
        NodeEvent(crash.end + 0.2, "healed", "coordinator"),
    ]
    agents, coordinator = restart_times(plan, result)
    last_agent = 0.10 + 0.01 * (len(kill.agents) - 1)
    assert agents == [pytest.approx(last_agent)]  # back when its last agent is
    assert coordinator == [pytest.approx(0.2)]
