"""Replaying a plan's fault timeline on the tcp transport's real processes.

How it works. ``FaultSupervisor.run`` walks the plan's faults as a list of
steps (each fault's injection at ``fault.at``, its heal at ``fault.end``, in
plan time on the run clock) and acts on the processes ``real.tcp.run`` started:

- **kill_agent**: SIGKILL the worker process(es) hosting ``fault.agents``
  (agents are dealt round-robin to workers, as ``real.tcp.run.worker_specs``
  does, and the harness lists every agent of a hit worker). At the heal a new
  process starts with the same ``WorkerSpec`` plus ``life``, ``resume_at =
  fault.end`` (it issues only the ops scheduled from then on) and ``origins``
  (so it can recall from its record log what earlier lives handled; see
  ``real.tcp.worker_process``). Once its agents are registered again it gets
  ``("go", t0)`` like the first life did.
- **pause_agent**: SIGSTOP the worker(s), SIGCONT at the end of the last
  pause in effect on it.
- **crash_coordinator**: SIGKILL the coordinator process (in a tree, the
  process that hosts the named node alone: ``real.tcp.treeservers``). At the
  heal the supervisor reads its SQLite file through a read-only connection and
  records the memory store there as a ``StoreSnapshot`` in
  ``DriverResult.restarts`` (what the new coordinator starts from; a tree
  node other than the root holds no memory), then starts a new process on the
  same port(s) and database (``spawn``); it loads the memory store and the bus
  journal, agents reconnect with their backoff (in a tree they have failed over
  up the tree meanwhile), and a tree node rejoins its parent.
- **pause_replica**: SIGSTOP the replica's process (``node: leader``: the
  one serving then), SIGCONT at the end of the last pause in effect on it.
- **partition_replica**: the replicas' link proxies (``ReplicaServers``, started
  when the plan partitions replicas) drop every frame on the links between the
  replica and the others, until its last partition ends (``between``).
- **partition / link_delay / link_loss**: with ``LinkProxies`` (a child
  process running ``real.netfault.process.proxy_process_main``, one proxy per worker)
  the worker's proxy is told the combined condition of the link faults in
  effect on it.

What the faults mean (nested pauses, a kill during a restart, combined link
faults, which ops a restarted worker issues) is decided by ``protocol.faults``:
one ``Target`` per worker process and one per coordinator a crash names. Steps use plan
times, so the rules see the same timeline as the model.

Restarts run as tasks, so the timeline keeps going while a process boots.
Every injection and heal appends ``NodeEvent``s (``"injected"``,
``"healed"``) to the result: one per affected agent, or ``"coordinator"`` (a
tree node other than the root: its id).
A heal of a restart is stamped when the new process is ready (a worker: all
of its agents registered; a coordinator: listening), and the restart
latency, from starting the process to ready, goes to the notes. A restart
that fails invalidates the run: a worker's is its ``Child.failed`` (which
``real.tcp.run`` turns into an error), a coordinator's goes to
``DriverResult.errors``.
``settled`` is False while steps or restarts are outstanding, so the run
waits for them (until its drain deadline). ``close`` stops what is pending
and resumes every stopped process, so reaping can finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from protocol.faults import (
    CRASH_EVENT_ROOT,
    LINK_FAULTS,
    REPLICA_FAULTS,
    Effect,
    LinkCondition,
    Target,
    between,
    crash_event_node,
    timeline,
)
from protocol.plan import Fault, FaultKind, OpKind, Plan
from protocol.records import DriverResult, NodeEvent, StoreSnapshot
from real.clock import RunClock
from real.tcp.children import Child, ChildProcesses
from real.tcp.persistence import read_snapshot
from real.tcp.worker_process import WorkerSpec
from real.tcp.workers import LOOP_RESOLUTION, REGISTER_TIMEOUT

PROCESS_FAULTS = (
    FaultKind.KILL_AGENT,
    FaultKind.PAUSE_AGENT,
    FaultKind.CRASH_COORDINATOR,
    FaultKind.CRASH_REPLICA,
    FaultKind.PAUSE_REPLICA,
)
CRASHES = (FaultKind.CRASH_COORDINATOR, *REPLICA_FAULTS)  # faults of a coordinator or replica
LEADER = "leader"  # a replica crash's node: whichever replica leads when it hits
EXIT_WAIT = 2.0
QUIET_MIN = 1.0
PROXY_START_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0


def has_link_faults(plan: Plan) -> bool:
    return any(fault.kind in LINK_FAULTS for fault in plan.faults)


def has_crash(plan: Plan) -> bool:
    return any(fault.kind == FaultKind.CRASH_COORDINATOR for fault in plan.faults)


class Restartable(Protocol):
    """A coordinator process a crash kills and restarts: ``real.tcp.children.ServerProcess``
    (a flat coordinator), ``real.tcp.treeservers.TreeProcess`` (a tree's node) or
    ``real.tcp.replicaservers.ReplicaProcess`` (a replica, which a pause also stops)."""

    child: Child | None
    db_path: str | None  # the SQLite file holding the memory store, if it has one

    def kill(self) -> None: ...
    async def spawn(self) -> float: ...


class Cuts(Protocol):
    """The replicas' links (``real.tcp.replicaservers.ReplicaServers``)."""

    def cut(self, cut: Callable[[str, str], bool]) -> None: ...


class LinkProxies:
    """One fault proxy per worker in a child process (``real.netfault.proxy``), driven by pipe."""

    def __init__(self, child: Child, ports: list[int]) -> None:
        self.child = child
        self.ports = ports

    @classmethod
    async def start(
        cls,
        children: ChildProcesses,
        upstream_port: int,
        count: int,
        seed: int,
        use_uvloop: bool = True,
    ) -> LinkProxies:
        child = children.start("proxy", "proxy", upstream_port, count, seed, use_uvloop)
        reply = await child.channel.get(timeout=PROXY_START_TIMEOUT)
        if not (isinstance(reply, tuple) and reply[0] == "ready"):
            raise RuntimeError(f"the link fault proxy did not start (got {reply!r})")
        return cls(child, [int(port) for port in reply[1]])

    def apply(self, index: int, link: LinkCondition) -> None:
        """Give proxy ``index`` the combined condition of its link faults."""
        if link.clear:
            self.child.channel.send(("clear", index))
            return
        self.child.channel.send(("fault", index, link.delay, link.loss, link.partitioned))

    async def stop(self, timeout: float = 5.0) -> list[dict[str, int]]:
        """Stop the proxies; their stats, one dict per proxy (empty if they did not answer)."""
        self.child.channel.send("stop")
        with contextlib.suppress(TimeoutError):
            while (reply := await self.child.channel.get(timeout=timeout)) is not None:
                if isinstance(reply, tuple) and reply[0] == "stats":
                    return [dict(stats) for stats in reply[1]]
        return []


class FaultSupervisor:
    """Injects and heals the plan's faults on the run's processes (see the module doc)."""

    def __init__(
        self,
        plan: Plan,
        children: ChildProcesses,
        coordinators: dict[str, Restartable],  # by the node a crash's events name
        pool: list[Child],
        specs: list[WorkerSpec],
        clock: RunClock,
        result: DriverResult,
        proxies: LinkProxies | None = None,
        leader: Callable[[], str | None] | None = None,
        replica_links: Cuts | None = None,
    ) -> None:
        self.plan = plan
        self.replica_links = replica_links
        self.leader = leader  # a replicated coordinator's: which replica leads now
        self.crashed: dict[int, str] = {}  # fault id -> the coordinator or replica it hit
        self.children = children
        self.coordinators = coordinators
        self.pool = pool
        self.specs = specs
        self.clock = clock
        self.result = result
        self.proxies = proxies
        self.worker_of = {a.agent_id: spec.index for spec in specs for a in spec.agents}
        self.steps = timeline(plan.faults)
        self.tasks: set[asyncio.Task[None]] = set()
        self.lives = [0] * len(specs)  # processes started per worker, for its record log
        self.targets = [Target(spec.name) for spec in specs]  # the rules' view of each worker
        self.crashes = {name: Target(name) for name in coordinators}  # the rules' view
        self._counted = [-math.inf] * len(specs)  # never-issued ops counted up to, per worker
        self._coordinator_restarts: dict[str, asyncio.Task[Any]] = {}
        self.done = not self.steps
        self.settled_at = math.inf if self.steps else -math.inf
        self.never_issued = 0  # expected completions of ops a killed worker never issued
        self.quiet_after = max(QUIET_MIN, plan.settings.max_rto)
        self._origins: dict[int, str] | None = None

    # --- the timeline -------------------------------------------------------------

    async def run(self) -> None:
        """Apply every step at its plan time."""
        try:
            for step in self.steps:
                while (wait := step.at - self.clock.now()) > 0:  # timers may fire early
                    await asyncio.sleep(max(wait, LOOP_RESOLUTION))
                if step.inject:
                    self.inject(step.fault)
                else:
                    self.heal(step.fault)
        finally:
            self.done = True

    def settled(self) -> bool:
        """True once every step ran and every restart finished (``settled_at`` is set
        to the run time when that was first seen)."""
        if self.done and not self.tasks:
            if self.settled_at == math.inf:
                self.settled_at = self.clock.now()
            return True
        return False

    def inject(self, fault: Fault) -> None:
        """Put ``fault`` in effect; "injected" is stamped once it is (after the signals)."""
        if fault.kind in CRASHES:
            name = self._crash_target(fault)
            if not name:
                return
            self.crashed[fault.fault_id] = name
            effect = self.crashes[name].inject(fault, fault.at)
            if effect == Effect.PAUSE:
                self._stop(name, signal.SIGSTOP)
            elif effect == Effect.LINKS:
                self._cut_replicas()
            elif effect != Effect.NONE:
                self.coordinators[name].kill()  # a coordinator being started dies too
            self._events(self.clock.now(), "injected", (name,))
            return
        for index in self._workers(fault):
            child = self.pool[index]
            effect = self.targets[index].inject(fault, fault.at)
            if effect in (Effect.KILL, Effect.CANCEL_RESTART):
                child.killed = True
                self._signal(child, signal.SIGKILL)
            elif effect == Effect.PAUSE:
                self._signal(child, signal.SIGSTOP)
            elif effect == Effect.LINKS:
                self._apply_links(index)
        self._events(self.clock.now(), "injected", fault.agents)

    def heal(self, fault: Fault) -> None:
        now = self.clock.now()
        if fault.kind in CRASHES:
            name = self.crashed.get(fault.fault_id, "")
            if not name:
                return  # it hit nothing (no replica led)
            target = self.crashes[name]
            effect = target.heal(fault, fault.end)
            if effect == Effect.RESTART:
                self._spawn(self._restart_coordinator(name, target.life))
                return
            if effect == Effect.RESUME:
                self._stop(name, signal.SIGCONT)
            elif effect == Effect.LINKS:
                self._cut_replicas()
            if fault.kind != FaultKind.CRASH_REPLICA:
                self._events(now, "healed", (name,))
            return
        restarts = False
        for index in self._workers(fault):
            effect = self.targets[index].heal(fault, fault.end)
            if effect == Effect.RESTART:
                self._spawn(self._respawn(index, fault, self.targets[index].life))
            elif effect == Effect.RESUME:
                self._signal(self.pool[index], signal.SIGCONT)
            elif effect == Effect.LINKS:
                self._apply_links(index)
            restarts = restarts or fault.kind == FaultKind.KILL_AGENT
        if not restarts:  # a restart's heal is stamped when the new process is ready
            self._events(now, "healed", fault.agents)

    # --- restarts -----------------------------------------------------------------

    async def _respawn(self, index: int, fault: Fault, life: int) -> None:
        """Start worker ``index`` again; once its agents registered, send it "go"."""
        target = self.targets[index]
        try:
            old = self.pool[index]
            await _exited(old)
            self.lives[index] += 1
            resume_at = target.restart_at  # it issues the ops due from here on
            since = max(target.down[-1][0], self._counted[index])
            self.never_issued += sum(
                op.expected for op in self.specs[index].operations if since <= op.at < resume_at
            )
            self._counted[index] = resume_at
            spec = replace(
                self.specs[index],
                life=self.lives[index],
                resume_at=resume_at,
                origins=self.origins(),
            )
            started = time.perf_counter()
            child = self.children.start(spec.name, "worker", spec)
            child.booting = True  # so the run's report reader leaves its "ready" to us
            child.count = old.count  # until the new life reports (it adds what was logged)
            self.pool[index] = child
            reply = await child.channel.get(timeout=REGISTER_TIMEOUT + 10.0)
            if child.killed or not target.live(life):
                return  # killed again while it started: the next heal restarts it
            if not (isinstance(reply, tuple) and reply[0] == "ready"):
                child.failed = f"{spec.name} did not get ready after its restart: {reply!r}"
                return
            child.channel.send(("go", self.clock.t0))
            child.booting = False
            ready = max(reply[1].values(), default=time.perf_counter())
            self.result.notes.append(f"{spec.name} restarted in {ready - started:.2f} s")
            mine = {a.agent_id for a in spec.agents}
            healed = tuple(a for a in fault.agents if a in mine)
            self._events(ready - self.clock.t0, "healed", healed)
        except TimeoutError:
            self.pool[index].failed = f"worker-{index} did not get ready after its restart"
        except Exception as exc:  # a supervisor bug must fail the run, not vanish in a task
            self.pool[index].failed = f"restarting worker-{index} failed: {exc!r}"
        finally:
            self.pool[index].booting = False

    async def _restart_coordinator(self, name: str, life: int) -> None:
        """Record what the database holds (the memory store's, when it has one), then
        start coordinator ``name`` again on the same ports (after any restart of it
        still under way: one process of a coordinator at a time)."""
        previous = self._coordinator_restarts.get(name)
        current = asyncio.current_task()
        assert current is not None
        self._coordinator_restarts[name] = current
        server = self.coordinators[name]
        who = "coordinator" if name == CRASH_EVENT_ROOT else f"coordinator {name}"
        if self.leader is not None:
            who = f"replica {name}"
        elif self.plan.quorum is not None and name in self.plan.quorum.replicas:
            who = f"storage replica {name}"
        try:
            if previous is not None:
                await asyncio.wait([previous])
            if server.child is not None:
                await _exited(server.child)
            at = self.clock.now()
            db_path = server.db_path
            if db_path:
                entries = await asyncio.to_thread(read_snapshot, db_path)
                self.result.restarts.append(StoreSnapshot(at, entries))
            started = time.perf_counter()
            listening = await server.spawn()
            if not self.crashes[name].live(life):  # it crashed again while it started
                server.kill()
                return
            self.result.notes.append(f"{who} restarted in {listening - started:.2f} s")
            self._events(listening - self.clock.t0, "healed", (name,))
        except Exception as exc:  # noted; the run carries on without that coordinator
            self.result.notes.append(f"the {who} did not restart: {exc!r}")
            self.result.errors.append(f"the {who} did not restart: {exc!r}")

    def _crash_target(self, fault: Fault) -> str:
        """The coordinator (or replica) a crash hits; "" when a replica crash finds no
        leader to crash (noted)."""
        if fault.kind == FaultKind.CRASH_COORDINATOR:
            return crash_event_node(fault.node)
        if fault.node != LEADER:
            return fault.node
        leader = self.leader() if self.leader is not None else None
        if leader is None:
            self.result.notes.append(f"fault {fault.fault_id}: no replica led at {fault.at:g} s")
        return leader or ""

    def origins(self) -> dict[int, str]:
        """The origin of every publish, direct and broadcast op (for ``Agent.recall``)."""
        if self._origins is None:
            bus = (OpKind.PUBLISH, OpKind.DIRECT, OpKind.BROADCAST)
            ops = self.plan.operations
            self._origins = {op.op_id: op.origin for op in ops if op.kind in bus}
        return self._origins

    # --- helpers ------------------------------------------------------------------

    def _workers(self, fault: Fault) -> list[int]:
        return sorted({self.worker_of[a] for a in fault.agents if a in self.worker_of})

    def _apply_links(self, index: int) -> None:
        if self.proxies is None:  # run_plan starts them whenever the plan has link faults
            raise RuntimeError("a link fault without the link fault proxies")
        self.proxies.apply(index, self.targets[index].link())

    def _stop(self, name: str, signum: int) -> None:
        """SIGSTOP or SIGCONT coordinator (replica) ``name``'s process."""
        child = self.coordinators[name].child
        if child is not None:
            self._signal(child, signum)

    def _cut_replicas(self) -> None:
        """Apply the replicas' partitions in effect: a link is cut while either end is."""
        if self.replica_links is None:  # run_plan starts them whenever a plan partitions
            raise RuntimeError("a replica partition without the replicas' link proxies")
        crashes = self.crashes
        self.replica_links.cut(lambda a, b: between(crashes[a], crashes[b]).partitioned)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _signal(self, child: Child, signum: int) -> None:
        if child.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signum)

    def _events(self, at: float, kind: str, nodes: tuple[str, ...]) -> None:
        self.result.events.extend(NodeEvent(at, kind, node) for node in nodes)

    async def close(self) -> None:
        """Let restarts in flight finish (bounded), then resume every stopped worker."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=CLOSE_TIMEOUT)
        for task in list(self.tasks):
            task.cancel()
        for index, target in enumerate(self.targets):
            if target.paused:
                target.pauses.clear()
                self._signal(self.pool[index], signal.SIGCONT)
        for name, target in self.crashes.items():
            if target.paused:
                target.pauses.clear()
                self._stop(name, signal.SIGCONT)


async def _exited(child: Child, timeout: float = EXIT_WAIT) -> None:
    """Wait (polling) until a killed child's process is gone."""
    deadline = time.monotonic() + timeout
    while child.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
