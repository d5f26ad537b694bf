"""One agent worker process: an ``AgentHost`` replaying its share of the plan.

``run_worker`` is one worker process's life, talking to the parent
(``real.tcp.run``) over a pipe:

    worker -> ("ready", {agent: perf_counter when welcomed}) | ("failed", reason)
    parent -> ("go", t0)
    worker -> ("count", unique completions so far)      every 0.1 s
              ("count", n, op ids, plan times, receivers, shed op ids)
                                     with ``live``: the new unique completions and shed ops too
    parent -> "stop"                 (or the pipe closes, or the deadline passes)
    worker -> ("result", WorkerResult)   (records are in the record log, not here)

Errors. For its whole life the worker's event loop has an exception handler
that logs as asyncio's default does and also notes the exception in
``AgentHost.errors``, next to the core exceptions the host survived itself
(``real.tcp.workers``); a replay or count task that died with an exception is
noted there too. They go back in ``WorkerResult.errors``, which ``real.tcp.run``
turns into ``DriverResult.errors`` (the run is invalid).

Before it says "ready" the worker has its ops sorted into columns
(``protocol.workload.Schedule``) and its garbage collector tuned (a full
collection first, ``real.gctune``): the parent starts the load 0.2 s after the
last "ready", too soon for that work (0.26 s for the default scenario).

Ops are replayed open-loop: the worker sleeps until the next op is due,
then issues every op that is due (in slices of ``ISSUE_SLICE`` so reads
interleave); it never skips one, and when behind it issues at once, since
latency counts from the scheduled time. It never issues early: a wait
shorter than the loop's 1 ms timer resolution sleeps 1 ms (uvloop would
round it to 0 and spin), so an op can go out up to about 1 ms late, which
shows in its latency. The worker stops on its own at
``duration + drain_timeout + STOP_GRACE`` after ``t0``.

CPU. ``WorkerResult.usage`` is the process's whole life, and its
``load_cpu_seconds`` the CPU from the go to the stop: what the load cost,
without unpickling the plan before it or tearing down after
(``harness.calibrate.cpu`` sets it beside what the model charged).

Time base. The protocol core runs on ``RunClock(epoch)``, ``epoch`` chosen by
the parent before the worker starts, so timers never jump. The run's ``t0``
arrives later with "go"; an op scheduled at ``op.at`` is issued when the
core clock reaches ``op.at + (t0 - epoch)``. Records go to the worker's
record log (``real.tcp.recordlog``) stamped on the core clock; the parent shifts
them back by ``t0 - epoch`` so they are seconds since ``t0`` like the plan's.

Restarts. A worker SIGKILLed by a fault is started again by the parent's
supervisor (``real.tcp.faults``) with the same spec plus ``life`` (its count of
earlier lives), ``resume_at`` (the restart's plan time: only ops at or after
it are issued; the dead process's ops are lost with it) and ``origins`` (the
origin of every publish, direct and broadcast op). Before its agents say
hello, the new life reads the record logs of the earlier lives and calls
``Agent.recall`` for each agent, so a redelivery of something an earlier
life handled is suppressed, and its "count" reports add the unique
completions those lives logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from protocol.plan import AgentSpec, Operation, OpKind
from protocol.records import LiveParts, MemCall, ProcessUsage
from protocol.settings import ProtocolSettings
from protocol.workload import Schedule
from real.clock import RunClock, new_event_loop
from real.gctune import tune_gc
from real.loop_errors import recording_handler
from real.tcp.framing import PipeChannel
from real.tcp.recordlog import RecordLog, lives_of, log_path, read_logs, recall_sets
from real.tcp.workers import (
    COUNT_INTERVAL,
    GO_TIMEOUT,
    ISSUE_SLICE,
    LOOP_RESOLUTION,
    REGISTER_TIMEOUT,
    STOP_GRACE,
    AgentHost,
    Stores,
    TreeAddresses,
)
from real.usage import CpuSpan, own_usage


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
    log_dir: str | None = None  # where the record logs go (None: no log)
    life: int = 0  # 0 for the first process, n for its n-th restart
    resume_at: float | None = None  # a restarted life issues only ops at or after this
    origins: dict[int, str] | None = None  # publish/direct/broadcast op id -> origin
    live: bool = False  # count reports carry the new unique completions (a live view)
    tree: TreeAddresses | None = None  # agents attach to a tree's leaves (``port`` unused)
    stores: Stores | None = None  # a quorum store's replicas (the agents' memory goes there)

    @property
    def name(self) -> str:
        return f"worker-{self.index}"


@dataclass(slots=True)
class WorkerResult:
    """What a worker sends back: registrations, usage, notes and the exceptions it
    survived, which make the run invalid (records are in its log)."""

    name: str
    registered: dict[str, float]
    usage: ProcessUsage
    issued: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    mem_history: list[MemCall] = field(default_factory=list)  # this life's, core clock


async def replay(host: AgentHost, schedule: Schedule, offset: float) -> None:
    """Issue every op of ``schedule`` when the core clock reaches its time + ``offset``."""
    times = schedule.times
    clock = host.clock
    index = 0
    while index < len(times):
        wait = times[index] + offset - clock.now()
        if wait > 0:
            await asyncio.sleep(max(wait, LOOP_RESOLUTION))
        now = clock.now()
        stop = min(index + ISSUE_SLICE, len(times))
        index = host.issue_due(schedule, index, stop, offset, now)
        host.schedule_flush()
        await host.backpressure()
        if wait <= 0:
            await asyncio.sleep(0)  # let replies and deliveries in between bursts


async def _report_counts(
    host: AgentHost, channel: PipeChannel, base: int, offset: float, live: bool
) -> None:
    """Every ``COUNT_INTERVAL``: the unique completions so far; with ``live``, also the
    op ids, plan times (core time less ``offset``) and receivers of those since the
    last report, and the ops shed since then."""
    if live:
        host.live = LiveParts()
    while True:
        count = base + host.unique_completions()
        if host.live is None:
            channel.send(("count", count))
        else:
            new = host.live.take(0.0)
            ats = array("d", [a - offset for a in new.ats])
            shed = array("q", new.shed)
            channel.send(("count", count, array("q", new.ids), ats, new.nodes, shed))
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


def _new_host(spec: WorkerSpec) -> tuple[AgentHost, int]:
    """The worker's host, with its record log and, in a later life, its agents' recall.

    Returns the host and how many unique completions earlier lives logged.
    """
    ids = [a.agent_id for a in spec.agents]
    log = (
        None
        if spec.log_dir is None
        else RecordLog(log_path(spec.log_dir, spec.index, spec.life), ids)
    )
    clock = RunClock(spec.epoch)
    host = AgentHost(
        spec.host,
        spec.port,
        spec.agents,
        spec.settings,
        spec.connections,
        clock,
        log,
        spec.name,
        spec.tree,
        spec.stores,
    )
    host.operations = spec.operations
    if spec.life == 0 or spec.log_dir is None:
        return host, 0
    earlier = read_logs(lives_of(spec.log_dir, spec.index, before=spec.life))
    own_tasks = {op.op_id for op in spec.operations if op.kind == OpKind.TASK}
    recalled = recall_sets(earlier, tuple(ids), spec.origins or {}, own_tasks)
    for node, (handled, results) in recalled.items():
        host.agents[node].recall(handled, results)
    if earlier.torn:
        host.notes.append(f"life {spec.life}: {earlier.torn} torn record log tail(s) dropped")
    return host, earlier.unique()


async def _run_worker(spec: WorkerSpec, channel: PipeChannel) -> WorkerResult | None:
    host, base = _new_host(spec)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(recording_handler(host.error))
    try:
        return await _host_worker(spec, host, base, channel)
    finally:
        loop.set_exception_handler(previous)


async def _host_worker(
    spec: WorkerSpec, host: AgentHost, base: int, channel: PipeChannel
) -> WorkerResult | None:
    """Register, wait for "go", replay and collect (``_run_worker``'s body)."""
    name = spec.name
    host.start()
    try:
        registered = await _registered_unless_orphaned(host, channel)
    except (TimeoutError, RuntimeError) as exc:
        channel.send(("failed", f"{name}: {exc}"))
        await host.close()
        return None
    # everything the replay needs before its first op is done before "ready": the
    # parent starts the load ``START_LEAD`` (0.2 s) after the last "ready", and this
    # took 0.26 s after "go" for the default scenario (a full collection, then the
    # sort), so the first ops went out up to 80 ms late and some were shed
    schedule = _schedule(spec)
    tune_gc()
    channel.send(("ready", {node: spec.epoch + at for node, at in registered.items()}))
    try:
        go = await channel.get(timeout=GO_TIMEOUT)
    except TimeoutError:
        go = None
    if not (isinstance(go, tuple) and go[0] == "go"):
        await host.close()
        return None
    return await _replay_and_collect(spec, host, channel, float(go[1]), base, schedule)


def _schedule(spec: WorkerSpec) -> Schedule:
    """This worker's ops in time order; a restarted life's from ``resume_at`` on."""
    ops = spec.operations
    if spec.resume_at is not None:
        resume_at = spec.resume_at
        ops = tuple(op for op in ops if op.at >= resume_at)
    return Schedule(sorted(ops, key=lambda op: (op.at, op.op_id)))


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
    spec: WorkerSpec,
    host: AgentHost,
    channel: PipeChannel,
    t0: float,
    base: int,
    schedule: Schedule,
) -> WorkerResult:
    offset = t0 - spec.epoch
    load_cpu = CpuSpan()  # from the go (t0) to the stop: no setup, no teardown
    loop = asyncio.get_running_loop()
    replayer = loop.create_task(replay(host, schedule, offset))
    counter = loop.create_task(_report_counts(host, channel, base, offset, spec.live))
    end = offset + spec.duration + spec.drain_timeout + STOP_GRACE
    await _until_stop(channel, host, end)
    load_cpu_seconds = load_cpu.seconds()
    for what, task in (("the replay", replayer), ("the count reports", counter)):
        if task.done() and not task.cancelled() and task.exception() is not None:
            host.error(f"{what} failed: {task.exception()!r}")
        task.cancel()
    await host.close()
    registered = {node: spec.epoch + at for node, at in host.registered.items()}
    if host.issued < len(schedule):
        host.notes.append(f"stopped with {len(schedule) - host.issued} ops not issued")
    lag_note = host.lag.note()
    if lag_note is not None:
        host.notes.append(lag_note)
    if host.record_log is not None:
        log = host.record_log
        host.notes.append(f"record log: {log.writes} writes, {log.bytes} bytes")
    usage = dataclasses.replace(own_usage(spec.name), load_cpu_seconds=load_cpu_seconds)
    history = [call for agent in host.agents.values() for call in agent.memory_history()]
    return WorkerResult(spec.name, registered, usage, host.issued, host.notes, host.errors, history)


def run_worker(conn: Connection, spec: WorkerSpec) -> None:
    """One worker process (the ``multiprocessing`` target used by ``real.tcp.run``)."""
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
