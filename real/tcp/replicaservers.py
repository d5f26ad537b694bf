"""A replicated coordinator on tcp: one process per replica (the run's side).

How it works. Each replica is a ``real.tcp.server.CoordinatorServer`` with a
``real.tcp.replicacore.ReplicaCore`` in a process of its own
(``real.tcp.replica_process``), on a port of its own, keeping its Raft log in its
own SQLite file. ``ReplicaServers.start`` starts them all, learns every port,
then tells every replica where the others listen; they link up and elect a
leader, and ``wait_leader`` returns once one serves. Workers get every
replica's address as a chain (``TreeAddresses``: agents start at the first
replica and fail over round the others); the prober likewise.

Pipe protocol of one replica process:

    child  -> ("port", port)                   it listens
    parent -> ("connect", {node: (host, port)})  every replica's address: start
    parent -> "serving?"                       child -> ("serving", bool)
    parent -> "stop"                           (or the pipe closes)
    child  -> ("done", ProcessUsage, ServerReport)

Each replica appends its node events (``leader``, ``deposed``, and its
coordinator's failures and returns while it leads) to its own event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from protocol.consensus.raft import RaftConfig
from protocol.plan import Replication
from protocol.records import ProcessUsage
from protocol.settings import ProtocolSettings
from real.tcp.children import SERVER_START_TIMEOUT, Child, ChildProcesses
from real.tcp.replica_process import ReplicaProcessSpec
from real.tcp.replicacore import ReplicaPlace
from real.tcp.server import DEFAULT_HOST, ServerReport

LEADER_POLL = 0.02


class ReplicaServers:
    """The replica processes of one tcp run."""

    def __init__(
        self,
        children: ChildProcesses,
        settings: ProtocolSettings,
        replication: Replication,
        use_uvloop: bool,
        log_dir: str,
    ) -> None:
        self.children = children
        self.settings = settings
        self.replication = replication
        self.use_uvloop = use_uvloop
        self.log_dir = log_dir
        self.ids = replication.replicas
        self.addresses: dict[str, tuple[str, int]] = {}
        self.processes: dict[str, Child] = {}
        self.event_logs: list[tuple[str, str]] = []
        self.first_leader = self.ids[0]  # the leader ``wait_leader`` found

    @property
    def chains(self) -> dict[str, tuple[str, ...]]:
        """Where an agent of the first replica goes next: round the others."""
        return {self.ids[0]: self.ids[1:]}

    @property
    def port(self) -> int:
        return self.addresses[self.ids[0]][1]

    def _spec(self, node: str) -> ReplicaProcessSpec:
        replication = self.replication
        config = RaftConfig(election_ticks=replication.election_ticks)
        store = os.path.join(self.log_dir, f"replica-{node}.raft.db")
        place = ReplicaPlace(node, self.ids, store, replication.tick, config)
        events = os.path.join(self.log_dir, f"replica-{node}.events")
        self.event_logs.append((node, events))
        return ReplicaProcessSpec(self.settings, place, self.use_uvloop, events)

    async def start(self) -> None:
        for node in self.ids:
            self.processes[node] = self.children.start(
                f"replica-{node}", "replica", self._spec(node)
            )
        for node, child in self.processes.items():
            reply = await child.channel.get(timeout=SERVER_START_TIMEOUT)
            if not (isinstance(reply, tuple) and reply[0] == "port"):
                raise RuntimeError(f"replica {node} did not start (got {reply!r})")
            self.addresses[node] = (DEFAULT_HOST, reply[1])
        for child in self.processes.values():
            child.channel.send(("connect", self.addresses))

    async def leader(self) -> str | None:
        """The replica that serves now, if one does."""
        found = None
        running = [(n, c) for n, c in self.processes.items() if c.alive]
        for _, child in running:
            child.channel.send("serving?")
        for node, child in running:
            reply = await child.channel.get(timeout=SERVER_START_TIMEOUT)
            if not (isinstance(reply, tuple) and reply[0] == "serving"):
                raise RuntimeError(f"replica {node} failed: {reply!r}")
            if reply[1]:
                found = node
        return found

    async def wait_leader(self, timeout: float) -> str:
        deadline = time.perf_counter() + timeout
        while (leader := await self.leader()) is None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no replica was elected leader in {timeout} s")
            await asyncio.sleep(LEADER_POLL)
        self.first_leader = leader
        return leader

    async def stop(
        self, timeout: float = 10.0
    ) -> tuple[list[ProcessUsage], dict[str, ServerReport], list[str]]:
        """Stop every replica; their usage and reports, and those that did not answer."""
        usages: list[ProcessUsage] = []
        reports: dict[str, ServerReport] = {}
        silent: list[str] = []
        running = {n: c for n, c in self.processes.items() if c.alive}
        for child in running.values():
            child.channel.send("stop")
        for node, child in running.items():
            reply = None
            with contextlib.suppress(TimeoutError):
                while (reply := await child.channel.get(timeout=timeout)) is not None:
                    if isinstance(reply, tuple) and reply[0] == "done":
                        break
            if not (isinstance(reply, tuple) and reply[0] == "done"):
                self.children.notes.append(f"{child.name} did not report on stop")
                silent.append(child.name)
                continue
            usages.append(reply[1])
            reports[node] = reply[2]
        return usages, reports, silent
