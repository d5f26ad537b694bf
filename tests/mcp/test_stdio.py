"""``swarmtwin mcp`` as a desktop client runs it: a subprocess spoken to over stdio."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil
import pytest
from mcp import Client, StdioServerParameters

from tests.mcp.conftest import ok

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie":
            return True
        time.sleep(0.1)
    return False


def test_the_stdio_server_lists_its_tools_runs_the_smoke_scenario_and_cleans_up(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "harness.cli", "--reports", str(tmp_path), "mcp"]
    server = StdioServerParameters(command=command[0], args=command[1:], cwd=str(REPO))

    async def body() -> tuple[dict, dict, list[str]]:
        async with Client(server) as client:
            tools = [tool.name for tool in (await client.list_tools()).tools]
            run = ok(
                await client.call_tool(
                    "run_scenario", {"scenario": "smoke", "backend": "sim", "duration": 1.0}
                )
            )
            swarm = ok(await client.call_tool("swarm_init", {"agents": 1}))
            # the client goes without swarm_destroy: the server cleans up as it exits
        return run, swarm, tools

    run, swarm, tools = asyncio.run(body())
    assert len(tools) == 35 and {"swarm_init", "run_scenario", "memory_cas"} <= set(tools)
    assert run["state"] == "done" and (Path(run["result"]["run_dir"]) / "summary.json").is_file()
    assert run["figures"]["sim"]["reliability"] == 1.0
    pids = [swarm["coordinator_pid"], *(a["pid"] for a in swarm["agents"])]
    assert all(gone(pid) for pid in pids)
