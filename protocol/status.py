"""Status reporting: the coordinator's answer to ``StatusRequest``.

A mixin of ``protocol.coordinator.Coordinator``, kept apart so the
coordinator's module stays about the bus, tasks and memory. Anyone may ask,
registered or not (as with ``Probe``), but the request must carry the shared
token: a wrong one is refused as a ``Hello`` with a wrong token is, with
``Reject("bad token")`` and the link closed. The answer is a ``StatusReply``
built from the coordinator's own tables at the ``now`` the driver passed in
(nothing here reads a clock), one ``ComponentStatus`` per component:

- ``coordinator``: messages received, sent and refused; agents known and live.
- ``bus``: message ids issued (one per routed op and per task
  assignment), ops remembered for de-duplication, deliveries in flight and
  queued, retransmission timers, redeliveries, ``Busy`` refusals, dropped
  deliveries, the retransmission timeout. Degraded while a live agent's
  backlog is full (its publishers get ``Busy``).
- ``tasks``: unfinished, waiting for a worker, results not yet acked by
  their submitter, reassigned. Degraded while submits are refused (the
  waiting queue is full) or a waiting task has no live capable agent.
- ``memory``: keys held, requests applied, whether writes are durable.
- ``failure_detector``: failures detected, agents failed, the detection
  limit, seconds to the next sweep. Failed when agents are registered but
  no sweep is armed; degraded when the sweep is overdue by more than a
  heartbeat interval (the driver's timer runs late).
- ``journal``: whether the bus journal is on, whether memory is durable,
  replies held until the driver persists, entries not yet taken. Degraded
  when the held replies reach ``max_backlog`` (persistence is behind).
- ``peer:<id>``, one per neighbouring coordinator of a tree (its parent and
  children, ``protocol.peers``), with the same metrics as an agent.
- ``agent:<id>``, one per agent the coordinator knows: deliveries in
  flight, credit left, backlog, tasks assigned, subscriptions, seconds since
  it was last heard from (``now - last_seen``), whether it has a link.
  Failed when its session is failed; degraded when it has been silent for
  more than two heartbeat intervals or its backlog is full.

A status of many agents goes out in parts of ``STATUS_PART_SIZE``
components (``StatusReply.part``/``parts``). Part 1 answers the request; a
``StatusJob`` remembers the agents known then, and each later part is made by
the next ``on_timer`` (``next_deadline`` asks for it at once), so making the
status of 50,000 agents never stalls the coordinator for more than one part.
At most ``MAX_STATUS_JOBS`` are made at once; a request beyond gets ``Error``.

A ``ListRequest`` (with the token, as a status) is answered from the same
tables: subscription patterns with their subscriber counts, memory namespaces
with their key counts, or one namespace's keys with their versions, at most
``LIST_LIMIT`` of them and the total (``_on_list_request``).

Every metric is a non-negative int or a finite float. ``status_dict`` turns
the components into the JSON-able mapping that drivers record
(``DriverResult.status``): ``{name: {"health": str, "metrics": {name: value}}}``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from mypy_extensions import trait

from protocol.journal import BusJournal
from protocol.memory import MemoryStore
from protocol.messages import (
    LIST_LIMIT,
    ComponentStatus,
    Error,
    ListReply,
    ListRequest,
    ListWhat,
    Message,
    Metric,
    Reject,
    StatusReply,
    StatusRequest,
)
from protocol.retransmit import RetryHeap
from protocol.sessions import CoordinatorStats, HeldBatch, OpKey, Session, Task
from protocol.settings import ProtocolSettings
from protocol.stealing import StealState
from protocol.topics import SubscriptionIndex

CORE_COMPONENTS: tuple[str, ...] = (
    "coordinator",
    "bus",
    "tasks",
    "memory",
    "failure_detector",
    "journal",
)
AGENT_PREFIX = "agent:"
PEER_PREFIX = "peer:"  # a neighbouring coordinator of a tree (``protocol.peers``)
STATUS_PART_SIZE = 1000  # components per StatusReply: about 150 KB, well inside a frame
MAX_STATUS_JOBS = 8  # statuses being made at once; a request beyond gets an Error
SILENT_HEARTBEATS = 2  # an agent silent for this many heartbeat intervals is degraded


def agent_component(node: str) -> str:
    """The component name of agent ``node``."""
    return AGENT_PREFIX + node


def status_dict(components: Iterable[ComponentStatus]) -> dict[str, dict[str, Any]]:
    """``{name: {"health": ..., "metrics": {metric: value}}}``, JSON-able."""
    return {c.name: {"health": c.health, "metrics": dict(c.metrics)} for c in components}


def _component(name: str, health: str, metrics: Mapping[str, int | float]) -> ComponentStatus:
    pairs: tuple[Metric, ...] = tuple(metrics.items())
    return ComponentStatus(name, health, pairs)


class StatusJob:
    """A status still being made: the agents known when it was asked for, and
    the next part to make (1-based)."""

    def __init__(self, src: str, request_id: int, nodes: list[str]) -> None:
        self.src = src
        self.request_id = request_id
        self.nodes = nodes
        self.parts = max(1, -(-(len(CORE_COMPONENTS) + len(nodes)) // STATUS_PART_SIZE))
        self.next_part = 1
        self.due = 0.0


@trait  # a mixin of Coordinator: mypyc compiles a mixin only as a trait
class StatusReporting:
    """Answers ``StatusRequest`` from the coordinator's tables."""

    settings: ProtocolSettings
    sessions: dict[str, Session]
    subscriptions: SubscriptionIndex
    stats: CoordinatorStats
    journal: BusJournal
    store: MemoryStore
    durable_memory: bool
    tasks: dict[OpKey, Task]
    unassigned: deque[Task]
    _out: list[tuple[str, Message]]
    _routed: dict[OpKey, int]
    _held_replies: list[tuple[str, Message]]
    _held_batches: deque[HeldBatch]
    _done_pending: dict[OpKey, Any]
    _retries: RetryHeap[Any]
    _link_timers: RetryHeap[str]
    _next_msg_id: int
    _next_sweep: float | None
    _status_jobs: deque[StatusJob]
    parent: str
    _steal: StealState

    def _refuse(
        self, src: str, reason: str, close: bool = False, reply: Message | None = None
    ) -> None:
        raise NotImplementedError  # the coordinator's

    def last_heard(self, session: Session) -> float:
        raise NotImplementedError  # the coordinator's (``protocol.failures``)

    def _on_status_request(self, src: str, msg: StatusRequest, now: float) -> None:
        if not self.settings.accepts(msg.token):
            reason = f"refused a status request from {src!r}: bad token"
            self._refuse(src, reason, close=True, reply=Reject("bad token"))
            return
        if len(self._status_jobs) >= MAX_STATUS_JOBS:
            busy = f"status busy: {MAX_STATUS_JOBS} statuses are being made"
            self._out.append((src, Error(busy)))
            return
        job = StatusJob(src, msg.request_id, list(self.sessions))
        self._status_part(job, now)
        if job.next_part <= job.parts:
            self._status_jobs.append(job)

    def _on_list_request(self, src: str, msg: ListRequest, now: float) -> None:
        """Topics, namespaces or one namespace's keys: at most ``LIST_LIMIT`` names,
        in no particular order, each with a count (``ListWhat``), and the total."""
        if not self.settings.accepts(msg.token):
            reason = f"refused a list request from {src!r}: bad token"
            self._refuse(src, reason, close=True, reply=Reject("bad token"))
            return
        limit = max(0, min(msg.limit, LIST_LIMIT))
        if msg.what == ListWhat.TOPICS:
            found, total = self.subscriptions.listing(limit)
        elif msg.what == ListWhat.NAMESPACES:
            found, total = self.store.namespaces(limit)
        elif msg.what == ListWhat.KEYS:
            found, total = self.store.keys(msg.namespace, limit)
        else:
            self._out.append((src, Error(f"unknown list {msg.what}: expected 1, 2 or 3")))
            return
        names = tuple(name for name, _ in found)
        counts = tuple(count for _, count in found)
        self._out.append((src, ListReply(msg.request_id, msg.what, names, counts, total)))

    def _status_step(self, now: float) -> None:
        """The next part of every status still being made (``on_timer``)."""
        jobs = self._status_jobs
        for _ in range(len(jobs)):
            job = jobs.popleft()
            self._status_part(job, now)
            if job.next_part <= job.parts:
                jobs.append(job)

    def _status_deadline(self) -> float | None:
        """When ``on_timer`` should make the next parts: at once."""
        return self._status_jobs[0].due if self._status_jobs else None

    def _status_part(self, job: StatusJob, now: float) -> None:
        """Send part ``job.next_part``: components ``(part - 1) * STATUS_PART_SIZE``
        up to ``part * STATUS_PART_SIZE`` of the core components then the agents,
        each agent as it is at ``now`` (an agent gone since the request is left out)."""
        part = job.next_part
        skip = len(CORE_COMPONENTS)
        first = max(0, (part - 1) * STATUS_PART_SIZE - skip)
        last = part * STATUS_PART_SIZE - skip
        components = list(self._core_status(now)) if part == 1 else []
        sessions = self.sessions
        for node in job.nodes[first:last]:
            session = sessions.get(node)
            if session is not None:
                components.append(self._agent_status(session, now))
        reply = StatusReply(job.request_id, tuple(components), part, job.parts)
        self._out.append((job.src, reply))
        job.next_part = part + 1
        job.due = now

    def status(self, now: float) -> tuple[ComponentStatus, ...]:
        """Every component's health and metrics at ``now``, at once."""
        agents = tuple(self._agent_status(s, now) for s in self.sessions.values())
        return self._core_status(now) + agents

    def _core_status(self, now: float) -> tuple[ComponentStatus, ...]:
        return (
            self._coordinator_status(),
            self._bus_status(),
            self._tasks_status(),
            self._memory_status(),
            self._detector_status(now),
            self._journal_status(),
        )

    # --- the components ---------------------------------------------------------------

    def _coordinator_status(self) -> ComponentStatus:
        stats = self.stats
        live = sum(1 for s in self.sessions.values() if s.alive)
        metrics = {
            "received": stats.received,
            "sent": stats.sent,
            "refused": stats.refused,
            "agents_known": len(self.sessions),
            "agents_live": live,
        }
        return _component("coordinator", "ok", metrics)

    def _bus_status(self) -> ComponentStatus:
        stats, limit = self.stats, self.settings.max_backlog
        sessions = self.sessions.values()
        full = any(s.alive and len(s.backlog) >= limit for s in sessions)
        metrics = {
            "msg_ids": self._next_msg_id - 1,
            "dedup_entries": len(self._routed),
            "inflight": sum(len(s.inflight) for s in sessions),
            "backlog": sum(len(s.backlog) for s in sessions),
            "retry_timers": len(self._retries) + len(self._link_timers),
            "redelivered": stats.redelivered,
            "busy": stats.busy,
            "dropped": stats.dropped,
            "rto_ms": max((s.rto.rto for s in sessions if s.alive), default=0.0) * 1000.0,
        }
        return _component("bus", "degraded" if full else "ok", metrics)

    def _tasks_status(self) -> ComponentStatus:
        waiting = self.unassigned
        capable = {c for s in self.sessions.values() if s.alive for c in s.capabilities}
        for child, view in self._steal.views.items():
            if child in self.sessions and self.sessions[child].alive:
                capable.update(view.capabilities)
        stuck = any(task.capability not in capable for task in waiting) and not self.parent
        refusing = len(waiting) >= self.settings.max_backlog
        metrics = {
            "unfinished": len(self.tasks),
            "waiting": len(waiting),
            "results_unacked": len(self._done_pending),
            "reassigned": self.stats.tasks_reassigned,
            "ran_here": self.stats.tasks_run_here,
            "steals": self.stats.steals,
            "steals_granted": self.stats.steals_granted,
            "steals_refused": self.stats.steals_refused,
            "given_up": self.stats.tasks_given,
            "steal_ms_max": self.stats.steal_seconds_max * 1000.0,
        }
        return _component("tasks", "degraded" if stuck or refusing else "ok", metrics)

    def _memory_status(self) -> ComponentStatus:
        metrics = {
            "keys": len(self.store),
            "requests": self.store.applied,
            "durable": int(self.durable_memory),
        }
        return _component("memory", "ok", metrics)

    def _detector_status(self, now: float) -> ComponentStatus:
        settings = self.settings
        sweep = self._next_sweep
        failed = sum(1 for s in self.sessions.values() if not s.alive)
        if sweep is None:
            health = "failed" if self.sessions else "ok"
        else:
            health = "degraded" if now - sweep > settings.heartbeat_interval else "ok"
        metrics = {
            "failures_detected": self.stats.failures_detected,
            "links_lost": self.stats.links_lost,
            "agents_failed": failed,
            "failure_after_s": settings.failure_after,
            "next_sweep_in_s": max(sweep - now, 0.0) if sweep is not None else 0.0,
        }
        return _component("failure_detector", health, metrics)

    def _journal_status(self) -> ComponentStatus:
        held = len(self._held_replies) + sum(len(batch.replies) for batch in self._held_batches)
        metrics = {
            "bus_journal": int(self.journal.enabled),
            "durable_memory": int(self.durable_memory),
            "held_replies": held,
            "untaken_writes": len(self.store.journal),
        }
        health = "degraded" if held >= self.settings.max_backlog else "ok"
        return _component("journal", health, metrics)

    def _agent_status(self, session: Session, now: float) -> ComponentStatus:
        settings = self.settings
        silent = max(now - self.last_heard(session), 0.0)
        if not session.alive:
            health = "failed"
        elif (
            silent > SILENT_HEARTBEATS * settings.heartbeat_interval
            or len(session.backlog) >= settings.max_backlog
        ):
            health = "degraded"
        else:
            health = "ok"
        metrics = {
            "inflight": len(session.inflight),
            "credit": max(settings.credit - len(session.inflight), 0),
            "backlog": len(session.backlog),
            "tasks": len(session.tasks),
            "subscriptions": len(self.subscriptions.patterns_of(session.node_id)),
            "last_seen_s": silent,
            "linked": int(session.linked),
        }
        name = PEER_PREFIX + session.node_id if session.peer else agent_component(session.node_id)
        return _component(name, health, metrics)


class StatusParts:
    """Joins the parts of the ``StatusReply`` to one request (``StatusReply.parts``).

    ``add`` returns the whole status, as ``status_dict`` gives it, once every
    part has come; None before, and for a reply to another request or one
    whose numbering does not fit the parts seen so far (ignored). Each part is
    turned into its mapping as it comes: made at once for the last part, the
    mapping of 50,000 agents took 189 ms, and the prober's loop, which times the
    probes, stood still meanwhile (probes answered in time were stamped late).
    """

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self._parts: dict[int, dict[str, dict[str, Any]]] = {}
        self._count = 0

    def add(self, reply: StatusReply) -> dict[str, dict[str, Any]] | None:
        if reply.request_id != self.request_id or not 1 <= reply.part <= reply.parts:
            return None
        if self._count and reply.parts != self._count:
            return None
        self._count = reply.parts
        self._parts[reply.part] = status_dict(reply.components)
        if len(self._parts) < self._count:
            return None
        whole: dict[str, dict[str, Any]] = {}
        for part in range(1, self._count + 1):
            whole.update(self._parts[part])
        return whole
