"""Running a plan on the in-process transport: build the hub (with faults when
the plan has any), register every agent, start the run clock, replay the
plan, probe, settle, and collect the records into a ``DriverResult``.

``real.inproc.hub`` holds the hub and its mailboxes, ``real.inproc.faults``
the hub that follows a fault timeline; this module only puts them together.

Every node runs in event-loop callbacks (``loop.call_soon``, ``call_at``), so
an exception in the core would only be logged by the loop and the run would
carry on with figures. ``run_async`` therefore installs a loop exception
handler for the run that logs as usual and also records each exception in
``DriverResult.errors``, which makes the run invalid.

A ``live`` feed (``protocol.records.LiveFeed``) is called every
``LIVE_INTERVAL`` of run time with what the agents recorded since the previous
call (``LiveTap``).
"""

from __future__ import annotations

import asyncio
import time

from protocol.plan import Plan
from protocol.records import LIVE_INTERVAL, DriverResult, LiveFeed, LiveParts, ProcessUsage
from protocol.treereport import tree_figures, tree_note
from protocol.workload import Schedule
from real.clock import RunClock, new_event_loop
from real.gctune import tuned_gc
from real.inproc.faults import FaultHub, collect, run_faults
from real.inproc.hub import (
    Hub,
    Progress,
    agents_of,
    ask_status,
    build_hub,
    coordinators_of,
    probe,
    register_all,
    replay,
    settle,
)
from real.loop_errors import recording_handler
from real.usage import CpuSpan, own_usage


class LiveTap:
    """Feeds ``live`` what the hub's agents recorded since the last call: unique
    completions and shed ops, read from the ends of their lists, and the probes.

    It runs on the run's own event loop, so it is cut small: ``collect`` takes the
    new records every ``LIVE_INTERVAL / LIVE_SPLIT`` (a fifth of the work of a feed,
    a short pause of the loop), and ``flush`` hands them over every ``LIVE_INTERVAL``.
    """

    def __init__(self, hub: Hub, live: LiveFeed) -> None:
        self.hub = hub
        self.live = live
        self.seen: dict[int, tuple[int, int]] = {}  # id of an agent -> (completions, shed) taken
        self.parts = LiveParts()

    def collect(self) -> None:
        parts, seen = self.parts, self.seen
        for agent in agents_of(self.hub):
            records, shed = agent.completions, agent.shed
            done, gave_up = seen.get(id(agent), (0, 0))
            if len(records) > done or len(shed) > gave_up:
                parts.extend(records[done:])
                parts.shed.extend(shed[gave_up:])
                seen[id(agent)] = (len(records), len(shed))

    def flush(self) -> None:
        self.collect()
        prober = self.hub.prober
        self.live(self.parts.take(self.hub.clock.now(), prober.results if prober else ()))


LIVE_SPLIT = 5  # collections per feed


async def report_progress(
    hub: Hub, plan: Plan, progress: Progress | None, tap: LiveTap | None = None
) -> None:
    """Tell ``progress`` the share of the plan's duration gone every 0.25 s, and the
    ``tap``'s feed the new completions every ``LIVE_INTERVAL``, until cancelled."""
    step = LIVE_INTERVAL / LIVE_SPLIT if tap is not None else 0.25
    every = round(0.25 / step)
    tick = 0
    while True:
        if progress is not None and tick % every == 0:
            now = hub.clock.now()
            progress(min(now / plan.duration, 1.0) if plan.duration > 0 else 1.0)
        if tap is not None:
            if tick % LIVE_SPLIT == LIVE_SPLIT - 1:
                tap.flush()
            else:
                tap.collect()
        tick += 1
        await asyncio.sleep(step)


