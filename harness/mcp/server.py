"""Build the MCP server and serve it over stdio (``swarmtwin mcp``).

``build_server(state)`` registers every tool module of ``harness.mcp.tools`` and the
resources on one ``MCPServer``; the tools' input schemas come from their type
hints and their descriptions from their docstrings (what each does and costs).
``run_stdio(reports)`` serves it on standard input and output until the client
closes them, then destroys a swarm left running and stops a running job. (The
SDK points file descriptor 1 at standard error while it serves, so nothing a
child process prints can reach the protocol stream.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mcp.server.mcpserver import MCPServer

from harness.mcp import resources
from harness.mcp.state import McpState
from harness.mcp.tools import bus, memory, runs, swarm

INSTRUCTIONS = (
    "swarmtwin: a multi-agent coordination system (a tcp coordinator, agents, a message "
    "bus, tasks, a versioned memory store) and a load-testing harness with a SimPy model "
    "of the same protocol. Start a live swarm with swarm_init, then act in it as the agent "
    "mcp-client (publish, task_submit, memory_put, ...) and look at it with swarm_status; "
    "swarm_destroy when done. Run load scenarios with scenario_list and run_scenario; every "
    "figure they return is measured end to end and filed under the reports folder."
)


def build_server(state: McpState) -> MCPServer:
    server = MCPServer("swarmtwin", instructions=INSTRUCTIONS, version="1")
    for group in (swarm, bus, memory, runs):
        group.register(server, state)
    resources.register(server, state)
    return server


def run_stdio(reports: Path) -> int:
    """Serve over stdio until the client goes; leave no process behind."""

    async def serve() -> None:
        state = McpState(reports)
        try:
            await build_server(state).run_stdio_async()
        finally:
            await state.close()

    asyncio.run(serve())
    return 0
