"""The swarm tools act on real processes: the coordinator's own status, read by a
separate agent on its own link, shows what each tool did."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.portal.measure import free_port
from harness.swarm.inproc import InprocSwarm
from harness.swarm.processes import ProcessSwarm
from protocol.messages import MemVerb
from tests.mcp.conftest import ok, refused, session, watching

pytestmark = pytest.mark.slow


def linked(status: dict, name: str) -> bool:
    return bool(status.get(f"agent:{name}", {}).get("metrics", {}).get("linked"))


def test_init_spawn_list_and_destroy_leave_no_process(tmp_path: Path) -> None:
    async def body() -> None:
        async with session(tmp_path) as (client, state):
            started = ok(await client.call_tool("swarm_init", {"agents": 2}))
            swarm = state.swarm
            assert isinstance(swarm, ProcessSwarm)
            async with watching(swarm) as watcher:
                status = await watcher.status()
                assert linked(status, "agent-1") and linked(status, "agent-2")
                assert linked(status, "mcp-client")
                spawned = ok(
                    await client.call_tool(
                        "agent_spawn", {"names": ["gpu-1"], "capabilities": ["gpu"]}
                    )
                )["spawned"]
                assert spawned[0]["coordinator"]["metrics"]["linked"] == 1
                assert linked(await watcher.status(), "gpu-1")  # the coordinator's own view
                listed = ok(await client.call_tool("agent_list", {}))
                assert {a["name"] for a in listed} == {"agent-1", "agent-2", "gpu-1"}
                shown = ok(await client.call_tool("swarm_status", {}))
                assert shown["health"]["coordinator"] == "ok"
                assert "agent:gpu-1" in shown["status"]
            pids = [a["pid"] for a in listed] + [started["coordinator_pid"]]
            assert all(psutil.pid_exists(pid) for pid in pids)
            gone = ok(await client.call_tool("swarm_destroy", {}))
            assert gone["processes_left"] == [] and gone["coordinator_report"] is not None
            for pid in pids:
                assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
            assert "no swarm" in refused(await client.call_tool("swarm_status", {}))
            assert (tmp_path / "swarms" / started["swarm_id"] / "coordinator.sqlite").is_file()

    asyncio.run(body())


def test_an_inproc_swarm_runs_in_this_process_and_leaves_nothing(tmp_path: Path) -> None:
    """200 agents as state machines on the server's loop: the coordinator lists every
    one, no process is started, and destroy stops every timer."""

    async def body() -> None:
        me = psutil.Process()
        before = {child.pid for child in me.children(recursive=True)}
        async with session(tmp_path) as (client, state):
            started = ok(
                await client.call_tool("swarm_init", {"agents": 200, "transport": "inproc"})
            )
            assert started["transport"] == "inproc" and started["coordinator"] == "in-process"
            assert started["coordinator_pid"] is None and started["database"] is None
            assert started["folder"] is None and not (tmp_path / "swarms").exists()
            assert len(started["agents"]) == 200
            assert all(a["pid"] is None and a["state"] == "running" for a in started["agents"])
            swarm = state.swarm
            assert isinstance(swarm, InprocSwarm)
            async with watching(swarm) as watcher:
                status = await watcher.status()
                assert all(linked(status, f"agent-{i}") for i in range(1, 201))
                assert linked(status, "mcp-client")
                assert "no agent 'agent-201'" in refused(
                    await client.call_tool("agent_kill", {"name": "agent-201"})
                )
                ok(await client.call_tool("agent_kill", {"name": "agent-7"}))
                gone = await watcher.status()
                assert not linked(gone, "agent-7") and linked(gone, "agent-8")
                assert "was killed" in refused(
                    await client.call_tool("agent_pause", {"name": "agent-7"})
                )
            assert {child.pid for child in me.children(recursive=True)} == before
            hub = swarm.hub
            result = ok(await client.call_tool("swarm_destroy", {}))
            assert result["agents_stopped"] == 200 and result["processes_left"] == []
            assert result["coordinator_report"]["messages_received"] > 200  # a hello each
            assert hub.boxes == {}
            routed = hub.messages
            await asyncio.sleep(0.6)  # past a heartbeat interval: nothing runs any more
            assert hub.messages == routed

    asyncio.run(body())


@pytest.mark.parametrize("transport", ["tcp", "inproc"])
def test_a_killed_agents_tasks_are_reassigned(tmp_path: Path, transport: str) -> None:
    """Tasks held by a stopped agent go to another when it is killed: the results come
    from the other, and the coordinator counts the reassignments."""

    async def body() -> None:
        async with session(tmp_path) as (client, state):
            ok(await client.call_tool("swarm_init", {"agents": 0, "transport": transport}))
            ok(await client.call_tool("agent_spawn", {"names": ["slow"], "capabilities": ["work"]}))
            ok(await client.call_tool("agent_pause", {"name": "slow"}))
            ops = []
            for i in range(3):
                answer = ok(
                    await client.call_tool(
                        "task_submit", {"capability": "work", "payload": f"t{i}"}
                    )
                )
                assert answer["accepted"]
                ops.append(answer["op_id"])
            assert state.swarm is not None
            async with watching(state.swarm) as watcher:
                held = (await watcher.status())["agent:slow"]["metrics"]["tasks"]
                assert held == 3  # all with the stopped agent
                ok(
                    await client.call_tool(
                        "agent_spawn", {"names": ["spare"], "capabilities": ["work"]}
                    )
                )
                ok(await client.call_tool("agent_kill", {"name": "slow"}))
                for _ in range(100):
                    results = ok(await client.call_tool("task_results", {"op_ids": ops}))
                    if all(r["state"] == "done" for r in results):
                        break
                    await asyncio.sleep(0.1)
                assert [r["worker"] for r in results] == ["spare"] * 3
                assert [r["payload"] for r in results] == ["t0", "t1", "t2"]
                tasks = (await watcher.status())["tasks"]["metrics"]
                assert tasks["reassigned"] == 3 and tasks["unfinished"] == 0
            one = ok(await client.call_tool("task_status", {"op_id": ops[0]}))
            assert one == {"op_id": ops[0], "state": "done", "worker": "spare"}

    asyncio.run(body())


@pytest.mark.parametrize("transport", ["tcp", "inproc"])
def test_a_paused_agent_is_suspected_and_comes_back_when_resumed(
    tmp_path: Path, transport: str
) -> None:
    async def body() -> None:
        async with session(tmp_path) as (client, state):
            ok(await client.call_tool("swarm_init", {"agents": 1, "transport": transport}))
            assert state.swarm is not None
            async with watching(state.swarm) as watcher:
                ok(await client.call_tool("agent_pause", {"name": "agent-1"}))
                health = "ok"
                for _ in range(50):  # failure_after is 1.5 s
                    health = (await watcher.status())["agent:agent-1"]["health"]
                    if health != "ok":
                        break
                    await asyncio.sleep(0.1)
                assert health in ("degraded", "failed")
                refusal = refused(await client.call_tool("agent_pause", {"name": "agent-1"}))
                assert "paused, not running" in refusal
                ok(await client.call_tool("agent_resume", {"name": "agent-1"}))
                for _ in range(50):
                    health = (await watcher.status())["agent:agent-1"]["health"]
                    if health == "ok":
                        break
                    await asyncio.sleep(0.1)
                assert health == "ok"

    asyncio.run(body())


def test_bad_requests_get_a_sentence_and_change_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with session(tmp_path) as (client, _):
            for tool, args in [
                ("swarm_status", {}),
                ("agent_kill", {"name": "agent-1"}),
                ("publish", {"topic": "t", "payload": "x"}),
                ("memory_get", {"namespace": "n", "key": "k"}),
            ]:
                assert "no swarm: start one with swarm_init" in refused(
                    await client.call_tool(tool, args)
                ), tool
            assert "expected 0 to 64 for transport tcp" in refused(
                await client.call_tool("swarm_init", {"agents": 1000})
            )
            assert "expected 0 to 1000 for transport inproc" in refused(
                await client.call_tool("swarm_init", {"agents": 1001, "transport": "inproc"})
            )
            assert "transport" in refused(
                await client.call_tool("swarm_init", {"agents": 1, "transport": "udp"})
            )
            ok(await client.call_tool("swarm_init", {"agents": 1}))
            assert "is live: swarm_destroy it first" in refused(
                await client.call_tool("swarm_init", {"agents": 1})
            )
            assert "no agent 'ghost'" in refused(
                await client.call_tool("agent_kill", {"name": "ghost"})
            )
            assert "is taken" in refused(
                await client.call_tool("agent_spawn", {"names": ["agent-1"]})
            )
            assert "expected letters" in refused(
                await client.call_tool("agent_spawn", {"names": ["../x"]})
            )
            big = "x" * (300 * 1024)
            assert "at most 262,144" in refused(
                await client.call_tool("publish", {"topic": "t", "payload": big})
            )
            text = refused(await client.call_tool("memory_get", {"namespace": "n"}))
            assert "key" in text and "Traceback" not in text
            assert len(ok(await client.call_tool("agent_list", {}))) == 1

    asyncio.run(body())


def test_attached_to_a_coordinator_started_elsewhere_it_leaves_it_running(
    tmp_path: Path,
) -> None:
    """`swarmtwin coordinator` by hand, then swarm_attach: agents join it, memory goes
    into it, and swarm_destroy stops the agents but not the coordinator."""
    port = free_port()
    command = [sys.executable, "-m", "harness.cli", "--reports", str(tmp_path / "hand")]
    coordinator = subprocess.Popen(
        [*command, "coordinator", "--port", str(port), "--token", "hand-token"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def body() -> None:
        for _ in range(100):  # until it listens
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        async with session(tmp_path) as (client, state):
            assert "not a loopback address" in refused(
                await client.call_tool("swarm_attach", {"address": "10.1.2.3:7411", "token": "x"})
            )
            assert "expected HOST:PORT" in refused(
                await client.call_tool("swarm_attach", {"address": "nowhere", "token": "x"})
            )
            attached = ok(
                await client.call_tool(
                    "swarm_attach", {"address": f"127.0.0.1:{port}", "token": "hand-token"}
                )
            )
            assert attached["attached"] and attached["coordinator_pid"] is None
            spawned = ok(await client.call_tool("agent_spawn", {"names": ["visitor"]}))
            pid = spawned["spawned"][0]["pid"]
            ok(await client.call_tool("memory_put", {"namespace": "n", "key": "k", "value": "v"}))
            async with watching(state.swarm) as watcher:
                status = await watcher.status()
                assert status["agent:visitor"]["metrics"]["linked"] == 1
                assert (await watcher.memory(MemVerb.GET, "n", "k")).value == b"v"
            gone = ok(await client.call_tool("swarm_destroy", {}))
            assert gone["processes_left"] == [] and gone["coordinator_report"] is None
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert coordinator.poll() is None  # still serving

    try:
        asyncio.run(body())
    finally:
        coordinator.terminate()
        coordinator.wait(10)
