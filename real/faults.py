"""Replaying a plan's fault timeline on the tcp transport's real processes.

How it works. ``FaultSupervisor.run`` walks the plan's faults as a list of
steps (each fault's injection at ``fault.at``, its heal at ``fault.end``, in
plan time on the run clock) and acts on the processes ``real.tcp`` started:

- **kill_agent**: SIGKILL the worker process(es) hosting ``fault.agents``
  (agents are dealt round-robin to workers, as ``real.tcp.worker_specs``
  does, and the harness lists every agent of a hit worker). At the heal a new
  process starts with the same ``WorkerSpec`` plus ``life``, ``resume_at =
  fault.end`` (it issues only the ops scheduled from then on) and ``origins``
  (so it can recall from its record log what earlier lives handled; see
  ``real.worker_process``). Once its agents are registered again it gets
  ``("go", t0)`` like the first life did.
- **pause_agent**: SIGSTOP the worker(s), SIGCONT at the heal (overlapping
  pauses resume at the last heal).
- **crash_coordinator**: SIGKILL the coordinator process. At the heal the
  supervisor reads its SQLite file through a read-only connection and
  records that state as a ``StoreSnapshot`` in ``DriverResult.restarts``
  (what the new coordinator starts from), then starts a new coordinator on
  the same port and database (``ServerProcess.spawn``); it loads the memory
  store and the bus journal and agents reconnect with their backoff.
- **partition / link_delay / link_loss**: with ``LinkProxies`` (a child
  process running ``real.proxy_process.proxy_process_main``, one proxy per worker)
  the worker's proxy is told the combined fault of every active link fault
  on it: delays add up, losses combine, any partition drops everything.

Restarts run as tasks, so the timeline keeps going while a process boots.
Every injection and heal appends ``NodeEvent``s (``"injected"``,
``"healed"``) to the result: one per affected agent, or ``"coordinator"``.
A heal of a restart is stamped when the new process is ready (a worker: all
of its agents registered; a coordinator: listening), and the restart
latency, from starting the process to ready, goes to the notes.
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
from dataclasses import dataclass, replace
from typing import Any

from protocol.plan import Fault, FaultKind, OpKind, Plan
from protocol.records import DriverResult, NodeEvent, StoreSnapshot
from real.children import Child, ChildProcesses, ServerProcess
from real.clock import RunClock
from real.persistence import read_snapshot
from real.worker_process import WorkerSpec
from real.workers import LOOP_RESOLUTION, REGISTER_TIMEOUT

LINK_FAULTS = (FaultKind.PARTITION, FaultKind.LINK_DELAY, FaultKind.LINK_LOSS)
PROCESS_FAULTS = (FaultKind.KILL_AGENT, FaultKind.PAUSE_AGENT, FaultKind.CRASH_COORDINATOR)
EXIT_WAIT = 2.0
QUIET_MIN = 1.0
PROXY_START_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0


def has_link_faults(plan: Plan) -> bool:
    return any(fault.kind in LINK_FAULTS for fault in plan.faults)


def has_crash(plan: Plan) -> bool:
    return any(fault.kind == FaultKind.CRASH_COORDINATOR for fault in plan.faults)


@dataclass(frozen=True, slots=True)
class Step:
    """One thing to do on the timeline: inject or heal ``fault`` at plan time ``at``."""

    at: float
    inject: bool
    fault: Fault


def timeline(faults: tuple[Fault, ...]) -> list[Step]:
    """Every injection and heal in time order (heals first on a tie, then by fault id)."""
    steps = [Step(f.at, True, f) for f in faults] + [Step(f.end, False, f) for f in faults]
    steps.sort(key=lambda s: (s.at, s.inject, s.fault.fault_id))
    return steps


class LinkProxies:
    """One fault proxy per worker in a child process (``real.proxy``), driven by pipe."""

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

    def apply(self, index: int, faults: list[Fault]) -> None:
        """Give proxy ``index`` the combined effect of ``faults`` (none: clear it)."""
        if not faults:
            self.child.channel.send(("clear", index))
            return
        delay = sum(f.delay for f in faults if f.kind == FaultKind.LINK_DELAY)
        kept = math.prod(1.0 - f.loss for f in faults if f.kind == FaultKind.LINK_LOSS)
        partitioned = any(f.kind == FaultKind.PARTITION for f in faults)
        self.child.channel.send(("fault", index, delay, 1.0 - kept, partitioned))

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
        server: ServerProcess,
        pool: list[Child],
        specs: list[WorkerSpec],
        clock: RunClock,
        result: DriverResult,
        proxies: LinkProxies | None = None,
    ) -> None:
        self.plan = plan
        self.children = children
        self.server = server
        self.pool = pool
        self.specs = specs
        self.clock = clock
        self.result = result
        self.proxies = proxies
        self.worker_of = {a.agent_id: spec.index for spec in specs for a in spec.agents}
        self.steps = timeline(plan.faults)
        self.tasks: set[asyncio.Task[None]] = set()
        self.lives = [0] * len(specs)
        self.respawning: set[int] = set()
        self.down_since: dict[int, float] = {}
        self.restarting = False
        self.paused = [0] * len(specs)
        self.links: list[list[Fault]] = [[] for _ in specs]
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
        kind = fault.kind
        if kind == FaultKind.CRASH_COORDINATOR:
            self.server.kill()
            self._events(self.clock.now(), "injected", ("coordinator",))
            return
        killed = []
        for index in self._workers(fault):
            child = self.pool[index]
            if kind == FaultKind.KILL_AGENT:
                if child.alive and not child.killed:
                    child.killed = True
                    self._signal(child, signal.SIGKILL)
                    killed.append(index)
            elif kind == FaultKind.PAUSE_AGENT:
                self.paused[index] += 1
                if self.paused[index] == 1:
                    self._signal(child, signal.SIGSTOP)
            elif kind in LINK_FAULTS:
                self.links[index].append(fault)
                self._apply_links(index)
        now = self.clock.now()
        for index in killed:
            self.down_since[index] = now  # ops from here on die with the process
        self._events(now, "injected", fault.agents)

    def heal(self, fault: Fault) -> None:
        now = self.clock.now()
        kind = fault.kind
        if kind == FaultKind.CRASH_COORDINATOR:
            if not self.server.alive and not self.restarting:
                self.restarting = True
                self._spawn(self._restart_coordinator(fault))
            return
        if kind == FaultKind.KILL_AGENT:
            for index in self._workers(fault):
                if not self.pool[index].alive and index not in self.respawning:
                    self.respawning.add(index)
                    self._spawn(self._respawn(index, fault))
            return
        for index in self._workers(fault):
            if kind == FaultKind.PAUSE_AGENT:
                self.paused[index] -= 1
                if self.paused[index] == 0:
                    self._signal(self.pool[index], signal.SIGCONT)
            elif kind in LINK_FAULTS:
                self.links[index].remove(fault)
                self._apply_links(index)
        self._events(now, "healed", fault.agents)

    # --- restarts -----------------------------------------------------------------

    async def _respawn(self, index: int, fault: Fault) -> None:
        """Start worker ``index`` again; once its agents registered, send it "go"."""
        try:
            old = self.pool[index]
            await _exited(old)
            self.lives[index] += 1
            since = self.down_since.pop(index, fault.at)
            self.never_issued += sum(
                op.expected for op in self.specs[index].operations if since <= op.at < fault.end
            )
            spec = replace(
                self.specs[index],
                life=self.lives[index],
                resume_at=fault.end,
                origins=self.origins(),
            )
            started = time.perf_counter()
            child = self.children.start(spec.name, "worker", spec)
            child.booting = True  # so the run's report reader leaves its "ready" to us
            child.count = old.count  # until the new life reports (it adds what was logged)
            self.pool[index] = child
            reply = await child.channel.get(timeout=REGISTER_TIMEOUT + 10.0)
            if child.killed:
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
            self.respawning.discard(index)

    async def _restart_coordinator(self, fault: Fault) -> None:
        """Record what the database holds, then start a coordinator on the same port."""
        try:
            if self.server.child is not None:
                await _exited(self.server.child)
            at = self.clock.now()
            db_path = self.server.db_path
            entries = await asyncio.to_thread(read_snapshot, db_path) if db_path else {}
            self.result.restarts.append(StoreSnapshot(at, entries))
            started = time.perf_counter()
            listening = await self.server.spawn()
            self.result.notes.append(f"coordinator restarted in {listening - started:.2f} s")
            self._events(listening - self.clock.t0, "healed", ("coordinator",))
        except Exception as exc:  # noted; the run carries on without a coordinator
            self.result.notes.append(f"the coordinator did not restart: {exc!r}")
        finally:
            self.restarting = False

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
        self.proxies.apply(index, self.links[index])

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
        for index, count in enumerate(self.paused):
            if count > 0:
                self.paused[index] = 0
                self._signal(self.pool[index], signal.SIGCONT)


async def _exited(child: Child, timeout: float = EXIT_WAIT) -> None:
    """Wait (polling) until a killed child's process is gone."""
    deadline = time.monotonic() + timeout
    while child.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
