"""A tree of coordinators on tcp: coordinator processes that each host several tree nodes.

How it works. Every coordinator of a tree is a ``real.tcp.server.CoordinatorServer``
on a port of its own, its uplinks to its ancestors included
(``real.tcp.uplink``). A coordinator process hosts several of them on one
event loop, as a worker process hosts many agents; ``TreeServers.start``
(in the run's own process) deals the nodes to ``count`` processes as
``protocol.topology.processes`` says (the model puts them on the same CPUs):
the root to the first, then each child of the root with its whole subtree,
round robin (every link is loopback tcp either way), and each coordinator the
plan crashes to a process of its own (``TreeProcess``), which
``real.tcp.faults.FaultSupervisor`` SIGKILLs and starts again on the same ports
and database, as it does a flat coordinator. Then every node has a SQLite file
of its own (its bus journal; the root's also the memory store).

Pipe protocol of one coordinator process (``real.tcp.tree_process``):

    child  -> ("ports", {node: port})       every hosted node listens
    parent -> ("join", {node: (host, port)})  every node's address: children join
    parent -> "settled?"                     child -> ("settled", bool)
    parent -> "stop"                         (or the pipe closes)
    child  -> ("done", ProcessUsage, {node: ServerReport}, [CoordinatorFigures],
               [TaskStamp on perf_counter time])

``settled`` is every hosted node's ``Coordinator.interest_settled()``: joined,
and every subscription acked by every neighbour, so that the run starts on a
tree that routes (the in-process hub waits for the same). Each node appends
its node events (and the core errors it survived) to its own event log, read
by ``real.tcp.run`` like the flat coordinator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from protocol.faults import crash_event_node
from protocol.nodes import COORDINATOR_ID as COORD
from protocol.records import CoordinatorFigures, ProcessUsage, TaskStamp
from protocol.settings import ProtocolSettings
from protocol.topology import TreeNode, ancestries, processes
from real.tcp.children import SERVER_START_TIMEOUT, Child, ChildProcesses, kill_child
from real.tcp.server import DEFAULT_HOST, ServerReport
from real.tcp.tree_process import TreeProcessSpec
from real.tcp.uplink import TreePlace

SETTLE_POLL = 0.02


class TreeProcess:
    """One coordinator process of a tree and its lives: what ``FaultSupervisor`` kills
    and restarts for a crash of a node it hosts alone (as ``ServerProcess`` for a
    flat coordinator)."""

    def __init__(self, servers: TreeServers, index: int, ids: list[str]) -> None:
        self.servers = servers
        self.name = f"coordinators-{index}"
        self.ids = ids
        self.child: Child | None = None
        self.lives = 0
        self.event_logs: list[tuple[str, str]] = []  # (who, path), every life
        durable = servers.durable
        self.dbs = {node: servers.path(f"coordinator-{node}.db") for node in ids} if durable else {}
        self.db_path = self.dbs.get(COORD)  # the root's holds the memory store

    def _spec(self) -> TreeProcessSpec:
        servers = self.servers
        logs = {}
        for node in self.ids:
            logs[node] = servers.path(f"coordinator-{node}.events.{self.lives}")
            who = node if self.lives == 0 else f"{node} (restart {self.lives})"
            self.event_logs.append((who, logs[node]))
        ports = {n: servers.addresses[n][1] for n in self.ids} if self.lives else {}
        places = [TreePlace(node, servers.chains[node]) for node in self.ids]
        return TreeProcessSpec(servers.settings, places, servers.use_uvloop, logs, self.dbs, ports)

    def start(self) -> None:
        """Start a life of the process (it reports its ports: ``listening``)."""
        spec = self._spec()
        self.child = self.servers.children.start(self.name, "tree", spec)
        self.lives += 1

    async def listening(self) -> tuple[dict[str, int], float]:
        """Its nodes' ports once they listen, and perf_counter then."""
        assert self.child is not None
        reply = await self.child.channel.get(timeout=SERVER_START_TIMEOUT)
        if not (isinstance(reply, tuple) and reply[0] == "ports"):
            raise RuntimeError(f"{self.name} did not start (got {reply!r})")
        return dict(reply[1]), time.perf_counter()

    def join(self) -> None:
        """Tell its nodes every address: the children among them join their parents."""
        assert self.child is not None
        self.child.channel.send(("join", self.servers.addresses))

    async def spawn(self) -> float:
        """A new life on the same ports and databases (a restart after a crash); it
        joins the tree at once. perf_counter when it listened."""
        self.start()
        _, listening = await self.listening()
        self.join()
        return listening

    def kill(self) -> None:
        """SIGKILL the process (a crash fault)."""
        kill_child(self.child)


