"""One replica of a replicated coordinator in a process of its own (the child side).

``replica_process_main`` runs one ``real.tcp.server.CoordinatorServer`` whose core
is a replica (``real.tcp.replicacore``), with its Raft log in its own SQLite
file, or a storage replica of a quorum store (``real.tcp.storecore``, which
serves from the start and says so once), and follows the pipe protocol
``real.tcp.replicaservers`` describes: it says which port it listens on,
starts once told where the others listen, tells the parent every change of
whether it serves (checked every ``WATCH`` seconds), and stops on "stop".
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from multiprocessing.connection import Connection

from protocol.settings import ProtocolSettings
from real.clock import new_event_loop
from real.tcp.framing import PipeChannel
from real.tcp.replicacore import ReplicaCore, ReplicaPlace
from real.tcp.server import DEFAULT_HOST, CoordinatorServer, ServerReport, serve
from real.tcp.storecore import StorePlace
from real.usage import own_usage

RESTART_BIND_RETRY = 5.0  # a restarted replica waits this long for its old port
WATCH = 0.01  # seconds between looks at whether the replica serves


@dataclass(frozen=True, slots=True)
class ReplicaProcessSpec:
    """What one replica process runs (picklable)."""

    settings: ProtocolSettings
    place: ReplicaPlace | StorePlace
    use_uvloop: bool = True
    event_log: str | None = None
    port: int = 0  # a restart's: its old port


def replica_process_main(conn: Connection, spec: ReplicaProcessSpec) -> None:
    loop = new_event_loop(spec.use_uvloop)
    try:
        report = loop.run_until_complete(_host(conn, spec))
        kind = "storage replica" if isinstance(spec.place, StorePlace) else "replica"
        conn.send(("done", own_usage(f"{kind} {spec.place.node_id}"), report))
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
    watching: asyncio.Task[None] | None = None
    try:
        await asyncio.wait([listening, serving], return_when=asyncio.FIRST_COMPLETED)
        if serving.done():
            serving.result()  # raises what stopped it
        channel.send(("port", listening.result()))
        while (item := await channel.get()) is not None and item != "stop":
            if isinstance(item, tuple) and item[0] == "connect" and watching is None:
                servers[0].connect_replicas(item[1])
                watching = loop.create_task(_watch(servers[0], channel, stop))
        stop.set()
        return await serving
    finally:
        stop.set()
        serving.cancel()
        if watching is not None:
            watching.cancel()


async def _watch(server: CoordinatorServer, channel: PipeChannel, stop: asyncio.Event) -> None:
    """Tell the parent each time the replica starts or stops serving."""
    core = server.replica
    assert core is not None
    if not isinstance(core, ReplicaCore):  # a storage replica serves from the start
        channel.send(("serving", True))
        return
    told = False
    with contextlib.suppress(OSError, EOFError):
        while not stop.is_set():
            now = core.replica.serving
            if now != told:
                channel.send(("serving", now))
                told = now
            await asyncio.sleep(WATCH)
