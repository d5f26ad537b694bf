"""A swarm the harness runs: a coordinator, agents it starts there, and a console agent.

Two kinds share this module's bookkeeping and rules:

- ``harness.swarm.processes.ProcessSwarm`` (transport ``tcp``): a coordinator child
  process on a loopback port with its memory store in SQLite, and one process per
  agent; kill is SIGKILL, pause SIGSTOP, resume SIGCONT. It can also attach to a
  coordinator started elsewhere on this machine.
- ``harness.swarm.inproc.InprocSwarm`` (transport ``inproc``): the coordinator and
  every agent are the protocol's state machines on this process's event loop
  (``real.inproc``); kill drops an agent's state machine, pause stops its mailbox.

Either way the console (``harness.swarm.console``) is a registered agent of the
harness on that coordinator, and what the swarm reports about its agents comes
from the coordinator's own status, not from its own account.

Rules kept here, once: agent names are of ``NAME`` form and unique (the console's
name included); a swarm holds at most ``max_agents``; ``spawn`` returns once the
coordinator's status lists every new agent with a live link, or raises
``SwarmError`` naming those it does not; kill, pause and resume move an agent
between states (``running`` to ``paused`` and back; any live one to ``killed``)
and refuse the others; a destroyed swarm refuses everything.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from harness.swarm.console import Console, Coordinator
from protocol.settings import ProtocolSettings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REGISTER_TIMEOUT = 20.0
POLL = 0.1


class SwarmError(Exception):
    """What the swarm could not do, in a sentence."""


@dataclass
class SwarmAgent(ABC):
    """One agent the swarm started, and how it is stopped, paused and resumed."""

    name: str
    capabilities: tuple[str, ...]
    subscriptions: tuple[str, ...]
    started: float = field(default_factory=time.time, init=False)
    state: str = field(default="starting", init=False)  # running, paused, killed, exited

    @property
    @abstractmethod
    def exit_code(self) -> int | None:
        """Its process's exit code once it has exited; None while it runs (or has none)."""

    @property
    def pid(self) -> int | None:
        return None

    @abstractmethod
    def kill(self) -> None: ...

    @abstractmethod
    def pause(self) -> None: ...

    @abstractmethod
    def resume(self) -> None: ...

    def failure(self) -> str:
        """Why it may not have registered, for ``SwarmError``."""
        return "no reason known"

    def describe(self) -> dict[str, Any]:
        exited = self.exit_code
        state = self.state
        if exited is not None and state != "killed":
            state = "exited"
        return {
            "name": self.name,
            "pid": self.pid,
            "state": state,
            "capabilities": list(self.capabilities),
            "subscriptions": list(self.subscriptions),
            "exit_code": exited,
        }


