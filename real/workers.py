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
and the wake-up is rounded up to ``TIMER_SLACK`` (5 ms) so that the many
per-request retry deadlines of a burst share one.
A lost link is reconnected and its agents say hello again (the core resends
what they had pending); a link whose agent was rejected is not retried.

Time base. The protocol core runs on ``RunClock(epoch)``, ``epoch`` chosen by
the parent before the worker starts, so timers never jump. The run's ``t0``
arrives later with "go"; an op scheduled at ``op.at`` is issued when the
core clock reaches ``op.at + (t0 - epoch)`` and completion times are shifted
back by the same offset before they are reported, so they are seconds since
``t0`` like the plan's.

``run_worker`` is one worker process's life, talking to the parent
(``real.tcp``) over a pipe:

    worker -> ("ready", {agent: perf_counter when welcomed}) | ("failed", reason)
    parent -> ("go", t0)
    worker -> ("count", unique completions so far)      every 0.1 s
    parent -> "stop"                 (or the pipe closes, or the deadline passes)
    worker -> ("result", WorkerResult)

Ops are replayed open-loop: the worker sleeps until the next op is due,
then issues every op that is due (in slices of ``ISSUE_SLICE`` so reads
interleave); it never skips one, and when behind it issues at once, since
latency counts from the scheduled time. It never issues early: a wait
shorter than the loop's 1 ms timer resolution sleeps 1 ms (uvloop would
round it to 0 and spin), so an op can go out up to about 1 ms late, which
shows in its latency. The worker stops on its own at
``duration + drain_timeout + STOP_GRACE`` after ``t0``.

``agents_command`` runs an ``AgentHost`` in the foreground for
``swarmtwin agents``: idle agents that register, heartbeat and handle
deliveries, with a line of counts per second, until SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import signal
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection

from protocol.agent import Agent
from protocol.codec import CodecUsageError, encode_body
from protocol.plan import AgentSpec, Operation
from protocol.records import Completion, ProcessUsage
from protocol.settings import ProtocolSettings
from protocol.workload import issue
from real.clock import RunClock, new_event_loop
from real.framing import FramedLink, MalformedEnvelope, PipeChannel, Routed, open_link
from real.gctune import tune_gc
from real.usage import own_usage

COORD = "coord"
ISSUE_SLICE = 512
TIMER_SLACK = 0.005
LOOP_RESOLUTION = 0.001  # uvloop rounds timers to whole milliseconds
REGISTER_TIMEOUT = 60.0
GO_TIMEOUT = 120.0
STOP_GRACE = 2.0
COUNT_INTERVAL = 0.1
RECONNECT_MIN = 0.05
RECONNECT_MAX = 1.0

