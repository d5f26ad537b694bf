"""One replica of a replicated coordinator in a process of its own (the child side).

``replica_process_main`` runs one ``real.tcp.server.CoordinatorServer`` whose core
is a replica (``real.tcp.replicacore``), with its Raft log in its own SQLite
file, and follows the pipe protocol ``real.tcp.replicaservers`` describes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from multiprocessing.connection import Connection

from protocol.settings import ProtocolSettings
from real.clock import new_event_loop
from real.tcp.framing import PipeChannel
from real.tcp.replicacore import ReplicaPlace
from real.tcp.server import DEFAULT_HOST, CoordinatorServer, ServerReport, serve
from real.usage import own_usage

RESTART_BIND_RETRY = 5.0  # a restarted replica waits this long for its old port


@dataclass(frozen=True, slots=True)
class ReplicaProcessSpec:
    """What one replica process runs (picklable)."""

    settings: ProtocolSettings
    place: ReplicaPlace
    use_uvloop: bool = True
    event_log: str | None = None
    port: int = 0  # a restart's: its old port


def replica_process_main(conn: Connection, spec: ReplicaProcessSpec) -> None:
    loop = new_event_loop(spec.use_uvloop)
    try:
        report = loop.run_until_complete(_host(conn, spec))
        conn.send(("done", own_usage(f"replica {spec.place.node_id}"), report))
    except (OSError, EOFError):
        pass
    finally:
        loop.close()
        conn.close()


async def _host(conn: Connection, spec: ReplicaProcessSpec) -> ServerReport:
    channel = PipeChannel(conn)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    servers: list[CoordinatorServer] = []
    listening: asyncio.Future[int] = loop.create_future()
    serving = loop.create_task(
        serve(
            DEFAULT_HOST,
            spec.port,
            spec.settings,
            None,
            listening.set_result,
            stop,
            None,
            spec.event_log,
            RESTART_BIND_RETRY if spec.port else 0.0,
            built=servers.append,
            replica=spec.place,
        )
    )
    try:
        await asyncio.wait([listening, serving], return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # raises what stopped it
        channel.send(("port", listening.result()))
        while (item := await channel.get()) is not None and item != "stop":
            if isinstance(item, tuple) and item[0] == "connect":
                servers[0].connect_replicas(item[1])
            elif item == "serving?":
                replica = servers[0].replica
                channel.send(("serving", replica is not None and replica.replica.serving))
        stop.set()
        return await serving
    finally:
        stop.set()
        serving.cancel()
