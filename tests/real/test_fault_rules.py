"""The fault rules (``protocol.faults``), and the in-process driver and the model
following them on random fault timelines.

The pure tests step ``Target`` through the cases the drivers used to decide
each on their own: nested pauses, kills during restarts, combined link
faults, an op's fate. The differential tests run one plan through the real
inproc driver and through the model, and check both against the rules:

- an op whose origin was dead when it was due is never issued (lost in both);
- an op whose origin or recipient was paused, partitioned or dead when it
  was due completes only once the last such fault on it has ended;
- an op that no fault touched completes, in both.

Ops due within ``MARGIN`` of a step on their origin or recipient are left
out: there the real driver's timing (a fault applied a fraction of a
millisecond late) may fairly fall on either side.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.faults import Effect, Fate, Target, between, combine, timeline
from protocol.plan import Fault, FaultKind, Plan
from protocol.records import DriverResult
from real.inproc.run import run_plan as run_inproc
from sim import run_plan as run_model
from sim.calibration import load_calibration

# --- the rules ----------------------------------------------------------------------------


def fault(fault_id: int, kind: FaultKind, at: float, duration: float, **extra: Any) -> Fault:
    return Fault(fault_id, at, kind, duration, ("a",), **extra)


def test_pauses_nest_and_only_the_last_heal_resumes() -> None:
    """The inproc driver kept one flag per agent, so the first heal of two
    overlapping pauses resumed the agent (issue 12's bug)."""
    target = Target("a")
    first, second = (
        fault(1, FaultKind.PAUSE_AGENT, 0.5, 1.0),
        fault(2, FaultKind.PAUSE_AGENT, 1.0, 1.0),
    )
    assert target.inject(first, 0.5) == Effect.PAUSE
    assert target.inject(second, 1.0) == Effect.NONE
    assert target.heal(first, 1.5) == Effect.NONE
    assert target.paused and target.fate(1.6) == Fate.HOLD
    assert target.heal(second, 2.0) == Effect.RESUME
    assert target.fate(2.1) == Fate.ISSUE


def test_a_kill_ends_pauses_and_a_pause_of_the_dead_does_nothing() -> None:
    target = Target("a")
    pause, kill = (
        fault(1, FaultKind.PAUSE_AGENT, 0.5, 2.0),
        fault(2, FaultKind.KILL_AGENT, 1.0, 0.5),
    )
    late_pause = fault(3, FaultKind.PAUSE_AGENT, 1.2, 1.0)
    assert target.inject(pause, 0.5) == Effect.PAUSE
    assert target.inject(kill, 1.0) == Effect.KILL
    assert not target.paused and target.fate(1.1) == Fate.NEVER
    assert target.inject(late_pause, 1.2) == Effect.NONE
    assert target.heal(kill, 1.5) == Effect.RESTART
    assert target.fate(1.6) == Fate.HOLD  # due after the restart began, before it is live
    assert target.live(target.life)
    assert target.fate(1.6) == Fate.ISSUE and target.fate(1.2) == Fate.NEVER
    assert target.heal(late_pause, 2.2) == Effect.NONE  # it never took hold
    assert target.heal(pause, 2.5) == Effect.NONE  # the kill ended it


def test_a_kill_during_a_restart_cancels_it_and_the_stale_restart_is_refused() -> None:
    target = Target("a")
    kill, again = fault(1, FaultKind.KILL_AGENT, 1.0, 0.5), fault(2, FaultKind.KILL_AGENT, 1.6, 0.5)
    target.inject(kill, 1.0)
    assert target.heal(kill, 1.5) == Effect.RESTART
    first_life = target.life
    assert target.inject(again, 1.6) == Effect.CANCEL_RESTART
    assert not target.live(first_life)  # the process started at 1.5 died at 1.6
    assert target.inject(again, 1.7) == Effect.NONE  # dead, nothing under way
    assert target.heal(again, 2.1) == Effect.RESTART
    assert target.live(target.life) and not target.dead
    assert [target.fate(t) for t in (0.9, 1.0, 1.55, 2.0, 2.1)] == [
        Fate.ISSUE,
        Fate.NEVER,
        Fate.NEVER,  # due while the first restart was under way, and it died
        Fate.NEVER,
        Fate.ISSUE,
    ]


def test_link_faults_combine_partition_losses_and_delays() -> None:
    delay = fault(1, FaultKind.LINK_DELAY, 0.0, 1.0, delay=0.01)
    delay2 = fault(2, FaultKind.LINK_DELAY, 0.0, 1.0, delay=0.02)
    loss = fault(3, FaultKind.LINK_LOSS, 0.0, 1.0, loss=0.5)
    loss2 = fault(4, FaultKind.LINK_LOSS, 0.0, 1.0, loss=0.5)
    condition = combine([delay, delay2, loss, loss2])
    assert condition.delay == pytest.approx(0.03) and condition.loss == pytest.approx(0.75)
    draws = iter([0.8, 0.7])
    assert condition.passes(lambda: next(draws)) == pytest.approx(0.03)  # 0.8 >= 0.75: kept
    assert condition.passes(lambda: next(draws)) is None  # 0.7 < 0.75: lost
    partition = combine([delay, fault(5, FaultKind.PARTITION, 0.0, 1.0)])
    assert partition.passes(lambda: pytest.fail("no draw under a partition")) is None
    assert combine([]).clear
    target = Target("a")
    assert target.inject(delay, 0.0) == Effect.LINKS and target.link().delay == 0.01
    assert target.heal(delay, 1.0) == Effect.LINKS and target.link().clear


def test_a_replica_link_is_cut_while_either_end_is_partitioned() -> None:
    r1, r2, r3 = Target("r1"), Target("r2"), Target("r3")
    cut1 = Fault(1, 1.0, FaultKind.PARTITION_REPLICA, 2.0, node="r1")
    cut2 = Fault(2, 2.0, FaultKind.PARTITION_REPLICA, 2.0, node="r2")
    assert between(r1, r2).clear
    assert r1.inject(cut1, 1.0) == Effect.LINKS
    assert between(r1, r2).partitioned and between(r3, r1).partitioned
    assert between(r2, r3).clear
    assert r2.inject(cut2, 2.0) == Effect.LINKS
    assert r1.heal(cut1, 3.0) == Effect.LINKS
    assert between(r1, r2).partitioned and between(r2, r3).partitioned  # r2 still is
    assert between(r1, r3).clear
    pause = Fault(3, 1.0, FaultKind.PAUSE_REPLICA, 1.0, node="r3")
    assert r3.inject(pause, 1.0) == Effect.PAUSE and r3.heal(pause, 2.0) == Effect.RESUME


def test_the_timeline_heals_before_it_injects_at_one_instant() -> None:
    first = fault(1, FaultKind.PAUSE_AGENT, 0.5, 0.5)
    second = fault(2, FaultKind.PAUSE_AGENT, 1.0, 0.5)
    steps = [(s.at, s.inject, s.fault.fault_id) for s in timeline([second, first])]
    assert steps == [(0.5, True, 1), (1.0, False, 1), (1.0, True, 2), (1.5, False, 2)]


# --- the drivers follow the rules ------------------------------------------------------------

AGENTS = 6
MARGIN = 0.05
SCENARIO: dict[str, Any] = {
    "name": "fault-rules",
    "duration": 2.6,
    "warmup": 0.2,
    "agents": {"count": AGENTS},
    "protocol": {"heartbeat_interval": 0.05, "failure_after": 0.15, "ack_timeout": 0.05},
    "workload": [{"kind": "direct", "arrival": {"process": "constant", "rate": 150}}],
}
HOLDING = (FaultKind.PAUSE_AGENT, FaultKind.PARTITION, FaultKind.KILL_AGENT)


def agent(index: int) -> str:
    return f"agent-{index:05d}"


def compile_with(faults: list[dict[str, Any]]) -> Plan:
    return compile_plan(parse_scenario({**SCENARIO, "faults": faults}))


def completions(result: DriverResult) -> dict[int, list[float]]:
    """When each op's handler ran (first run per recipient; duplicates left out)."""
    at: dict[int, list[float]] = defaultdict(list)
    for c in result.completions:
        if not c.duplicate:
            at[c.op_id].append(c.at)
    return at


def expectations(plan: Plan) -> tuple[set[int], dict[int, float], set[int]]:
    """From the rules alone: (ops never issued, ops held until a time, ops untouched),
    leaving out ops due within ``MARGIN`` of a step on their origin or recipient."""
    steps = timeline(plan.faults)
    never: set[int] = set()
    held: dict[int, float] = {}
    untouched: set[int] = set()
    for op in plan.operations:
        nodes = (op.origin, op.target)
        near = [s for s in steps if set(s.fault.agents) & set(nodes) and abs(s.at - op.at) < MARGIN]
        if near or op.at < 0.1:
            continue
        origin = Target(op.origin)
        in_effect = []
        for step in steps:
            if step.at > op.at:
                break
            if op.origin in step.fault.agents:
                effect = (
                    origin.inject(step.fault, step.at)
                    if step.inject
                    else origin.heal(step.fault, step.at)
                )
                if effect == Effect.RESTART:  # the fate of ops due after it does not matter here
                    origin.live(origin.life)
        if origin.fate(op.at) == Fate.NEVER:
            never.add(op.op_id)
            continue
        for f in plan.faults:
            if set(f.agents) & set(nodes) and f.at <= op.at < f.end:
                in_effect.append(f)
        holding = [f.end for f in in_effect if f.kind in HOLDING]
        if holding:
            held[op.op_id] = max(holding)
        elif not in_effect:
            untouched.add(op.op_id)
    return never, held, untouched


def check(plan: Plan, result: DriverResult, name: str) -> set[int]:
    """Check ``result`` against the rules; return the ops with a missing completion."""
    got = completions(result)
    expected = {op.op_id: op.expected for op in plan.operations}
    missing = {op_id for op_id, count in expected.items() if len(got.get(op_id, [])) < count}
    never, held, untouched = expectations(plan)
    assert never <= missing, f"{name}: ops of a dead origin were issued: {sorted(never - missing)}"
    early = {
        op_id: until
        for op_id, until in held.items()
        if min(got.get(op_id, [until])) < until - 0.002
    }
    assert not early, f"{name}: ops completed before the fault holding them ended: {early}"
    assert not untouched & missing, f"{name}: untouched ops missing: {sorted(untouched & missing)}"
    return missing & (never | set(held) | untouched)


def run_both(plan: Plan) -> tuple[set[int], set[int]]:
    calibration, _ = load_calibration(transport="inproc")
    real = run_inproc(plan, use_uvloop=False)
    model = run_model(plan, calibration)
    return check(plan, real, "inproc"), check(plan, model, "model")


def test_two_overlapping_pauses_hold_an_agent_until_the_last_heal_on_both() -> None:
    """Pauses 0.5-1.5 s and 1.0-2.0 s on one agent: its ops due at 1.6-1.9 s used
    to finish in under 1 ms on inproc (the first heal resumed it) and in
    105-390 ms on the model."""
    pauses = [
        {"kind": "pause_agent", "at": 0.5, "duration": 1.0, "agents": [agent(1)]},
        {"kind": "pause_agent", "at": 1.0, "duration": 1.0, "agents": [agent(1)]},
    ]
    plan = compile_with(pauses)
    ops = [op for op in plan.operations if op.origin == agent(1) and 1.6 <= op.at < 1.9]
    assert ops
    calibration, _ = load_calibration(transport="inproc")
    for name, result in (
        ("inproc", run_inproc(plan, use_uvloop=False)),
        ("model", run_model(plan, calibration)),
    ):
        got = completions(result)
        first = min(min(got[op.op_id]) for op in ops)
        assert first >= 2.0 - 0.002, f"{name}: an op held by the second pause finished at {first}"


FAULT_KINDS = ("kill_agent", "pause_agent", "partition", "link_delay", "link_loss")


@st.composite
def fault_timelines(draw: st.DrawFn) -> list[dict[str, Any]]:
    faults = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(FAULT_KINDS))
        at = draw(st.integers(4, 16)) / 10
        spec: dict[str, Any] = {"kind": kind, "at": at, "agents": [agent(draw(st.integers(0, 2)))]}
        length = draw(st.integers(2, 6)) / 10
        if kind == "kill_agent":
            spec["restart_after"] = length
        else:
            spec["duration"] = length
        if kind == "link_delay":
            spec["delay_ms"] = draw(st.sampled_from([5, 20, 80]))
        if kind == "link_loss":
            spec["loss"] = draw(st.sampled_from([0.1, 0.3]))
        faults.append(spec)
    return faults


@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(fault_timelines())
def test_inproc_and_the_model_follow_the_rules_on_random_fault_timelines(
    faults: list[dict[str, Any]],
) -> None:
    plan = compile_with(faults)
    lost_inproc, lost_model = run_both(plan)
    assert lost_inproc == lost_model
