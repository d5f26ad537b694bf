"""A replicated coordinator on tcp: one process per replica (the run's side).

How it works. Each replica is a ``real.tcp.server.CoordinatorServer`` with a
``real.tcp.replicacore.ReplicaCore`` in a process of its own
(``real.tcp.replica_process``), on a port of its own, keeping its Raft log in its
own SQLite file. ``ReplicaServers.start`` starts them all, learns every port,
then tells every replica where the others listen; they link up and elect a
leader, and ``wait_leader`` returns once one serves. Workers get every
replica's address as a chain (``TreeAddresses``: agents start at the first
replica and fail over round the others); the prober likewise.

Each ``ReplicaProcess`` is what ``real.tcp.faults.FaultSupervisor`` kills and
restarts for a ``crash_replica`` fault: SIGKILL, then a new life on the same
port and Raft log, told at once where the others are. ``leader()`` is the
replica whose process last said it serves (what ``node: leader`` resolves to).

Pipe protocol of one replica process:

    child  -> ("port", port)                   it listens
    parent -> ("connect", {node: (host, port)})  the others' addresses: start
    child  -> ("serving", bool)                whenever that changes
    parent -> "stop"                           (or the pipe closes)
    child  -> ("done", ProcessUsage, ServerReport)

With ``partitions`` set (the plan partitions replicas), the replicas do not
dial each other directly: a proxy child (``real.netfault.process``) holds one
frame-aware proxy per ordered pair of replicas, and each replica is told the
proxies' ports as the others' addresses (agents and the prober still dial the
replicas themselves). ``cut(which)`` then sets which of those links drop every
frame, both ways: a firewall's DROP, the connections stay open and no FIN
warns anyone.

With a ``QuorumConfig`` instead of a ``Replication``, the processes are the
storage replicas of a quorum store (``real.tcp.storecore``, files
``store-<id>.db``): each serves as soon as it listens, they never dial each
other (``connect`` hands each an empty map), and the workers link to all of
them (``real.tcp.workers``).

Each replica life appends its node events (``leader``, ``deposed``, and its
coordinator's failures and returns while it leads) to an event log of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from protocol.consensus.quorum import QuorumConfig
from protocol.consensus.raft import RaftConfig
from protocol.plan import Replication
from protocol.records import ProcessUsage
from protocol.settings import ProtocolSettings
from real.tcp.children import SERVER_START_TIMEOUT, Child, ChildProcesses, kill_child
from real.tcp.replica_process import ReplicaProcessSpec
from real.tcp.replicacore import ReplicaPlace
from real.tcp.server import DEFAULT_HOST, ServerReport
from real.tcp.storecore import StorePlace

LEADER_POLL = 0.01


class ReplicaProcess:
    """One replica's process and its lives."""

    db_path: str | None = None  # the supervisor snapshots no memory table: the log is Raft's

    def __init__(self, servers: ReplicaServers, node: str) -> None:
        self.servers = servers
        self.node = node
        self.child: Child | None = None
        self.lives = 0
        self.port = 0
        self.serving = False
        self.done: asyncio.Future[Any] | None = None
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        spec = self.servers.spec(self.node, self.lives, self.port)
        name = f"{self.servers.kind}-{self.node}"
        self.child = self.servers.children.start(name, "replica", spec)
        self.lives += 1
        self.serving = False

    async def listening(self) -> float:
        child = self.child
        assert child is not None
        reply = await child.channel.get(timeout=SERVER_START_TIMEOUT)
        if not (isinstance(reply, tuple) and reply[0] == "port"):
            raise RuntimeError(f"replica {self.node} did not start (got {reply!r})")
        self.port = reply[1]
        self.done = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read(child, self.done))
        return time.perf_counter()

    async def _read(self, child: Child, done: asyncio.Future[Any]) -> None:
        while (item := await child.channel.get()) is not None:
            if isinstance(item, tuple) and item[0] == "serving" and child is self.child:
                self.serving = bool(item[1])
            elif isinstance(item, tuple) and item[0] == "done":
                done.set_result(item)
                return
        if not done.done():
            done.set_result(None)
        if child is self.child:
            self.serving = False

    def connect(self) -> None:
        assert self.child is not None
        self.child.channel.send(("connect", self.servers.peers(self.node)))

    async def spawn(self) -> float:
        """A new life on the same port and Raft log (a restart after a crash)."""
        self.start()
        listening = await self.listening()
        self.connect()
        return listening

    def kill(self) -> None:
        """SIGKILL the process (a crash fault)."""
        kill_child(self.child)
        self.serving = False


