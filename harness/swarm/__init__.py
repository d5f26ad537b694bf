"""A live swarm: a tcp coordinator, the agents the harness starts beside it, and a
console agent of the harness's own that speaks to the coordinator as any agent does.

``console`` is the console agent (the portal's System tab; the MCP server's bus,
task and memory tools); ``swarm`` starts a coordinator and one process per agent,
and kills, pauses and resumes them (the MCP server's swarm tools).
"""
