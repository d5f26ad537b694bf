"""``swarmtwin mcp``: an MCP server whose every tool acts on real state.

How it fits together. ``server.build_server(state)`` makes one ``MCPServer`` (the
official ``mcp`` SDK) with the tools of ``tools/`` and the resources of
``resources``; ``state.McpState`` is what they act on:

- a live **swarm** (``harness.swarm``) that ``swarm_init`` starts: on tcp a
  coordinator child process and one process per agent, on inproc the protocol's
  state machines in this process; either way the server's own console agent
  ``mcp-client`` (``harness.swarm.console``), through which the bus, task and
  memory tools act as a registered agent;
- the **jobs** (``harness.jobs.manager``): runs, certifications and regression
  checks in subprocesses, one at a time, filed as the CLI files them;
- the **reports** folder, read through ``harness.run.catalog``.

It is served two ways: ``swarmtwin mcp`` over stdio (``server.run_stdio``), and
mounted at ``/mcp`` in ``swarmtwin serve`` over streamable HTTP, where it shares
the portal's jobs (one run at a time across both) and needs the portal's token.

Errors. A tool that cannot do what it was asked raises ``ToolError`` with a
sentence saying what was wrong (``tools.errors.tool_errors`` turns the harness's
own exceptions into one); the client gets ``isError`` and that sentence, never a
traceback. No tool runs a shell command, and every name a tool takes is looked up
in the reports or shipped scenarios (``harness.run.catalog``), never used as a
path.
"""
