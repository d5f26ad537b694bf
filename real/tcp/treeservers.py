"""A tree of coordinators on tcp: coordinator processes that each host several tree nodes.

How it works. Every coordinator of a tree is a ``real.tcp.server.CoordinatorServer``
on a port of its own, its uplinks to its ancestors included
(``real.tcp.uplink``). A coordinator process hosts several of them on one
event loop, as a worker process hosts many agents; ``TreeServers.start``
(in the run's own process) deals the nodes to ``count`` processes as
``protocol.topology.processes`` says (the model puts them on the same CPUs):
the root to the first, then each child of the root with its whole subtree,
round robin (every link is loopback tcp either way).

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
import time

from protocol.nodes import COORDINATOR_ID as COORD
from protocol.records import CoordinatorFigures, ProcessUsage, TaskStamp
from protocol.settings import ProtocolSettings
from protocol.topology import TreeNode, ancestries, processes
from real.tcp.children import SERVER_START_TIMEOUT, Child, ChildProcesses
from real.tcp.server import DEFAULT_HOST, ServerReport
from real.tcp.uplink import TreePlace

SETTLE_POLL = 0.02


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
    ) -> None:
        self.children = children
        self.settings = settings
        self.nodes = nodes
        self.chains = ancestries(nodes)
        self.chains[COORD] = ()
        self.hosted = processes(nodes, count)
        self.use_uvloop = use_uvloop
        self.log_dir = log_dir
        self.pool: list[Child] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        self.child: Child | None = None  # no single coordinator process (a fault's target)

    @property
    def port(self) -> int:
        """The root's port (the prober's)."""
        return self.addresses[COORD][1]

    @property
    def event_logs(self) -> list[tuple[str, str]]:
        """Each node's event log, with its name."""
        return [(node, self._log(node)) for ids in self.hosted for node in ids]

    def _log(self, node: str) -> str:
        return f"{self.log_dir}/coordinator-{node}.events"

    async def start(self) -> None:
        """Start every coordinator process, learn every port, tell every node to join."""
        for index, ids in enumerate(self.hosted):
            places = [TreePlace(node, self.chains[node]) for node in ids]
            logs = {node: self._log(node) for node in ids}
            args = (self.settings, places, self.use_uvloop, logs)
            self.pool.append(self.children.start(f"coordinators-{index}", "tree", *args))
        for child in self.pool:
            reply = await child.channel.get(timeout=SERVER_START_TIMEOUT)
            if not (isinstance(reply, tuple) and reply[0] == "ports"):
                raise RuntimeError(f"{child.name} did not start (got {reply!r})")
            self.addresses.update((node, (DEFAULT_HOST, port)) for node, port in reply[1].items())
        for child in self.pool:
            child.channel.send(("join", self.addresses))

    async def wait_settled(self, timeout: float) -> None:
        """Wait until every node has joined and its interest has spread."""
        deadline = time.perf_counter() + timeout
        waiting = list(self.pool)
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
        list[ProcessUsage], dict[str, ServerReport], list[CoordinatorFigures], list[TaskStamp]
    ]:
        """Stop every coordinator process; what each reported (missing ones are noted)."""
        usages: list[ProcessUsage] = []
        reports: dict[str, ServerReport] = {}
        figures: list[CoordinatorFigures] = []
        stamps: list[TaskStamp] = []
        for child in self.pool:
            child.channel.send("stop")
        for child in self.pool:
            reply = None
            with contextlib.suppress(TimeoutError):
                while (reply := await child.channel.get(timeout=timeout)) is not None:
                    if isinstance(reply, tuple) and reply[0] == "done":
                        break
            if not (isinstance(reply, tuple) and reply[0] == "done"):
                self.children.notes.append(f"{child.name} did not report on stop")
                continue
            usages.append(reply[1])
            reports.update(reply[2])
            figures.extend(reply[3])
            stamps.extend(reply[4])
        return usages, reports, figures, stamps
