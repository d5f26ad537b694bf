"""The tcp coordinator server: one ``Coordinator`` state machine behind asyncio streams.

How it works. ``serve`` listens (127.0.0.1 by default, never all interfaces
unless asked) and runs one ``CoordinatorServer``. Each connection gets a
reader task that reads whatever the socket has, decodes every routed frame
in it (``real.tcp.framing``) and calls ``coordinator.receive(node, msg, now)``
with ``now`` from a ``RunClock`` started with the server (the coordinator's
times are only compared with each other), then schedules one flush with
``call_soon``. All reads that are ready in the same event-loop turn land
before that flush, so one flush serves them all:

1. group commit: ``take_writes()``, ``take_bus_journal()`` and
   ``take_answers()``, persist them in one SQLite transaction
   (``real.tcp.persistence``), then
   ``writes_persisted()`` so replies to memory writes (and, with
   ``durable_bus``, ``Accepted``) leave only once they are durable; the
   core's ``take_events()`` (failed, reassigned, returned) go to the report
   and to the optional event log (``real.tcp.recordlog.EventLog``, perf_counter
   times), which outlives a SIGKILLed server;
2. ``drain()``: ``protocol.envelope.Outbox`` (compiled with the core)
   frames the messages per connection (a ``Deliver`` fanned out to many
   agents is encoded once, and sent as one fan-out frame per connection that
   carries several of them) and each connection gets one ``write``;
3. ``take_closures()``: the connections carrying those nodes are closed
   after their last frames (a rejected hello gets its ``Reject``);
4. the coordinator's ``next_deadline()`` is armed with ``loop.call_at``,
   rounded up to ``TIMER_SLACK`` (5 ms): the core keeps one retransmission
   timer per agent link, and this lets those of many links that fall close
   together share one wake-up.

Connections and node ids (``real.tcp.admission``, a mixin). A connection
multiplexes many nodes. The first frame naming a node id binds that id to
the connection; the server routes the coordinator's output for that node
there. The core trusts that a frame naming a node comes over that node's
link, so the server enforces it: a node bound to another open connection
stays there, and a node the coordinator knows, live or failed, must open a
new connection with a ``Hello`` (the core's rule). The connection count,
the ids per connection and the unregistered ids per connection are capped.
Any malformed input (bad length or version, undecodable body, truncated
frame at end of stream) or an id over a cap refuses the connection: every
node on it is reported with ``coordinator.peer_malformed`` (or, with none,
the event is logged), it is closed once its error frames are written, and
every other connection carries on. A closed connection's nodes are reported
with ``link_closed``. A sweep closes connections that bind no node within
``hello_timeout`` or stay silent for ``idle_timeout``.

Core errors. A core method that raises (``receive`` on a frame, ``on_timer``)
is a bug the server survives: it logs the traceback and carries on, so one
bad message or timer stops nothing else. Each one also becomes a "core
error ..." event in the report and, written at once, a line of kind
``core_error`` in the event log (its node field holds the event's text), so
``real.tcp.run`` finds the core errors of every coordinator life, even one a
crash fault SIGKILLed before it could report, and marks the run invalid.

Backpressure: the frames of one read are handed to the coordinator in
slices of ``SLICE_FRAMES``. After each slice the output is encoded into the
connections' buffers (not yet written: nothing leaves before the flush has
persisted what it must), and once ``OUTPUT_BUDGET`` bytes wait there the
server flushes at once and, while the reading connection's own transport
holds more than ``real.tcp.framing.HIGH_WATER`` unsent bytes, awaits
``drain()`` before handing over the rest of the read. So a small request
with a large answer (a ``GET`` of a big value) cannot multiply one read
into hundreds of MiB of replies, and a client that does not read stops
being read from (its acks stop too, and the core's credit window and
``Busy`` replies do the rest).

Restart. With a database the server starts from it: the memory store is
loaded and, with ``durable_bus``, ``Coordinator.restore`` gets the bus
state still owed. ``serve`` binds with SO_REUSEADDR and retries a busy port
for ``bind_retry`` seconds, so a restarted coordinator gets its old port back.

Storage replicas. With a ``StorePlace`` as ``replica`` the core is one storage
replica of a quorum store (``real.tcp.storecore.StoreCore``), the same way: no
uplinks, its cells written to its SQLite file before its answers leave.

Replicas. With ``replica`` the core is one replica of a replicated coordinator
(``real.tcp.replicacore.ReplicaCore``, the same interface as a coordinator): the
flush writes each Raft ``Ready`` to the replica's SQLite log instead of the
coordinator's journals, its links to the other replicas are uplinks
(``real.tcp.uplink``), and ``connect_replicas`` starts it once every replica's
address is known.

Shutdown: when ``stop`` is set, every connection is closed, the last writes
are persisted and the database is closed. ``coordinator_command`` runs this
in the foreground until SIGINT or SIGTERM; ``real.tcp.children.server_process_main``
is the entry point ``real.tcp.run`` starts in a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import math
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import cast

from protocol.codec import CodecUsageError, encode_body
from protocol.coordinator import Coordinator, tree_node
from protocol.envelope import MalformedEnvelope, Outbox, Routed
from protocol.memory import MemoryStore
from protocol.messages import Error, Message
from protocol.nodes import COORDINATOR_ID as COORD
from protocol.records import NodeEvent
from protocol.settings import ProtocolSettings
from real.clock import RunClock, new_event_loop
from real.gctune import tune_gc
from real.slowdown import slow_coordinator
from real.tcp.admission import Admission, Peer, ServerLimits
from real.tcp.framing import HIGH_WATER, FramedLink
from real.tcp.persistence import MemoryDB, Unpersisted
from real.tcp.recordlog import EventLog
from real.tcp.replicacore import ReplicaCore, ReplicaPlace
from real.tcp.storecore import StoreCore, StorePlace
from real.tcp.uplink import TreePlace, Uplinks

DEFAULT_HOST = "127.0.0.1"
TIMER_SLACK = 0.005
SLICE_FRAMES = 16
OUTPUT_BUDGET = HIGH_WATER
BIND_RETRY_STEP = 0.05
LINGER = 0.5  # a closed connection's last frames get this long before the socket closes
CORE_ERROR = "core error"  # the start of the event text of a core exception the server survived
CORE_ERROR_KIND = "core_error"  # its event log lines' kind (the text is in the node field)
MAX_LOGGED_CORE_ERRORS = 1000  # per server life: a core bug hit on every message floods no disk
MAX_LINK_EVENTS = 3  # times the same replica link event is recorded (redialled per tick)
log = logging.getLogger("swarmtwin.server")


class BindRefused(ValueError):
    """``serve`` refused to listen: ``ProtocolSettings.bind_refusal`` says why."""


@dataclass(slots=True)
class ServerReport:
    """What a server run did, for notes and tests."""

    port: int = 0
    connections: int = 0
    refused_connections: int = 0
    flushes: int = 0
    commits: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    core_errors: int = 0  # core exceptions the server survived ("core error ..." events)
    node_events: list[NodeEvent] = field(default_factory=list)  # times: perf_counter


class CoordinatorServer(Admission):
    """Routes frames between connections and one ``Coordinator``."""

    def __init__(
        self,
        settings: ProtocolSettings,
        db: MemoryDB | None = None,
        limits: ServerLimits | None = None,
        event_log: EventLog | None = None,
        tree: TreePlace | None = None,
        replica: ReplicaPlace | StorePlace | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.clock = RunClock()
        self.db = db
        self.event_log = event_log
        self.limits = limits or ServerLimits()
        store = MemoryStore()
        if db is not None:
            store.load(db.load())
        durable = db is not None
        self.replica: ReplicaCore | StoreCore | None = None
        if isinstance(replica, StorePlace):
            self.replica = StoreCore(replica, settings)
        elif replica is not None:
            self.replica = ReplicaCore(replica, settings)
        if self.replica is not None:
            coordinator = cast(Coordinator, self.replica)  # the same interface
        elif tree is None:
            coordinator = Coordinator(COORD, settings, store, durable_memory=durable)
        else:
            coordinator = tree_node(tree.node_id, settings, tree.chain, store, durable)
        # test-only hook: the coordinator itself unless SWARMTWIN_TEST_DELAY_US is set
        self.coordinator = slow_coordinator(coordinator)
        if db is not None and self.coordinator.journal.enabled:
            self.coordinator.restore(db.load_bus())
        if db is not None and self.replica is None:
            self.coordinator.recall_answers(db.load_answers())
        self.routes: dict[str, Peer] = {}
        self.peers: set[Peer] = set()
        self.report = ServerReport()
        self._unpersisted = Unpersisted()  # taken from the core, not yet committed
        self.outbox = Outbox()  # frames not yet written, per connection
        self.uplinks = Uplinks(self, tree, self._event) if tree is not None else None
        if isinstance(replica, ReplicaPlace):  # links to the other replicas, as uplinks
            others = TreePlace(replica.node_id, (), replica.addresses)
            self.uplinks = Uplinks(self, others, self._replica_event)
        self._link_events: dict[str, int] = {}
        self._staged_bytes = 0
        self._flush_scheduled = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._idle_timeout = max(self.limits.idle_timeout, 4 * settings.heartbeat_interval)
        self._sweeper = self.loop.call_later(self.limits.sweep_interval, self._sweep)

    # --- connections -----------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until it ends, is refused or the server stops."""
        if not self._admits():
            self.report.refused_connections += 1
            writer.close()
            await FramedLink(reader, writer).wait_closed()
            return
        peer = Peer(FramedLink(reader, writer))
        self.peers.add(peer)
        self.report.connections += 1
        try:
            await self._read_loop(peer)
        finally:
            if peer.refused:  # after the pending flush has written its error frames
                self.loop.call_soon(self._close_peer, peer, True)
            else:
                self._close_peer(peer)
            await peer.link.wait_closed()

    async def _read_loop(self, peer: Peer) -> None:
        link = peer.link
        while not link.closed and not peer.refused:
            try:
                batch = await link.read_batch()
            except MalformedEnvelope as exc:
                await self._accept(peer, exc.routed)
                self.refuse(peer, str(exc), exc.node)
                return
            except (ConnectionError, OSError):
                return
            if batch is None:
                return
            await self._accept(peer, batch)
            await link.backpressure()

    async def _accept(self, peer: Peer, batch: list[Routed]) -> None:
        """Hand ``batch`` to the coordinator a slice at a time, within the output
        budget: past it, flush, and wait while ``peer`` is not reading."""
        peer.last_read = time.monotonic()
        for start in range(0, len(batch), SLICE_FRAMES):
            if start:
                self._stage(self.coordinator.drain())
                if self._staged_bytes >= OUTPUT_BUDGET:
                    self.flush()
                    await peer.link.backpressure()
            if self._closed or peer.refused or peer.link.closed:
                break
            if not self._receive(peer, batch[start : start + SLICE_FRAMES]):
                break
        self.schedule_flush()

    def _receive(self, peer: Peer, frames: list[Routed]) -> bool:
        """Bind node ids and hand ``frames`` to the coordinator; False once refused."""
        routes = self.routes
        receive = self.coordinator.receive
        now = self.clock.now()
        for node, msg in frames:
            if routes.get(node) is not peer and not self._bind(peer, node, msg):
                return False
            try:
                receive(node, msg, now)
            except Exception:  # a core bug must not take the server down with it
                log.exception("coordinator.receive failed on %s from %s", type(msg).__name__, node)
                self._core_error(f"on a {type(msg).__name__} from {node!r}")
        return True

    def receive_from(self, src: str, frames: list[Routed]) -> None:
        """Hand ``frames`` that came over an uplink to the core as ``src``'s."""
        receive = self.coordinator.receive
        now = self.clock.now()
        for _, msg in frames:
            try:
                receive(src, msg, now)
            except Exception:  # a core bug must not take the server down with it
                log.exception("coordinator.receive failed on %s from %s", type(msg).__name__, src)
                self._core_error(f"on a {type(msg).__name__} from {src!r}")
        self.schedule_flush()

    def now(self) -> float:
        return self.clock.now()

    def connect_replicas(self, addresses: dict[str, tuple[str, int]]) -> None:
        """A replica that knows where the others listen: start (ticks, elections)."""
        assert self.replica is not None
        self.replica.place.addresses.update(
            (node, address)
            for node, address in addresses.items()
            if node != self.replica.place.node_id
        )
        self.replica.start(self.clock.now())
        self.flush()

    def _replica_event(self, text: str) -> None:
        """A link to another replica closed or would not open: an event, the same
        one at most ``MAX_LINK_EVENTS`` times (a dead replica is redialled every tick)."""
        seen = self._link_events.get(text, 0)
        self._link_events[text] = seen + 1
        if seen < MAX_LINK_EVENTS:
            self._event(text)

    def join(self) -> None:
        """A tree node whose ancestors' addresses are known: say hello to the parent."""
        if self.coordinator.parent and not self._closed:
            self.coordinator.start(self.clock.now())
            self.flush()

    def refuse(self, peer: Peer, reason: str, named: str = "") -> None:
        """Hostile or malformed input: tell the core, close after the error frames.

        A connection with no node bound yet whose bad frame ``named`` a node (a
        valid head, a bad body) gets that node's ``Error`` straight away: the
        core has no session to answer it from."""
        if peer.refused:
            return
        peer.refused = True
        self.report.refused_connections += 1
        self._event(f"refused {peer.link.peer}: {reason}")
        if peer.nodes:
            for node in sorted(peer.nodes):
                self.coordinator.peer_malformed(node, reason)
            self.schedule_flush()
            return
        if named:
            with contextlib.suppress(CodecUsageError):
                peer.link.send(named, encode_body(Error(f"malformed input from {named}: {reason}")))
                peer.link.flush()
        self._close_peer(peer, linger=True)

    def _close_peer(self, peer: Peer, linger: bool = False) -> None:
        """Close ``peer`` and report its nodes' links as closed (idempotent). With
        ``linger`` (the server refuses it, or the core closes one of its nodes) its
        last frames get ``LINGER`` seconds to reach it before the socket closes
        (``FramedLink.half_close``)."""
        if peer not in self.peers:
            return
        self.peers.discard(peer)
        self.outbox.discard(peer)
        if linger:
            peer.link.half_close(LINGER)
        else:
            peer.link.close()
        if peer.nodes:
            now = self.clock.now()
            for node in sorted(peer.nodes):
                if self.routes.get(node) is peer:
                    del self.routes[node]
                self.coordinator.link_closed(node, now)
            peer.nodes.clear()
            self.schedule_flush()

    # --- the flush: persist, send, close, re-arm ---------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Persist, send what the coordinator produced, close, re-arm the timer."""
        self._flush_scheduled = False
        if self._closed:
            return
        self.report.flushes += 1
        coordinator = self.coordinator
        if self.replica is not None:  # Raft's contract: persist each ready, then act on it
            self.replica.persist(self.clock.now())
            for refusal in self.replica.take_refusals():
                self._event(refusal)
        else:
            self._persist(coordinator)
        events = coordinator.take_events()
        if events:
            self._node_events(events)
        self._send(coordinator.drain())
        for node in coordinator.take_closures():
            peer = self.routes.get(node)
            if peer is not None:
                self._close_peer(peer, linger=True)
            elif self.uplinks is not None:
                self.uplinks.close(node)
        self._arm()

    def _persist(self, coordinator: Coordinator) -> None:
        """Group commit: make this turn's writes, bus entries and answers durable,
        then release held replies."""
        writes = coordinator.take_writes()
        bus = coordinator.take_bus_journal()
        answers = coordinator.take_answers()
        if self.db is None:
            return  # the journals are taken and dropped: nothing to make durable
        unpersisted = self._unpersisted
        unpersisted.writes.extend(writes)
        unpersisted.bus.extend(bus)
        unpersisted.answers.extend(answers)
        if not unpersisted.writes and not unpersisted.bus and not unpersisted.answers:
            coordinator.writes_persisted()  # an op that journaled nothing is durable
            return
        try:
            self.db.persist(unpersisted.writes, unpersisted.bus, unpersisted.answers)
        except sqlite3.Error as exc:
            self._event(f"persist failed, replies held: {exc}")
            return
        self._unpersisted = Unpersisted()
        self.report.commits += 1
        self.coordinator.writes_persisted()

    def _node_events(self, events: list[NodeEvent]) -> None:
        """Keep the core's events, on perf_counter time, in the report and the log."""
        t0 = self.clock.t0
        kept = self.report.node_events
        if len(kept) < 100_000:
            kept.extend(NodeEvent(t0 + e.at, e.kind, e.node) for e in events)
        if self.event_log is not None:
            self.event_log.append(events, t0)

    def _send(self, out: list[tuple[str, Message]]) -> None:
        """Encode ``out`` and everything staged before it: one write per connection."""
        self._stage(out)
        outbox = self.outbox
        for peer in outbox.links():
            data, frames = outbox.take(peer)
            cast(Peer, peer).link.write(data, frames)
        self._staged_bytes = 0

    def _stage(self, out: list[tuple[str, Message]]) -> None:
        """Frame ``out`` into each connection's buffer (``protocol.envelope.Outbox``:
        a fanned-out ``Deliver`` becomes one fan-out frame per connection)."""
        if self.uplinks is not None and out:
            out = self.uplinks.split(out)
        outbox = self.outbox
        if out:
            self._staged_bytes += outbox.stage(out, self.routes)
        if outbox.errors:
            for error in outbox.errors:
                self._event(error)
            outbox.errors.clear()

    def _arm(self) -> None:
        """Arm ``next_deadline()``, rounded up to ``TIMER_SLACK`` so that the
        deadlines of many links that fall close together share one wake-up."""
        deadline = self.coordinator.next_deadline()
        if deadline is not None:
            deadline = math.ceil(deadline / TIMER_SLACK) * TIMER_SLACK
        if deadline == self._deadline and (deadline is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = deadline
        if deadline is not None:
            when = self.clock.loop_time_for(self.loop, deadline)
            self._timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._deadline = None
        try:
            self.coordinator.on_timer(self.clock.now())
        except Exception:  # a core bug must not stop retransmission for everyone
            log.exception("coordinator.on_timer failed")
            self._core_error("on a timer")
        self.flush()

    # --- shutdown ---------------------------------------------------------------

    def close(self) -> None:
        """Close every connection, persist the last writes, close the database."""
        if self._closed:
            return
        self._sweeper.cancel()
        if self.uplinks is not None:
            self.uplinks.shutdown()
        for peer in list(self.peers):
            self._close_peer(peer)
        self.flush()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.db is not None:
            self.report.stats["db_commits"] = self.db.commits
            self.db.close()
        if self.replica is not None:
            self.report.stats.update(self.replica.counts)
            self.replica.close()
        if self.event_log is not None:
            self.event_log.close()
        self.report.stats.update(asdict(self.coordinator.stats))

    def _event(self, text: str) -> None:
        log.info(text)
        events = self.report.events
        if len(events) < 1000:
            events.append(text)

    def _core_error(self, where: str) -> None:
        """A core exception the server survived (already logged with its traceback):
        an event in the report and, at once, a ``CORE_ERROR_KIND`` line in the event
        log, so that it outlives a SIGKILL of this process."""
        text = f"{CORE_ERROR} {where} (logged)"
        self._event(text)
        self.report.core_errors += 1
        if self.event_log is not None and self.report.core_errors <= MAX_LOGGED_CORE_ERRORS:
            line = " ".join(text.split())  # one line, no tabs: the log's separator
            self.event_log.append(
                [NodeEvent(self.clock.now(), CORE_ERROR_KIND, line)], self.clock.t0
            )


async def serve(
    host: str = DEFAULT_HOST,
    port: int = 0,
    settings: ProtocolSettings | None = None,
    db_path: str | None = None,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    limits: ServerLimits | None = None,
    event_log: str | None = None,
    bind_retry: float = 0.0,
    tree: TreePlace | None = None,
    built: Callable[[CoordinatorServer], None] | None = None,
    replica: ReplicaPlace | StorePlace | None = None,
) -> ServerReport:
    """Run a coordinator server until ``stop`` is set; return what it did.

    ``ready(port)`` is called once the socket listens (useful with ``port=0``).
    With ``db_path`` the memory store (and, with ``durable_bus``, the bus
    journal) is loaded from and persisted to SQLite. ``event_log`` appends the
    core's node events to that file. A port in use is retried for
    ``bind_retry`` seconds. With ``tree`` the server is that node of a tree
    (``real.tcp.uplink``); ``built`` gets the server once it listens, before
    ``ready`` (a driver that hosts tree nodes calls its ``join`` once it knows
    every address).
    """
    settings = settings or ProtocolSettings()
    stop = stop or asyncio.Event()
    db = MemoryDB(db_path) if db_path else None
    log_file = EventLog(event_log) if event_log else None
    core = CoordinatorServer(settings, db, limits, log_file, tree, replica)
    handlers: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await core.handle(reader, writer)
        finally:
            handlers.discard(task)

    try:
        refusal = settings.bind_refusal(host)  # every entry point that serves passes here
        if refusal:
            raise BindRefused(refusal)
        server = await _listen(on_connect, host, port, bind_retry)
    except BaseException:
        core.close()
        raise
    core.report.port = server.sockets[0].getsockname()[1]
    tune_gc()
    try:
        if built is not None:
            built(core)
        if ready is not None:
            ready(core.report.port)
        await stop.wait()
    finally:
        server.close()
        core.close()
        if core.uplinks is not None:
            await core.uplinks.wait_closed()
        if handlers:
            await asyncio.wait(list(handlers), timeout=2.0)
    return core.report


async def _listen(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    host: str,
    port: int,
    bind_retry: float,
) -> asyncio.Server:
    """``start_server`` with SO_REUSEADDR, retrying a busy port for ``bind_retry`` s."""
    deadline = time.monotonic() + bind_retry
    while True:
        try:
            return await asyncio.start_server(
                on_connect, host, port, limit=1 << 18, reuse_address=True
            )
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(BIND_RETRY_STEP)


# --- entry points -------------------------------------------------------------------


def coordinator_command(
    host: str = DEFAULT_HOST,
    port: int = 7400,
    token: str | None = None,
    db: str | None = None,
    settings: ProtocolSettings | None = None,
    tree: TreePlace | None = None,
) -> int:
    """``swarmtwin coordinator``: serve in the foreground until SIGINT/SIGTERM; exit code.
    With ``tree`` it is that node of a tree and joins its parent once it listens."""
    settings = settings or ProtocolSettings()
    if token:
        settings = replace(settings, token=token)
    loop = new_event_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(bound: int) -> None:
        where = f" (memory in {db})" if db else ""
        name = "coordinator" if tree is None else f"coordinator {tree.node_id}"
        if tree is not None:
            host_, port_ = tree.addresses[tree.parent]
            where += f", joining {tree.parent} at {host_}:{port_}"
        print(f"{name} listening on {host}:{bound}{where}; Ctrl-C stops", flush=True)

    def built(server: CoordinatorServer) -> None:
        server.join()

    try:
        if db:
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        joins = built if tree is not None else None
        serving = serve(host, port, settings, db, ready, stop, tree=tree, built=joins)
        report = loop.run_until_complete(serving)
    except BindRefused as exc:
        print(f"coordinator: refused to listen: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"coordinator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"coordinator: cannot open the memory database {db}: {exc}", file=sys.stderr)
        return 1
    finally:
        loop.close()
    print(f"coordinator stopped: {report.connections} connections, stats {report.stats}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m real.tcp.server --host 127.0.0.1 --port 7400 --token T --db PATH``."""
    parser = argparse.ArgumentParser(prog="python -m real.tcp.server")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=7400)
    parser.add_argument("--token", default=None)
    parser.add_argument("--db", default=None)
    args = parser.parse_args(argv)
    return coordinator_command(args.host, args.port, args.token, args.db)


if __name__ == "__main__":
    sys.exit(main())
