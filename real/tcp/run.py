"""The tcp transport: a coordinator process, agent worker processes, loopback sockets.

``run_plan`` replays a plan on real processes and returns a ``DriverResult``
(backend "real", transport "tcp"). In order:

1. Start the coordinator server (``real.tcp.children.server_process_main``) in a
   child process. It binds 127.0.0.1 on port 0 and sends the port back over
   its pipe. With link faults in the plan, a proxy process
   (``real.tcp.faults.LinkProxies``) puts one fault proxy per worker in front of it.
2. Start ``workers`` worker processes (``real.tcp.worker_process.run_worker``).
   Agents are dealt round-robin to workers; each worker gets the ops its
   agents originate and hosts its agents over ``connections`` links (0 = one
   link per agent), to the coordinator or to its proxy. Each worker registers
   its agents and reports "ready".
3. Once every agent is registered, choose ``t0 = perf_counter() + START_LEAD``
   and send ``("go", t0)`` to every worker. ``perf_counter`` is
   CLOCK_MONOTONIC, shared by every process on the host, so all of them
   agree on the run clock (``real.clock.RunClock``).
4. In this process, an availability prober (``real.tcp.prober``: its own
   connection, node id ``probe-0``) sends a ``Probe`` every
   ``plan.probe_interval`` until the plan's duration and records a
   ``ProbeResult`` per probe (one sent while the coordinator is down stays
   unanswered; the prober reconnects). At
   ``plan.status_at`` (near the end of the steady-state load, before the
   drain) it also sends one ``StatusRequest`` with the plan's token; the
   coordinator's ``StatusReply`` becomes ``DriverResult.status`` (None when
   no reply came, e.g. the coordinator was down, or the reply would not fit
   in a frame: above about 9,500 agents). It routes nothing, so it changes no
   delivery. ``progress`` gets the elapsed fraction about every 0.5 s. Meanwhile
   ``real.tcp.faults.FaultSupervisor`` replays ``plan.faults``: it kills, stops
   and restarts workers and the coordinator and drives the proxies.
5. Workers report their count of unique completions every 0.1 s. The run
   ends once the plan's duration has passed, every fault step and restart is
   done and every expected completion has arrived, or at
   ``duration + drain_timeout``, or when a worker fails.
6. Workers are told to stop and send back registration times, usage and
   notes; then the server is told to stop: it closes its connections,
   persists the last writes, closes the database and sends back its own usage
   and report. What makes the run itself invalid goes to
   ``DriverResult.errors`` as well as the notes: a worker that failed (or
   ended without a result though no fault killed it), an exception a worker
   survived in its own loop (its ``WorkerResult.errors``, prefixed with its
   name), a core exception the coordinator survived (step 7), and a
   coordinator that did not report at the end though no fault killed it.
7. The records come from files, not pipes: every worker life appended its
   completions, accepted op ids and write acks to its record log
   (``real.tcp.recordlog``) before acking, and every coordinator life its node
   events to an event log, so a SIGKILLed process's records are kept. The
   logs (in a scratch directory removed at the end) are read, shifted to plan
   time and merged into the result, with the supervisor's injected/healed
   events and restart snapshots. A coordinator life also wrote each core
   exception it survived to its event log at once (kind ``core_error``, see
   ``real.tcp.server``): those lines become ``DriverResult.errors``, so the
   core errors of a life a crash fault killed, whose report never came, count
   as well as the last life's. Without ``db_path`` a plan that crashes the
   coordinator, or turns ``durable_bus`` on, gets a database in the scratch
   directory.

A plan with a tree (``plan.tree``) starts ``real.tcp.treeservers.TreeServers``
in step 1 instead: coordinator processes hosting the tree's nodes, each node a
server on a port of its own, and a process of its own for each node a crash
fault names. Workers get every node's address (``TreeAddresses``) and open a
link per leaf they have agents at; the load starts once every agent is
registered and every node reports its interest settled. At the end each
coordinator process sends its nodes' ``tree_figures`` rows and task stamps
(``DriverResult.coordinators``, ``task_stamps``), and every node's event log of
every life is merged as the flat coordinator's is.

No orphans: everything after the first child starts is inside
``try/finally``; ``real.tcp.children.ChildProcesses.reap`` closes every pipe,
resumes stopped children, joins each process with a timeout, then terminates
and finally kills any that remain, noting each one it had to kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence

from native.heap import gc_paused
from protocol.consensus.quorum import newest_cells
from protocol.faults import CRASH_EVENT_ROOT, crashed_coordinators
from protocol.plan import FaultKind, OpKind, Plan
from protocol.records import (
    REPLICA_COUNTS,
    STORE_COUNTS,
    Completion,
    DriverResult,
    LiveFeed,
    LiveParts,
    ProbeResult,
    StoreSnapshot,
    WriteAck,
    replica_note,
    store_note,
)
from protocol.treereport import tree_note
from protocol.workload import split_memory_target
from real.clock import RunClock, new_event_loop
from real.gctune import POLICY, tuned_gc
from real.tcp.children import Child, ChildProcesses, ServerProcess
from real.tcp.faults import (
    FaultSupervisor,
    LinkProxies,
    Restartable,
    has_crash,
    has_link_faults,
)
from real.tcp.prober import TcpProber
from real.tcp.recordlog import DUPLICATE, INTACT, lives_of, read_events, read_logs
from real.tcp.replicaservers import ReplicaServers
from real.tcp.server import CORE_ERROR_KIND, DEFAULT_HOST
from real.tcp.storecore import CellFile
from real.tcp.treeservers import TreeServers
from real.tcp.worker_process import WorkerResult, WorkerSpec
from real.tcp.workers import REGISTER_TIMEOUT, Stores, TreeAddresses
from real.usage import own_usage

__all__ = ["ChildProcesses", "ServerProcess", "run_async", "run_plan", "worker_specs"]
START_LEAD = 0.2
RESULT_TIMEOUT = 60.0
PROGRESS_INTERVAL = 0.5
Progress = Callable[[float], None]


# --- workers --------------------------------------------------------------------------


def worker_specs(
    plan: Plan,
    workers: int,
    connections: int,
    port: int | list[int],
    epoch: float,
    use_uvloop: bool,
    log_dir: str | None = None,
    live: bool = False,
    tree: TreeAddresses | None = None,
    stores: Stores | None = None,
) -> list[WorkerSpec]:
    """Deal agents round-robin to workers; give each the ops its agents originate.

    ``port`` is the coordinator's, or one per worker (its link fault proxy); in a
    tree, ``tree`` says where each agent's leaf (and its ancestors) listen.
    """
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
                port=port[index] if isinstance(port, list) else port,
                agents=tuple(agents),
                operations=ops,
                settings=plan.settings,
                connections=connections,
                epoch=epoch,
                duration=plan.duration,
                drain_timeout=plan.drain_timeout,
                use_uvloop=use_uvloop,
                log_dir=log_dir,
                live=live,
                tree=tree,
                stores=stores,
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


def _take_reports(
    workers: list[Child],
    now: float = 0.0,
    live: LiveFeed | None = None,
    probes: Sequence[ProbeResult] = (),
) -> None:
    """Read every worker's reports; with ``live``, feed it one batch of what the
    live workers' reports carried (and the prober's ``probes``)."""
    parts = LiveParts() if live is not None else None
    news = False
    for child in workers:
        if child.booting:
            continue  # its "ready" is for the fault supervisor waiting on it
        for item in child.channel.take_all():
            if isinstance(item, tuple) and item[0] == "count":
                child.count = int(item[1])
                if parts is not None and len(item) == 6:  # a live worker's news
                    parts.ids.extend(item[2])
                    parts.ats.extend(item[3])
                    parts.nodes.extend(item[4])
                    parts.shed.extend(item[5])
                    news = True
            elif isinstance(item, tuple) and item[0] == "failed":
                child.failed = str(item[1])
        if child.channel.eof and child.failed is None and not child.killed:
            child.failed = f"{child.name} exited early"
    if live is not None and parts is not None and news:
        live(parts.take(now, probes))


async def wait_done(
    workers: list[Child],
    plan: Plan,
    clock: RunClock,
    progress: Progress | None,
    faults: FaultSupervisor | None = None,
    live: LiveFeed | None = None,
    probes: Sequence[ProbeResult] = (),
) -> float:
    """Wait until the plan's duration has passed, every fault step and restart
    is done and every expected completion has arrived; or the drain deadline.

    With faults, ops a killed worker never issued are not expected, and the
    run also ends once no completion arrived for ``faults.quiet_after``
    seconds (work that died with a process never completes).
    """
    deadline = plan.duration + plan.drain_timeout
    expected_total = plan.expected_total  # a sum over every op: once, not per poll
    next_progress = -math.inf
    last_count, last_change = -1, clock.now()
    while True:
        now = clock.now()
        if progress is not None and now >= next_progress:
            progress(min(max(now, 0.0) / plan.duration, 1.0) if plan.duration > 0 else 1.0)
            next_progress = now + PROGRESS_INTERVAL
        _take_reports(workers, now, live, probes)
        count = sum(child.count for child in workers)
        if count != last_count:
            last_count, last_change = count, now
        if faults is None:
            done = count >= expected_total
        else:
            quiet = now - max(last_change, faults.settled_at) >= faults.quiet_after
            done = faults.settled() and (count >= expected_total - faults.never_issued or quiet)
        done = done and now >= plan.duration
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


# --- run_plan ---------------------------------------------------------------------------


def run_plan(
    plan: Plan,
    workers: int = 2,
    connections: int = 2,
    db_path: str | None = None,
    progress: Progress | None = None,
    use_uvloop: bool = True,
    live: LiveFeed | None = None,
    coordinator_processes: int = 1,
) -> DriverResult:
    """Replay ``plan`` on a coordinator process and ``workers`` worker processes.

    ``connections`` is per worker (0 = one per agent; in a tree, per leaf). With
    ``db_path`` the coordinator persists the memory store to that SQLite file. With
    ``live``, each worker adds its new unique completions and shed ops to its count
    reports (every ``COUNT_INTERVAL``) and the parent hands them to ``live`` as they
    arrive, one ``LiveBatch`` per poll with the prober's results. A plan with a tree
    runs its coordinators in ``coordinator_processes`` processes
    (``real.tcp.treeservers``).
    """
    loop = new_event_loop(use_uvloop)
    task = loop.create_task(
        run_async(
            plan, workers, connections, db_path, progress, use_uvloop, live, coordinator_processes
        )
    )
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
    live: LiveFeed | None = None,
    coordinator_processes: int = 1,
) -> DriverResult:
    """``run_plan`` on the running event loop."""
    if plan.tree and (db_path or has_link_faults(plan)):
        raise ValueError("a tree on tcp keeps its databases itself and has no link faults")
    wall = time.perf_counter()
    children = ChildProcesses()
    result = DriverResult("real", "tcp")
    with tempfile.TemporaryDirectory(prefix="swarmtwin-tcp-") as scratch:
        if db_path is None and (has_crash(plan) or plan.settings.durable_bus):
            db_path = os.path.join(scratch, "coordinator.db")
        events = os.path.join(scratch, "coordinator.events")
        try:
            server: ServerProcess | TreeServers | ReplicaServers
            tree = None
            if plan.replication is not None:
                partitions = any(f.kind == FaultKind.PARTITION_REPLICA for f in plan.faults)
                server = ReplicaServers(
                    children, plan.settings, plan.replication, use_uvloop, scratch, partitions
                )
                await server.start()
                leader = await server.wait_leader(REGISTER_TIMEOUT)
                ids = ", ".join(server.ids)
                result.notes.append(f"replicas {ids}: {leader} leads at the start")
                tree = TreeAddresses(server.addresses, server.chains)
            elif plan.tree:
                crashed = crashed_coordinators(plan)
                server = TreeServers(
                    children,
                    plan.settings,
                    plan.tree,
                    coordinator_processes,
                    use_uvloop,
                    scratch,
                    crashed,
                )
                await server.start()
                tree = TreeAddresses(server.addresses, server.chains)
            else:
                server = await ServerProcess.start(
                    children, plan.settings, db_path, use_uvloop, events
                )
            stores: Stores | None = None
            store_servers: ReplicaServers | None = None
            if plan.quorum is not None:  # the memory store on storage replicas
                store_servers = ReplicaServers(
                    children, plan.settings, plan.quorum, use_uvloop, scratch
                )
                await store_servers.start()
                stores = Stores(plan.quorum, dict(store_servers.addresses))
                result.notes.append(plan.quorum.note())
            count = max(1, min(workers, len(plan.agents)))
            proxies = await _start_proxies(plan, children, server.port, count)
            ports = proxies.ports if proxies is not None else server.port
            epoch = time.perf_counter()
            specs = worker_specs(
                plan,
                workers,
                connections,
                ports,
                epoch,
                use_uvloop,
                scratch,
                live is not None,
                tree,
                stores,
            )
            pool = [children.start(s.name, "worker", s) for s in specs]
            ready = await wait_ready(pool, REGISTER_TIMEOUT + 10.0)
            if isinstance(server, TreeServers):
                await server.wait_settled(REGISTER_TIMEOUT)
            # the prober times the probes in this process: a full collection over the
            # plan's objects held its loop up to 0.18 s (late probes, uptime 98 %)
            with tuned_gc():
                t0 = time.perf_counter() + START_LEAD
                result.spawn_at = epoch - t0  # before the worker processes were started
                crashable: dict[str, Restartable] = {}
                leads: Callable[[], str | None] | None = None
                links: ReplicaServers | None = None
                if isinstance(server, ServerProcess):
                    crashable = {CRASH_EVENT_ROOT: server}
                    if store_servers is not None:  # a storage replica's crash names it
                        crashable.update(store_servers.processes)
                elif isinstance(server, TreeServers):
                    crashable = dict(server.crashable)
                else:
                    crashable = dict(server.processes)
                    leads = server.leader
                    links = server if server.partitions else None
                clock = RunClock(t0)
                supervisor = FaultSupervisor(
                    plan, children, crashable, pool, specs, clock, result, proxies, leads, links
                )
                await _replay(
                    plan, server, supervisor, ready, result, progress, live, store_servers
                )
            if proxies is not None:
                result.notes.append(f"link fault proxies: {await proxies.stop()}")
        finally:
            children.reap()
            result.notes.extend(children.notes)
        _merge_logs(result, plan, specs, scratch, t0 - epoch)
        if isinstance(server, (TreeServers, ReplicaServers)):
            _merge_core_logs(result, server.event_logs, t0)
        else:
            _merge_core_logs(result, life_logs(server.event_logs), t0)
        if store_servers is not None:
            _merge_core_logs(result, store_servers.event_logs, t0)
        result.events.sort()
    result.processes.append(own_usage("harness"))
    result.wall_seconds = time.perf_counter() - wall
    return result


async def _start_proxies(
    plan: Plan, children: ChildProcesses, port: int, count: int
) -> LinkProxies | None:
    """The link fault proxies, when the plan has link faults."""
    if not has_link_faults(plan):
        return None
    return await LinkProxies.start(children, port, count, plan.seed)


async def _replay(
    plan: Plan,
    server: ServerProcess | TreeServers | ReplicaServers,
    supervisor: FaultSupervisor,
    ready: dict[str, float],
    result: DriverResult,
    progress: Progress | None,
    live: LiveFeed | None = None,
    stores: ReplicaServers | None = None,
) -> None:
    pool = supervisor.pool
    clock = supervisor.clock
    for child in pool:
        child.channel.send(("go", clock.t0))
    result.registered = {node: at - clock.t0 for node, at in ready.items()}
    port = server.port
    fallbacks: tuple[int, ...] = ()
    named: dict[str, int] = {}
    if isinstance(server, ReplicaServers):  # from the leader at the start, round the others
        ports = [server.addresses[node][1] for node in server.ids]
        first = server.ids.index(server.first_leader)
        port, *others = ports[first:] + ports[:first]
        fallbacks = tuple(others)
        named = {node: server.addresses[node][1] for node in server.ids}
    prober = TcpProber(port, plan, clock, fallbacks, named)
    loop = asyncio.get_running_loop()
    probing = loop.create_task(prober.run())
    faulting = loop.create_task(supervisor.run())
    try:
        faults = supervisor if plan.faults else None
        result.end_time = await wait_done(
            pool, plan, clock, progress, faults, live, prober.core.results
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(probing, plan.probe_deadline + 1.0)
    finally:
        probing.cancel()
        faulting.cancel()
        await supervisor.close()
    core = prober.core
    result.probes = list(core.results)
    result.status = core.status
    if core.asked and core.status is None:
        why = f"refused: {core.status_refused}" if core.status_refused else "no reply"
        result.notes.append(f"status request at {plan.status_at:g} s: {why}")
    for child in pool:
        if child.failed:
            result.notes.append(f"{child.name} failed: {child.failed}")
    results = await collect(pool, result.notes)
    _merge(result, results)
    _merge_memory(result, results, supervisor, clock.t0)
    result.errors.extend(_worker_errors(pool, results))
    if stores is not None:
        await _stop_stores(stores, result)
    if isinstance(server, TreeServers):
        await _stop_tree(server, result, clock.t0)
        return
    if isinstance(server, ReplicaServers):
        await _stop_replicas(server, result)
        return
    usage, report = await server.stop()
    if usage is not None:
        result.processes.insert(0, usage)
    if report is not None:
        result.notes.append(f"coordinator: {report.stats}, {report.flushes} flushes")
        result.notes.append(f"coordinator, workers and the prober's process, {POLICY}")
        result.notes.extend(f"coordinator: {event}" for event in report.events[:20])
        # its core errors are errors through its event log (``_merge_core_logs``)
    elif server.child is None or not server.child.killed:
        # not a crash fault: the coordinator died or hung before it could report
        result.errors.append("the coordinator did not report at the end of the run")


async def _stop_replicas(servers: ReplicaServers, result: DriverResult) -> None:
    """Stop the replica processes: their usage, and what each did."""
    usages, reports, silent = await servers.stop()
    result.processes[0:0] = usages
    for name in silent:  # running, not killed by a fault: it died or hung
        result.errors.append(f"{name} did not report at the end of the run")
    for node, report in sorted(reports.items()):
        counts = {name: report.stats.get(f"raft_{name}", 0) for name in REPLICA_COUNTS}
        result.replicas[node] = counts
        result.notes.append(replica_note(node, counts))
        result.notes.extend(f"replica {node}: {event}" for event in report.events[:10])


async def _stop_stores(servers: ReplicaServers, result: DriverResult) -> None:
    """Stop the storage replicas' processes: their usage, and what each did."""
    usages, reports, silent = await servers.stop()
    result.processes.extend(usages)
    for name in silent:  # running, not killed by a fault: it died or hung
        result.errors.append(f"{name} did not report at the end of the run")
    files = [os.path.join(servers.log_dir, f"store-{node}.db") for node in servers.ids]
    result.final_store = await asyncio.to_thread(_read_stores, files, result.end_time)
    for node, report in sorted(reports.items()):
        counts = {name: float(report.stats.get(f"store_{name}", 0)) for name in STORE_COUNTS}
        result.stores[node] = counts
        result.notes.append(store_note(node, counts))
        result.notes.extend(f"storage replica {node}: {event}" for event in report.events[:10])


