"""What-ifs beyond one machine: the scenario's ``model:`` section and the model's support.

Every figure is read off the simulated clock, never the wall clock. The
calibration is ``Calibration.deterministic`` (every service time exactly
``S``, every hop exactly ``H``) unless a test says otherwise, so expected
times can be computed by hand. The shipped ``scenarios/whatif/`` files are
only validated here: a 100,000-agent run takes tens of seconds
(docs/whatif.md has the measurements); a 2,000-agent cut of it runs instead.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

import sim.calibration
from harness.cli import main
from harness.metrics.figures import summarize
from harness.run.runner import run_backend, run_scenario
from harness.scenario.compile import compile_plan
from harness.scenario.schema import (
    ModelSection,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from harness.validate.whatif import markdown_table, whatif_row
from protocol.agent import Agent
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.settings import ProtocolSettings
from sim import Calibration, Distribution, run_plan
from sim.driver import ModelRun

ROOT = Path(__file__).resolve().parents[2]
WHATIF = sorted((ROOT / "scenarios" / "whatif").glob("*.yaml"))
S = 7e-6
H = 3e-5
QUIET = ProtocolSettings(heartbeat_interval=10.0, failure_after=30.0)
PUBLISH = {"kind": "publish", "arrival": {"process": "poisson", "rate": 200}}
DIRECT = {"kind": "direct", "arrival": {"process": "constant", "rate": 200}}


def scenario(**fields: Any) -> Scenario:
    """A small valid scenario for the model only, with ``fields`` replaced."""
    data: dict[str, Any] = {
        "name": "w",
        "duration": 1.0,
        "warmup": 0.2,
        "backends": ["sim"],
        "transport": "tcp",
        "agents": {"count": 10, "workers": 10},  # a CPU per agent: no queueing
        "protocol": {"heartbeat_interval": 10.0, "failure_after": 30.0},
        "workload": [DIRECT],
    }
    data.update(fields)
    return parse_scenario(data, "w.yaml")


@pytest.fixture
def deterministic(monkeypatch: pytest.MonkeyPatch) -> Calibration:
    """Make the runner load a deterministic calibration (no codec cost, no slack)."""
    calibration = Calibration.deterministic(S, H, transport="tcp")
    monkeypatch.setattr(sim.calibration, "load_calibration", lambda **_: (calibration, None))
    return calibration


# --------------------------------------------------------------------------- the schema


@pytest.mark.parametrize("path", WHATIF, ids=lambda p: p.stem)
def test_every_whatif_scenario_validates_for_the_model_only(path: Path) -> None:
    assert path.read_text().startswith("# What if"), "each file says what it asks"
    loaded = load_scenario(path)
    assert loaded.name == path.stem
    assert loaded.backends == ["sim"]
    assert parse_scenario(yaml.safe_load(loaded.resolved_yaml())) == loaded


def test_the_whatifs_of_the_issue_are_shipped() -> None:
    loaded = [load_scenario(path) for path in WHATIF]
    assert any(s.agents.count == 100_000 for s in loaded)
    assert {1.0, 20.0} <= {s.model.hop_ms for s in loaded}
    assert any(s.model.coordinator_hosts == 8 for s in loaded)


def test_without_a_model_section_nothing_changes() -> None:
    plain = scenario()
    assert plain.model == ModelSection()
    assert plain.model.what_ifs() == []
    assert scenario(backends=["real", "sim"], model={"coordinator_hosts": 1}).model.what_ifs() == []


@pytest.mark.parametrize(
    ("model", "field"),
    [({"hop_ms": 20}, "model.hop_ms"), ({"coordinator_hosts": 8}, "model.coordinator_hosts")],
)
def test_a_what_if_is_refused_for_the_real_backend(model: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario(backends=["real", "sim"], model=model)
    assert caught.value.file == "w.yaml"
    assert caught.value.field == field
    assert "real system cannot run" in caught.value.expected


def test_coordinator_hosts_need_the_tcp_layout() -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario(transport="inproc", model={"coordinator_hosts": 2})
    assert caught.value.field == "model.coordinator_hosts"
    assert "transport: tcp" in caught.value.expected


def test_model_fields_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario(model={"hop_ms": 0, "coordinator_host": 2})
    fields = [field for field, _ in caught.value.problems]
    assert fields == ["model.hop_ms", "model.coordinator_host"]
    assert "did you mean 'coordinator_hosts'" in caught.value.problems[1][1]


def test_the_real_backend_is_refused_before_anything_runs(tmp_path: Path) -> None:
    whatif = scenario(model={"hop_ms": 1})
    with pytest.raises(ScenarioError) as caught:
        run_scenario(whatif, ("sim", "real"), reports=tmp_path)
    assert caught.value.field == "model.hop_ms"
    assert not (tmp_path / "runs").exists()
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(whatif.model_dump(mode="json", by_alias=True)))
    assert main(["--reports", str(tmp_path), "run", str(path), "--backend", "real"]) == 2


# --------------------------------------------------------------------------- the hop


def test_a_constant_hop_makes_latency_two_hops_plus_service(deterministic: Calibration) -> None:
    for hop_ms in (1.0, 20.0):
        whatif = scenario(model={"hop_ms": hop_ms})
        plan = compile_plan(whatif)
        result = run_backend(plan, "sim", whatif)
        latency = summarize(plan, result).latency
        # issue S at the origin, a hop, Direct S at the coordinator, a hop, Deliver S
        assert latency.p50_ms == pytest.approx(2 * hop_ms + 3 * S * 1e3, rel=2e-3)
        assert latency.max_ms == pytest.approx(2 * hop_ms + 3 * S * 1e3, rel=2e-3)
        assert f"every hop takes {hop_ms:g} ms (model.hop_ms)" in " ".join(result.notes)


def test_the_calibrated_hop_is_kept_without_hop_ms(deterministic: Calibration) -> None:
    plain = scenario()
    plan = compile_plan(plain)
    result = run_backend(plan, "sim", plain)
    assert summarize(plan, result).latency.p50_ms == pytest.approx((2 * H + 3 * S) * 1e3, rel=5e-3)
    assert not any("what-if" in note for note in result.notes)


# --------------------------------------------------------------------------- coordinator hosts


def burst_plan(n: int) -> Plan:
    """``n`` origins each send one direct message to their own receiver at t = 1."""
    origins = [AgentSpec(f"o{i:03d}") for i in range(n)]
    receivers = [AgentSpec(f"r{i:03d}") for i in range(n)]
    ops = tuple(
        Operation(i + 1, 1.0, OpKind.DIRECT, f"o{i:03d}", f"r{i:03d}", 16, 1) for i in range(n)
    )
    return Plan(2, 2.0, 0.5, tuple(origins + receivers), ops, QUIET, probe_interval=0.0)


def test_each_host_serves_its_own_agents_in_turn() -> None:
    n, hosts = 60, 4
    calibration = Calibration.deterministic(S, H)
    one = max(c.at for c in run_plan(burst_plan(n), calibration).completions)
    four = max(c.at for c in run_plan(burst_plan(n), calibration, coordinator_hosts=4).completions)
    # issue, hop, the Direct's turn at its host, hop, Deliver: n Directs on one host,
    # n / hosts on each of four (origins are dealt round-robin over the hosts)
    assert one == pytest.approx(1.0 + 2 * H + (n + 2) * S, abs=1e-9)
    assert four == pytest.approx(1.0 + 2 * H + (n // hosts + 2) * S, abs=1e-9)


def mesh_plan(ops: int, rate: float, agents: int = 40) -> Plan:
    """``ops`` direct messages at ``rate`` per second from t = 1; op ``i`` goes from
    agent ``i % agents`` to the next agent."""
    ids = [f"a{i:03d}" for i in range(agents)]
    plan_ops = tuple(
        Operation(
            i + 1, 1.0 + i / rate, OpKind.DIRECT, ids[i % agents], ids[(i + 1) % agents], 16, 1
        )
        for i in range(ops)
    )
    specs = tuple(AgentSpec(agent_id) for agent_id in ids)
    unshed = replace(QUIET, shed_after=0.0)  # every op waits: the span measures throughput
    return Plan(2, 2.0, 0.5, specs, plan_ops, unshed, probe_interval=0.0)


def test_hosts_raise_the_saturation_throughput_n_fold() -> None:
    # only a Direct at the coordinator costs anything (50 us): one host carries 20,000/s,
    # four carry 80,000/s; 4,000 offered at 100,000/s saturate both
    free, direct = Distribution.constant(0.0), Distribution.constant(50e-6)
    service = {"coordinator": {"*": free, "Direct": direct}, "agent": {"*": free}}
    calibration = Calibration.deterministic(0.0, H).with_changes(service=service)
    plan = mesh_plan(4000, 100_000)
    spans = {}
    for hosts in (1, 4):
        ends = [c.at for c in run_plan(plan, calibration, coordinator_hosts=hosts).completions]
        assert len(ends) == 4000
        spans[hosts] = max(ends) - 1.0
    assert spans[1] == pytest.approx(4000 * 50e-6 + 2 * H, abs=1e-9)
    assert spans[4] == pytest.approx(1000 * 50e-6 + 2 * H, abs=1e-4)
    assert spans[1] / spans[4] == pytest.approx(4.0, rel=0.01)


def test_only_a_coordinator_of_its_own_can_have_hosts() -> None:
    plan = burst_plan(1)
    engine = ModelRun(plan, Calibration.deterministic(S, H), start=0.0).engine
    agent = Agent("x", "coord", QUIET, (), ())
    with pytest.raises(ValueError, match="several hosts"):
        engine.add_node("x", agent, "agent", hosts=2)


# --------------------------------------------------------------------------- scale


def test_a_finished_model_is_freed_without_the_cyclic_collector() -> None:
    plan = burst_plan(5)
    run = ModelRun(plan, Calibration.deterministic(S, H), start=0.0, registration_only=True)
    run.register()
    run.env.run(until=run.stop)
    # the compiled engine and core take no weak reference: count who else holds them
    engine, agent = run.engine, run.agents[0].core
    enabled = gc.isenabled()
    gc.disable()
    try:
        run.close()
        del run
        assert sys.getrefcount(engine) == 2  # this variable and getrefcount's argument
        assert sys.getrefcount(agent) == 2  # this variable and getrefcount's argument
    finally:
        if enabled:
            gc.enable()


def test_a_cut_of_the_100k_scenario_registers_everyone(tmp_path: Path) -> None:
    path = ROOT / "scenarios/whatif/agents-100k-8-hosts.yaml"
    data = load_scenario(path).model_dump(by_alias=True)
    data.update(duration=0.4, warmup=0.1, workload=[PUBLISH, DIRECT])
    data["agents"]["count"] = 2000
    data["topics"]["count"] = 50
    cut = parse_scenario(data, "cut")
    outcome = run_scenario(cut, ("sim",), reports=tmp_path)
    summary = outcome.summaries["sim"]
    assert summary.agents.registered == 2000
    assert summary.reliability.reliability == 1.0
    row = whatif_row(outcome.run_dir)
    assert row["agents"] == 2000 and row["simulated s"] > 0.4
    assert row["sim msgs / wall s"] > 0 and row["peak RSS MiB"] > 0
    assert markdown_table([row]).count("\n") == 2