async def run_async(
    plan: Plan,
    progress: Progress | None = None,
    hub_class: type[Hub] = Hub,
    live: LiveFeed | None = None,
) -> DriverResult:
    """Replay ``plan`` on the running loop and collect the records."""
    loop = asyncio.get_running_loop()
    wall = time.perf_counter()
    cpu = CpuSpan()
    if plan.faults and hub_class is Hub:
        hub_class = FaultHub
    errors: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(recording_handler(errors.append))
    try:
        hub = build_hub(plan, loop, RunClock(), hub_class)
        for coordinator in coordinators_of(hub):
            coordinator.stamp_tasks = True  # to split task latency (``TaskStamp``)
        registered = await register_all(hub)
        with tuned_gc() as gc_note:
            result = await replay_registered(hub, plan, registered, progress, live)
    finally:
        loop.set_exception_handler(previous)
    result.errors.extend(errors)
    result.notes.append(gc_note)
    result.wall_seconds = time.perf_counter() - wall
    usage = own_usage("inproc")
    result.processes = [
        ProcessUsage(
            usage.name, usage.peak_rss_bytes, cpu.seconds(), wait_seconds=cpu.wait_seconds()
        )
    ]
    return result


async def replay_registered(
    hub: Hub,
    plan: Plan,
    registered: dict[str, float],
    progress: Progress | None,
    live: LiveFeed | None = None,
) -> DriverResult:
    """Start the run clock, replay the plan, settle, and collect the records."""
    loop = hub.loop
    schedule = Schedule(plan.operations)  # before the clock starts: a long plan takes a while
    start = RunClock(time.perf_counter() + 0.05)
    shift = hub.clock.t0 - start.t0
    registered = {node: at + shift for node, at in registered.items()}
    hub.clock = start
    tap = LiveTap(hub, live) if live is not None else None
    watching = progress is not None or tap is not None
    watcher = loop.create_task(report_progress(hub, plan, progress, tap)) if watching else None
    tasks = [replay(hub, schedule), probe(hub, plan), ask_status(hub, plan)]
    if isinstance(hub, FaultHub):
        hub.attach(plan)
        tasks.append(run_faults(hub, plan))
    await asyncio.gather(*tasks)
    await settle(hub, plan)
    if watcher is not None:
        watcher.cancel()
    if tap is not None:
        tap.flush()  # what came since the last tick
    for box in hub.boxes.values():
        box.arm(None)
    result = DriverResult("real", "inproc", registered=registered)
    result.spawn_at = shift  # the hub's first clock started as the agents were built
    agents = agents_of(hub)
    if isinstance(hub, FaultHub):
        collect(hub, agents, result)
    else:
        result.completions = [c for agent in agents for c in agent.completions]
        result.accepted = [op_id for agent in agents for op_id in agent.accepted]
        result.shed = [op_id for agent in agents for op_id in agent.shed]
        result.write_acks = [ack for agent in agents for ack in agent.write_acks]
        result.mem_history = [call for agent in agents for call in agent.memory_history()]
    if hub.prober is not None:
        result.probes = list(hub.prober.results)
        result.status = hub.prober.status
    result.end_time = hub.clock.now()
    queued = sum(agent.pending for agent in agents_of(hub))
    result.notes.append(f"messages routed: {hub.messages}")
    coordinators = coordinators_of(hub)
    result.task_stamps = [stamp for c in coordinators for stamp in c.take_task_stamps()]
    if len(coordinators) > 1:
        result.coordinators = tree_figures(coordinators)
        result.notes.append(tree_note(result.coordinators))
    lag_note = hub.lag.note()
    if lag_note is not None:
        result.notes.append(lag_note)
    if queued:
        result.notes.append(f"{queued} requests were still queued at their agents at the end")
    return result


def run_plan(
    plan: Plan,
    progress: Progress | None = None,
    use_uvloop: bool = True,
    hub_class: type[Hub] = Hub,
    live: LiveFeed | None = None,
) -> DriverResult:
    """Run ``plan`` on a fresh event loop (uvloop when installed)."""
    loop = new_event_loop(use_uvloop)
    try:
        return loop.run_until_complete(run_async(plan, progress, hub_class, live))
    finally:
        loop.close()