def _read_stores(files: list[str], at: float) -> StoreSnapshot:
    """The quorum store at the end: the newest cells over every replica's file."""
    stores = []
    for path in files:
        cells = CellFile(path)
        try:
            stores.append(cells.load())
        finally:
            cells.close()
    return newest_cells(stores, at)


async def _stop_tree(servers: TreeServers, result: DriverResult, t0: float) -> None:
    """Stop a tree's coordinator processes; their usage, figures and task stamps."""
    usages, reports, figures, stamps, silent = await servers.stop()
    result.processes[0:0] = usages
    for name in silent:  # running, not killed by a fault: it died or hung
        result.errors.append(f"{name} did not report at the end of the run")
    result.coordinators = figures
    result.notes.append(tree_note(figures))
    result.task_stamps = [
        s._replace(
            queued_at=s.queued_at - t0, assigned_at=s.assigned_at - t0, done_at=s.done_at - t0
        )
        for s in stamps
    ]
    busiest = max(reports.items(), key=lambda item: item[1].flushes, default=None)
    if busiest is not None:
        result.notes.append(f"coordinator {busiest[0]} (the busiest): {busiest[1].stats}")
    for node, report in sorted(reports.items()):
        result.notes.extend(f"coordinator {node}: {event}" for event in report.events[:5])


