"""The tcp transport: a coordinator process, agent worker processes, loopback sockets.

``run_plan`` replays a plan on real processes and returns a ``DriverResult``
(backend "real", transport "tcp"). In order:

1. Start the coordinator server (``real.server.server_process_main``) in a
   child process. It binds 127.0.0.1 on port 0 and sends the port back over
   its pipe.
2. Start ``workers`` worker processes (``real.workers.run_worker``). Agents
   are dealt round-robin to workers; each worker gets the ops its agents
   originate and hosts its agents over ``connections`` links (0 = one link
   per agent). Each worker registers its agents and reports "ready".
3. Once every agent is registered, choose ``t0 = perf_counter() + START_LEAD``
   and send ``("go", t0)`` to every worker. ``perf_counter`` is
   CLOCK_MONOTONIC, shared by every process on the host, so all of them
   agree on the run clock (``real.clock.RunClock``).
4. In this process, an availability prober (its own connection, node id
   ``probe-0``) sends a ``Probe`` every ``plan.probe_interval`` until the
   plan's duration and records a ``ProbeResult`` per probe; ``progress``
   gets the elapsed fraction about every 0.5 s.
5. Workers report their count of unique completions every 0.1 s. The run
   ends once the plan's duration has passed and every expected completion
   has arrived, or at ``duration + drain_timeout``, or when a worker fails.
6. Workers are told to stop and send back completions (already in run
   time), registration times and their ``ProcessUsage``; then the server is
   told to stop: it closes its connections, persists the last writes, closes
   the database and sends back its own usage and report.

No orphans: everything after the first child starts is inside
``try/finally``. ``ChildProcesses.reap`` closes every pipe (a child whose
pipe closes stops by itself), joins each process with a timeout, then
terminates and finally kills any that remain, noting each one it had to
kill in the result. Children also stop on their own at their deadlines.

Children are started like ``multiprocessing``'s "spawn" (a fresh
interpreter: no inherited event loop, sockets or locks) but with
``subprocess`` running ``python -c CHILD_BOOT ROOT FD NAME``: the child puts
this checkout first on ``sys.path``, wraps the inherited end of a
``multiprocessing.Pipe`` (``pass_fds``) and reads its role and arguments as
the first message (``child_main``). Unlike ``multiprocessing.Process``
this never re-imports the caller's ``__main__`` (a script without a
``__main__`` guard still works, and pytest's entry point is not re-imported
per child) and starts no ``resource_tracker`` helper, so the only children are
the run's own and all of them are gone when ``run_plan`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from protocol.codec import MalformedFrame, encode_body
from protocol.messages import Probe, ProbeReply
from protocol.plan import Plan
from protocol.records import Completion, DriverResult, ProbeResult, ProcessUsage
from protocol.settings import ProtocolSettings
from real.clock import RunClock, new_event_loop
from real.framing import FramedLink, PipeChannel, open_link
from real.gctune import POLICY
from real.server import DEFAULT_HOST, ServerReport, server_process_main
from real.usage import own_usage
from real.workers import REGISTER_TIMEOUT, WorkerResult, WorkerSpec, run_worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from real.tcp import child_main; sys.exit(child_main(sys.argv[2:]))"
)
PROBER = "probe-0"
START_LEAD = 0.2
SERVER_START_TIMEOUT = 30.0
RESULT_TIMEOUT = 60.0
JOIN_TIMEOUT = 5.0
PROGRESS_INTERVAL = 0.5
Progress = Callable[[float], None]


@dataclass(slots=True)
class Child:
    """A child process and our end of its pipe."""

    name: str
    process: subprocess.Popen[bytes]
    channel: PipeChannel
    count: int = 0
    failed: str | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass(slots=True)
class ChildProcesses:
    """Every child of one run, so that ``reap`` can leave none behind."""

    children: list[Child] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def start(self, name: str, role: str, *args: Any) -> Child:
        """Start a child interpreter (``CHILD_BOOT``) and send it ``(role, args)``."""
        ours, theirs = multiprocessing.Pipe(duplex=True)
        fd = theirs.fileno()
        command = [sys.executable, "-c", CHILD_BOOT, ROOT, str(fd), name]
        process = subprocess.Popen(command, pass_fds=(fd,))
        theirs.close()
        child = Child(name, process, PipeChannel(ours))
        self.children.append(child)
        child.channel.send((role, args))
        return child

    def reap(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Close every pipe, wait for each child, terminate then kill the stubborn ones."""
        for child in self.children:
            child.channel.close()
        deadline = time.monotonic() + timeout
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.0, deadline - time.monotonic()))
        for child in self.children:
            if child.alive:
                self.notes.append(f"{child.name} did not exit in {timeout} s: terminated")
                child.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(1.0)
            if child.alive:
                self.notes.append(f"{child.name} ignored SIGTERM: killed")
                child.process.kill()
                child.process.wait()


