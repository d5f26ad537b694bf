"""The MCP server's tools, one module per group: ``swarm`` (the coordinator and its
agents), ``bus`` (publish, direct, broadcast, subscriptions, tasks), ``memory`` (the
versioned store) and ``runs`` (scenarios, runs, history, certify, regress). Each
module's ``register(server, state)`` adds its tools; ``errors`` turns the
harness's exceptions into tool errors."""