def _worker_errors(pool: list[Child], results: list[WorkerResult]) -> list[str]:
    """A worker that failed, or that ended without a result and was not killed by a
    fault; then the exceptions each worker that reported survived in its own loop."""
    reported = {worker.name for worker in results}
    errors = []
    for child in pool:
        if child.failed:
            errors.append(f"{child.name} failed: {child.failed}")
        elif child.name not in reported and not child.killed:
            errors.append(f"{child.name}: no result (timeout or exit)")
    for worker in sorted(results, key=lambda r: r.name):
        errors.extend(f"{worker.name}: {error}" for error in worker.errors)
    return errors


def life_logs(paths: list[str]) -> list[tuple[str, str]]:
    """The event logs of the coordinator's lives (oldest first), each with its name."""
    return [
        ("coordinator" if life == 0 else f"coordinator (restart {life})", path)
        for life, path in enumerate(paths)
    ]


def _merge_core_logs(result: DriverResult, logs: list[tuple[str, str]], t0: float) -> None:
    """Every coordinator life's (or tree node's) event log (``logs``: who, path; oldest
    first): its core errors go to ``result.errors``, its node events until the run
    ended (not the failures of the shutdown itself) to ``result.events``, on plan
    time (``t0``)."""
    for who, path in logs:
        for event in read_events([path], t0):
            if event.kind == CORE_ERROR_KIND:
                result.errors.append(f"{who}: {event.node}")
            elif event.at <= result.end_time:
                result.events.append(event)