def child_main(argv: list[str]) -> int:
    """Entry point of a child process; ``argv`` is ``[FD, NAME]``.

    The parent's first message on the pipe names the role ("coordinator" or
    "worker") and its arguments. SIGINT is ignored: on Ctrl-C the parent
    closes the pipes and every child stops on its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(argv[0]))
    try:
        role, args = conn.recv()
    except (EOFError, OSError):
        return 1
    if role == "coordinator":
        server_process_main(conn, *args)
    elif role == "worker":
        run_worker(conn, *args)
    else:
        return 2
    return 0


# --- the coordinator process ---------------------------------------------------------


class ServerProcess:
    """A coordinator server in a child process (also handy for tests)."""

    def __init__(self, children: ChildProcesses, child: Child) -> None:
        self.children = children
        self.child = child
        self.port = 0

    @classmethod
    async def start(
        cls,
        children: ChildProcesses,
        settings: ProtocolSettings,
        db_path: str | None = None,
        use_uvloop: bool = True,
    ) -> ServerProcess:
        db_path = os.path.abspath(db_path) if db_path else None
        child = children.start("coordinator", "coordinator", settings, db_path, use_uvloop)
        server = cls(children, child)
        reply = await child.channel.get(timeout=SERVER_START_TIMEOUT)
        if not (isinstance(reply, tuple) and reply[0] == "port"):
            raise RuntimeError(f"the coordinator process did not start (got {reply!r})")
        server.port = int(reply[1])
        return server

    @property
    def pid(self) -> int | None:
        return self.child.process.pid

    async def stop(self, timeout: float = 10.0) -> tuple[ProcessUsage | None, ServerReport | None]:
        """Ask the server to stop; its usage and report, or Nones if it did not answer."""
        self.child.channel.send("stop")
        try:
            while True:
                reply = await self.child.channel.get(timeout=timeout)
                if reply is None:
                    break
                if isinstance(reply, tuple) and reply[0] == "done":
                    return reply[1], reply[2]
        except TimeoutError:
            pass
        self.children.notes.append("the coordinator did not report on stop")
        return None, None


# --- workers --------------------------------------------------------------------------


def worker_specs(
    plan: Plan, workers: int, connections: int, port: int, epoch: float, use_uvloop: bool
) -> list[WorkerSpec]:
    """Deal agents round-robin to workers; give each the ops its agents originate."""
    count = max(1, min(workers, len(plan.agents)))
    shares = [plan.agents[i::count] for i in range(count)]
    specs = []
    for index, agents in enumerate(shares):
        ids = {spec.agent_id for spec in agents}
        ops = tuple(op for op in plan.operations if op.origin in ids)
        specs.append(
            WorkerSpec(
                index=index,
                host=DEFAULT_HOST,
                port=port,
                agents=tuple(agents),
                operations=ops,
                settings=plan.settings,
                connections=connections,
                epoch=epoch,
                duration=plan.duration,
                drain_timeout=plan.drain_timeout,
                use_uvloop=use_uvloop,
            )
        )
    return specs


async def wait_ready(workers: list[Child], timeout: float) -> dict[str, float]:
    """Wait for every worker's "ready"; return ``{agent: perf_counter at welcome}``."""
    registered: dict[str, float] = {}
    for child in workers:
        reply = await child.channel.get(timeout=timeout)
        if not (isinstance(reply, tuple) and reply[0] == "ready"):
            raise RuntimeError(f"{child.name} did not get ready: {reply!r}")
        registered.update(reply[1])
    return registered


