"""Agent worker processes: many ``Agent`` state machines over a few tcp connections.

How it works. An ``AgentHost`` owns a set of agents and spreads them
round-robin over ``connections`` links to the coordinator (0 means one link
per agent). Each link has a task that connects (retrying with backoff),
calls ``agent.start(now)`` for its agents (a hello each) and then reads:
every routed frame is handed to the agent it names with
``agent.receive("coord", msg, now)``, ``now`` read from the run clock per
frame, so a completion is stamped when its handler runs. Touched agents are
drained once per event-loop turn (one ``Ack`` per burst) and each link gets
one ``write`` per turn. Agent timers share one ``loop.call_at``: a heap holds
each agent's ``next_deadline()``, stale entries are re-checked when popped,
and the wake-up is rounded up to ``TIMER_SLACK`` (5 ms) so that the
deadlines of many agents (heartbeats, each request window's retransmission
timer) share one when they fall close together.
A lost link is reconnected (backing off from ``settings.reconnect_min`` to
``reconnect_max``) and its agents say hello again (the core resends what
they had pending); a link whose agent was rejected is not retried.

Errors. An agent method that raises while the host hands it a frame
(``receive``) or a timer (``on_timer``) is a core bug: the host logs it,
notes it in ``errors`` and carries on with the other frames and agents (the
link's read task and the shared timer keep going; an agent whose timer
raised is re-armed once a frame touches it, not at once). A link task that ends
with an exception is noted there too. ``real.tcp.worker_process`` also
routes every other exception of the worker's event loop into ``errors``
(``AgentHost.error``) and reports them, and the run is then invalid.

Storage replicas. With ``stores`` (a quorum store: each storage replica's
address, ``protocol.consensus.quorum``), the agents are built with the quorum's
configuration and the host keeps one more link per storage replica, shared by
all its agents: an agent's messages to a replica go there (framed with the
agent's id, as on the coordinator's links) and the replica's answers come back
with it, handed to the agent with the replica as their source. A lost store
link is reconnected with the same backoff; what an agent sent on it meanwhile is
dropped, and its quorum client asks again.

Record log. With a ``real.tcp.recordlog.RecordLog`` every flush appends the
turn's new completions, accepted op ids and write acks to the worker's log
file (one ``os.write``) before the turn's acks are written to the links, so
the records of a SIGKILLed worker survive it (``real.tcp.worker_process``).

The worker process around an ``AgentHost`` is ``real.tcp.worker_process``.

``agents_command`` runs an ``AgentHost`` in the foreground for
``swarmtwin agents``: idle agents that register, heartbeat and handle
deliveries, with a line of counts per second, until SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import signal
import time
from dataclasses import dataclass, replace
from typing import cast

from protocol.agent import Agent
from protocol.consensus.quorum import QuorumConfig
from protocol.envelope import MalformedEnvelope, Outbox, Routed
from protocol.links import spread, spread_by_leaf
from protocol.messages import Message, leader_hint
from protocol.nodes import COORDINATOR_ID as COORD
from protocol.plan import AgentSpec, Operation
from protocol.records import Completion, LiveParts
from protocol.retransmit import ReconnectBackoff, next_reconnect_wait
from protocol.settings import ProtocolSettings
from protocol.workload import IssueLag, Schedule, issue, issue_due
from real.clock import RunClock, new_event_loop
from real.tcp.framing import FramedLink, open_link
from real.tcp.recordlog import RecordLog

ISSUE_SLICE = 512
TIMER_SLACK = 0.005
LOOP_RESOLUTION = 0.001  # uvloop rounds timers to whole milliseconds
REGISTER_TIMEOUT = 60.0
GO_TIMEOUT = 120.0
STOP_GRACE = 2.0
COUNT_INTERVAL = 0.1
MAX_ERRORS = 100  # kept per host; more are only logged
log = logging.getLogger("swarmtwin.agents")


class HostLink:
    """One connection of an ``AgentHost`` and the agents it carries."""

    __slots__ = (
        "index",
        "agent_ids",
        "voucher",
        "coordinator",
        "link",
        "task",
        "connects",
        "given_up",
    )

    def __init__(
        self, index: int, agent_ids: list[str], voucher: str = "", coordinator: str = COORD
    ) -> None:
        self.index = index
        self.agent_ids = agent_ids
        self.voucher = voucher  # the link's own node, whose liveness stands for its agents
        self.coordinator = coordinator  # the node it connects to (its agents' coordinator)
        self.link: FramedLink | None = None
        self.task: asyncio.Task[None] | None = None
        self.connects = 0
        self.given_up = False


class StoreLink:
    """A host's connection to one storage replica of a quorum store."""

    __slots__ = ("node", "address", "link", "task", "connects")

    def __init__(self, node: str, address: tuple[str, int]) -> None:
        self.node = node
        self.address = address
        self.link: FramedLink | None = None
        self.task: asyncio.Task[None] | None = None
        self.connects = 0


