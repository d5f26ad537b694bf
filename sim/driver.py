"""``run_plan``: replay a plan on the queueing model and return a ``DriverResult``.

A run, in order:

1. **Registration lead.** The plan's time 0 is when load starts, so agents
   must have registered before it. A first, throwaway simulation of the
   registration alone (every agent calls ``start`` at once) measures how
   long registration takes on this calibration; the real run then starts
   every agent at ``-(that span + REGISTRATION_MARGIN)``, in a SimPy
   environment whose clock starts there. Plan times stay the plan's:
   simulated time ``t`` is plan time ``t``.
2. **Load.** A workload feeder walks the plan's operations in time order,
   as the real replay loop does (one feeder per agent worker process on
   tcp, each with its own agents' ops, as each real worker replays its
   share; one for the whole plan otherwise): it wakes at the next op's ``at`` (late by
   a draw from the calibration's ``wakeup`` band for that wait, if any)
   and serves ``protocol.workload.issue`` on the origin agent of every op
   that is due by then (see ``sim.engine``); latency still counts from
   ``at``. A prober sends ``Probe`` to the coordinator every
   ``plan.probe_interval`` from 0 until ``plan.duration`` (waking the same
   way; ``sent`` is when it actually went) and records when each
   ``ProbeReply`` comes back. At ``plan.status_at`` (near the end of the
   steady-state load, before the drain) the prober also sends the
   coordinator one ``StatusRequest``, served like any message (its service
   time, two hops; its random draws come after every draw of the run up
   to then, so the figures before ``status_at`` are as without it); the
   ``StatusReply``'s components, as ``protocol.status.status_dict`` gives
   them, become ``DriverResult.status``: the model's prediction of what the real
   coordinator reports (None when the reply never came, e.g. the
   coordinator was down). The run waits for that reply as for a probe's.
3. **Drain.** The run stops as soon as every op has been issued, every
   expected completion has arrived and every probe has been answered, or
   at ``plan.duration + plan.drain_timeout``, whichever comes first.
   Completions stamped after that limit are dropped, as a real run would
   not have seen them.

Faults: when the plan has a fault timeline (``plan.faults``) or its
coordinator persists (``sim.faults.durable_coordinator``), a
``sim.faults.FaultInjector`` replays it during the load phase (never in the
registration run) and the result also carries ``accepted``,
``write_acks``, ``events`` and ``restarts``, and the completions of every
life of a restarted agent. A plan with neither runs exactly as before.

What-ifs beyond one machine: ``coordinator_hosts=N`` spreads the
coordinator's work over N servers (see ``sim.engine``); a different hop is
a calibration change (``Calibration.with_changes(hop=...)``), made by the
caller.

Each finished simulation is closed (``ModelRun.close``): its reference
cycles are broken so that it is freed at once rather than by the paused
cyclic collector. With 100,000 agents that keeps the registration run's
model (hundreds of MB) from living on beside the main one.

Everything random is drawn from ``random.Random(plan.seed)`` (the replicas'
tick phases from a generator of their own, seeded from it, so that a
consensus section leaves the other draws as they were); the wall clock
is only read to report how fast the simulator ran. So the same plan,
calibration and seed give the same ``completions``, ``probes``,
``registered``, ``end_time`` and ``notes``, bit for bit. The cyclic garbage
collector is paused during a run (``native.heap.gc_paused``): a run makes no cyclic
garbage until the model is dropped, so its passes would be pure overhead.

``last_stats()`` returns the counters of the most recent run in this process:
``messages`` (every message delivered to a node, probe traffic included),
``timers`` (timer jobs served), ``wall_seconds`` (the whole ``run_plan``
call), ``run_wall_seconds`` (the main simulation loop only) and
``messages_per_wall_s`` (``messages / wall_seconds``).
"""

from __future__ import annotations

import math
import random
import resource
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from operator import attrgetter
from typing import NamedTuple

import simpy
from simpy.events import NORMAL, Event

