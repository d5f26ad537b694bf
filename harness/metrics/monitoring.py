"""Monitoring coverage: the share of the system's components that report health and metrics.

Every run takes one status snapshot: at ``Plan.status_at`` the prober sends
the coordinator a ``StatusRequest`` and the driver records the reply in
``DriverResult.status`` (real tcp, real inproc and the model alike;
``protocol.status`` builds it). ``monitoring_section`` checks it against
the plan and the run's own records:

- **expected** components: the core's fixed ones
  (``protocol.status.CORE_COMPONENTS``: coordinator, bus, tasks, memory,
  failure_detector, journal) plus ``agent:<id>`` for every agent of the plan.
- a component is **reporting** when it is present, its health is one of
  ``ok``, ``degraded`` or ``failed``, its metrics are a non-empty mapping of
  non-negative finite numbers, and, where the run's records give cheap
  ground truth, the metrics agree with it. An agent reports for itself: the
  coordinator can only pass on what it last heard, so an agent counts only
  when it was heard from (``last_seen_s``: its own messages, or those of the
  link node of its process when it is vouched for) within
  ``SILENT_HEARTBEATS`` heartbeat intervals of the snapshot. A hung worker
  (SIGSTOP), a killed agent or a partitioned one is not reporting, whatever
  the coordinator still holds about it. Counted only over completions between the last
  coordinator restart (a new life starts its counters at 0) and the
  snapshot: a run that completed deliveries or tasks must show
  ``bus.msg_ids > 0``; one that completed memory requests,
  ``memory.requests > 0``; one whose agents had registered,
  ``coordinator.received > 0`` and ``coordinator.agents_known > 0``.
- **coverage** = reporting / expected, in percent. No reply at all is a
  measurement too: coverage 0. A plan without a snapshot (no prober,
  ``probe_interval`` 0) has coverage None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.metrics.summary import MonitoringFigures
from protocol.messages import HEALTH_STATES
from protocol.plan import OpKind, Plan
from protocol.records import DriverResult
from protocol.status import AGENT_PREFIX, CORE_COMPONENTS, SILENT_HEARTBEATS, agent_component

LISTED = 40  # at most this many missing names and problems are kept
ROUTED_KINDS: tuple[int, ...] = (OpKind.PUBLISH, OpKind.DIRECT, OpKind.BROADCAST, OpKind.TASK)
# component -> (metric, the kinds whose completions prove it must be > 0)
COUNTERS: dict[str, tuple[str, tuple[int, ...]]] = {
    "bus": ("msg_ids", ROUTED_KINDS),
    "memory": ("requests", (OpKind.MEMORY,)),
}


def expected_components(plan: Plan) -> list[str]:
    """The components a run of ``plan`` should report, in order."""
    return [*CORE_COMPONENTS, *(agent_component(spec.agent_id) for spec in plan.agents)]


def monitoring_section(
    plan: Plan,
    result: DriverResult,
    done_at: npt.NDArray[np.float64],
    done_kind: npt.NDArray[np.int64],
) -> MonitoringFigures:
    """Coverage of ``result.status``; ``done_at``/``done_kind`` are the time and op
    kind of every unique completion of the run (the ground truth)."""
    at = plan.status_at
    if at is None:
        return MonitoringFigures()
    expected = expected_components(plan)
    status = result.status
    if status is None:
        return MonitoringFigures(
            expected=len(expected),
            coverage=0.0,
            missing=expected[:LISTED],
            problems=[f"no status reply to the request at {at:g} s"],
        )
    truth = _ground_truth(plan, result, at, done_at, done_kind)
    silent_limit = SILENT_HEARTBEATS * plan.settings.heartbeat_interval
    missing: list[str] = []
    problems: list[str] = []
    health: dict[str, int] = {}
    for name in expected:
        problem = component_problem(name, status.get(name), truth, silent_limit)
        if problem is None:
            state = status[name]["health"]
            health[state] = health.get(state, 0) + 1
            continue
        missing.append(name)
        if len(problems) < LISTED:
            problems.append(f"{name}: {problem}")
    reporting = len(expected) - len(missing)
    return MonitoringFigures(
        expected=len(expected),
        reporting=reporting,
        coverage=100.0 * reporting / len(expected),
        answered=True,
        missing=missing[:LISTED],
        problems=problems,
        health=health,
    )


def _ground_truth(
    plan: Plan,
    result: DriverResult,
    at: float,
    done_at: npt.NDArray[np.float64],
    done_kind: npt.NDArray[np.int64],
) -> dict[str, int]:
    """What the snapshot's coordinator must have seen: completions per component
    counter, and agents registered, since its last (re)start and before ``at``."""
    since = max((r.at for r in result.restarts if r.at <= at), default=-math.inf)
    window = (done_at >= since) & (done_at <= at)
    truth = {
        component: int(np.count_nonzero(window & np.isin(done_kind, kinds)))
        for component, (_, kinds) in COUNTERS.items()
    }
    truth["coordinator"] = sum(1 for t in result.registered.values() if t <= at)
    return truth


def component_problem(
    name: str, entry: Any, truth: Mapping[str, int], silent_limit: float = math.inf
) -> str | None:
    """Why ``entry`` (a ``status[name]`` value) does not count as reporting, or None;
    an agent silent for more than ``silent_limit`` seconds has not reported."""
    if not isinstance(entry, Mapping):
        return "absent"
    if entry.get("health") not in HEALTH_STATES:
        return f"health {entry.get('health')!r} is not one of {', '.join(HEALTH_STATES)}"
    metrics = entry.get("metrics")
    if not isinstance(metrics, Mapping) or not metrics:
        return "no metrics"
    for metric, value in metrics.items():
        if not _sane(value):
            return f"metric {metric} = {value!r} is not a non-negative finite number"
    if name.startswith(AGENT_PREFIX):
        silent = metrics.get("last_seen_s")
        if silent is None:
            return "no last_seen_s: nothing says when it last reported"
        if silent > silent_limit:
            return f"silent for {silent:.2f} s (over {silent_limit:g} s): it has not reported"
    return _against_truth(name, metrics, truth)


def _sane(value: Any) -> bool:
    if type(value) is int:
        return value >= 0
    return type(value) is float and math.isfinite(value) and value >= 0.0


def _against_truth(name: str, metrics: Mapping[str, Any], truth: Mapping[str, int]) -> str | None:
    counter = COUNTERS.get(name)
    if counter is not None and truth.get(name, 0) > 0 and not metrics.get(counter[0], 0) > 0:
        return f"{counter[0]} is 0 but {truth[name]:,} completions needed it before the snapshot"
    if name == "coordinator" and truth.get(name, 0) > 0:
        for metric in ("received", "agents_known"):
            if not metrics.get(metric, 0) > 0:
                return f"{metric} is 0 but {truth[name]:,} agents had registered"
    return None
