"""The coordinator's bookkeeping records: one per agent session and per task.

Plain mutable dataclasses that ``protocol.coordinator.Coordinator`` keeps
in its tables, plus the counters it reports. They hold no behaviour.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from protocol.messages import Deliver, Message
from protocol.retransmit import RtoEstimator

OpKey = tuple[str, int]
InFlight = tuple[Deliver, float]  # a delivery sent and not acked yet, and when it was last sent
INF = float("inf")
Slot = tuple[str, str]  # a memory key: (namespace, key)


class HeldBatch(NamedTuple):
    """Replies a coordinator holds until what they report is durable (``seal``,
    ``release``)."""

    number: int
    replies: list[tuple[str, Message]]
    keys: list[OpKey]  # the ops whose answers these are
    slots: list[Slot]  # the memory slots their writes changed


@dataclass(slots=True)
class Session:
    """What the coordinator knows about one registered agent."""

    node_id: str
    capabilities: tuple[str, ...]
    last_seen: float
    alive: bool = True
    linked: bool = True
    inflight: dict[int, InFlight] = field(default_factory=dict)  # by msg_id, oldest send first
    backlog: deque[Deliver] = field(default_factory=deque)
    backlog_since: float = 0.0  # when the backlog last went from empty to not empty
    tasks: set[OpKey] = field(default_factory=set)
    rto: RtoEstimator = field(default_factory=lambda: RtoEstimator(1.0, 10.0))  # this link's
    timer_due: float = INF  # when this link's retransmission timer fires (INF: not armed)
    voucher: str = ""  # the node whose liveness stands for this one's (``Hello.vouched_by``)
    peer: bool = False  # a neighbouring coordinator of a tree (``protocol.peers``), not an agent


@dataclass(slots=True)
class Task:
    """A submitted task until its result is forwarded."""

    origin: str
    op_id: int
    capability: str
    payload: bytes
    checksum: int
    worker: str | None = None
    taken_from: str | None = None  # the failed agent it was taken from, until reassigned
    queued_at: float = 0.0  # when it arrived here
    assigned_at: float = 0.0  # when it was last given to a worker
    came_from: str = ""  # the neighbouring coordinator that gave it here; "" if submitted here
    returned: bool = False  # given to a neighbour that returned it unrun (``protocol.tasks``)


@dataclass(slots=True)
class CoordinatorStats:
    """Counters for health reporting and tests."""

    received: int = 0
    sent: int = 0
    redelivered: int = 0
    busy: int = 0
    refused: int = 0
    dropped: int = 0
    failures_detected: int = 0  # agents declared failed for their silence
    links_lost: int = 0  # live agents failed because the driver saw their link close
    tasks_reassigned: int = 0
    steals: int = 0  # steal requests sent to a child (``protocol.stealing``)
    steals_granted: int = 0  # answered with at least one task
    steals_refused: int = 0  # answered with none, or never answered
    steal_seconds: float = 0.0  # request to answer, summed over the answered ones
    steal_seconds_max: float = 0.0
    tasks_given: int = 0  # tasks this coordinator gave its parent for a steal
    tasks_run_here: int = 0  # tasks that ran on an agent of this coordinator
    queue_peak: int = 0  # the most tasks that waited here at once
    occupancy_peak: float = 0.0  # the most seconds of work waiting here (at a Load)
    ops_entered: int = 0  # publishes, directs and broadcasts admitted from agents here
    ops_routed: int = 0  # and routed here, from agents or from neighbours (once each)