from native.heap import gc_paused
from protocol.agent import Agent, memory_until
from protocol.coordinator import Coordinator, tree_node
from protocol.faults import crashed_coordinators
from protocol.links import spread, spread_by_leaf
from protocol.messages import Message, ProbeReply, Reject, leader_hint
from protocol.nodes import COORDINATOR_ID, PROBER_ID
from protocol.plan import Operation, Plan
from protocol.prober import Prober, retry_pause
from protocol.records import (
    LIVE_INTERVAL,
    Completion,
    DriverResult,
    LiveFeed,
    LiveParts,
    ProcessUsage,
    replica_note,
    store_note,
)
from protocol.topology import ancestries
from protocol.topology import processes as topology_processes
from protocol.treereport import tree_figures, tree_note
from sim.calibration import Calibration
from sim.engine import Engine
from sim.faults import FaultInjector, durable_coordinator
from sim.nodes import BUSY_PARTS, SimNode
from sim.replicafaults import ReplicaLinks
from sim.replicas import SimReplica, add_replicas, bootstrap, replica_counts
from sim.stores import add_stores, final_store, store_counts

REGISTRATION_MARGIN = 0.05  # load starts this long after the last Welcome, as in real.inproc.hub
REGISTRATION_LIMIT = 60.0
SETTLE_POLL = 0.001  # simulated seconds between looks at a tree's interest
PROGRESS_STEPS = 100

Progress = Callable[[float], None]
_last: dict[str, float] = {}


def last_stats() -> dict[str, float]:
    """Counters of the last ``run_plan`` in this process (see the module docstring)."""
    return dict(_last)


def run_plan(
    plan: Plan,
    calibration: Calibration,
    progress: Progress | None = None,
    agent_processes: int | None = None,
    coordinator_hosts: int = 1,
    cores: int | None = None,
    links: int = 0,
    live: LiveFeed | None = None,
    tree_hop: float = 0.0,
    coordinator_processes: int | None = None,
) -> DriverResult:
    """Replay ``plan`` on the model calibrated by ``calibration``.

    ``agent_processes``: when the real run hosts the agents in N worker
    processes (tcp), agent ``i`` shares the CPU of process ``i % N``, as
    ``real.tcp.run`` deals them; None gives each agent a CPU of its own.
    ``coordinator_hosts``: the coordinator's messages are served by that many
    CPUs, each agent's by one of them (``sim.engine``); it needs a calibration
    whose ``cpu_sharing`` is ``"per-node"``.
    ``cores``: the machine's cores, shared by every process server
    (``sim.cores``); None gives each server a core of its own.
    ``links``: with ``agent_processes``, the connections each process opens;
    as the real worker does (``protocol.links``), every link of two or more
    agents registers a voucher node first, whose heartbeats stand for its
    agents' (not in a run with faults, whose gates act per agent).
    ``live``: called every ``LIVE_INTERVAL`` of simulated time with what happened
    since the last call (``protocol.records.LiveBatch``; its events draw nothing, so the run's
    figures are the same with or without it).
    ``tree_hop``: seconds added to each hop between two coordinators (a what-if of
    a tree whose levels are on other sites; ``model.tree_hop_ms``).
    ``coordinator_processes``: the coordinators of a tree share the CPUs of that
    many processes, dealt as the real coordinator processes host them
    (``protocol.topology.processes``); None gives each one a CPU of its own.
    """
    layout = Layout(
        agent_processes, coordinator_hosts, cores, links, tree_hop, coordinator_processes
    )
    with gc_paused():
        return _run_plan(plan, calibration, progress, layout, live)


class Layout(NamedTuple):
    """Which CPUs the nodes run on: agents in ``processes`` (None: one each), the
    coordinator on ``coordinator_hosts``; and ``tree_hop``, seconds added to every
    hop between two coordinators of a tree (their levels on other sites)."""

    processes: int | None = None
    coordinator_hosts: int = 1
    cores: int | None = None
    links: int = 0  # connections per agent process (0: one per agent, no vouchers)
    tree_hop: float = 0.0
    coordinator_processes: int | None = None  # a tree's (None: a CPU per coordinator)


DEFAULT_LAYOUT = Layout()


