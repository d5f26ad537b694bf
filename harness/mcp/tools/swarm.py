"""Swarm tools: start a coordinator with agents, look at it, kill, pause and resume its
agents, and tear it all down (``harness.swarm.swarm``)."""

from __future__ import annotations

from typing import Any, Literal

from mcp.server.mcpserver import MCPServer

from harness.mcp.state import CLIENT, McpState
from harness.mcp.tools.errors import tool_errors
from harness.swarm.console import Coordinator
from harness.swarm.inproc import InprocSwarm
from harness.swarm.processes import ProcessSwarm
from harness.swarm.swarm import SwarmError
from protocol.messages import ListWhat


def register(server: MCPServer, state: McpState) -> None:
    async def swarm_init(
        agents: int = 4,
        capabilities: list[str] | None = None,
        subscriptions: list[str] | None = None,
        transport: Literal["tcp", "inproc"] = "tcp",
    ) -> dict[str, Any]:
        """Start a swarm with `agents` agents named agent-1, agent-2, ... with the given
        capabilities (default ["compute"]) and topic subscriptions, and this server's own
        agent, mcp-client, through which the bus, task and memory tools act. Returns
        once the coordinator's own status lists every agent. One swarm at a time:
        swarm_destroy the last one first.
        transport "tcp" (default): a coordinator process on a free loopback port, its
        memory store persisted to SQLite under <reports>/swarms/<id>/, and one process
        per agent (at most 64); about half a second and 30 MB per agent.
        transport "inproc": the coordinator and the agents are the protocol's state
        machines inside this server's process, with no socket and nothing persisted
        (at most 1,000 agents, a few kilobytes and well under a millisecond each); kill
        drops an agent's state, pause stops its mailbox."""
        kinds: dict[str, type[ProcessSwarm] | type[InprocSwarm]] = {
            "tcp": ProcessSwarm,
            "inproc": InprocSwarm,
        }
        kind = kinds.get(transport)
        if kind is None:
            raise ValueError(f"transport: expected 'tcp' or 'inproc', got {transport!r}")
        if not 0 <= agents <= kind.max_agents:
            raise ValueError(
                f"agents: expected 0 to {kind.max_agents} for transport {transport}, got {agents}"
            )
        async with state.lock:
            if state.swarm is not None:
                raise SwarmError(f"swarm {state.swarm.swarm_id} is live: swarm_destroy it first")
            swarm = await kind.start(state.reports, CLIENT)
            try:
                names = [f"agent-{i + 1}" for i in range(agents)]
                caps = tuple(capabilities if capabilities is not None else ["compute"])
                await swarm.spawn(names, caps, tuple(subscriptions or ()))
            except BaseException:
                await swarm.destroy()
                raise
            state.swarm = swarm
            return swarm.describe()

    async def swarm_attach(address: str, token: str) -> dict[str, Any]:
        """Attach to a coordinator already running on this machine, instead of starting
        one: `address` is HOST:PORT on a loopback address (one started with `swarmtwin
        coordinator --port 7411`, say) and `token` its token. mcp-client registers there,
        agent_spawn adds agent processes to it, and swarm_destroy stops those and leaves
        the coordinator running. One swarm at a time."""
        async with state.lock:
            if state.swarm is not None:
                raise SwarmError(f"swarm {state.swarm.swarm_id} is live: swarm_destroy it first")
            try:
                where = Coordinator.parse(address, token)
            except ValueError as exc:
                raise ValueError(str(exc).replace("--coordinator ", "address ")) from None
            state.swarm = await ProcessSwarm.attach(state.reports, where, CLIENT)
            return state.swarm.describe()

    async def swarm_status() -> dict[str, Any]:
        """The live coordinator's own view: every component's health and metrics
        (coordinator, bus, tasks, memory, failure detector, journal, one agent:<id> per
        agent: state, credit, backlog, tasks, seconds since heard), its subscription
        patterns and memory namespaces with their counts, and the agents this server
        started. Cost: three requests to the coordinator."""
        swarm = state.require_swarm()
        status = await swarm.console.status()
        topics = await swarm.console.listing(ListWhat.TOPICS)
        spaces = await swarm.console.listing(ListWhat.NAMESPACES)
        health = {name: part.get("health") for name, part in status.items()}
        return {
            **swarm.describe(),
            "health": health,
            "status": status,
            "topics": dict(zip(topics.names, topics.counts, strict=False)),
            "namespaces": dict(zip(spaces.names, spaces.counts, strict=False)),
        }

    async def swarm_destroy() -> dict[str, Any]:
        """Stop the swarm: every agent (a process: SIGTERM, SIGKILL after 3 s), this
        server's agent, and the coordinator if this server started it (a process answers
        with its report; an attached one keeps running); then check that none of the
        processes is left. A tcp swarm's SQLite file stays in its folder; an inproc
        swarm's state is gone."""
        async with state.lock:
            swarm = state.require_swarm()
            state.swarm = None
            return await swarm.destroy()

    async def agent_spawn(
        names: list[str] | None = None,
        count: int = 1,
        capabilities: list[str] | None = None,
        subscriptions: list[str] | None = None,
    ) -> dict[str, Any]:
        """Start agents in the live swarm: the given `names`, or `count` new ones named
        agent-N. Returns once the coordinator's own status lists every one with a live
        link, with that status entry. Cost on tcp: one process each, about half a
        second and 30 MB; on inproc, a state machine of a few kilobytes."""
        async with state.lock:
            swarm = state.require_swarm()
            if names is None:
                if not 1 <= count <= swarm.max_agents:
                    raise ValueError(f"count: expected 1 to {swarm.max_agents}, got {count}")
                taken = set(swarm.agents)
                names, n = [], len(swarm.agents)
                while len(names) < count:
                    n += 1
                    if f"agent-{n}" not in taken:
                        names.append(f"agent-{n}")
            caps = tuple(capabilities if capabilities is not None else ["compute"])
            started = await swarm.spawn(names, caps, tuple(subscriptions or ()))
            status = await swarm.console.status()
            return {
                "spawned": [
                    {**agent.describe(), "coordinator": status.get(f"agent:{agent.name}")}
                    for agent in started
                ]
            }

    async def agent_list() -> list[dict[str, Any]]:
        """Every agent this server started, with its state (running, paused, killed,
        exited), its pid on tcp, and the coordinator's own entry for it (null once it
        has forgotten it)."""
        swarm = state.require_swarm()
        status = await swarm.console.status()
        return [
            {**agent.describe(), "coordinator": status.get(f"agent:{agent.name}")}
            for agent in swarm.agents.values()
        ]

    async def agent_kill(name: str) -> dict[str, Any]:
        """Kill the agent, as a crash (tcp: SIGKILL to its process; inproc: its state
        machine is dropped): its link closes, the coordinator reassigns the tasks it
        held and holds deliveries owed to it."""
        return state.require_swarm().kill(name).describe()

    async def agent_pause(name: str) -> dict[str, Any]:
        """Stop the agent (tcp: SIGSTOP; inproc: its mailbox and timer stop): it stays
        alive but neither reads nor heartbeats, so the coordinator's failure detector
        decides about it as about any starved agent."""
        return state.require_swarm().pause(name).describe()

    async def agent_resume(name: str) -> dict[str, Any]:
        """Let a paused agent run again (tcp: SIGCONT): it handles what queued."""
        return state.require_swarm().resume(name).describe()

    for fn in (
        swarm_init,
        swarm_attach,
        swarm_status,
        swarm_destroy,
        agent_spawn,
        agent_list,
        agent_kill,
        agent_pause,
        agent_resume,
    ):
        server.tool()(tool_errors(fn))
