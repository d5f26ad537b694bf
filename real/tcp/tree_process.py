"""One coordinator process of a tcp tree: several tree nodes' servers on one event loop.

``tree_process_main`` is the child side of ``real.tcp.treeservers`` (the pipe
protocol is described there). Every hosted node is a
``real.tcp.server.CoordinatorServer`` started with ``serve`` on port 0 (a
restart: its old port, retried while busy), its ``TreePlace`` and, when the
run crashes coordinators, its own SQLite file (it restores its journal from
it, as a flat coordinator does); once every one listens, the ports go to the parent, and once
the parent sends every node's address, each node joins its parent
(``CoordinatorServer.join``). "settled?" is answered with whether every hosted
node's ``interest_settled()`` holds. On "stop" (or the pipe closing) every
server stops; the process sends back its usage, each node's report, the
nodes' ``tree_figures`` rows and their task stamps, moved to perf_counter time
(each server's clock starts with it; the run shifts them to plan time).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from protocol.records import CoordinatorFigures, TaskStamp
from protocol.settings import ProtocolSettings
from protocol.treereport import tree_figures
from real.clock import new_event_loop
from real.tcp.framing import PipeChannel
from real.tcp.server import DEFAULT_HOST, CoordinatorServer, ServerReport, serve
from real.tcp.uplink import TreePlace
from real.usage import own_usage

RESTART_BIND_RETRY = 5.0  # a restarted process waits this long for its old ports


@dataclass(frozen=True, slots=True)
class TreeProcessSpec:
    """What one coordinator process of a tree hosts (picklable)."""

    settings: ProtocolSettings
    places: list[TreePlace]
    use_uvloop: bool = True
    event_logs: dict[str, str] = field(default_factory=dict)  # node -> its event log
    dbs: dict[str, str] = field(default_factory=dict)  # node -> its SQLite file
    ports: dict[str, int] = field(default_factory=dict)  # a restart's: node -> its old port


def tree_process_main(conn: Connection, spec: TreeProcessSpec) -> None:
    """A coordinator process's entry: host ``spec.places``, follow the pipe protocol."""
    loop = new_event_loop(spec.use_uvloop)
    try:
        done = loop.run_until_complete(_host(conn, spec))
        conn.send(("done", own_usage(f"coordinators ({len(spec.places)} nodes)"), *done))
    except (OSError, EOFError):
        pass
    finally:
        loop.close()
        conn.close()


async def _host(
    conn: Connection, spec: TreeProcessSpec
) -> tuple[dict[str, ServerReport], list[CoordinatorFigures], list[TaskStamp]]:
    places = spec.places
    channel = PipeChannel(conn)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    servers: dict[str, CoordinatorServer] = {}
    ports: dict[str, int] = {}
    listening = asyncio.Event()

    def built(server: CoordinatorServer) -> None:
        server.coordinator.stamp_tasks = True  # to split task latency (``TaskStamp``)
        servers[server.coordinator.node_id] = server

    def ready(node: str, port: int) -> None:
        ports[node] = port
        if len(ports) == len(places):
            listening.set()

    serving = [
        loop.create_task(
            serve(
                DEFAULT_HOST,
                spec.ports.get(place.node_id, 0),
                spec.settings,
                spec.dbs.get(place.node_id),
                lambda port, node=place.node_id: ready(node, port),
                stop,
                None,
                spec.event_logs.get(place.node_id),
                RESTART_BIND_RETRY if spec.ports else 0.0,
                tree=place,
                built=built,
            )
        )
        for place in places
    ]
    try:
        waiting = loop.create_task(listening.wait())
        await asyncio.wait([waiting, *serving], return_when=asyncio.FIRST_COMPLETED)
        failed = [task for task in serving if task.done()]
        if failed:
            waiting.cancel()
            failed[0].result()  # raises what stopped it
        channel.send(("ports", ports))
        while (item := await channel.get()) is not None and item != "stop":
            if isinstance(item, tuple) and item[0] == "join":
                for place in places:
                    place.addresses.update({n: item[1][n] for n in place.chain})
                for server in servers.values():
                    server.join()
            elif item == "settled?":
                settled = all(s.coordinator.interest_settled() for s in servers.values())
                channel.send(("settled", settled))
        stop.set()
        results = await asyncio.gather(*serving)
        reports = {place.node_id: report for place, report in zip(places, results, strict=True)}
    finally:
        stop.set()
        for task in serving:
            task.cancel()
    cores = [server.coordinator for server in servers.values()]
    stamps = [
        stamp._replace(
            queued_at=server.clock.t0 + stamp.queued_at,
            assigned_at=server.clock.t0 + stamp.assigned_at,
            done_at=server.clock.t0 + stamp.done_at,
        )
        for server in servers.values()
        for stamp in server.coordinator.take_task_stamps()
    ]
    return reports, tree_figures(cores), stamps