def _run_plan(
    plan: Plan,
    calibration: Calibration,
    progress: Progress | None,
    layout: Layout,
    live: LiveFeed | None = None,
) -> DriverResult:
    wall = time.perf_counter()
    cpu = time.process_time()
    lead, lead_note = registration_lead(plan, calibration, layout)
    run = ModelRun(plan, calibration, start=-lead, layout=layout)
    run.register()
    run.load(progress)
    if live is not None:
        run.watch(live)
    loop_wall = time.perf_counter()
    run.env.run(until=run.stop)
    loop_wall = time.perf_counter() - loop_wall
    run.flush_live()
    if progress is not None:
        progress(1.0)
    result = run.result(lead, [lead_note] if lead_note else [])
    result.spawn_at = -lead  # when the model starts its agents
    messages, timers = run.engine.messages, run.engine.timers
    run.close()
    del run  # freed here, and counted in the wall time
    result.wall_seconds = time.perf_counter() - wall
    result.processes = [_usage(time.process_time() - cpu)]
    _record_stats(messages, timers, result.wall_seconds, loop_wall)
    return result


def registration_lead(
    plan: Plan, calibration: Calibration, layout: Layout = DEFAULT_LAYOUT
) -> tuple[float, str | None]:
    """How long before time 0 the agents start: measured by simulating registration alone."""
    if not plan.agents:
        return REGISTRATION_MARGIN, None
    run = ModelRun(plan, calibration, start=0.0, registration_only=True, layout=layout)
    run.register()
    run.env.run(until=run.stop)
    run.close()
    if len(run.registered) < len(plan.agents):
        missing = len(plan.agents) - len(run.registered)
        note = f"{missing} agents had not registered {REGISTRATION_LIMIT:g} s after starting"
        return REGISTRATION_LIMIT + REGISTRATION_MARGIN, note
    return max(run.settled_at, *run.registered.values()) + REGISTRATION_MARGIN, None


class Feed:
    """One replay loop's ops, in time order, and the index of the next to issue."""

    __slots__ = ("next", "ops")

    def __init__(self, ops: list[Operation]) -> None:
        self.ops = ops
        self.next = 0