class Swarm(ABC):
    """A live coordinator with agents the harness started, and a console agent on it."""

    transport: ClassVar[str]
    max_agents: ClassVar[int]

    def __init__(
        self, swarm_id: str, folder: Path | None, coordinator: Coordinator, console_name: str
    ) -> None:
        self.swarm_id = swarm_id
        self.folder = folder
        self.settings = replace(ProtocolSettings(), token=coordinator.token)
        self.agents: dict[str, SwarmAgent] = {}
        self.coordinator = coordinator
        self.console = Console(coordinator, console_name)
        self.destroyed = False

    @staticmethod
    def new_id() -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"

    @classmethod
    def new_folder(cls, reports: Path) -> tuple[str, Path]:
        """A new swarm id, and its folder ``<reports>/swarms/<id>``."""
        swarm_id = cls.new_id()
        folder = reports / "swarms" / swarm_id
        folder.mkdir(parents=True, exist_ok=True)
        return swarm_id, folder

    def describe(self) -> dict[str, Any]:
        return {
            "swarm_id": self.swarm_id,
            "transport": self.transport,
            "coordinator": self.coordinator.address,
            **self.describe_coordinator(),
            "folder": None if self.folder is None else str(self.folder),
            "agents": [agent.describe() for agent in self.agents.values()],
        }

    @abstractmethod
    def describe_coordinator(self) -> dict[str, Any]:
        """What ``describe`` says about the coordinator beyond its address."""

    # --- agents -----------------------------------------------------------------------

    async def spawn(
        self,
        names: list[str],
        capabilities: tuple[str, ...] = (),
        subscriptions: tuple[str, ...] = (),
    ) -> list[SwarmAgent]:
        """Start one agent per name; return once the coordinator lists every one."""
        self._check_live()
        for name in names:
            if not NAME.match(name):
                raise SwarmError(f"agent name {name!r}: expected letters, digits, '.', '_', '-'")
            if name in self.agents or name == self.console.name:
                raise SwarmError(f"agent name {name!r} is taken")
        if len(set(names)) != len(names):
            raise SwarmError("agent names repeat")
        if len(self.agents) + len(names) > self.max_agents:
            raise SwarmError(
                f"a {self.transport} swarm holds at most {self.max_agents} agents "
                f"({len(self.agents)} already)"
            )
        started = []
        for name in names:
            agent = await self.start_agent(name, capabilities, subscriptions)
            self.agents[name] = agent
            started.append(agent)
        missing = await self._wait_listed([a.name for a in started])
        if missing:
            why = "; ".join(f"{n}: {self.agents[n].failure()}" for n in missing)
            raise SwarmError(
                f"not registered within {REGISTER_TIMEOUT:.0f} s: {', '.join(missing)} ({why})"
            )
        for agent in started:
            agent.state = "running"
        return started

    @abstractmethod
    async def start_agent(
        self, name: str, capabilities: tuple[str, ...], subscriptions: tuple[str, ...]
    ) -> SwarmAgent:
        """Start agent ``name``; it registers on its own."""

    async def _wait_listed(self, names: list[str]) -> list[str]:
        """Wait until the coordinator's status lists every one of ``names`` as linked;
        those it does not list by the deadline."""
        deadline = time.monotonic() + REGISTER_TIMEOUT
        while True:
            status = await self.console.status()
            missing = [n for n in names if not self.listed(status, n)]
            exited = [n for n in missing if self.agents[n].exit_code is not None]
            if not missing or exited or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(POLL)

    @staticmethod
    def listed(status: dict[str, Any], name: str) -> bool:
        """The coordinator's status lists agent ``name`` with a live link."""
        component = status.get(f"agent:{name}")
        return component is not None and bool(component.get("metrics", {}).get("linked"))

    def agent(self, name: str) -> SwarmAgent:
        found = self.agents.get(name)
        if found is None:
            known = ", ".join(self.agents) or "none yet"
            raise SwarmError(f"no agent {name!r} in swarm {self.swarm_id} (agents: {known})")
        return found

    def kill(self, name: str) -> SwarmAgent:
        """Kill the agent: a crash, as the coordinator sees it."""
        agent = self._live(name)
        agent.kill()
        agent.state = "killed"
        return agent

    def pause(self, name: str) -> SwarmAgent:
        """Stop the agent: alive, but it neither reads nor heartbeats."""
        agent = self._live(name, "running")
        agent.pause()
        agent.state = "paused"
        return agent

    def resume(self, name: str) -> SwarmAgent:
        """Let a paused agent run again."""
        agent = self._live(name, "paused")
        agent.resume()
        agent.state = "running"
        return agent

    def _live(self, name: str, state: str | None = None) -> SwarmAgent:
        self._check_live()
        agent = self.agent(name)
        if agent.exit_code is not None:
            raise SwarmError(f"agent {name!r} has exited ({agent.exit_code})")
        if agent.state == "killed":
            raise SwarmError(f"agent {name!r} was killed")
        if state is not None and agent.state != state:
            raise SwarmError(f"agent {name!r} is {agent.state}, not {state}")
        return agent

    def _check_live(self) -> None:
        if self.destroyed:
            raise SwarmError(f"swarm {self.swarm_id} was destroyed")

    # --- the end ------------------------------------------------------------------------

    async def destroy(self) -> dict[str, Any]:
        """Stop every agent, the console and (if the swarm started it) the coordinator;
        what was stopped and how."""
        if self.destroyed:
            return {"swarm_id": self.swarm_id, "already": True}
        self.destroyed = True
        return {"swarm_id": self.swarm_id, "agents_stopped": len(self.agents), **await self.stop()}

    @abstractmethod
    async def stop(self) -> dict[str, Any]:
        """Stop everything this swarm started (``destroy`` calls it once)."""
