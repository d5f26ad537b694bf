"""A live swarm: a coordinator, the agents the harness starts there, and a console
agent of the harness's own that speaks to the coordinator as any agent does.

``console`` is the console agent (the portal's System tab; the MCP server's bus,
task and memory tools). ``swarm`` holds what every swarm does (names, limits,
spawn until the coordinator lists the agents, kill, pause, resume, destroy);
``processes`` runs it on tcp with a coordinator process and one process per
agent, ``inproc`` on this process's event loop with the protocol's state
machines and no process at all. The MCP server's swarm tools drive both.
"""