class ModelRun:
    """One simulation: engine, nodes, workload feeder, prober and stop condition."""

    def __init__(
        self,
        plan: Plan,
        calibration: Calibration,
        start: float,
        registration_only: bool = False,
        layout: Layout = DEFAULT_LAYOUT,
    ) -> None:
        self.plan = plan
        self.processes = layout.processes
        self.coordinator_hosts = layout.coordinator_hosts
        self.coordinator_processes = layout.coordinator_processes
        faulty = not registration_only and bool(plan.faults or durable_coordinator(plan))
        self.links = layout.links if layout.processes and not faulty else 0
        self.vouchers: dict[str, list[SimNode]] = {}  # voucher id -> the agents it vouches for
        self.started_vouchers: set[str] = set()
        self.calibration = calibration
        self.registration_only = registration_only
        self.live: LiveFeed | None = None
        self.live_parts = LiveParts()  # what ``live`` has not been fed yet
        self.env = simpy.Environment(initial_time=start)
        self.engine = Engine(self.env, calibration, random.Random(plan.seed))
        self.engine.tree_hop = layout.tree_hop
        if layout.cores is not None:
            self.engine.share_cores(layout.cores)
        self.tree: list[SimNode] = []  # the coordinators below the root, parents first
        self.replicas: list[SimNode] = []  # a replicated coordinator's (``sim.replicas``)
        self.stores: list[SimNode] = []  # a quorum store's (``sim.stores``)
        replication = plan.replication
        self.root = replication.replicas[0] if replication is not None else COORDINATOR_ID
        self.settled_at = start  # when a tree's interest settled (registration only)
        self.agents = self._build_nodes()
        self.registered: dict[str, float] = {}
        self.prober = Prober(plan)
        self.feeds = self._feeds(sorted(plan.operations, key=attrgetter("at")))
        self.unfed = len(self.feeds)  # feeds with ops still to issue
        self.missing = plan.expected_total
        # every completion this run saw as it came, and the latest one's time: while
        # they account for all of them, the result takes the records without a pass
        # over each (which touched 800k records out of cache: 0.5 s of the default's)
        self.seen = 0
        self.latest = -math.inf
        self._expected: dict[int, int] | None = None  # op id -> expected, once something is shed
        self.unanswered = 0
        self.probing = False
        self.asking = False  # the status request is still to be sent
        self.limit = REGISTRATION_LIMIT if registration_only else plan.duration + plan.drain_timeout
        self.stop = self.env.event()
        self._at(self.limit, self._time_is_up)
        self._hook()
        self.faults: FaultInjector | None = None
        self.issue: Callable[[SimNode, Operation], None] = self.engine.issue
        self.replica_links: ReplicaLinks | None = None
        self.store_links: ReplicaLinks | None = None  # a quorum store's crashes and pauses
        if replication is not None:  # its links, its crashes, the prober's target
            faults = plan if not registration_only else replace(plan, faults=())
            self.replica_links = ReplicaLinks(
                faults,
                calibration,
                self.engine,
                self.replicas,
                self.agents,
                self._at,
                self._probe_failed_over,
            )
        elif self.stores and plan.faults and not registration_only:  # storage replicas'
            self.store_links = ReplicaLinks(
                plan,
                calibration,
                self.engine,
                self.stores,
                self.agents,
                self._at,
                self._probe_lost,
            )
        elif not registration_only and (plan.faults or durable_coordinator(plan)):
            self.faults = FaultInjector(
                plan,
                calibration,
                self.engine,
                [self.engine.nodes[COORDINATOR_ID], *self.tree],
                self.agents,
                self._at,
                self._never_issued,
                self._probe_lost,
                self._undone,
            )
            if self.faults.active:
                self.issue = self.faults.issue
        # agents hosted by worker processes (tcp) send and receive one write per drain;
        # a fault's gates act per message, so a run with faults sends each on its own
        self.engine.batching = self.processes is not None and self.faults is None
        if (self.replica_links or self.store_links) is not None and plan.faults:
            self.engine.batching = False  # the crash gates act per message too

    def _build_nodes(self) -> list[SimNode]:
        settings = self.plan.settings
        replication = self.plan.replication
        if replication is not None:
            self.replicas = add_replicas(self.engine, replication, settings, self.calibration)
            ticks = random.Random(f"{self.plan.seed}/replica-ticks")  # not the run's draws
            bootstrap(self.replicas, self.env.now, ticks)
            self.engine.add_prober(PROBER_ID)
            ids = replication.replicas
            return self._build_agents({ids[0]: ids[1:]})
        coordinator = Coordinator(
            COORDINATOR_ID, settings, durable_memory=durable_coordinator(self.plan)
        )
        coordinator.stamp_tasks = True
        hosts = self.coordinator_hosts
        home: dict[str, str] = {}  # a tree's coordinators in processes: their process
        if self.plan.tree and self.coordinator_processes is not None:
            alone = crashed_coordinators(self.plan)  # as the real run hosts them
            hosted = topology_processes(self.plan.tree, self.coordinator_processes, alone)
            home = {node: f"coordinators-{k}" for k, ids in enumerate(hosted) for node in ids}
        root = home.get(COORDINATOR_ID)
        self.engine.add_node(COORDINATOR_ID, coordinator, "coordinator", root, hosts)
        if self.plan.quorum is not None:
            quorum = self.plan.quorum
            self.stores = add_stores(self.engine, quorum, settings, self.calibration)
        durable = durable_coordinator(self.plan)
        chains = ancestries(self.plan.tree)
        for below in self.plan.tree:  # the coordinators of a tree, parents first
            child = tree_node(below.node_id, settings, chains[below.node_id], None, durable)
            child.stamp_tasks = True
            where = home.get(below.node_id)
            self.tree.append(self.engine.add_node(below.node_id, child, "coordinator", where))
        self.engine.add_prober(PROBER_ID)
        return self._build_agents(chains)

    def _build_agents(self, chains: dict[str, tuple[str, ...]]) -> list[SimNode]:
        """The agents (and their links' vouchers), each with the coordinators it fails
        over to after its own (``chains``: a tree's ancestors, or the other replicas)."""
        settings = self.plan.settings
        processes = self.processes
        voucher_of: dict[str, str] = {}
        if processes and self.links:
            for worker in range(processes):
                host = f"worker-{worker}"
                mine = self.plan.agents[worker::processes]
                if self.plan.tree or self.replicas:  # links per coordinator, as tcp has them
                    pairs = [(s.agent_id, s.coordinator) for s in mine]
                    links = spread_by_leaf(pairs, self.links, host)
                else:
                    links = spread([s.agent_id for s in mine], self.links, host)
                for link in links:
                    if link.voucher:
                        chain = chains.get(link.coordinator, ())
                        core = Agent(link.voucher, link.coordinator, settings, fallbacks=chain)
                        self.engine.add_node(link.voucher, core, "agent", host)
                        self.vouchers[link.voucher] = []
                        voucher_of.update(dict.fromkeys(link.agent_ids, link.voucher))
        agents = []
        for index, spec in enumerate(self.plan.agents):
            voucher = voucher_of.get(spec.agent_id, "")
            core = Agent(
                spec.agent_id,
                spec.coordinator,
                settings,
                spec.capabilities,
                spec.subscriptions,
                vouched_by=voucher,
                fallbacks=chains.get(spec.coordinator, ()),
                quorum=self.plan.quorum,
            )
            process = f"worker-{index % processes}" if processes else None
            node = self.engine.add_node(spec.agent_id, core, "agent", process)
            if voucher:
                self.vouchers[voucher].append(node)
            agents.append(node)
        return agents

    def _feeds(self, ops: list[Operation]) -> list[Feed]:
        """The replay loops: one per agent worker process (tcp: each issues its own
        agents' ops, as ``real.tcp.worker_process.replay`` does), else one for all."""
        processes = self.processes
        if not processes:
            return [Feed(ops)] if ops else []
        process_of = {spec.agent_id: i % processes for i, spec in enumerate(self.plan.agents)}
        split: list[list[Operation]] = [[] for _ in range(processes)]
        for op in ops:
            split[process_of.get(op.origin, 0)].append(op)
        return [Feed(part) for part in split if part]

    def _hook(self) -> None:
        self.engine.on_welcome = self._welcomed
        self.engine.on_completions = self._completed
        self.engine.on_shed = self._shed
        self.engine.on_probe_reply = self._probe_answered

    # --- scheduling helpers -------------------------------------------------------

    def _at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` at simulated time ``when`` (a bare event, no process)."""
        event = Event(self.env)
        event._ok = True
        event._value = None
        event.callbacks.append(lambda _event: action())
        self.env.schedule(event, NORMAL, max(when - self.env.now, 0.0))

    def _wake_at(self, target: float, action: Callable[[], None]) -> None:
        """Run ``action`` when a real loop sleeping until ``target`` would wake."""
        self._at(target + self.engine.wake(target - self.env.now), action)

    # --- phases -------------------------------------------------------------------

    def register(self) -> None:
        """Every agent says hello now; one with a voucher once its voucher is
        welcomed (as the real link sends the voucher's hello first)."""
        nodes = self.engine.nodes
        for coordinator in self.tree:
            self.engine.start_agent(coordinator)
        for voucher in self.vouchers:
            self.engine.start_agent(nodes[voucher])
        for node in self.agents:
            if not node.core.vouched_by:  # type: ignore[union-attr]
                self.engine.start_agent(node)

    def load(self, progress: Progress | None) -> None:
        """Arm the workload feeder, the prober and the progress ticks from time 0."""
        for feed in self.feeds:
            self._wake_at(feed.ops[0].at, partial(self._feed, feed))
        first = self.prober.next_probe_at()
        if first is not None:
            self.probing = True
            self._wake_at(first, self._probe)
        status_at = self.prober.status_at
        if status_at is not None:  # on time: drawing a wake-up now would shift every draw
            self.asking = True
            self._at(status_at, self._ask_status)
        if progress is not None and self.plan.duration > 0:
            self._tick(progress, 0)
        self._check_done()

    def _feed(self, feed: Feed) -> None:
        ops, i = feed.ops, feed.next
        due = max(ops[i].at, self.env.now)
        nodes = self.engine.nodes
        issue = self.issue
        while i < len(ops) and ops[i].at <= due:
            op: Operation = ops[i]
            issue(nodes[op.origin], op)
            i += 1
        feed.next = i
        if i < len(ops):
            self._wake_at(ops[i].at, partial(self._feed, feed))
        else:
            self.unfed -= 1
            self._check_done()

    def _probe(self) -> None:
        self.unanswered += 1
        self.engine.send(PROBER_ID, self._prober_target(), self.prober.probe(self.env.now))
        following = self.prober.next_probe_at()
        if following is not None:
            self._wake_at(following, self._probe)
        else:
            self.probing = False

    def _ask_status(self) -> None:
        self.asking = False
        self.unanswered += 1  # answered, refused or lost like a probe
        self.engine.send(PROBER_ID, self._prober_target(), self.prober.status_request())

    def watch(self, live: LiveFeed) -> None:
        """Feed ``live`` every ``LIVE_INTERVAL`` of simulated time from time 0."""
        self.live = live
        self._at(0.0, self._live_tick)

    def _live_tick(self) -> None:
        self.flush_live()
        self._at(self.env.now + LIVE_INTERVAL, self._live_tick)

    def flush_live(self) -> None:
        """Hand ``live`` what happened since the last call (``protocol.records.LiveBatch``)."""
        if self.live is not None:
            self.live(self.live_parts.take(self.env.now, self.prober.results))

    def _tick(self, progress: Progress, step: int) -> None:
        progress(step / PROGRESS_STEPS)
        if step < PROGRESS_STEPS:
            when = (step + 1) * self.plan.duration / PROGRESS_STEPS
            self._at(when, lambda: self._tick(progress, step + 1))

    # --- what the engine reports ------------------------------------------------------

    def _welcomed(self, node: SimNode, at: float) -> None:
        vouched = self.vouchers.get(node.node_id)
        if vouched is not None:  # a voucher: its agents say hello now
            if node.node_id not in self.started_vouchers:
                self.started_vouchers.add(node.node_id)
                for agent in vouched:
                    self.engine.start_agent(agent)
            return
        if node.node_id not in self.registered:
            self.registered[node.node_id] = at
            if self.registration_only and len(self.registered) == len(self.agents):
                self._settled()

    def _settled(self) -> None:
        """Registration is over once every agent is registered and, in a tree, every
        subscription has reached every coordinator (as ``real.inproc.hub`` waits)."""
        if all(node.core.interest_settled() for node in self.tree):  # type: ignore[union-attr]
            self.settled_at = self.env.now
            self._finish()
        else:
            self._at(self.env.now + SETTLE_POLL, self._settled)

    def _completed(self, agent: Agent, before: int) -> None:
        if agent.node_id in self.vouchers:  # a voucher's broadcasts are owed to nobody
            return
        fresh = agent.completions[before:]
        self.seen += len(fresh)
        latest = self.latest
        for completion in fresh:
            at = completion.at
            if at > latest:
                latest = at
            if not completion.duplicate:
                self.missing -= 1
                if self.live is not None:
                    self.live_parts.add(completion)
        self.latest = latest
        if self.missing <= 0:
            self._check_done()

    def _shed(self, op_ids: list[int]) -> None:
        """Their origin gave these ops up unaccepted: their completions will not come."""
        expected = self._expected_of()
        self.missing -= sum(expected[op_id] for op_id in op_ids)
        if self.live is not None:
            self.live_parts.shed.extend(op_ids)
        if self.missing <= 0:
            self._check_done()

    def _expected_of(self) -> dict[int, int]:
        if self._expected is None:
            self._expected = {op.op_id: op.expected for op in self.plan.operations}
        return self._expected

    def _never_issued(self, op: Operation) -> None:
        """A fault kept ``op`` from being issued: its completions will not come."""
        self.missing -= op.expected
        self._check_done()

    def _undone(self, count: int) -> None:
        """A killed agent's last ``count`` completions never happened after all."""
        self.missing += count

    def _probe_lost(self) -> None:
        """A probe was dropped at a dead coordinator: it will not be answered."""
        self.unanswered -= 1
        self._check_done()

    def _probe_failed_over(self) -> None:
        """A probe was lost at a dead replica (the target has moved on): send the
        probes still in time to the new target, after ``retry_pause``."""
        self._resend_probes(retry_pause(False))
        self._probe_lost()

    def _resend_probes(self, pause: float = 0.0) -> None:
        """Send the probes still in time (``Prober.retry``) to the prober's target,
        after ``pause`` (counted as one probe unanswered until then)."""
        if pause > 0:
            self.unanswered += 1
            self._at(self.env.now + pause, self._resend_paused)
            return
        for probe in self.prober.retry(self.env.now):
            self.unanswered += 1
            self.engine.send(PROBER_ID, self._prober_target(), probe)

    def _resend_paused(self) -> None:
        self._resend_probes()
        self._probe_lost()

    def _probe_answered(self, msg: Message, at: float) -> None:
        if self.prober.receive(msg, at):
            self.unanswered -= 1
            self._check_done()
        elif self.replica_links is not None and type(msg) is Reject:  # a replica not leading
            named = leader_hint(msg.reason) in self.replica_links.replicas
            self.replica_links.prober_got(msg)
            self._resend_probes(retry_pause(named))
            self._probe_lost()
        elif type(msg) is ProbeReply:  # a probe sent again was answered twice
            self._probe_lost()

    def _prober_target(self) -> str:
        links = self.replica_links
        return links.target if links is not None else self.root

    def _check_done(self) -> None:
        if self.registration_only or self.probing or self.asking:
            return
        if self.unfed:
            return
        if self.missing <= 0 and self.unanswered == 0:
            self._finish()

    def _time_is_up(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self.stop.triggered:
            self.stop.succeed()

    def close(self) -> None:
        """Break the reference cycles (pending events and callbacks that point back
        at the run or the engine), so that the model is freed as soon as it is dropped."""
        self.env._queue.clear()
        if self.faults is not None:
            self.faults.close()
            self.faults = None  # it calls back into the run: drop that cycle too
        if self.replica_links is not None:
            self.replica_links.close()
        if self.store_links is not None:
            self.store_links.close()
        self.engine.close()

    # --- the result -------------------------------------------------------------------

    def completions(self) -> list[Completion]:
        """Every agent's completions (every life of it, with faults), in plan agent
        order, up to the time limit."""
        limit = self.limit
        kept: list[Completion] = []
        if self._seen_within():
            for node in self.agents:
                whole: Agent = node.core  # type: ignore[assignment]
                kept.extend(whole.completions)
            return kept
        for node in self.agents:
            agent: Agent = node.core  # type: ignore[assignment]
            lives = self.faults.lives(node) if self.faults is not None else (agent,)
            for life in lives:
                kept.extend(c for c in life.completions if c.at <= limit)
        return kept

    def _seen_within(self) -> bool:
        """Whether every completion went through ``_completed`` (no fault kept an
        agent's earlier lives aside), so that ``latest`` covers them all, and none
        came after the time limit."""
        if self.faults is not None or self.latest > self.limit:
            return False
        total = 0
        for node in self.agents:
            agent: Agent = node.core  # type: ignore[assignment]
            total += len(agent.completions)
        return total == self.seen

    def result(self, lead: float, notes: list[str]) -> DriverResult:
        completions = self.completions()
        answered = [p.answered for p in self.prober.results if p.answered is not None]
        if self._seen_within():
            last = max(answered + ([self.latest] if self.seen else []), default=self.env.now)
        else:
            last = max([c.at for c in completions] + answered, default=self.env.now)
        result = DriverResult(
            backend="sim",
            transport=self.calibration.transport,
            completions=completions,
            probes=list(self.prober.results),
            registered=dict(self.registered),
            end_time=min(max(self.env.now, last, 0.0), self.limit),
            notes=self._notes(lead, notes),
            status=self.prober.status,
        )
        result.busy = self.engine.busy()
        result.replicas = replica_counts(self.replicas)
        result.stores = store_counts(self.stores)
        if self.stores:
            result.final_store = final_store(self.stores, result.end_time)
        if self.store_links is not None:
            result.events = self.store_links.all_events()
        if self.replica_links is not None:
            result.events = self.replica_links.all_events()
            if self.replica_links.dropped:
                dropped = self.replica_links.dropped
                result.notes.append(f"{dropped} messages between replicas lost to a partition")
        cores = self.tree_cores()
        result.task_stamps = [stamp for core in cores for stamp in core.take_task_stamps()]
        if self.tree:
            result.coordinators = tree_figures(cores)
        if self.faults is not None:
            self.faults.fill(result, self.agents, self.limit)
        else:
            history = result.mem_history
            assert history is not None
            for node in self.agents:
                agent: Agent = node.core  # type: ignore[assignment]
                result.accepted.extend(agent.accepted)
                result.shed.extend(agent.shed)
                history.extend(memory_until(agent, self.limit))
                if self.stores:  # checked against the quorum store at the end
                    result.write_acks.extend(a for a in agent.write_acks if a.at <= self.limit)
        return result

    def tree_cores(self) -> list[Coordinator]:
        """The coordinators: the root, then a tree's others."""
        if self.replicas:  # the leader's, while it serves
            replicas = [node.core for node in self.replicas]
            leaders = [r.coordinator for r in replicas if isinstance(r, SimReplica)]
            return [core for core in leaders if core is not None]
        nodes = [self.engine.nodes[COORDINATOR_ID], *self.tree]
        return [n.core for n in nodes if isinstance(n.core, Coordinator)]

    def _cpu_layout(self) -> str:
        if self.calibration.cpu_sharing == "one-loop":
            return self.calibration.cpu_sharing
        cores = self.engine.cores
        if cores is not None:
            return f"{self._process_layout()}; every process shares {len(cores.free)} cores"
        return self._process_layout()

    def _process_layout(self) -> str:
        hosts = self.coordinator_hosts
        coordinator = f"coordinator on {hosts} hosts" if hosts > 1 else "coordinator its own"
        if self.plan.tree:
            count = self.coordinator_processes
            coordinator = (
                "each coordinator its own"
                if count is None
                else f"the tree's coordinators share {count} processes"
            )
        if self.processes:
            return f"agents share {self.processes} worker processes, {coordinator}"
        return "per-node" if hosts == 1 else f"per-node, {coordinator}"

    def _notes(self, lead: float, notes: list[str]) -> list[str]:
        cal, engine = self.calibration, self.engine
        notes = [
            f"calibration: {cal.source or 'in memory'} (host {cal.host}, {cal.date or 'no date'}, "
            f"transport {cal.transport}, cpu {self._cpu_layout()})",
            f"model: {engine.messages} simulated messages, {engine.timers} timer jobs; "
            f"agents started at {-lead:.6f} s",
            *notes,
        ]
        if self.missing > 0 or self.unanswered > 0:
            notes.append(
                f"stopped at the drain timeout ({self.limit:g} s): {max(self.missing, 0)} "
                f"expected completions missing, {self.unanswered} probes unanswered"
            )
        if engine.undeliverable:
            notes.append(f"{engine.undeliverable} messages to unknown nodes were dropped")
        if self.tree:
            notes.append(tree_note(tree_figures(self.tree_cores())))
        notes.extend(replica_note(n, c) for n, c in replica_counts(self.replicas).items())
        if self.plan.quorum is not None:
            notes.append(self.plan.quorum.note())
        notes.extend(store_note(n, c) for n, c in store_counts(self.stores).items())
        busy = engine.busy()
        if busy:
            charged = ", ".join(
                f"{name} {sum(parts[part] for part in BUSY_PARTS):.2f} s"
                for name, parts in sorted(busy.items())
            )
            notes.append(f"CPU the model charged (to set beside a real process's): {charged}")
        return notes


def _usage(cpu_seconds: float) -> ProcessUsage:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return ProcessUsage("sim", peak, cpu_seconds)


def _record_stats(messages: int, timers: int, wall_seconds: float, loop_wall: float) -> None:
    _last.clear()
    _last.update(
        messages=messages,
        timers=timers,
        wall_seconds=wall_seconds,
        run_wall_seconds=loop_wall,
        messages_per_wall_s=messages / wall_seconds if wall_seconds > 0 else 0.0,
    )
