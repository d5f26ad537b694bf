"""A swarm the harness starts: a tcp coordinator, agent processes beside it, and a console.

``Swarm.start`` creates a folder ``<reports>/swarms/<id>/``, starts the coordinator
as a child process (``real.tcp.children.ServerProcess``: loopback, a free port, the
memory store persisted to ``coordinator.sqlite`` in that folder, a fresh random
token) and registers the swarm's console agent (``harness.swarm.console``).

Agents. Each agent is a process of its own, ``swarmtwin agents --name NAME`` (the
real agent core, ``real.tcp.workers``: it registers with its capabilities and
subscriptions, heartbeats, acks, and runs the tasks it is given with the
built-in handler, which echoes the payload), started in a session of its own with
its output in ``agent-<name>.log``, and the swarm's token in its environment
(``SWARMTWIN_TOKEN``), not on its command line. One process per agent, so that:

- ``kill`` is SIGKILL: its link closes and the coordinator reassigns its tasks;
- ``pause`` is SIGSTOP: the agent is starved, stops heartbeating, and the
  coordinator's failure detector decides about it as it would about any agent;
- ``resume`` is SIGCONT.

``Swarm.attach`` does the same on a coordinator started elsewhere on this machine
(loopback only): its agents join that coordinator, and ``destroy`` leaves it
running.

``spawn`` returns once the coordinator's own status lists every new agent (or
raises ``SwarmError`` naming those it does not, with the end of their logs).

``destroy`` stops every agent (SIGTERM, then SIGKILL after ``STOP_GRACE``; a
paused one is continued first so that it can exit), closes the console, asks
the coordinator to stop (it answers with its report) and reaps every child; it
then checks that no process it started is left.

Bounds: at most ``MAX_AGENTS`` agents per swarm, names of ``NAME`` form.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.swarm.console import Console, Coordinator
from protocol.settings import TOKEN_ENV, ProtocolSettings, is_loopback
from real.tcp.children import ChildProcesses, ServerProcess

MAX_AGENTS = 64
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
REGISTER_TIMEOUT = 20.0
STOP_GRACE = 3.0
POLL = 0.1


class SwarmError(Exception):
    """What the swarm could not do, in a sentence."""


@dataclass
class AgentProcess:
    """One agent and the process it runs in."""

    name: str
    capabilities: tuple[str, ...]
    subscriptions: tuple[str, ...]
    process: asyncio.subprocess.Process
    log: Path
    started: float = field(default_factory=time.time)
    state: str = "starting"  # starting, running, paused, killed, exited

    @property
    def pid(self) -> int:
        return self.process.pid

    def describe(self) -> dict[str, Any]:
        exited = self.process.returncode
        state = self.state
        if exited is not None and state not in ("killed",):
            state = "exited"
        return {
            "name": self.name,
            "pid": self.pid,
            "state": state,
            "capabilities": list(self.capabilities),
            "subscriptions": list(self.subscriptions),
            "exit_code": exited,
        }


class Swarm:
    """A live coordinator with agents the harness started, and a console agent on it."""

    def __init__(
        self,
        swarm_id: str,
        folder: Path,
        coordinator: Coordinator,
        console_name: str,
        children: ChildProcesses | None = None,
        server: ServerProcess | None = None,
    ) -> None:
        self.swarm_id = swarm_id
        self.folder = folder
        self.settings = replace(ProtocolSettings(), token=coordinator.token)
        self.children = children if children is not None else ChildProcesses()
        self.server = server  # None: attached to a coordinator started elsewhere
        self.agents: dict[str, AgentProcess] = {}
        self.coordinator = coordinator
        self.console = Console(coordinator, console_name)
        self.destroyed = False

    @staticmethod
    def _folder(reports: Path) -> tuple[str, Path]:
        swarm_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        folder = reports / "swarms" / swarm_id
        folder.mkdir(parents=True, exist_ok=True)
        return swarm_id, folder

    @classmethod
    async def start(cls, reports: Path, console_name: str) -> Swarm:
        """A coordinator on a free loopback port, with its memory in SQLite under
        ``<reports>/swarms/<id>``; no agents yet."""
        swarm_id, folder = cls._folder(reports)
        settings = replace(ProtocolSettings(), token=secrets.token_urlsafe(24))
        children = ChildProcesses()
        try:
            server = await ServerProcess.start(
                children, settings, str(folder / "coordinator.sqlite")
            )
        except Exception as exc:
            children.reap()
            raise SwarmError(f"the coordinator did not start: {exc}") from exc
        where = Coordinator("127.0.0.1", server.port, settings.token)
        swarm = cls(swarm_id, folder, where, console_name, children, server)
        try:
            await swarm.console.status()  # registered, and the coordinator answers
        except BaseException:
            await swarm.destroy()
            raise
        return swarm

    @classmethod
    async def attach(cls, reports: Path, coordinator: Coordinator, console_name: str) -> Swarm:
        """A swarm on a coordinator started elsewhere, on this machine (loopback only):
        agents this swarm spawns join it; destroying the swarm stops them and leaves
        the coordinator running. Its folder under ``<reports>/swarms`` holds the agents'
        logs."""
        if not is_loopback(coordinator.host):
            raise SwarmError(
                f"attach: {coordinator.host} is not a loopback address; the harness "
                "attaches to coordinators on this machine only"
            )
        swarm_id, folder = cls._folder(reports)
        swarm = cls(swarm_id, folder, coordinator, console_name)
        try:
            await swarm.console.status()
        except BaseException:
            await swarm.console.close()
            raise
        return swarm

    def describe(self) -> dict[str, Any]:
        server = self.server
        child = server.child if server is not None else None
        return {
            "swarm_id": self.swarm_id,
            "coordinator": f"{self.coordinator.host}:{self.coordinator.port}",
            "attached": server is None,
            "coordinator_pid": None if child is None else child.process.pid,
            "coordinator_alive": None if server is None else server.alive,
            "folder": str(self.folder),
            "database": None if server is None else str(self.folder / "coordinator.sqlite"),
            "agents": [agent.describe() for agent in self.agents.values()],
        }

    # --- agents -----------------------------------------------------------------------

    async def spawn(
        self,
        names: list[str],
        capabilities: tuple[str, ...] = (),
        subscriptions: tuple[str, ...] = (),
    ) -> list[AgentProcess]:
        """Start one process per name; return once the coordinator lists every one."""
        self._check_live()
        for name in names:
            if not NAME.match(name):
                raise SwarmError(f"agent name {name!r}: expected letters, digits, '.', '_', '-'")
            if name in self.agents or name == self.console.name:
                raise SwarmError(f"agent name {name!r} is taken")
        if len(set(names)) != len(names):
            raise SwarmError("agent names repeat")
        if len(self.agents) + len(names) > MAX_AGENTS:
            raise SwarmError(
                f"a swarm holds at most {MAX_AGENTS} agents ({len(self.agents)} already)"
            )
        started = [await self._start_agent(n, capabilities, subscriptions) for n in names]
        missing = await self._wait_listed([a.name for a in started])
        if missing:
            tails = "; ".join(f"{n}: {self._tail(self.agents[n].log)}" for n in missing)
            raise SwarmError(
                f"not registered within {REGISTER_TIMEOUT:.0f} s: {', '.join(missing)} ({tails})"
            )
        for agent in started:
            agent.state = "running"
        return started

    async def _start_agent(
        self, name: str, capabilities: tuple[str, ...], subscriptions: tuple[str, ...]
    ) -> AgentProcess:
        log = self.folder / f"agent-{name}.log"
        args = [
            "-m",
            "harness.cli",
            "agents",
            "--host",
            self.coordinator.host,
            "--port",
            str(self.coordinator.port),
            "--name",
            name,
        ]
        for capability in capabilities:
            args += ["--capability", capability]
        for pattern in subscriptions:
            args += ["--subscribe", pattern]
        with open(log, "wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, TOKEN_ENV: self.settings.token},
            )
        agent = AgentProcess(name, capabilities, subscriptions, process, log)
        self.agents[name] = agent
        return agent

    async def _wait_listed(self, names: list[str]) -> list[str]:
        """Wait until the coordinator's status lists every one of ``names`` as linked;
        those it does not list by the deadline."""
        deadline = time.monotonic() + REGISTER_TIMEOUT
        while True:
            status = await self.console.status()
            missing = [n for n in names if not self.listed(status, n)]
            exited = [n for n in missing if self.agents[n].process.returncode is not None]
            if not missing or exited or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(POLL)

    @staticmethod
    def listed(status: dict[str, Any], name: str) -> bool:
        """The coordinator's status lists agent ``name`` with a live link."""
        component = status.get(f"agent:{name}")
        return component is not None and bool(component.get("metrics", {}).get("linked"))

    def agent(self, name: str) -> AgentProcess:
        found = self.agents.get(name)
        if found is None:
            known = ", ".join(self.agents) or "none yet"
            raise SwarmError(f"no agent {name!r} in swarm {self.swarm_id} (agents: {known})")
        return found

    def kill(self, name: str) -> AgentProcess:
        """SIGKILL the agent's process: a crash, as the coordinator sees it."""
        agent = self.agent(name)
        self._signal(agent, signal.SIGKILL)
        agent.state = "killed"
        return agent

    def pause(self, name: str) -> AgentProcess:
        """SIGSTOP the agent's process: alive, but it neither reads nor heartbeats."""
        return self._move(name, "running", signal.SIGSTOP, "paused")

    def resume(self, name: str) -> AgentProcess:
        """SIGCONT a paused agent's process."""
        return self._move(name, "paused", signal.SIGCONT, "running")

    def _move(self, name: str, was: str, sig: signal.Signals, now: str) -> AgentProcess:
        agent = self.agent(name)
        if agent.state != was:
            raise SwarmError(f"agent {name!r} is {agent.state}, not {was}")
        self._signal(agent, sig)
        agent.state = now
        return agent

    def _signal(self, agent: AgentProcess, sig: signal.Signals) -> None:
        if agent.process.returncode is not None:
            raise SwarmError(f"agent {agent.name!r} has exited ({agent.process.returncode})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(agent.pid, sig)

    def _check_live(self) -> None:
        if self.destroyed:
            raise SwarmError(f"swarm {self.swarm_id} was destroyed")

    @staticmethod
    def _tail(log: Path, lines: int = 3) -> str:
        try:
            text = log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-lines:]) or "empty log"

    # --- the end ------------------------------------------------------------------------

    async def destroy(self) -> dict[str, Any]:
        """Stop every agent and the coordinator; what was stopped and how."""
        if self.destroyed:
            return {"swarm_id": self.swarm_id, "already": True}
        self.destroyed = True
        for agent in self.agents.values():
            if agent.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.pid, signal.SIGCONT)  # a stopped process cannot exit
                    os.kill(agent.pid, signal.SIGTERM)
        forced = []
        for agent in self.agents.values():
            try:
                await asyncio.wait_for(agent.process.wait(), STOP_GRACE)
            except TimeoutError:
                forced.append(agent.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(agent.pid, signal.SIGKILL)
                await agent.process.wait()
        await self.console.close()
        report = None
        if self.server is not None:  # one it started; an attached one keeps running
            _, report = await self.server.stop()
        self.children.reap()
        left = [a.name for a in self.agents.values() if _alive(a.pid)]
        return {
            "swarm_id": self.swarm_id,
            "agents_stopped": len(self.agents),
            "agents_forced": forced,
            "coordinator_report": None
            if report is None
            else {
                "connections": report.connections,
                "messages_received": report.stats.get("received", 0),
            },
            "processes_left": left,
            "notes": list(self.children.notes),
        }


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
