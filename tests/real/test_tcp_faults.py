"""Process faults on the real tcp transport: killed and paused workers, a crashed coordinator.

Each test compiles a small scenario with a fault timeline, replays it on real
coordinator and worker processes (``real.tcp.run.run_plan``) and checks what the
faults may cost (duplicates, unaccepted work) against what they must not
(a handler running twice, an accepted op or an acknowledged write lost). No
test asserts an absolute time: times are compared with the run's own events.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import psutil
import pytest

from harness.metrics.linearizable import check, from_calls
from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.plan import FaultKind, Plan
from protocol.records import DriverResult, NodeEvent
from real.tcp.persistence import MemoryDB
from real.tcp.recordlog import LogRecords, RecordLog, lives_of, read_logs, recall_sets
from real.tcp.run import run_plan

PROTOCOL = {
    "heartbeat_interval": 0.1,
    "failure_after": 0.3,
    "ack_timeout": 0.05,
    "request_timeout": 0.2,
    "max_rto": 0.5,
    "reconnect_min": 0.01,
    "reconnect_max": 0.1,
}
SCENARIO = {
    "name": "tcp-faults",
    "duration": 2.5,
    "warmup": 0.5,
    "transport": "tcp",
    "backends": ["real"],
    "agents": {"count": 8, "workers": 2, "capabilities": [{"name": "compute", "share": 0.5}]},
    "protocol": PROTOCOL,
    "topics": {"count": 4, "fanout": 3},
    "workload": [
        {"kind": "publish", "arrival": {"process": "constant", "rate": 200}},
        {"kind": "direct", "arrival": {"process": "constant", "rate": 50}},
        {"kind": "task", "capability": "compute", "arrival": {"process": "constant", "rate": 50}},
    ],
}
MEMORY = {
    "kind": "memory",
    "arrival": {"process": "constant", "rate": 100},
    "mix": {"get": 0.3, "put": 0.7, "cas": 0.0, "delete": 0.0},
    "namespaces": 2,
    "keys": 20,
}


def compile_with(faults: list[dict[str, object]], **changes: object) -> Plan:
    return compile_plan(parse_scenario({**SCENARIO, **changes, "faults": faults}))


def living_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


def handled_twice(result: DriverResult) -> list[tuple[int, str]]:
    pairs = Counter((c.op_id, c.node) for c in result.completions if not c.duplicate)
    return [pair for pair, count in pairs.items() if count > 1]


def lost_accepted(plan: Plan, result: DriverResult) -> list[int]:
    """Accepted ops with fewer unique completions than expected."""
    got = Counter(op_id for op_id, _ in {(c.op_id, c.node) for c in result.completions})
    accepted = set(result.accepted)
    return [
        op.op_id for op in plan.operations if op.op_id in accepted and got[op.op_id] < op.expected
    ]


def event_times(result: DriverResult, kind: str, node: str) -> list[float]:
    return [e.at for e in result.events if e.kind == kind and e.node == node]


# --- the record log, without processes ------------------------------------------------------


def test_record_log_round_trip_drops_a_torn_tail_and_feeds_recall(tmp_path: Path) -> None:
    from protocol.agent import Agent
    from protocol.records import Completion, WriteAck
    from protocol.settings import ProtocolSettings

    agents = {n: Agent(n, "coord", ProtocolSettings()) for n in ("a", "b")}
    log = RecordLog(str(tmp_path / "worker-0.0.log"), ["a", "b"])
    agents["a"].completions += [
        Completion(5, "a", 1.5, False, True),
        Completion(5, "a", 1.6, True, True),
    ]
    agents["b"].completions.append(Completion(9, "b", 2.0, False, False))
    agents["b"].accepted.append(9)
    agents["b"].write_acks.append(WriteAck(11, "ns", "k", 3, 1234, 2.5))
    log.record(agents)
    log.record(agents)  # nothing new: no block
    log.close()
    with open(tmp_path / "worker-0.0.log", "ab") as file:
        file.write(b"\x07\x00\x00")  # a torn header of a second block
    records = read_logs(lives_of(str(tmp_path), 0))
    assert records.torn == 1 and log.writes == 1
    assert records.completions == [(5, 0, 1.5, 2), (5, 0, 1.6, 3), (9, 1, 2.0, 0)]
    assert records.accepted == [(9, 1)] and records.write_acks == [(11, 1, 3, 1234, 2.5)]
    assert records.unique() == 2
    recalled = recall_sets(records, ("a", "b"), {5: "x"}, {9})
    assert recalled == {"a": ([("x", 5)], []), "b": ([], [9])}
    assert isinstance(LogRecords(), LogRecords)


# --- real processes ----------------------------------------------------------------------


@pytest.mark.slow
def test_killed_worker_is_respawned_and_handles_nothing_twice() -> None:
    plan = compile_with(
        [{"kind": "kill_agent", "at": 1.0, "restart_after": 0.4, "agents": ["agent-00001"]}]
    )
    (fault,) = plan.faults
    assert fault.kind == FaultKind.KILL_AGENT and len(fault.agents) == 4  # the whole worker
    result = run_plan(plan, workers=2, connections=2)

    assert not handled_twice(result), "a handler ran twice across the kill"
    assert result.accepted and not lost_accepted(plan, result)
    assert all(c.intact for c in result.completions)
    for node in fault.agents:
        (injected,) = event_times(result, "injected", node)
        healed = event_times(result, "healed", node)
        assert len(healed) == 1 and injected < healed[0], (result.events, result.notes)
        assert event_times(result, "failed", node), f"the coordinator never saw {node} fail"
    restarts = [n for n in result.notes if "restarted in" in n]
    assert restarts and restarts[0].startswith("worker-1 restarted in"), result.notes
    # ops of the dead worker scheduled after the kill and before the restart were never issued
    killed = min(event_times(result, "injected", fault.agents[0]))
    down = {
        op.op_id
        for op in plan.operations
        if op.origin in fault.agents and killed < op.at < fault.end
    }
    assert down
    assert not down & set(result.accepted)
    assert not living_children(), "child processes left behind"


@pytest.mark.slow
def test_paused_worker_resumes_and_loses_nothing_accepted() -> None:
    plan = compile_with(
        [{"kind": "pause_agent", "at": 0.8, "duration": 0.5, "agents": ["agent-00000"]}]
    )
    (fault,) = plan.faults
    result = run_plan(plan, workers=2, connections=2)

    assert not handled_twice(result)
    assert result.accepted and not lost_accepted(plan, result)
    for node in fault.agents:
        assert len(event_times(result, "injected", node)) == 1
        assert len(event_times(result, "healed", node)) == 1
    # the run waited for the paused worker: its agents completed work after the pause
    late = [c for c in result.completions if c.node in fault.agents and c.at > fault.end]
    assert late
    assert [p.name for p in result.processes] == ["coordinator", "worker-0", "worker-1", "harness"]
    assert not living_children()


@pytest.mark.slow
def test_coordinator_crash_restarts_from_sqlite_and_loses_nothing_accepted(tmp_path: Path) -> None:
    crash = {"kind": "crash_coordinator", "at": 1.0, "restart_after": 0.3}
    protocol = {**PROTOCOL, "durable_bus": True}
    plan = compile_with([crash], protocol=protocol, workload=[*SCENARIO["workload"], MEMORY])  # type: ignore[list-item]
    (fault,) = plan.faults
    db_path = tmp_path / "coordinator.db"
    result = run_plan(plan, workers=2, connections=2, db_path=str(db_path))

    assert not handled_twice(result)
    (injected,) = event_times(result, "injected", "coordinator")
    (healed,) = event_times(result, "healed", "coordinator")
    assert fault.at <= injected < healed
    # Accepted before the crash means journaled with its recipients: never lost. An op the
    # new coordinator routes before every subscriber said hello again reaches only those
    # already back (subscriptions are not in the journal), so ops scheduled between the
    # crash and the last re-registration are left out of this check.
    back = [e.at for e in result.events if e.kind == "registered" and e.at > injected]
    everyone_back = max(back, default=healed + 0.5)
    lost = set(lost_accepted(plan, result))
    before = {op.op_id for op in plan.operations if op.at < injected - 0.2}
    after = {op.op_id for op in plan.operations if op.at > everyone_back}
    assert result.accepted and before & set(result.accepted) and after & set(result.accepted)
    assert not lost & (before | after), f"accepted ops lost: {sorted(lost & (before | after))}"

    # the restart snapshot holds every write acknowledged before the crash
    (snapshot,) = result.restarts
    assert injected < snapshot.at < healed
    acked = [ack for ack in result.write_acks if ack.at < injected]
    assert acked, "no write was acknowledged before the crash"
    for ack in acked:
        version, crc = snapshot.entries[(ack.namespace, ack.key)]
        assert version > ack.version or (version == ack.version and crc == ack.checksum), ack
    with MemoryDB(db_path) as db:  # and the final database too
        rows = {(w.namespace, w.key): w.version for w in db.load()}
    assert all(rows[(a.namespace, a.key)] >= a.version for a in result.write_acks)
    # and what every client saw of the memory is linearizable across the crash
    verdict = check(from_calls(result.mem_history or []))
    assert result.mem_history and verdict.linearizable is True, verdict.describe()

    # probes: unanswered while it was down, answered again after the restart
    # ("healed" is stamped when the supervisor hears the new server listen, a
    # moment after it does: a probe sent in that moment may be answered)
    during = [p for p in result.probes if injected + 0.02 < p.sent < healed - 0.05]
    after = [p for p in result.probes if p.sent > healed + 0.3]
    assert during and all(p.answered is None for p in during)
    assert after and sum(p.answered is not None for p in after) >= 0.8 * len(after)
    assert after[-1].answered is not None
    # the core's events of both coordinator lives reached the result
    core = [e for e in result.events if e.kind not in ("injected", "healed")]
    assert any(e.at < injected for e in core) and any(e.at > healed for e in core), core
    assert result.events == sorted(result.events)
    assert all(isinstance(e, NodeEvent) for e in result.events)
    assert any(n.startswith("coordinator restarted in") for n in result.notes)
    assert not living_children()


@pytest.mark.slow
def test_link_faults_go_through_the_proxies_and_lose_nothing_accepted() -> None:
    plan = compile_with(
        [
            {"kind": "partition", "at": 0.8, "duration": 0.4, "agents": ["agent-00001"]},
            {"kind": "link_loss", "at": 1.4, "duration": 0.4, "loss": 0.05},
        ]
    )
    result = run_plan(plan, workers=2, connections=2)

    assert not handled_twice(result)
    assert result.accepted and not lost_accepted(plan, result)
    proxied = [n for n in result.notes if n.startswith("link fault proxies:")]
    assert proxied and "dropped_partition" in proxied[0], result.notes
    for node in plan.faults[0].agents:
        assert len(event_times(result, "injected", node)) == 2  # the partition and the loss
        assert len(event_times(result, "healed", node)) == 2
    assert not living_children()


@pytest.mark.slow
def test_a_hung_worker_lowers_monitoring_coverage_on_real_and_model() -> None:
    """Coverage counted whatever the coordinator listed, so it was 100 % by
    construction; a worker SIGSTOPped over the status snapshot now leaves its
    agents unreported, and the model predicts the same coverage."""
    from harness.metrics.figures import summarize
    from sim import run_plan as run_model
    from sim.calibration import load_calibration

    plan = compile_with(
        [{"kind": "pause_agent", "at": 1.5, "duration": 1.0, "agents": ["agent-00000"]}]
    )
    (fault,) = plan.faults
    assert plan.status_at is not None and fault.at < plan.status_at < fault.end
    hung = {f"agent:{node}" for node in fault.agents}
    calibration, _ = load_calibration(transport="tcp")
    for name, result in (
        ("real", run_plan(plan, workers=2, connections=2)),
        ("model", run_model(plan, calibration)),
    ):
        figures = summarize(plan, result).monitoring
        assert set(figures.missing) == hung, (name, figures.problems)
        assert figures.expected == 6 + len(plan.agents)
        assert figures.coverage == pytest.approx(100 * (figures.expected - len(hung)) / 14), name
    assert not living_children()
