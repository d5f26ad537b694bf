"""The scenario schema: shipped files load, bad files fail naming file, field and expectation."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.scenario.compile import compile_plan
from harness.scenario.schema import (
    Scenario,
    ScenarioError,
    Target,
    load_scenario,
    parse_scenario,
)
from protocol.settings import ProtocolSettings

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))
PUBLISH = {"kind": "publish", "arrival": {"process": "poisson", "rate": 100}}
LATE = [{"at": 1, "rate": 5}]


def scenario(**fields: Any) -> Scenario:
    """A valid small scenario with ``fields`` replaced."""
    data: dict[str, Any] = {"name": "t", "agents": {"count": 10}, "workload": [PUBLISH]}
    data.update(fields)
    return parse_scenario(data, "t.yaml")


def error_for(tmp_path: Path, text: str) -> ScenarioError:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.file == str(path)
    assert str(caught.value).startswith(f"{path}: {caught.value.field}: ")
    return caught.value


# --------------------------------------------------------------------------- shipped files


def test_the_expected_scenarios_are_shipped() -> None:
    names = {path.stem for path in SCENARIOS}
    assert {"smoke", "default", "publish", "direct", "broadcast", "task", "memory"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_validates_and_compiles(path: Path) -> None:
    assert path.read_text().startswith("#"), "each scenario starts with a comment"
    loaded = load_scenario(path)
    assert loaded.name == path.stem
    short = loaded.with_overrides(duration=min(loaded.duration, 2.0))
    plan = compile_plan(short)
    assert plan.operations
    assert len(plan.agents) == loaded.agents.count


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_resolved_yaml_loads_back_equal(path: Path) -> None:
    loaded = load_scenario(path)
    assert parse_scenario(yaml.safe_load(loaded.resolved_yaml())) == loaded


def test_default_scenario_has_the_specified_shape() -> None:
    loaded = load_scenario(SCENARIOS[0].parent / "default.yaml")
    assert (loaded.agents.count, loaded.duration, loaded.warmup) == (100, 30.0, 5.0)
    assert loaded.transport == "tcp"
    thresholds = {t.threshold: t.critical for t in loaded.targets}
    assert thresholds == {
        "p95_ms <= 10": True,
        "reliability >= 0.999": True,
        "deliveries_per_s >= 50000": False,
    }


# --------------------------------------------------------------------------- defaults and API


def test_defaults_are_filled_in() -> None:
    loaded = scenario()
    assert loaded.seed == 42 and loaded.duration == 30.0 and loaded.warmup == 5.0
    assert loaded.backends == ["real", "sim"] and loaded.transport == "inproc"
    assert loaded.topics.fanout == 5 and loaded.probes.interval == 0.1
    assert loaded.workload[0].size.min == loaded.workload[0].size.max == 256
    assert loaded.protocol_settings() == ProtocolSettings()


def test_short_duration_without_warmup_gets_a_fifth_as_warmup() -> None:
    assert scenario(duration=3).warmup == pytest.approx(0.6)


def test_protocol_section_overrides_settings() -> None:
    loaded = scenario(protocol={"ack_timeout": 0.25, "credit": 64, "token": "s3cret"})
    settings = loaded.protocol_settings()
    assert (settings.ack_timeout, settings.credit, settings.token) == (0.25, 64, "s3cret")
    assert settings.heartbeat_interval == ProtocolSettings().heartbeat_interval


def test_with_overrides() -> None:
    base = scenario(duration=10, warmup=2)
    changed = base.with_overrides(seed=7, duration=20, transport="tcp")
    assert (changed.seed, changed.duration, changed.warmup, changed.transport) == (7, 20, 2, "tcp")
    assert base.with_overrides(duration=1.5).warmup == pytest.approx(0.3)
    assert base.with_overrides() == base
    with pytest.raises(ScenarioError) as caught:
        base.with_overrides(transport="udp")
    assert caught.value.field == "transport"


def test_targets_accept_strings_and_mappings() -> None:
    loaded = scenario(
        targets=["p95_ms<=10", {"threshold": "uptime >= 0.999", "critical": False}, "lost == 0"]
    )
    first, second, third = loaded.targets
    assert (first.metric, first.op, first.value, first.critical) == ("p95_ms", "<=", 10.0, True)
    assert first.threshold == "p95_ms <= 10"
    assert (second.metric, second.critical) == ("uptime", False)
    assert first.passes(9.5) and not first.passes(10.5) and not first.passes(None)
    assert third.passes(0) and not third.passes(1)
    assert isinstance(first, Target)


def test_yaml_exponent_without_dot_is_a_number(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(
        "name: e\nworkload:\n  - {kind: publish, arrival: {process: poisson, rate: 1e3}}\n"
    )
    assert load_scenario(path).workload[0].arrival.rate == 1000.0  # type: ignore[union-attr]


# --------------------------------------------------------------------------- errors


def test_error_message_names_file_field_and_expectation(tmp_path: Path) -> None:
    err = error_for(
        tmp_path,
        "name: bad\nworkload:\n  - kind: publish\n    arrival: {process: poisson, rate: -5}\n",
    )
    assert err.field == "workload[0].arrival.rate"
    assert err.expected == "expected a number > 0, got -5"
    assert str(err) == f"{tmp_path / 'bad.yaml'}: workload[0].arrival.rate: {err.expected}"


BAD_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("wrong type", {"agents": {"count": "ten"}}, "agents.count", "expected an integer"),
    ("bool for int", {"seed": True}, "seed", "expected an integer, got true"),
    (
        "negative rate",
        {"workload": [{"kind": "direct", "arrival": {"process": "constant", "rate": -1}}]},
        "workload[0].arrival.rate",
        "> 0",
    ),
    ("unknown field", {"topics": {"fanuot": 3}}, "topics.fanuot", "did you mean 'fanout'"),
    ("unknown top-level field", {"durration": 3}, "durration", "unknown field"),
    ("unknown metric", {"targets": ["p96_ms < 3"]}, "targets[0].threshold", "unknown metric"),
    ("bad threshold", {"targets": ["p95_ms about 3"]}, "targets[0].threshold", "<metric> <op>"),
    (
        "task without capability",
        {"workload": [{"kind": "task", "arrival": {"process": "poisson", "rate": 5}}]},
        "workload[0].capability",
        "required field is missing",
    ),
    (
        "task with unknown capability",
        {
            "workload": [
                {"kind": "task", "capability": "gpu", "arrival": {"process": "poisson", "rate": 5}}
            ]
        },
        "workload[0].capability",
        "agents.capabilities (compute)",
    ),
    ("warmup >= duration", {"duration": 10, "warmup": 10}, "warmup", "< duration (10)"),
    ("fanout > agents", {"topics": {"fanout": 11}}, "topics.fanout", "at most agents.count (10)"),
    (
        "fault without kind",
        {"faults": [{"at": 3, "kill": "agent-00001"}]},
        "faults[0].kind",
        "one of kill_agent",
    ),
    (
        "unknown fault kind",
        {"faults": [{"kind": "kil_agent", "at": 3}]},
        "faults[0].kind",
        "expected one of kill_agent, pause_agent",
    ),
    (
        "unknown fault agent",
        {"faults": [{"kind": "partition", "at": 3, "duration": 1, "agents": ["agent-00099"]}]},
        "faults[0].agents[0]",
        "agent-00000 to agent-00009",
    ),
    (
        "coordinator crash on real inproc",
        {"faults": [{"kind": "crash_coordinator", "at": 3}]},
        "faults[0].kind",
        "expected transport: tcp",
    ),
    (
        "fault after the run",
        {"faults": [{"kind": "kill_agent", "at": 30}]},
        "faults[0].at",
        "before the end of the run",
    ),
    (
        "until without every",
        {"faults": [{"kind": "kill_agent", "at": 1, "until": 3}]},
        "faults[0].until",
        "every",
    ),
    ("bad transport", {"transport": "udp"}, "transport", "'inproc' or 'tcp'"),
    ("empty workload", {"workload": []}, "workload", "at least 1"),
    (
        "unknown kind",
        {"workload": [{"kind": "gossip", "arrival": {"process": "poisson", "rate": 1}}]},
        "workload[0].kind",
        "expected one of publish",
    ),
    (
        "unknown process",
        {"workload": [{"kind": "publish", "arrival": {"process": "burst", "rate": 1}}]},
        "workload[0].arrival.process",
        "constant, poisson, ramp, steps",
    ),
    (
        "field of another kind",
        {"workload": [{**PUBLISH, "capability": "compute"}]},
        "workload[0].capability",
        "unknown field",
    ),
    ("size too small", {"workload": [{**PUBLISH, "size": 4}]}, "workload[0].size", "8..1048576"),
    (
        "size range reversed",
        {"workload": [{**PUBLISH, "size": {"min": 100, "max": 50}}]},
        "workload[0].size.max",
        ">= min (100)",
    ),
    (
        "steps not starting at 0",
        {"workload": [{"kind": "publish", "arrival": {"process": "steps", "steps": LATE}}]},
        "workload[0].arrival.steps[0].at",
        "expected 0",
    ),
    (
        "direct with one agent",
        {
            "agents": {"count": 1},
            "topics": {"fanout": 1},
            "workload": [{"kind": "direct", "arrival": {"process": "poisson", "rate": 1}}],
        },
        "workload[0].kind",
        "at least 2 agents",
    ),
    ("protocol type", {"protocol": {"credit": 1.5}}, "protocol.credit", "expected an integer"),
    ("protocol unknown", {"protocol": {"tokn": "x"}}, "protocol.tokn", "did you mean 'token'"),
    (
        "duplicate capability",
        {"agents": {"capabilities": [{"name": "a", "share": 1}, {"name": "a", "share": 0.5}]}},
        "agents.capabilities[1].name",
        "duplicate",
    ),
    ("share above 1", {"agents": {"capabilities": [{"name": "a", "share": 2}]}}, "", "<= 1"),
    (
        "tree too small",
        {"agents": {"count": 30}, "topology": {"kind": "hierarchical", "branching": 3}},
        "agents.count",
        "at most branching ** levels = 27 agents",
    ),
    ("tree kind", {"topology": {"kind": "ring"}}, "topology.kind", "'flat' or 'hierarchical'"),
    (
        "a process per node of a real tree",
        {"topology": {"kind": "hierarchical", "processes": 0}, "transport": "tcp"},
        "topology.processes",
        "expected 1 to 64 coordinator processes on the real backend (0, one per coordinator, "
        "is for the model), got 0",
    ),
    (
        "tasks submitted at an inner node",
        {
            "topology": {"kind": "hierarchical"},
            "workload": [
                PUBLISH,
                {
                    "kind": "task",
                    "capability": "compute",
                    "arrival": {"process": "poisson", "rate": 1},
                    "submitted_at": "coord.1",
                },
            ],
        },
        "workload[1].submitted_at",
        "expected a coordinator agents attach to (coord.1.1, coord.1.2, coord.1.3, ...), got",
    ),
    (
        "tasks submitted at a leaf with no agents",
        {
            "agents": {"count": 5},
            "topology": {"kind": "hierarchical", "branching": 3, "levels": 3},
            "workload": [
                {
                    "kind": "task",
                    "capability": "compute",
                    "arrival": {"process": "poisson", "rate": 1},
                    "submitted_at": "coord.3.3",
                },
            ],
        },
        "workload[0].submitted_at",
        "(coord.1.1, coord.1.2, coord.1.3, ...), got 'coord.3.3'",
    ),
    (
        "a fault a tree does not run yet",
        {
            "backends": ["sim"],
            "topology": {"kind": "hierarchical"},
            "faults": [{"kind": "pause_agent", "at": 0.5, "duration": 0.1, "count": 1}],
        },
        "faults[0].kind",
        "expected kind: crash_coordinator (the only fault a tree runs yet), got pause_agent",
    ),
    (
        "a crash of a node the tree does not have",
        {
            "backends": ["sim"],
            "agents": {"count": 9},
            "topology": {"kind": "hierarchical", "branching": 3, "levels": 2},
            "faults": [{"kind": "crash_coordinator", "node": "coord.4", "at": 0.5}],
        },
        "faults[0].node",
        "expected a coordinator of the tree (coord, coord.1, coord.2, coord.3, ...), got 'coord.4'",
    ),
    (
        "a named node in a flat run",
        {
            "backends": ["sim"],
            "faults": [{"kind": "crash_coordinator", "node": "coord.1", "at": 0.5}],
        },
        "faults[0].node",
        "expected 'coord' (the one coordinator of a flat run), got 'coord.1'",
    ),
    (
        "tree hop without a tree",
        {"backends": ["sim"], "model": {"tree_hop_ms": 20}},
        "model.tree_hop_ms",
        "expected a hierarchical topology",
    ),
    (
        "tree task placement",
        {"topology": {"kind": "hierarchical", "tasks": "random"}},
        "topology.tasks",
        "'steal', 'central' or 'local'",
    ),
]


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [case[1:] for case in BAD_CASES],
    ids=[case[0] for case in BAD_CASES],
)
def test_bad_scenario_names_the_field(fields: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario(**fields)
    err = caught.value
    assert err.file == "t.yaml"
    if field:
        assert err.field == field, str(err)
    assert fragment in err.expected, str(err)


def test_a_tree_compiles_to_its_coordinators_and_agents_on_the_leaves() -> None:
    loaded = scenario(
        agents={"count": 20}, topology={"kind": "hierarchical", "branching": 3, "levels": 3}
    )
    plan = compile_plan(loaded)
    assert len(plan.tree) == 3 + 9
    assert plan.tree[0].node_id == "coord.1" and plan.tree[0].parent == "coord"
    assert plan.tree[-1].node_id == "coord.3.3" and plan.tree[-1].parent == "coord.3"
    where = [spec.coordinator for spec in plan.agents]
    assert where[:10] == [f"coord.{i}.{j}" for i in (1, 2, 3) for j in (1, 2, 3)] + ["coord.1.1"]
    assert max(where.count(leaf) for leaf in set(where)) <= 3
    assert compile_plan(scenario(agents={"count": 20})).tree == ()
    assert {spec.coordinator for spec in compile_plan(scenario()).agents} == {"coord"}


def test_several_problems_are_all_listed_with_the_first_as_field() -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario(seed="x", transport="udp", duration=-1)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert caught.value.field == "seed"
    assert [field for field, _ in caught.value.problems] == ["seed", "duration", "transport"]


def test_error_survives_pickling() -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario(seed="x", transport="udp")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.file, copy.field, copy.problems) == ("t.yaml", "seed", caught.value.problems)
    assert str(copy) == str(caught.value)


def test_missing_name_is_reported() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario({"workload": [PUBLISH]}, "x.yaml")
    assert (caught.value.field, caught.value.expected) == ("name", "required field is missing")


def test_bad_yaml_reports_line(tmp_path: Path) -> None:
    err = error_for(tmp_path, "name: x\nagents:\n  count: 3\n   bad: [\n")
    assert err.field == "(yaml)"
    assert err.line is not None and "line" in err.expected


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    err = error_for(tmp_path, "name: x\nseed: 1\nseed: 2\n")
    assert (err.field, err.line) == ("(yaml)", 3)
    assert "duplicate key 'seed'" in err.expected


@pytest.mark.parametrize("text", ["{{TOKEN}}", "? [a, b]\n: 1\n", "name: {{x: 1}: 2}\n"])
def test_a_mapping_or_list_as_a_key_is_an_error_not_a_crash(tmp_path: Path, text: str) -> None:
    """Found by the portal's schemathesis test: a TypeError (a 500) before."""
    err = error_for(tmp_path, text)
    assert err.field == "(yaml)" and "key must be a plain value" in err.expected


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path / "nope.yaml")
    assert (caught.value.field, caught.value.expected) == ("(file)", "file not found")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    err = error_for(tmp_path, "- just\n- a list\n")
    assert err.field == "(file)" and "mapping" in err.expected
