"""Helpers for the MCP tests: a server on a fresh reports folder, talked to through the
SDK's in-memory client, and a wire client of our own to check effects outside MCP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import CallToolResult

from harness.mcp.server import build_server
from harness.mcp.state import McpState
from harness.swarm.swarm import Swarm
from real.tcp.client import Bystander


@contextlib.asynccontextmanager
async def session(reports: Path) -> AsyncIterator[tuple[Client, McpState]]:
    """An MCP client on a new server over ``reports``; the server's swarm and jobs are
    gone when it ends."""
    state = McpState(reports)
    try:
        async with Client(build_server(state)) as client:
            yield client, state
    finally:
        await state.close()


def ok(result: CallToolResult) -> Any:
    """A tool's structured answer (a list answer unwrapped); fails on a tool error."""
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    data = result.structured_content
    assert data is not None
    return data["result"] if set(data) == {"result"} else data


def refused(result: CallToolResult) -> str:
    """The sentence of a tool error; fails if the tool did not refuse."""
    assert result.is_error, result.structured_content
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


@contextlib.asynccontextmanager
async def watching(swarm: Swarm | None, name: str = "observer") -> AsyncIterator[Bystander]:
    """A separate agent on the swarm's coordinator, on its own link (tcp, or a link
    of its own onto the in-process hub): what it sees is the system's state, not the
    MCP server's account of it."""
    assert swarm is not None
    watcher = await swarm.coordinator.connect(name, first_id=time.time_ns() // 1000)
    try:
        yield watcher
    finally:
        await watcher.close()
