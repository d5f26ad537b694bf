"""A tcp swarm: a coordinator process, one process per agent, on this machine.

``ProcessSwarm.start`` creates a folder ``<reports>/swarms/<id>/``, starts the
coordinator as a child process (``real.tcp.children.ServerProcess``: loopback, a
free port, the memory store persisted to ``coordinator.sqlite`` in that folder, a
fresh random token) and registers the swarm's console agent
(``harness.swarm.console``). A coordinator that does not answer the console is
stopped, not left running.

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

``ProcessSwarm.attach`` does the same on a coordinator started elsewhere on this
machine (loopback only): its agents join that coordinator, and ``destroy`` leaves
it running.

``stop`` stops every agent (SIGTERM, then SIGKILL after ``STOP_GRACE``; a paused
one is continued first so that it can exit), closes the console, asks the
coordinator to stop (it answers with its report) and reaps every child; it then
checks that no process it started is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.swarm.console import Coordinator
from harness.swarm.swarm import Swarm, SwarmAgent, SwarmError
from protocol.settings import TOKEN_ENV, ProtocolSettings, is_loopback
from real.tcp.children import ChildProcesses, ServerProcess

STOP_GRACE = 3.0


@dataclass
class AgentProcess(SwarmAgent):
    """One agent and the process it runs in."""

    process: asyncio.subprocess.Process = field(kw_only=True)
    log: Path = field(kw_only=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exit_code(self) -> int | None:
        return self.process.returncode

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def failure(self) -> str:
        """The end of its log."""
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(text[-3:]) or "empty log"


class ProcessSwarm(Swarm):
    """A tcp coordinator (started here, or attached to) and agent processes."""

    transport = "tcp"
    max_agents = 64

    def __init__(
        self,
        swarm_id: str,
        folder: Path,
        coordinator: Coordinator,
        console_name: str,
        children: ChildProcesses | None = None,
        server: ServerProcess | None = None,
    ) -> None:
        super().__init__(swarm_id, folder, coordinator, console_name)
        self.folder: Path = folder
        self.children = children if children is not None else ChildProcesses()
        self.server = server  # None: attached to a coordinator started elsewhere

    @classmethod
    async def start(cls, reports: Path, console_name: str) -> ProcessSwarm:
        """A coordinator on a free loopback port, with its memory in SQLite under
        ``<reports>/swarms/<id>``; no agents yet."""
        swarm_id, folder = cls.new_folder(reports)
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
    async def attach(
        cls, reports: Path, coordinator: Coordinator, console_name: str
    ) -> ProcessSwarm:
        """A swarm on a coordinator started elsewhere, on this machine (loopback only):
        agents this swarm spawns join it; destroying the swarm stops them and leaves
        the coordinator running. Its folder under ``<reports>/swarms`` holds the agents'
        logs."""
        if not is_loopback(coordinator.host):
            raise SwarmError(
                f"attach: {coordinator.host} is not a loopback address; the harness "
                "attaches to coordinators on this machine only"
            )
        swarm_id, folder = cls.new_folder(reports)
        swarm = cls(swarm_id, folder, coordinator, console_name)
        try:
            await swarm.console.status()
        except BaseException:
            await swarm.console.close()
            raise
        return swarm

    def describe_coordinator(self) -> dict[str, Any]:
        server = self.server
        child = server.child if server is not None else None
        return {
            "attached": server is None,
            "coordinator_pid": None if child is None else child.process.pid,
            "coordinator_alive": None if server is None else server.alive,
            "database": None if server is None else str(self.folder / "coordinator.sqlite"),
        }

    async def start_agent(
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
        return AgentProcess(name, capabilities, subscriptions, process=process, log=log)

    async def stop(self) -> dict[str, Any]:
        agents = [a for a in self.agents.values() if isinstance(a, AgentProcess)]
        for agent in agents:
            if agent.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.pid, signal.SIGCONT)  # a stopped process cannot exit
                    os.kill(agent.pid, signal.SIGTERM)
        forced = []
        for agent in agents:
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
        return {
            "agents_forced": forced,
            "coordinator_report": None
            if report is None
            else {
                "connections": report.connections,
                "messages_received": report.stats.get("received", 0),
            },
            "processes_left": [a.name for a in agents if _alive(a.pid)],
            "notes": list(self.children.notes),
        }


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