def _take_reports(workers: list[Child]) -> None:
    for child in workers:
        for item in child.channel.take_all():
            if isinstance(item, tuple) and item[0] == "count":
                child.count = int(item[1])
            elif isinstance(item, tuple) and item[0] == "failed":
                child.failed = str(item[1])
        if child.channel.eof and child.failed is None:
            child.failed = f"{child.name} exited early"


async def wait_done(
    workers: list[Child], plan: Plan, clock: RunClock, progress: Progress | None
) -> float:
    """Wait for every expected completion (after ``duration``) or the drain deadline."""
    expected = plan.expected_total
    deadline = plan.duration + plan.drain_timeout
    next_progress = -math.inf
    while True:
        now = clock.now()
        if progress is not None and now >= next_progress:
            progress(min(max(now, 0.0) / plan.duration, 1.0) if plan.duration > 0 else 1.0)
            next_progress = now + PROGRESS_INTERVAL
        _take_reports(workers)
        done = now >= plan.duration and sum(child.count for child in workers) >= expected
        if done or now >= deadline or any(child.failed for child in workers):
            if progress is not None:
                progress(1.0)
            return now
        await asyncio.sleep(0.02)


async def collect(workers: list[Child], notes: list[str]) -> list[WorkerResult]:
    """Tell every worker to stop and gather its result."""
    for child in workers:
        child.channel.send("stop")
    results = []
    for child in workers:
        try:
            result = await _result_of(child)
        except TimeoutError:
            result = None
        if result is None:
            notes.append(f"{child.name}: no result ({child.failed or 'timeout or exit'})")
        else:
            results.append(result)
    return results


async def _result_of(child: Child) -> WorkerResult | None:
    while True:
        item = await child.channel.get(timeout=RESULT_TIMEOUT)
        if item is None:
            return None
        if isinstance(item, tuple) and item[0] == "result":
            result: WorkerResult = item[1]
            return result
        if isinstance(item, tuple) and item[0] == "failed":
            child.failed = str(item[1])


# --- the availability prober -----------------------------------------------------------


class Prober:
    """Sends ``Probe`` as node ``probe-0`` every interval; records when each is answered."""

    def __init__(self, port: int, plan: Plan, clock: RunClock) -> None:
        self.port = port
        self.plan = plan
        self.clock = clock
        self.results: dict[int, ProbeResult] = {}
        self.link: FramedLink | None = None
        self._reader: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Probe from run time 0 until the plan's duration."""
        plan = self.plan
        probe_id = 0
        try:
            while probe_id * plan.probe_interval < plan.duration:
                wait = probe_id * plan.probe_interval - self.clock.now()
                if wait > 0:
                    await asyncio.sleep(wait)
                probe_id += 1
                await self._send(probe_id)
            await asyncio.sleep(plan.probe_deadline)  # let the last reply arrive
        finally:
            self.close()

    async def _send(self, probe_id: int) -> None:
        self.results[probe_id] = ProbeResult(probe_id, self.clock.now(), None)
        if self.link is None or self.link.closed:
            try:
                self.link = await asyncio.wait_for(
                    open_link(DEFAULT_HOST, self.port), self.plan.probe_deadline
                )
            except (OSError, TimeoutError):
                return  # the coordinator is unreachable: the probe stays unanswered
            self._reader = asyncio.get_running_loop().create_task(self._read(self.link))
        self.link.send(PROBER, encode_body(Probe(probe_id)))
        self.link.flush()

    async def _read(self, link: FramedLink) -> None:
        while True:
            try:
                batch = await link.read_batch()
            except (ConnectionError, OSError, MalformedFrame):
                batch = None
            if batch is None:
                link.close()
                return
            now = self.clock.now()
            for _, msg in batch:
                if type(msg) is ProbeReply:
                    sent = self.results.get(msg.probe_id)
                    if sent is not None and sent.answered is None:
                        self.results[msg.probe_id] = sent._replace(answered=now)

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        if self._reader is not None:
            self._reader.cancel()