@dataclass(frozen=True, slots=True)
class Stores:
    """A quorum store: its configuration and where each storage replica listens."""

    config: QuorumConfig
    addresses: dict[str, tuple[str, int]]


@dataclass(frozen=True, slots=True)
class TreeAddresses:
    """For a host whose agents attach to the leaves of a tree: where every coordinator
    listens, and each one's ancestors (``protocol.topology.ancestries``), where its
    agents fail over to."""

    addresses: dict[str, tuple[str, int]]
    chains: dict[str, tuple[str, ...]]


def _host_links(
    specs: tuple[AgentSpec, ...] | list[AgentSpec], connections: int, name: str, tree: bool
) -> list[HostLink]:
    """The host's links (``protocol.links``): ``connections`` spread over all its
    agents; in a tree, that many per leaf its agents attach to."""
    if tree:
        links = spread_by_leaf([(s.agent_id, s.coordinator) for s in specs], connections, name)
    else:
        links = spread([s.agent_id for s in specs], connections, name)
    return [HostLink(link.number, link.agent_ids, link.voucher, link.coordinator) for link in links]


class AgentHost:
    """Agents multiplexed over a few links, with batched drains and shared timers."""

    def __init__(
        self,
        host: str,
        port: int,
        specs: tuple[AgentSpec, ...] | list[AgentSpec],
        settings: ProtocolSettings,
        connections: int,
        clock: RunClock,
        record_log: RecordLog | None = None,
        name: str = "agents",
        tree: TreeAddresses | None = None,
        stores: Stores | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.settings = settings
        self.record_log = record_log
        self.tree = tree
        self.loop = asyncio.get_running_loop()
        self.links = _host_links(specs, connections, name, tree is not None)
        self.link_of = {node: hl for hl in self.links for node in hl.agent_ids}
        chains = tree.chains if tree is not None else {}
        self.vouchers: dict[str, Agent] = {
            hl.voucher: Agent(
                hl.voucher, hl.coordinator, settings, fallbacks=chains.get(hl.coordinator, ())
            )
            for hl in self.links
            if hl.voucher
        }
        self.agents: dict[str, Agent] = {
            s.agent_id: Agent(
                s.agent_id,
                s.coordinator if tree is not None else COORD,
                settings,
                s.capabilities,
                s.subscriptions,
                vouched_by=self.link_of[s.agent_id].voucher,
                fallbacks=chains.get(s.coordinator, ()),
                quorum=stores.config if stores is not None else None,
            )
            for s in specs
        }
        self.stores: dict[str, StoreLink] = (
            {node: StoreLink(node, address) for node, address in stores.addresses.items()}
            if stores is not None
            else {}
        )
        self.link_of.update((hl.voucher, hl) for hl in self.links if hl.voucher)
        self._nodes: dict[str, Agent] = {**self.vouchers, **self.agents}  # by frame node id
        self.registered: dict[str, float] = {}
        self.notes: list[str] = []
        self.errors: list[str] = []  # exceptions the host survived: the run is invalid
        self.closing = False
        self.issued = 0
        self._touched: dict[str, Agent] = {}
        self.outbox = Outbox()  # frames not yet written, per link
        self._flush_scheduled = False
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._scanned: dict[str, int] = dict.fromkeys(self.agents, 0)
        self._shed_scanned: dict[str, int] = dict.fromkeys(self.agents, 0)
        self._unique = 0
        # with a live view: the unique completions (at core times) and shed ops not yet reported
        self.live: LiveParts | None = None
        self._dirty: set[str] = set()  # nodes flushed since the last ``unique_completions``
        self.operations: tuple[Operation, ...] = ()  # this host's share of the plan
        self.lag = IssueLag()  # how late the replay issued ops (``real.tcp.worker_process``)
        self._expected: dict[int, int] | None = None

    # --- links ----------------------------------------------------------------

    def start(self) -> None:
        """Start every link's task (connect, hello, read, reconnect)."""
        for hl in self.links:
            hl.task = self.loop.create_task(self._run_link(hl))
            hl.task.add_done_callback(self._link_ended)
        for sl in self.stores.values():
            sl.task = self.loop.create_task(self._run_store_link(sl))
            sl.task.add_done_callback(self._link_ended)

    async def _run_store_link(self, sl: StoreLink) -> None:
        """Keep a link to one storage replica open: connect, read, reconnect."""
        settings = self.settings
        delay = next_reconnect_wait(settings)
        while not self.closing:
            if sl.connects:
                await asyncio.sleep(delay)
                delay = next_reconnect_wait(settings, delay)
            sl.connects += 1
            try:
                link = await open_link(*sl.address)
            except OSError:
                continue
            sl.link = link
            delay = next_reconnect_wait(settings)
            await self._read_link(link, sl.node, f"store link {sl.node}", "replica")
            link.close()
            sl.link = None

    def _link_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.error(f"a link task failed: {task.exception()!r}")

    async def _run_link(self, hl: HostLink) -> None:
        settings = self.settings
        backoff = ReconnectBackoff(settings)
        delay = 0.0  # before the next connect
        while not self.closing and not hl.given_up:
            if hl.connects:  # back off before every reconnect, not only failed connects
                await asyncio.sleep(delay)
            host, port = self._address(hl)
            try:
                hl.link = await open_link(host, port)
            except OSError:
                hl.connects += 1
                delay = backoff.failed()
                self._fail_over(hl)
                continue
            hl.connects += 1
            self._hello(hl)
            await self._read_link(hl.link, hl.coordinator, f"link {hl.index}", "coordinator")
            hl.link.close()
            hl.link = None
            agents = [self.agents[node] for node in hl.agent_ids]
            if any(a.rejected is not None and leader_hint(a.rejected) is None for a in agents):
                hl.given_up = True
                self._note(f"link {hl.index}: an agent was rejected; not reconnecting")
            else:
                healthy = all(a.registered for a in agents)  # until it closed
                hints = [leader_hint(a.rejected) for a in agents]
                hint = next((h for h in hints if h), next((h for h in hints if h == ""), None))
                delay = backoff.lost(healthy, hint)
                self._fail_over(hl)

    def _address(self, hl: HostLink) -> tuple[str, int]:
        """Where ``hl``'s coordinator listens: the one coordinator, or a tree node."""
        if self.tree is None:
            return self.host, self.port
        return self.tree.addresses[hl.coordinator]

    def _fail_over(self, hl: HostLink) -> None:
        """In a tree, ``hl``'s coordinator is gone (the link closed or would not open):
        its agents move to the next coordinator of their chain (``Agent.fail_over``),
        and the link connects there. A flat host keeps its one coordinator."""
        if self.tree is None or self.closing:
            return
        nodes = [hl.voucher, *hl.agent_ids] if hl.voucher else hl.agent_ids
        for node in nodes:
            hl.coordinator = self._nodes[node].fail_over()
        self._note(f"link {hl.index}: failing over to {hl.coordinator}")

    def _hello(self, hl: HostLink) -> None:
        now = self.clock.now()
        if hl.voucher:  # first: the coordinator registers it before the agents it vouches for
            voucher = self.vouchers[hl.voucher]
            voucher.start(now)
            self._touched[hl.voucher] = voucher
        for node in hl.agent_ids:
            agent = self.agents[node]
            agent.start(now)
            self._touched[node] = agent
        self.flush()

    async def _read_link(self, link: FramedLink, src: str, name: str, peer: str) -> None:
        """Hand what ``link`` brings to the agents it names, from ``src``, until it
        closes or sends something malformed (noted as ``name``'s, from the ``peer``)."""
        while not self.closing:
            try:
                batch = await link.read_batch()
            except MalformedEnvelope as exc:
                self._deliver(exc.routed, src)
                self._note(f"{name}: malformed input from the {peer}: {exc}")
                return
            except (ConnectionError, OSError) as exc:
                self._note(f"{name}: lost ({exc.__class__.__name__})")
                return
            if batch is None:
                if not self.closing:
                    self._note(f"{name}: closed by the {peer}")
                return
            self._deliver(batch, src)

    def _deliver(self, batch: list[Routed], src: str = COORD) -> None:
        agents = self._nodes
        touched = self._touched
        now = self.clock.now()  # the frames of one socket read arrived together
        for node, msg in batch:
            agent = agents.get(node)
            if agent is None:
                self._note(f"frame for unknown agent {node!r} dropped")
                continue
            try:
                agent.receive(src, msg, now)
            except Exception as exc:  # a core bug: the other frames and agents go on
                log.exception("agent.receive failed on %s for %s", type(msg).__name__, node)
                self.error(f"core error on a {type(msg).__name__} for {node!r}: {exc!r}")
            touched[node] = agent
        self.schedule_flush()

    # --- output and timers ----------------------------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Drain every touched agent, log their records, one write per link, track timers."""
        self._flush_scheduled = False
        touched, self._touched = self._touched, {}
        if not touched:
            return
        now = self.clock.now()
        link_of = self.link_of
        outbox = self.outbox
        stores = self.stores
        for node, agent in touched.items():
            out = agent.drain()
            if stores and out:
                out = self._to_stores(node, out)
            link = link_of[node].link
            if out and link is not None and not link.closed:
                outbox.stage_from(link, node, out)
            if node not in self.registered and agent.registered and node in self.agents:
                self.registered[node] = now
            self._track(node, agent)
        self._dirty.update(touched)
        if self.record_log is not None:  # durable before the acks leave
            self.record_log.record(touched)
        if outbox.errors:  # e.g. a payload larger than max_frame
            for error in outbox.errors:
                self._note(error)
            outbox.errors.clear()
        for link in outbox.links():
            data, frames = outbox.take(link)
            cast(FramedLink, link).write(data, frames)
        self._arm()

    def _to_stores(self, node: str, out: list[tuple[str, Message]]) -> list[tuple[str, Message]]:
        """Stage ``node``'s messages to storage replicas on their links (dropped while
        a link is down: the quorum client asks again); return the rest."""
        rest = []
        for dst, msg in out:
            sl = self.stores.get(dst)
            if sl is None:
                rest.append((dst, msg))
            elif sl.link is not None and not sl.link.closed:
                self.outbox.stage_from(sl.link, node, [(dst, msg)])
        return rest

    def _track(self, node: str, agent: Agent) -> None:
        deadline = agent.next_deadline()
        if deadline is None:
            return
        due = self._due.get(node)
        if due is None or deadline < due:
            self._due[node] = deadline
            heapq.heappush(self._heap, (deadline, node))

    def _arm(self) -> None:
        if not self._heap or self.closing:
            return
        at = math.ceil(self._heap[0][0] / TIMER_SLACK) * TIMER_SLACK
        if at == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(self.clock.loop_time_for(self.loop, at), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self.clock.now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, node = heapq.heappop(heap)
            if self._due.get(node) == at:
                del self._due[node]
            agent = self._nodes[node]
            deadline = agent.next_deadline()
            if deadline is not None and deadline <= now:
                try:
                    agent.on_timer(now)
                except Exception as exc:  # a core bug: the other agents' timers go on
                    log.exception("agent.on_timer failed for %s", node)
                    self.error(f"core error on a timer of {node!r}: {exc!r}")
                    continue  # not re-armed at once (it could fail in a loop) until touched
                self._touched[node] = agent
            else:  # a stale entry (its deadline moved): nothing to send, only re-arm
                self._track(node, agent)
        self.flush()
        self._arm()

    # --- workload ---------------------------------------------------------------

    def issue_due(
        self, schedule: Schedule, index: int, stop: int, offset: float, now: float
    ) -> int:
        """Issue the ops of ``schedule`` from ``index`` up to ``stop`` due by ``now``
        (``protocol.workload``); flushed by the next ``flush``. Returns the index of
        the first op left."""
        after = issue_due(self.agents, schedule, index, stop, offset, now, self.lag, self._touched)
        self.issued += after - index
        return after

    def issue(self, op: Operation, now: float, due: float | None = None) -> None:
        """Make the op's origin send its request (flushed by the next ``flush``);
        ``due`` is when it was scheduled, on the core clock."""
        agent = self.agents[op.origin]
        issue(agent, op, now, due)
        self._touched[op.origin] = agent
        self.issued += 1

    async def backpressure(self) -> None:
        every: list[HostLink | StoreLink] = [*self.links, *self.stores.values()]
        for hl in every:
            if hl.link is not None:
                await hl.link.backpressure()

    async def wait_registered(self, timeout: float) -> dict[str, float]:
        """Wait until every agent is welcomed (and every storage replica's link is
        open); return core-clock times of each welcome."""
        deadline = time.perf_counter() + timeout
        stores = self.stores.values()
        while len(self.registered) < len(self.agents) or any(s.link is None for s in stores):
            rejected = [
                a
                for a in self.agents.values()
                if a.rejected is not None and leader_hint(a.rejected) is None
            ]
            if rejected:
                raise RuntimeError(f"{rejected[0].node_id} rejected: {rejected[0].rejected}")
            if time.perf_counter() > deadline:
                missing = len(self.agents) - len(self.registered)
                closed = [s.node for s in stores if s.link is None]
                raise TimeoutError(
                    f"{missing} agents not registered, storage links down {closed} "
                    f"after {timeout} s"
                )
            await asyncio.sleep(0.005)
        return dict(self.registered)

    def unique_completions(self) -> int:
        """Non-duplicate completions so far, plus the expected completions of ops
        their origin shed (they will never come), by incremental scan of the agents
        flushed since the last call (every new record is flushed)."""
        dirty, self._dirty = self._dirty, set()
        agents = self.agents
        for node in dirty:
            agent = agents.get(node)
            if agent is None:  # a link's voucher
                continue
            start = self._scanned[node]
            records = agent.completions
            if len(records) > start:
                fresh = [c for c in records[start:] if not c.duplicate]
                self._unique += len(fresh)
                self._scanned[node] = len(records)
                if self.live is not None:
                    self.live.extend(fresh)
            start = self._shed_scanned[node]
            if len(agent.shed) > start:
                if self._expected is None:
                    self._expected = {op.op_id: op.expected for op in self.operations}
                expected = self._expected
                self._unique += sum(expected.get(op_id, 0) for op_id in agent.shed[start:])
                if self.live is not None:
                    self.live.shed.extend(agent.shed[start:])
                self._shed_scanned[node] = len(agent.shed)
        return self._unique

    def completions(self) -> list[Completion]:
        return [c for agent in self.agents.values() for c in agent.completions]

    @property
    def links_up(self) -> int:
        return sum(1 for hl in self.links if hl.link is not None and not hl.link.closed)

    def _note(self, text: str) -> None:
        if len(self.notes) < 200:
            self.notes.append(text)

    def error(self, text: str) -> None:
        """Note an exception the host survived (the first ``MAX_ERRORS``)."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text)

    async def close(self) -> None:
        """Log and send what is pending, stop timers and link tasks, close every link."""
        self.flush()
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        every: list[HostLink | StoreLink] = [*self.links, *self.stores.values()]
        tasks = [hl.task for hl in every if hl.task is not None]
        for hl in every:
            if hl.link is not None:
                hl.link.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for hl in every:
            if hl.link is not None:
                await hl.link.wait_closed()
        if self.record_log is not None:
            self.record_log.close()


# --- swarmtwin agents -------------------------------------------------------------------


def agents_command(
    host: str,
    port: int,
    token: str,
    names: list[str],
    capabilities: tuple[str, ...] = (),
    subscriptions: tuple[str, ...] = (),
    connections: int = 1,
) -> int:
    """``swarmtwin agents``: idle agents against a running coordinator until SIGINT."""
    settings = replace(ProtocolSettings(), token=token)
    specs = [AgentSpec(name, tuple(capabilities), tuple(subscriptions)) for name in names]
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_idle_agents(host, port, settings, specs, connections))
    finally:
        loop.close()


async def _idle_agents(
    host: str, port: int, settings: ProtocolSettings, specs: list[AgentSpec], connections: int
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    agents = AgentHost(host, port, specs, settings, connections, RunClock())
    agents.start()
    previous = 0
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            handled = len(agents.completions())
            registered = sum(1 for a in agents.agents.values() if a.registered)
            print(
                f"{registered}/{len(specs)} registered, {agents.links_up}/{len(agents.links)} "
                f"links up, {handled} deliveries (+{handled - previous}/s)",
                flush=True,
            )
            previous = handled
            rejected = [a.rejected for a in agents.agents.values() if a.rejected]
            if rejected:
                print(f"rejected by the coordinator: {rejected[0]}", flush=True)
                return 1
    finally:
        await agents.close()
    return 0