CompletionRow = tuple[int, str, float, bool, bool]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything one worker process needs (picklable)."""

    index: int
    host: str
    port: int
    agents: tuple[AgentSpec, ...]
    operations: tuple[Operation, ...]
    settings: ProtocolSettings
    connections: int
    epoch: float
    duration: float
    drain_timeout: float
    use_uvloop: bool = True


@dataclass(slots=True)
class WorkerResult:
    """What a worker sends back: run-time completions, registrations, usage."""

    name: str
    completions: list[CompletionRow]
    registered: dict[str, float]
    usage: ProcessUsage
    issued: int = 0
    notes: list[str] = field(default_factory=list)


class HostLink:
    """One connection of an ``AgentHost`` and the agents it carries."""

    __slots__ = ("index", "agent_ids", "link", "task", "connects", "given_up")

    def __init__(self, index: int, agent_ids: list[str]) -> None:
        self.index = index
        self.agent_ids = agent_ids
        self.link: FramedLink | None = None
        self.task: asyncio.Task[None] | None = None
        self.connects = 0
        self.given_up = False


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
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.loop = asyncio.get_running_loop()
        self.agents: dict[str, Agent] = {
            s.agent_id: Agent(s.agent_id, COORD, settings, s.capabilities, s.subscriptions)
            for s in specs
        }
        self.links = self._spread(list(self.agents), connections)
        self.link_of = {node: hl for hl in self.links for node in hl.agent_ids}
        self.registered: dict[str, float] = {}
        self.notes: list[str] = []
        self.closing = False
        self.issued = 0
        self._touched: dict[str, Agent] = {}
        self._flush_scheduled = False
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._scanned: dict[str, int] = dict.fromkeys(self.agents, 0)
        self._unique = 0

    @staticmethod
    def _spread(agent_ids: list[str], connections: int) -> list[HostLink]:
        count = len(agent_ids) if connections <= 0 else min(connections, len(agent_ids))
        groups: list[list[str]] = [[] for _ in range(max(count, 1))]
        for i, node in enumerate(agent_ids):
            groups[i % len(groups)].append(node)
        return [HostLink(i, group) for i, group in enumerate(groups) if group]

    # --- links ----------------------------------------------------------------

    def start(self) -> None:
        """Start every link's task (connect, hello, read, reconnect)."""
        for hl in self.links:
            hl.task = self.loop.create_task(self._run_link(hl))

    async def _run_link(self, hl: HostLink) -> None:
        delay = RECONNECT_MIN
        while not self.closing and not hl.given_up:
            if hl.connects:  # back off before every reconnect, not only failed connects
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
            try:
                hl.link = await open_link(self.host, self.port)
            except OSError:
                hl.connects += 1
                continue
            if all(self.agents[node].registered for node in hl.agent_ids):
                delay = RECONNECT_MIN
            hl.connects += 1
            self._hello(hl)
            await self._read_link(hl, hl.link)
            hl.link.close()
            hl.link = None
            if any(self.agents[node].rejected for node in hl.agent_ids):
                hl.given_up = True
                self._note(f"link {hl.index}: an agent was rejected; not reconnecting")

    def _hello(self, hl: HostLink) -> None:
        now = self.clock.now()
        for node in hl.agent_ids:
            agent = self.agents[node]
            agent.start(now)
            self._touched[node] = agent
        self.flush()

    async def _read_link(self, hl: HostLink, link: FramedLink) -> None:
        while not self.closing:
            try:
                batch = await link.read_batch()
            except MalformedEnvelope as exc:
                self._deliver(exc.routed)
                self._note(f"link {hl.index}: malformed input from the coordinator: {exc}")
                return
            except (ConnectionError, OSError) as exc:
                self._note(f"link {hl.index}: lost ({exc.__class__.__name__})")
                return
            if batch is None:
                if not self.closing:
                    self._note(f"link {hl.index}: closed by the coordinator")
                return
            self._deliver(batch)

    def _deliver(self, batch: list[Routed]) -> None:
        agents = self.agents
        touched = self._touched
        clock_now = self.clock.now
        for node, msg in batch:
            agent = agents.get(node)
            if agent is None:
                self._note(f"frame for unknown agent {node!r} dropped")
                continue
            agent.receive(COORD, msg, clock_now())
            touched[node] = agent
        self.schedule_flush()

    # --- output and timers ----------------------------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Drain every touched agent, one write per link, track timers and welcomes."""
        self._flush_scheduled = False
        touched, self._touched = self._touched, {}
        if not touched:
            return
        now = self.clock.now()
        link_of = self.link_of
        used: dict[FramedLink, None] = {}
        for node, agent in touched.items():
            out = agent.drain()
            link = link_of[node].link
            if out and link is not None and not link.closed:
                for _, msg in out:
                    try:
                        link.send(node, encode_body(msg))
                    except CodecUsageError as exc:  # e.g. a payload larger than max_frame
                        self._note(f"{node}: dropped a {type(msg).__name__}: {exc}")
                used[link] = None
            if node not in self.registered and agent.registered:
                self.registered[node] = now
            self._track(node, agent)
        for link in used:
            link.flush()
        self._arm()

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
            agent = self.agents[node]
            deadline = agent.next_deadline()
            if deadline is not None and deadline <= now:
                agent.on_timer(now)
            self._touched[node] = agent
        self.flush()
        self._arm()

    # --- workload ---------------------------------------------------------------

    def issue(self, op: Operation, now: float) -> None:
        """Make the op's origin send its request (flushed by the next ``flush``)."""
        agent = self.agents[op.origin]
        issue(agent, op, now)
        self._touched[op.origin] = agent
        self.issued += 1

    async def backpressure(self) -> None:
        for hl in self.links:
            if hl.link is not None:
                await hl.link.backpressure()

    async def wait_registered(self, timeout: float) -> dict[str, float]:
        """Wait until every agent is welcomed; return core-clock times of each welcome."""
        deadline = time.perf_counter() + timeout
        while len(self.registered) < len(self.agents):
            rejected = [a for a in self.agents.values() if a.rejected]
            if rejected:
                raise RuntimeError(f"{rejected[0].node_id} rejected: {rejected[0].rejected}")
            if time.perf_counter() > deadline:
                missing = len(self.agents) - len(self.registered)
                raise TimeoutError(f"{missing} agents not registered after {timeout} s")
            await asyncio.sleep(0.005)
        return dict(self.registered)

    def unique_completions(self) -> int:
        """Non-duplicate completions so far (incremental scan)."""
        for node, agent in self.agents.items():
            start = self._scanned[node]
            records = agent.completions
            if len(records) > start:
                self._unique += sum(1 for c in records[start:] if not c.duplicate)
                self._scanned[node] = len(records)
        return self._unique

    def completions(self) -> list[Completion]:
        return [c for agent in self.agents.values() for c in agent.completions]

    @property
    def links_up(self) -> int:
        return sum(1 for hl in self.links if hl.link is not None and not hl.link.closed)

    def _note(self, text: str) -> None:
        if len(self.notes) < 200:
            self.notes.append(text)

    async def close(self) -> None:
        """Stop timers and link tasks and close every connection."""
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [hl.task for hl in self.links if hl.task is not None]
        for hl in self.links:
            if hl.link is not None:
                hl.link.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for hl in self.links:
            if hl.link is not None:
                await hl.link.wait_closed()


# --- the worker process -----------------------------------------------------------------