def _merge(result: DriverResult, results: list[WorkerResult]) -> None:
    for worker in sorted(results, key=lambda r: r.name):
        result.processes.append(worker.usage)
        result.notes.extend(f"{worker.name}: {note}" for note in worker.notes)


def _merge_memory(
    result: DriverResult, results: list[WorkerResult], supervisor: FaultSupervisor, t0: float
) -> None:
    """Every worker's memory requests, on plan time; None when some are missing (a
    worker without a result, or one whose earlier life a fault killed: its history
    died with it)."""
    if not any(op.kind == OpKind.MEMORY for op in supervisor.plan.operations):
        return  # nothing to lose: the history is complete, and empty
    complete = len(results) == len(supervisor.pool) and not any(supervisor.lives)
    if not complete:
        result.mem_history = None
        result.notes.append("memory history incomplete (a worker life was lost): not checked")
        return
    history = result.mem_history
    assert history is not None
    for worker in results:
        offset = t0 - supervisor.specs[0].epoch  # every worker's core clock starts there
        history.extend(
            call._replace(invoked=call.invoked - offset, returned=call.returned - offset)
            for call in worker.mem_history
        )


# (duplicate, intact) of a record's flags
_FLAGS = [(bool(f & DUPLICATE), bool(f & INTACT)) for f in range(DUPLICATE + INTACT + 1)]