class ReplicaServers:
    """The replica processes of one tcp run."""

    def __init__(
        self,
        children: ChildProcesses,
        settings: ProtocolSettings,
        replication: Replication | QuorumConfig,
        use_uvloop: bool,
        log_dir: str,
        partitions: bool = False,
    ) -> None:
        self.children = children
        self.partitions = partitions
        self.pairs = [(a, b) for a in replication.replicas for b in replication.replicas if a != b]
        self.proxies: Child | None = None
        self.proxy_ports: dict[tuple[str, str], int] = {}
        self.settings = settings
        self.replication = replication
        self.use_uvloop = use_uvloop
        self.log_dir = log_dir
        self.ids = replication.replicas
        self.kind = "store" if isinstance(replication, QuorumConfig) else "replica"
        self.addresses: dict[str, tuple[str, int]] = {}
        self.processes = {node: ReplicaProcess(self, node) for node in self.ids}
        self.event_logs: list[tuple[str, str]] = []
        self.first_leader = self.ids[0]  # the leader ``wait_leader`` found

    @property
    def chains(self) -> dict[str, tuple[str, ...]]:
        """Where an agent of the first replica goes next: round the others."""
        return {self.ids[0]: self.ids[1:]}

    @property
    def port(self) -> int:
        return self.addresses[self.ids[0]][1]

    def spec(self, node: str, life: int, port: int) -> ReplicaProcessSpec:
        replication = self.replication
        place: ReplicaPlace | StorePlace
        if isinstance(replication, QuorumConfig):
            place = StorePlace(node, os.path.join(self.log_dir, f"store-{node}.db"))
        else:
            config = RaftConfig(election_ticks=replication.election_ticks)
            store = os.path.join(self.log_dir, f"replica-{node}.raft.db")
            place = ReplicaPlace(
                node, self.ids, store, replication.tick, config, protocol=replication.protocol
            )
        events = os.path.join(self.log_dir, f"replica-{node}.events.{life}")
        self.event_logs.append((node if life == 0 else f"{node} (restart {life})", events))
        return ReplicaProcessSpec(self.settings, place, self.use_uvloop, events, port)

    async def start(self) -> None:
        for proc in self.processes.values():
            proc.start()
        for node, proc in self.processes.items():
            await proc.listening()
            self.addresses[node] = (DEFAULT_HOST, proc.port)
        if self.partitions:
            await self._start_proxies()
        for proc in self.processes.values():
            proc.connect()

    def peers(self, node: str) -> dict[str, tuple[str, int]]:
        """Where replica ``node`` dials the others: their ports, or the proxies'."""
        if self.kind == "store":
            return {}  # storage replicas never talk to each other
        if self.proxies is None:
            return {n: a for n, a in self.addresses.items() if n != node}
        return {b: (DEFAULT_HOST, port) for (a, b), port in self.proxy_ports.items() if a == node}

    async def _start_proxies(self) -> None:
        upstreams = [self.addresses[b][1] for _, b in self.pairs]
        child = self.children.start("replica-links", "proxy", upstreams, len(upstreams), 0)
        reply = await child.channel.get(timeout=SERVER_START_TIMEOUT)
        if not (isinstance(reply, tuple) and reply[0] == "ready"):
            raise RuntimeError(f"the replicas' link proxies did not start (got {reply!r})")
        self.proxies = child
        self.proxy_ports = dict(zip(self.pairs, (int(port) for port in reply[1]), strict=True))

    def cut(self, cut: Callable[[str, str], bool]) -> None:
        """Drop every frame on the links between the replicas ``cut(a, b)`` names."""
        assert self.proxies is not None, "a replica partition without the replicas' proxies"
        for index, (a, b) in enumerate(self.pairs):
            if cut(a, b):
                self.proxies.channel.send(("fault", index, 0.0, 0.0, True))
            else:
                self.proxies.channel.send(("clear", index))

    def leader(self) -> str | None:
        """The replica whose process last said it serves, if one did."""
        for node, proc in self.processes.items():
            if proc.serving and proc.child is not None and proc.child.alive:
                return node
        return None

    async def wait_leader(self, timeout: float) -> str:
        deadline = time.perf_counter() + timeout
        while (leader := self.leader()) is None:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no replica was elected leader in {timeout} s")
            await asyncio.sleep(LEADER_POLL)
        self.first_leader = leader
        return leader

    async def stop(
        self, timeout: float = 10.0
    ) -> tuple[list[ProcessUsage], dict[str, ServerReport], list[str]]:
        """Stop every running replica; their usage and reports, and the names of those
        that did not answer (a replica a fault killed last is not running)."""
        usages: list[ProcessUsage] = []
        reports: dict[str, ServerReport] = {}
        silent: list[str] = []
        if self.proxies is not None:
            self.proxies.channel.send("stop")
        running = {n: p for n, p in self.processes.items() if p.child is not None and p.child.alive}
        for proc in running.values():
            assert proc.child is not None
            proc.child.channel.send("stop")
        for node, proc in running.items():
            reply = None
            if proc.done is not None:
                with contextlib.suppress(TimeoutError):
                    reply = await asyncio.wait_for(proc.done, timeout)
            if not (isinstance(reply, tuple) and reply[0] == "done"):
                assert proc.child is not None
                self.children.notes.append(f"{proc.child.name} did not report on stop")
                silent.append(proc.child.name)
                continue
            usages.append(reply[1])
            reports[node] = reply[2]
        return usages, reports, silent
