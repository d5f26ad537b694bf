"""Overload end to end: the real inproc and tcp systems offered several times what
they carry (``scenarios/overload.yaml``'s mix, doubled and cut short).

What admission control promises, checked on the real drivers' records (no
timing is asserted: how much is shed depends on the machine): the run is
overloaded and sheds; a shed op is never delivered; every op that was not
shed is delivered to every recipient it owes, each handler running once;
and the coordinator's status snapshot, taken under load, shows no live
agent declared failed, no task reassigned and no redelivery storm.
"""

from __future__ import annotations

from collections import Counter

import pytest

from harness.scenario.compile import compile_plan
from harness.scenario.schema import load_scenario, parse_scenario
from protocol.plan import Plan
from protocol.records import DriverResult

pytestmark = pytest.mark.slow


def overload_plan(agents: int, duration: float) -> Plan:
    """The overload scenario's mix at twice its rates (about 6x this machine's
    tcp capacity), with fewer agents and a shorter run."""
    data = load_scenario("scenarios/overload.yaml").model_dump(by_alias=True)
    data.update(duration=duration, warmup=duration / 4)
    data["agents"]["count"] = agents
    for load in data["workload"]:
        load["arrival"]["rate"] *= 2
    return compile_plan(parse_scenario(data, "overload-e2e"))


def check_graceful(plan: Plan, result: DriverResult) -> None:
    accepted = set(result.accepted)
    shed = set(result.shed) - accepted  # a retry accepted after all counts as accepted
    assert shed, "offered several times capacity, the system should have shed something"
    handled = Counter((c.op_id, c.node) for c in result.completions if not c.duplicate)
    twice = [key for key, count in handled.items() if count > 1]
    assert not twice, f"handlers ran more than once: {twice[:5]}"
    per_op = Counter(op_id for op_id, _ in handled)
    delivered_shed = sorted(op_id for op_id in shed if per_op[op_id])
    assert not delivered_shed, f"shed ops were delivered: {delivered_shed[:5]}"
    short = [
        (op.op_id, per_op[op.op_id], op.expected)
        for op in plan.operations
        if op.op_id not in shed and per_op[op.op_id] != op.expected
    ]
    assert not short, f"ops not shed but not fully delivered (op, got, owed): {short[:5]}"
    assert result.status is not None, "the status request under load went unanswered"
    status = {name: part["metrics"] for name, part in result.status.items()}
    assert status["failure_detector"]["failures_detected"] == 0
    assert status["tasks"]["reassigned"] == 0
    assert status["failure_detector"]["agents_failed"] == 0
    assert status["coordinator"]["agents_live"] >= len(plan.agents)  # tcp: + the link vouchers
    delivered = status["bus"]["msg_ids"]
    assert status["bus"]["redelivered"] * 100 <= max(delivered, 100)  # no storm: <= 1 %


def test_inproc_under_overload_sheds_early_and_finishes_what_it_accepted() -> None:
    from real.inproc.run import run_plan

    plan = overload_plan(agents=40, duration=3.0)
    check_graceful(plan, run_plan(plan))


def test_tcp_under_overload_sheds_early_and_finishes_what_it_accepted() -> None:
    from real.tcp.run import run_plan

    plan = overload_plan(agents=40, duration=3.0)
    check_graceful(plan, run_plan(plan, workers=2))
