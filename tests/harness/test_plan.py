"""Plan compilation: deterministic, correct counts, correct expected completions."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from harness.scenario.compile import compile_plan, plan_stats
from harness.scenario.schema import Scenario, parse_scenario
from protocol.messages import MemVerb
from protocol.plan import OpKind, Plan
from protocol.topics import matches


def scenario(*streams: dict[str, Any], **fields: Any) -> Scenario:
    data: dict[str, Any] = {
        "name": "t",
        "duration": 10.0,
        "warmup": 1.0,
        "agents": {"count": 20},
        "workload": list(streams) or [stream("publish", "poisson", rate=200)],
    }
    data.update(fields)
    return parse_scenario(data, "t.yaml")


def stream(kind: str, process: str, **arrival: Any) -> dict[str, Any]:
    extra = {"capability": "compute"} if kind == "task" else {}
    return {"kind": kind, "arrival": {"process": process, **arrival}, **extra}


def mixed() -> Scenario:
    return scenario(
        stream("publish", "poisson", rate=300),
        stream("direct", "constant", rate=100),
        stream("broadcast", "ramp", **{"from": 5, "to": 50}),
        stream("task", "steps", steps=[{"at": 0, "rate": 20}, {"at": 5, "rate": 80}]),
        {**stream("memory", "poisson", rate=100), "size": {"min": 16, "max": 64}},
        topics={"count": 6, "fanout": 7, "wildcard_share": 0.5},
    )


def times_of(plan: Plan) -> list[float]:
    return [op.at for op in plan.operations]


def within_sigmas(count: int, mean: float, sigmas: float = 5.0) -> bool:
    return abs(count - mean) <= sigmas * math.sqrt(mean)


# --------------------------------------------------------------------------- determinism


def test_same_scenario_gives_an_equal_plan() -> None:
    assert compile_plan(mixed()) == compile_plan(mixed())


def test_different_seed_gives_a_different_plan() -> None:
    base = mixed()
    assert compile_plan(base) != compile_plan(base.with_overrides(seed=base.seed + 1))


def test_op_ids_are_1_to_n_in_time_order() -> None:
    plan = compile_plan(mixed())
    assert [op.op_id for op in plan.operations] == list(range(1, len(plan.operations) + 1))
    times = times_of(plan)
    assert times == sorted(times)
    assert all(0 <= t < plan.duration for t in times)


def test_plan_carries_settings_and_probes() -> None:
    loaded = scenario(protocol={"credit": 7}, probes={"interval": 0.2, "deadline": 0.01})
    plan = compile_plan(loaded)
    assert plan.settings.credit == 7
    assert (plan.probe_interval, plan.probe_deadline) == (0.2, 0.01)
    assert (plan.seed, plan.duration, plan.warmup) == (42, 10.0, 1.0)


# --------------------------------------------------------------------------- arrivals


def test_constant_arrivals_are_exact() -> None:
    plan = compile_plan(scenario(stream("direct", "constant", rate=50), duration=3.0, warmup=0))
    assert len(plan.operations) == 150
    assert times_of(plan) == pytest.approx([i / 50 for i in range(150)])


def test_poisson_count_is_within_five_sigma() -> None:
    plan = compile_plan(scenario(stream("direct", "poisson", rate=2000)))
    assert within_sigmas(len(plan.operations), 2000 * 10.0)


def test_ramp_rate_increases() -> None:
    plan = compile_plan(scenario(stream("direct", "ramp", **{"from": 0, "to": 1000})))
    first = sum(1 for t in times_of(plan) if t < 5.0)
    second = len(plan.operations) - first
    assert second > first
    assert within_sigmas(first, 1250) and within_sigmas(second, 3750)


def test_falling_ramp() -> None:
    plan = compile_plan(scenario(stream("direct", "ramp", **{"from": 1000, "to": 200})))
    first = sum(1 for t in times_of(plan) if t < 5.0)
    assert within_sigmas(first, 4000) and within_sigmas(len(plan.operations) - first, 2000)


def test_steps_follow_each_rate() -> None:
    steps = [{"at": 0, "rate": 100}, {"at": 4, "rate": 0}, {"at": 6, "rate": 1000}]
    plan = compile_plan(scenario(stream("direct", "steps", steps=steps)))
    times = times_of(plan)
    assert within_sigmas(sum(1 for t in times if t < 4), 400)
    assert not [t for t in times if 4 <= t < 6]
    assert within_sigmas(sum(1 for t in times if t >= 6), 4000)


# --------------------------------------------------------------------------- agents and ops


def test_agents_capabilities_and_subscriptions() -> None:
    loaded = scenario(
        agents={"count": 400, "capabilities": [{"name": "compute", "share": 0.25}]},
        topics={"count": 5, "fanout": 30, "wildcard_share": 0.5},
    )
    agents = compile_plan(loaded).agents
    assert [a.agent_id for a in agents[:2]] == ["agent-00000", "agent-00001"]
    assert agents[0].capabilities == ("compute",)
    capable = sum(1 for a in agents if a.capabilities)
    assert within_sigmas(capable, 100)
    subscriptions = [s for a in agents for s in a.subscriptions]
    assert len(subscriptions) == 5 * 30
    assert within_sigmas(sum(1 for s in subscriptions if s.endswith(".*")), 75)
    assert all(list(a.subscriptions) == sorted(a.subscriptions) for a in agents)


def test_publish_expected_matches_brute_force() -> None:
    plan = compile_plan(mixed())
    publishes = [op for op in plan.operations if op.kind == OpKind.PUBLISH]
    assert publishes
    for op in publishes:
        brute = sum(any(matches(p, op.target) for p in a.subscriptions) for a in plan.agents)
        assert op.expected == brute == 7


def test_op_fields_by_kind() -> None:
    plan = compile_plan(mixed())
    ids = {a.agent_id for a in plan.agents}
    by_kind = Counter(op.kind for op in plan.operations)
    assert set(by_kind) == set(OpKind)
    mem_verbs: Counter[int] = Counter()
    for op in plan.operations:
        assert op.origin in ids
        if op.kind == OpKind.DIRECT:
            assert op.target in ids and op.target != op.origin and op.expected == 1
        elif op.kind == OpKind.BROADCAST:
            assert (op.target, op.expected) == ("", 19)
        elif op.kind == OpKind.TASK:
            assert (op.target, op.expected) == ("compute", 1)
        elif op.kind == OpKind.MEMORY:
            namespace, key = op.target.split("/")
            assert namespace.startswith("ns") and key.startswith("key") and op.expected == 1
            value_verb = op.verb in (MemVerb.PUT, MemVerb.CAS)
            assert (16 <= op.size <= 64) if value_verb else op.size == 0
            mem_verbs[op.verb] += 1
        if op.kind != OpKind.MEMORY:
            assert op.verb == 0
    assert set(mem_verbs) == {int(v) for v in MemVerb}
    assert mem_verbs[MemVerb.GET] > mem_verbs[MemVerb.DELETE]


def test_plan_stats() -> None:
    plan = compile_plan(mixed())
    stats = plan_stats(plan)
    assert stats["operations"] == len(plan.operations)
    assert sum(stats["ops_by_kind"].values()) == len(plan.operations)
    assert stats["expected_completions"] == plan.expected_total
    bus = ("publish", "direct", "broadcast")
    assert stats["expected_deliveries"] == sum(stats["expected_by_kind"][k] for k in bus)
    assert stats["offered_deliveries_per_s"] == stats["expected_deliveries"] / plan.duration


@pytest.mark.slow
def test_500k_operations_compile_in_time_order() -> None:
    """A large plan compiles whole and in order (its speed is make bench's business)."""
    loaded = scenario(stream("direct", "poisson", rate=25_000), duration=20.0)
    plan = compile_plan(loaded)
    assert len(plan.operations) > 490_000
    times = [op.at for op in plan.operations]
    assert times == sorted(times) and len({op.op_id for op in plan.operations}) == len(times)


def test_issue_lag_counts_late_ops_and_says_so() -> None:
    from protocol.workload import IssueLag

    lag = IssueLag()
    lag.issued_at(1.0, 1.005)  # 5 ms: on time
    assert lag.note() is None
    lag.issued_at(2.0, 2.25)
    lag.issued_at(3.0, 3.04)
    assert (lag.issued, lag.late) == (3, 2) and abs(lag.worst - 0.25) < 1e-9
    note = lag.note()
    assert note is not None and "2 of 3 ops" in note and "250.0 ms" in note


def test_owned_keys_have_one_writer_and_the_plan_is_otherwise_the_same() -> None:
    memory = {**stream("memory", "poisson", rate=500), "keys": 30, "namespaces": 2}
    anyone = compile_plan(scenario(memory))
    owned = compile_plan(scenario({**memory, "writers": "owner"}))
    strip = [(op.at, op.target, op.verb, op.size) for op in anyone.operations]
    assert strip == [(op.at, op.target, op.verb, op.size) for op in owned.operations]
    writers: dict[str, set[str]] = {}
    readers: set[str] = set()
    for op in owned.operations:
        if op.verb == MemVerb.GET:
            readers.add(op.origin)
        else:
            writers.setdefault(op.target, set()).add(op.origin)
    assert len(writers) == 60 and all(len(w) == 1 for w in writers.values())
    assert writers["ns1/key3"] == {owned.agents[(1 * 30 + 3) % 20].agent_id}
    assert len(readers) == 20  # anyone reads
    shared = {}
    for op in anyone.operations:
        if op.verb != MemVerb.GET:
            shared.setdefault(op.target, set()).add(op.origin)
    assert max(len(w) for w in shared.values()) > 1  # by default keys have many writers


def test_a_plan_survives_pickling_with_its_kinds_as_enums() -> None:
    """Operations pickle as their field values (``Operation.__reduce__``): what a
    worker process gets is the plan it was given, kinds as ``OpKind`` members."""
    import pickle

    plan = compile_plan(
        scenario(
            stream("publish", "poisson", rate=200),
            stream("memory", "poisson", rate=50),
            stream("task", "poisson", rate=20),
        )
    )
    back = pickle.loads(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == plan
    assert {type(op.kind) for op in back.operations} == {OpKind}
    assert {op.kind for op in back.operations} == {OpKind.PUBLISH, OpKind.MEMORY, OpKind.TASK}
    assert any(op.verb for op in back.operations)
