"""Locust as the real load (``real.locust``): a master and two worker processes on
loopback replay a small plan against a real tcp coordinator; the run's figures
come from the records the workers sent, and equal their sum."""

from __future__ import annotations

import re
from pathlib import Path

import psutil

from harness.cli.main import main
from harness.metrics.figures import summarize
from harness.scenario.compile import compile_plan
from harness.scenario.schema import load_scenario
from protocol.plan import OpKind
from real.locust.run import Portal, run_plan

SMOKE = Path(__file__).parents[2] / "scenarios" / "smoke.yaml"
PER_WORKER = re.compile(r"completions recorded per Locust worker: (.*)$")


def test_master_and_two_workers_cover_the_plan_and_their_records_add_up(
    tmp_path: Path,
) -> None:
    scenario = load_scenario(SMOKE).with_overrides(transport="tcp", duration=1.5)
    plan = compile_plan(scenario)
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    result = run_plan(plan, processes=2, out_dir=tmp_path)

    assert result.errors == []
    counts = [
        int(n.replace(",", ""))
        for note in result.notes
        if (m := PER_WORKER.search(note))
        for n in m.group(1).split(", ")
    ]
    assert len(counts) == 2 and all(counts)  # both workers ran agents
    assert sum(counts) == len(result.completions)
    assert set(result.registered) == {spec.agent_id for spec in plan.agents}
    summary = summarize(plan, result).to_dict()
    reliability = summary["reliability"]
    assert reliability["unique"] == reliability["expected"] > 0
    assert reliability["lost"] == 0
    assert result.probes  # the driver probed the coordinator from t0
    assert (tmp_path / "locust_stats.csv").exists() and (tmp_path / "locust.html").exists()
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before  # the master, its workers and the coordinator are gone


def test_locust_refuses_a_scenario_with_faults(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    faults = Path(__file__).parents[2] / "scenarios" / "faults" / "coordinator-crash.yaml"
    code = main(["--reports", str(tmp_path), "locust", str(faults)])
    assert code == 2
    err = capsys.readouterr().err
    assert "coordinator-crash.yaml" in err and "faults" in err


def test_users_can_join_through_the_portals_websocket_gateway(tmp_path: Path) -> None:
    """``--via websocket``: every user's link is a WebSocket to the portal, which
    the driver serves attached to the coordinator; nothing is lost on the way."""
    from contextlib import asynccontextmanager

    from harness.portal.serving import portal_gateway

    served: list[str] = []

    @asynccontextmanager
    async def gateway(host: str, port: int, token: str):  # type: ignore[no-untyped-def]
        async with portal_gateway(host, port, token) as url:
            served.append(url)
            yield url

    scenario = load_scenario(SMOKE).with_overrides(transport="tcp", duration=1.5)
    plan = compile_plan(scenario)
    result = run_plan(plan, out_dir=tmp_path, portal=Portal(gateway, agents=True))

    assert result.errors == []
    assert len(served) == 1 and served[0].startswith("ws://127.0.0.1:")
    assert "through the portal's WebSocket gateway" in result.notes[0]
    assert set(result.registered) == {spec.agent_id for spec in plan.agents}
    reliability = summarize(plan, result).reliability
    assert reliability.unique == reliability.expected > 0 and reliability.lost == 0


def test_http_users_send_the_memory_ops_through_the_portals_api(tmp_path: Path) -> None:
    """``--http-users 2``: the plan's memory ops go to ``POST /api/system/memory``
    from two Locust HTTP users (the portal's console agent carries them to the
    coordinator), the other ops from the agents; every expected completion comes,
    and the memory history is linearizable."""
    from harness.portal.serving import portal_gateway
    from harness.swarm.console import CONSOLE

    scenario = load_scenario(SMOKE).with_overrides(transport="tcp", duration=1.5)
    plan = compile_plan(scenario)
    memory = [op for op in plan.operations if op.kind == OpKind.MEMORY]
    assert memory

    result = run_plan(plan, out_dir=tmp_path, portal=Portal(portal_gateway, http_users=2))

    assert result.errors == []
    assert any("from 2 Locust HTTP users" in note for note in result.notes)
    assert result.status is not None  # the console agent registered: it carried them
    assert f"agent:{CONSOLE}" in result.status
    summary = summarize(plan, result)
    assert summary.reliability.unique == summary.reliability.expected > 0
    assert summary.reliability.lost == 0
    assert summary.integrity.linearizable is True
    answered = {c.op_id for c in result.completions}
    assert {op.op_id for op in memory} <= answered