@gc_paused()  # millions of records are built: with the collector on, 3.4 s for 3.6M, off 1.3
def _merge_logs(
    result: DriverResult, plan: Plan, specs: list[WorkerSpec], log_dir: str, offset: float
) -> None:
    """Every worker life's records, shifted from core time to plan time by ``offset``."""
    ops = None
    new = tuple.__new__  # the NamedTuple's own __new__ is a Python function: 0.9 s against 1.3
    for spec in specs:
        records = read_logs(lives_of(log_dir, spec.index))
        ids = [a.agent_id for a in spec.agents]
        result.completions.extend(
            [
                new(Completion, (op_id, ids[i], at - offset, *_FLAGS[f]))
                for op_id, i, at, f in records.completions
            ]
        )
        result.accepted.extend(op_id for op_id, _ in records.accepted)
        result.shed.extend(op_id for op_id, _ in records.shed)
        if records.write_acks and ops is None:
            ops = {op.op_id: op for op in plan.operations}
        for op_id, _, version, crc, at in records.write_acks:
            namespace, key = split_memory_target(ops[op_id].target) if ops else ("", "")
            result.write_acks.append(WriteAck(op_id, namespace, key, version, crc, at - offset))
        if records.torn:
            result.notes.append(f"{spec.name}: {records.torn} torn record log tail(s) dropped")