async def replay(host: AgentHost, operations: tuple[Operation, ...], offset: float) -> None:
    """Issue every op when the core clock reaches ``op.at + offset``."""
    ops = sorted(operations, key=lambda op: (op.at, op.op_id))
    clock = host.clock
    index = 0
    while index < len(ops):
        wait = ops[index].at + offset - clock.now()
        if wait > 0:
            await asyncio.sleep(max(wait, LOOP_RESOLUTION))
        now = clock.now()
        stop = min(index + ISSUE_SLICE, len(ops))
        while index < stop and ops[index].at + offset <= now:
            host.issue(ops[index], now)
            index += 1
        host.schedule_flush()
        await host.backpressure()
        if wait <= 0:
            await asyncio.sleep(0)  # let replies and deliveries in between bursts


async def _report_counts(host: AgentHost, channel: PipeChannel) -> None:
    while True:
        channel.send(("count", host.unique_completions()))
        await asyncio.sleep(COUNT_INTERVAL)


async def _until_stop(channel: PipeChannel, host: AgentHost, end: float) -> None:
    """Return on "stop", on the parent's pipe closing, or at core time ``end``."""
    while True:
        left = end - host.clock.now()
        if left <= 0:
            host.notes.append("stopped at its own deadline")
            return
        try:
            item = await channel.get(timeout=min(left, 1.0))
        except TimeoutError:
            continue
        if item is None or item == "stop":
            return


async def _run_worker(spec: WorkerSpec, channel: PipeChannel) -> WorkerResult | None:
    name = f"worker-{spec.index}"
    host = AgentHost(
        spec.host, spec.port, spec.agents, spec.settings, spec.connections, RunClock(spec.epoch)
    )
    host.start()
    try:
        registered = await _registered_unless_orphaned(host, channel)
    except (TimeoutError, RuntimeError) as exc:
        channel.send(("failed", f"{name}: {exc}"))
        await host.close()
        return None
    channel.send(("ready", {node: spec.epoch + at for node, at in registered.items()}))
    try:
        go = await channel.get(timeout=GO_TIMEOUT)
    except TimeoutError:
        go = None
    if not (isinstance(go, tuple) and go[0] == "go"):
        await host.close()
        return None
    tune_gc()
    return await _replay_and_collect(spec, host, channel, name, float(go[1]))


async def _registered_unless_orphaned(host: AgentHost, channel: PipeChannel) -> dict[str, float]:
    """``host.wait_registered``, abandoned if the parent goes away meanwhile."""
    loop = asyncio.get_running_loop()
    registering = loop.create_task(host.wait_registered(REGISTER_TIMEOUT))
    parent = loop.create_task(channel.get())
    try:
        await asyncio.wait((registering, parent), return_when=asyncio.FIRST_COMPLETED)
    finally:
        parent.cancel()
    if not registering.done():
        registering.cancel()
        raise RuntimeError("the parent went away during registration")
    return registering.result()


async def _replay_and_collect(
    spec: WorkerSpec, host: AgentHost, channel: PipeChannel, name: str, t0: float
) -> WorkerResult:
    offset = t0 - spec.epoch
    loop = asyncio.get_running_loop()
    replayer = loop.create_task(replay(host, spec.operations, offset))
    counter = loop.create_task(_report_counts(host, channel))
    end = offset + spec.duration + spec.drain_timeout + STOP_GRACE
    await _until_stop(channel, host, end)
    for task in (replayer, counter):
        task.cancel()
    await host.close()
    rows = [(c.op_id, c.node, c.at - offset, c.duplicate, c.intact) for c in host.completions()]
    registered = {node: spec.epoch + at for node, at in host.registered.items()}
    if host.issued < len(spec.operations):
        host.notes.append(f"stopped with {len(spec.operations) - host.issued} ops not issued")
    return WorkerResult(name, rows, registered, own_usage(name), host.issued, host.notes)


def run_worker(conn: Connection, spec: WorkerSpec) -> None:
    """One worker process (the ``multiprocessing`` target used by ``real.tcp``)."""
    loop = new_event_loop(spec.use_uvloop)
    try:
        loop.run_until_complete(_worker_main(conn, spec))
    finally:
        loop.close()
        conn.close()


async def _worker_main(conn: Connection, spec: WorkerSpec) -> None:
    channel = PipeChannel(conn)
    try:
        result = await _run_worker(spec, channel)
    except Exception as exc:  # report any crash to the parent rather than dying silently
        channel.send(("failed", f"worker-{spec.index}: {exc!r}"))
        return
    if result is not None:
        channel.send(("result", result))


# --- swarmtwin agents -------------------------------------------------------------------


def agents_command(
    host: str,
    port: int,
    token: str,
    count: int,
    prefix: str = "agent-",
    capabilities: tuple[str, ...] = (),
    subscriptions: tuple[str, ...] = (),
    connections: int = 1,
) -> int:
    """``swarmtwin agents``: idle agents against a running coordinator until SIGINT."""
    settings = replace(ProtocolSettings(), token=token)
    specs = [
        AgentSpec(f"{prefix}{i}", tuple(capabilities), tuple(subscriptions)) for i in range(count)
    ]
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
