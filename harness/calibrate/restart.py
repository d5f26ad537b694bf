"""Measuring how long real processes take to come back: the model's restart times.

``measure_restarts()`` runs a small tcp plan (4 agents on 2 workers, a light
publish load, a durable bus) whose fault timeline kills one worker and
crashes the coordinator, each restarted 0.1 s later, and reads the driver's
``"healed"`` events: a worker is healed when every agent of its new process
is registered again, the coordinator when it listens again. The restart time
is healed minus the restart's start (the fault's end). It repeats the plan
``repeats`` times and keeps the medians, since one process start on a shared
2-core machine varies by tens of milliseconds.

The model (``sim.faults``) makes a restarted agent live ``agent_restart``
after its restart, and a restarted coordinator ``coordinator_restart`` after
its restart, so a predicted recovery includes the same process start-up the
real one pays.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from harness.scenario.compile import compile_plan
from harness.scenario.schema import parse_scenario
from protocol.plan import FaultKind, Plan
from protocol.records import DriverResult

RESTART_AFTER = 0.1
PLAN = {
    "name": "calibrate-restarts",
    "seed": 3,
    "duration": 3.0,
    "warmup": 0.5,
    "transport": "tcp",
    "agents": {"count": 4, "workers": 2},
    "topics": {"count": 2, "fanout": 2},
    "protocol": {"heartbeat_interval": 0.05, "failure_after": 0.15, "durable_bus": True},
    "workload": [{"kind": "publish", "arrival": {"process": "constant", "rate": 50}}],
    "faults": [
        {
            "kind": "kill_agent",
            "at": 1.0,
            "agents": ["agent-00000"],
            "restart_after": RESTART_AFTER,
        },
        {"kind": "crash_coordinator", "at": 2.0, "restart_after": RESTART_AFTER},
    ],
}


def restart_plan() -> Plan:
    return compile_plan(parse_scenario(PLAN, "(restart calibration)"))


def restart_times(plan: Plan, result: DriverResult) -> tuple[list[float], list[float]]:
    """(worker restart times, coordinator restart times) seen in one run's events."""
    agents: list[float] = []
    coordinator: list[float] = []
    for fault in plan.faults:
        nodes = ("coordinator",) if fault.kind == FaultKind.CRASH_COORDINATOR else fault.agents
        healed = [
            e.at - fault.end
            for e in result.events
            if e.kind == "healed" and e.node in nodes and e.at >= fault.end - 0.01
        ]
        if not healed:
            continue
        if fault.kind == FaultKind.CRASH_COORDINATOR:
            coordinator.append(min(healed))
        else:
            agents.append(max(healed))  # the process is back when its last agent is
    return agents, coordinator


def measure_restarts(repeats: int = 3) -> tuple[float, float, str]:
    """Median worker and coordinator restart times (s), and how they were measured."""
    from real.tcp.run import run_plan

    plan = restart_plan()
    agents: list[float] = []
    coordinator: list[float] = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as scratch:
            result = run_plan(plan, workers=2, connections=1, db_path=str(Path(scratch) / "c.db"))
        more_agents, more_coordinator = restart_times(plan, result)
        agents += more_agents
        coordinator += more_coordinator
    if not agents or not coordinator:
        raise RuntimeError("the restart calibration saw no restart finish (no healed events)")
    agent, coord = statistics.median(agents), statistics.median(coordinator)
    method = (
        f"median over {repeats} tcp runs that SIGKILL a worker and the coordinator and restart "
        f"each {RESTART_AFTER} s later: from the restart until the new worker's agents are all "
        f"registered ({', '.join(f'{x:.3f}' for x in agents)} s) and until the new coordinator "
        f"listens ({', '.join(f'{x:.3f}' for x in coordinator)} s)"
    )
    return agent, coord, method