class TreeServers:
    """The coordinator processes of one tcp run of a tree (the run's side)."""

    def __init__(
        self,
        children: ChildProcesses,
        settings: ProtocolSettings,
        nodes: tuple[TreeNode, ...],
        count: int,
        use_uvloop: bool,
        log_dir: str,
        crashed: frozenset[str] = frozenset(),
    ) -> None:
        self.children = children
        self.settings = settings
        self.chains = ancestries(nodes)
        self.chains[COORD] = ()
        self.use_uvloop = use_uvloop
        self.log_dir = log_dir
        self.durable = bool(crashed) or settings.durable_bus
        self.addresses: dict[str, tuple[str, int]] = {}
        hosted = processes(nodes, count, crashed)
        self.processes = [TreeProcess(self, index, ids) for index, ids in enumerate(hosted)]
        self.crashable = {  # a crash's event node -> the process hosting that node alone
            crash_event_node(proc.ids[0]): proc
            for proc in self.processes
            if len(proc.ids) == 1 and proc.ids[0] in crashed
        }

    def path(self, name: str) -> str:
        return os.path.join(self.log_dir, name)

    @property
    def port(self) -> int:
        """The root's port (the prober's)."""
        return self.addresses[COORD][1]

    @property
    def event_logs(self) -> list[tuple[str, str]]:
        """Every node's event log of every life, with its name."""
        return [log for proc in self.processes for log in proc.event_logs]

    async def start(self) -> None:
        """Start every coordinator process, learn every port, tell every node to join."""
        for proc in self.processes:
            proc.start()
        for proc in self.processes:
            ports, _ = await proc.listening()
            self.addresses.update((node, (DEFAULT_HOST, port)) for node, port in ports.items())
        for proc in self.processes:
            proc.join()

    def _running(self) -> list[Child]:
        return [p.child for p in self.processes if p.child is not None and p.child.alive]

    async def wait_settled(self, timeout: float) -> None:
        """Wait until every node has joined and its interest has spread."""
        deadline = time.perf_counter() + timeout
        waiting = self._running()
        while waiting:
            if time.perf_counter() > deadline:
                names = ", ".join(child.name for child in waiting)
                raise TimeoutError(f"the tree's interest did not settle in {timeout} s ({names})")
            for child in waiting:
                child.channel.send("settled?")
            still = []
            for child in waiting:
                reply = await child.channel.get(timeout=max(0.1, deadline - time.perf_counter()))
                if not (isinstance(reply, tuple) and reply[0] == "settled"):
                    raise RuntimeError(f"{child.name} failed while the tree settled: {reply!r}")
                if not reply[1]:
                    still.append(child)
            waiting = still
            if waiting:
                await asyncio.sleep(SETTLE_POLL)

    async def stop(
        self, timeout: float = 10.0
    ) -> tuple[
        list[ProcessUsage],
        dict[str, ServerReport],
        list[CoordinatorFigures],
        list[TaskStamp],
        list[str],
    ]:
        """Stop every running coordinator process; what they reported, and the names of
        those that did not answer (a process a fault killed last is not running: its
        nodes' figures are missing from the rows)."""
        silent: list[str] = []
        usages: list[ProcessUsage] = []
        reports: dict[str, ServerReport] = {}
        figures: list[CoordinatorFigures] = []
        stamps: list[TaskStamp] = []
        running = self._running()
        for child in running:
            child.channel.send("stop")
        for child in running:
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
            reports.update(reply[2])
            figures.extend(reply[3])
            stamps.extend(reply[4])
        return usages, reports, figures, stamps, silent
