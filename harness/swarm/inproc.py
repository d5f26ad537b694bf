"""An in-process swarm: the coordinator and its agents as the protocol's state machines
on this process's event loop, with no process and no socket.

``InprocSwarm.start`` builds a ``real.inproc.faults.FaultHub`` on the running loop
(the in-process transport of ``transport: inproc`` runs, with the mailboxes that can
be paused and emptied) holding one ``protocol.coordinator.Coordinator`` with a fresh
random token, and registers the console through a ``real.inproc.link`` connection:
the console speaks the same frames as over tcp. Each agent is a
``protocol.agent.Agent`` with its capabilities and subscriptions: it says hello,
heartbeats, acks, and runs its tasks with the core's built-in handler (echo), as a
tcp agent process does. What the coordinator does is the same code as in a tcp
coordinator; what differs is the driver:

- ``kill`` drops the agent's state machine (``FaultHub.kill``): messages to it are
  lost and the coordinator is told its link closed, as when a process dies;
- ``pause`` stops its mailbox and timer, as SIGSTOP does: messages queue, no
  heartbeat goes out, and the failure detector decides;
- ``resume`` handles what queued and lets its timer run again.

Nothing is persisted and no folder is made: the memory store lives as long as the
swarm (a tcp swarm keeps it in SQLite). Agents cost a few kilobytes each, so a swarm may hold
``max_agents`` of them; ``stop`` cancels every timer and drops the hub.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.swarm.console import Coordinator
from harness.swarm.swarm import Swarm, SwarmAgent
from protocol.agent import Agent
from protocol.coordinator import Coordinator as CoordinatorCore
from protocol.nodes import COORDINATOR_ID
from protocol.settings import ProtocolSettings
from real.clock import RunClock
from real.inproc.faults import FaultHub, FaultMailbox
from real.inproc.link import dial


@dataclass
class HubAgent(SwarmAgent):
    """One agent's state machine on the swarm's hub."""

    hub: FaultHub = field(kw_only=True, repr=False)

    @property
    def exit_code(self) -> int | None:
        return None

    def _box(self) -> FaultMailbox:
        box = self.hub.boxes[self.name]
        assert isinstance(box, FaultMailbox)
        return box

    def kill(self) -> None:
        self.hub.kill(self.name, self.hub.clock.now())

    def pause(self) -> None:
        self._box().paused = True

    def resume(self) -> None:
        self.hub.resume(self.name, self.hub.clock.now())


class InprocSwarm(Swarm):
    """A coordinator and agents on this process's event loop."""

    transport = "inproc"
    max_agents = 1000

    def __init__(
        self, swarm_id: str, coordinator: Coordinator, console_name: str, hub: FaultHub
    ) -> None:
        super().__init__(swarm_id, None, coordinator, console_name)
        self.hub = hub

    @classmethod
    async def start(cls, reports: Path, console_name: str) -> InprocSwarm:
        """A coordinator on a new hub on the running loop; no agents yet. ``reports`` is
        not used: nothing is written."""
        settings = replace(ProtocolSettings(), token=secrets.token_urlsafe(24))
        hub = FaultHub(asyncio.get_running_loop(), RunClock())
        hub.add(COORDINATOR_ID, CoordinatorCore(COORDINATOR_ID, settings))
        where = Coordinator("in-process", 0, settings.token, dial=lambda: dial(hub))
        swarm = cls(cls.new_id(), where, console_name, hub)
        try:
            await swarm.console.status()
        except BaseException:
            await swarm.destroy()
            raise
        return swarm

    def describe_coordinator(self) -> dict[str, Any]:
        coordinator = self.hub.boxes[COORDINATOR_ID].node
        return {
            "attached": False,
            "coordinator_pid": None,
            "coordinator_alive": isinstance(coordinator, CoordinatorCore) and not self.destroyed,
            "database": None,
        }

    async def start_agent(
        self, name: str, capabilities: tuple[str, ...], subscriptions: tuple[str, ...]
    ) -> HubAgent:
        hub = self.hub
        agent = Agent(name, COORDINATOR_ID, self.settings, capabilities, subscriptions)
        box = hub.add(name, agent)
        agent.start(hub.clock.now())
        box.flush()
        return HubAgent(name, capabilities, subscriptions, hub=hub)

    async def stop(self) -> dict[str, Any]:
        await self.console.close()
        coordinator = self.hub.boxes[COORDINATOR_ID].node
        messages = self.hub.messages
        for box in self.hub.boxes.values():
            box.arm(None)
            box.inbox.clear()
            if isinstance(box, FaultMailbox):
                box.paused = True  # a callback already scheduled finds nothing to run
        self.hub.boxes.clear()
        received = coordinator.stats.received if isinstance(coordinator, CoordinatorCore) else 0
        return {
            "agents_forced": [],
            "coordinator_report": {"messages_routed": messages, "messages_received": received},
            "processes_left": [],
            "notes": [],
        }