# --- run_plan ---------------------------------------------------------------------------


def run_plan(
    plan: Plan,
    workers: int = 2,
    connections: int = 2,
    db_path: str | None = None,
    progress: Progress | None = None,
    use_uvloop: bool = True,
) -> DriverResult:
    """Replay ``plan`` on a coordinator process and ``workers`` worker processes.

    ``connections`` is per worker (0 = one per agent). With ``db_path`` the
    coordinator persists the memory store to that SQLite file.
    """
    loop = new_event_loop(use_uvloop)
    task = loop.create_task(run_async(plan, workers, connections, db_path, progress, use_uvloop))
    try:
        return loop.run_until_complete(task)
    except BaseException:  # e.g. KeyboardInterrupt: let run_async's finally reap the children
        task.cancel()
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        raise
    finally:
        loop.close()


async def run_async(
    plan: Plan,
    workers: int = 2,
    connections: int = 2,
    db_path: str | None = None,
    progress: Progress | None = None,
    use_uvloop: bool = True,
) -> DriverResult:
    """``run_plan`` on the running event loop."""
    wall = time.perf_counter()
    children = ChildProcesses()
    result = DriverResult("real", "tcp")
    try:
        server = await ServerProcess.start(children, plan.settings, db_path, use_uvloop)
        epoch = time.perf_counter()
        specs = worker_specs(plan, workers, connections, server.port, epoch, use_uvloop)
        pool = [children.start(f"worker-{s.index}", "worker", s) for s in specs]
        ready = await wait_ready(pool, REGISTER_TIMEOUT + 10.0)
        await _replay(plan, server, pool, ready, result, progress)
    finally:
        children.reap()
        result.notes.extend(children.notes)
    result.processes.append(own_usage("harness"))
    result.wall_seconds = time.perf_counter() - wall
    return result


async def _replay(
    plan: Plan,
    server: ServerProcess,
    pool: list[Child],
    ready: dict[str, float],
    result: DriverResult,
    progress: Progress | None,
) -> None:
    t0 = time.perf_counter() + START_LEAD
    for child in pool:
        child.channel.send(("go", t0))
    clock = RunClock(t0)
    result.registered = {node: at - t0 for node, at in ready.items()}
    prober = Prober(server.port, plan, clock)
    probing = asyncio.get_running_loop().create_task(prober.run())
    try:
        result.end_time = await wait_done(pool, plan, clock, progress)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(probing, plan.probe_deadline + 1.0)
    finally:
        probing.cancel()
    result.probes = sorted(prober.results.values())
    for child in pool:
        if child.failed:
            result.notes.append(f"{child.name} failed: {child.failed}")
    _merge(result, await collect(pool, result.notes))
    usage, report = await server.stop()
    if usage is not None:
        result.processes.insert(0, usage)
    if report is not None:
        result.notes.append(f"coordinator: {report.stats}, {report.flushes} flushes")
        result.notes.append(f"coordinator and workers, {POLICY}")
        result.notes.extend(f"coordinator: {event}" for event in report.events[:20])


def _merge(result: DriverResult, results: list[WorkerResult]) -> None:
    for worker in sorted(results, key=lambda r: r.name):
        result.completions.extend(Completion(*row) for row in worker.completions)
        result.processes.append(worker.usage)
        result.notes.extend(f"{worker.name}: {note}" for note in worker.notes)
