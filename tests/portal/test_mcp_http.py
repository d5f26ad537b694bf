"""The MCP server inside ``swarmtwin serve``, at /mcp/ over streamable HTTP: it needs the
portal's token, and it shares the portal's one job slot."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from protocol.settings import DEV_TOKEN
from tests.mcp.conftest import ok, refused

pytestmark = pytest.mark.slow


def test_mcp_over_http_needs_the_token_and_shares_the_portals_jobs(
    server: tuple[str, Path],
) -> None:
    url, reports = server
    request = urllib.request.Request(
        f"{url}/mcp/",
        data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refusal:
        urllib.request.urlopen(request, timeout=5)
    assert refusal.value.code == 401

    async def body() -> tuple[list[str], dict, str]:
        headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
        http = httpx2.AsyncClient(headers=headers, timeout=30)
        transport = streamable_http_client(f"{url}/mcp/", http_client=http)
        async with http, Client(transport) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            started = ok(
                await client.call_tool(
                    "run_scenario",
                    {"scenario": "smoke", "backend": "sim", "duration": 30.0, "wait": False},
                )
            )
            # the portal's own API sees the same job, and refuses a second one
            with urllib.request.urlopen(f"{url}/api/jobs", timeout=5) as response:
                jobs = json.loads(response.read())
            busy = refused(
                await client.call_tool("run_scenario", {"scenario": "smoke", "wait": False})
            )
            stopped = ok(await client.call_tool("run_stop", {"job_id": started["job_id"]}))
            return tools, {"started": started, "jobs": jobs, "stopped": stopped}, busy

    tools, seen, busy = asyncio.run(body())
    assert len(tools) == 35
    assert [job["job_id"] for job in seen["jobs"]] == [seen["started"]["job_id"]]
    assert "is still running" in busy
    with urllib.request.urlopen(f"{url}/api/server", timeout=5) as response:
        described = json.loads(response.read())
    assert described["mcp"]["refused"] >= 1
    assert described["running_job"] is None or described["running_job"] == seen["started"]["job_id"]
