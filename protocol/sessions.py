"""The coordinator's bookkeeping records: one per agent session and per task.

Plain mutable dataclasses that ``protocol.coordinator.Coordinator`` keeps
in its tables, plus the counters it reports. They hold no behaviour.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from protocol.messages import Deliver
from protocol.retransmit import RtoEstimator

OpKey = tuple[str, int]


@dataclass(slots=True)
class Session:
    """What the coordinator knows about one registered agent."""

    node_id: str
    capabilities: tuple[str, ...]
    last_seen: float
    alive: bool = True
    linked: bool = True
    inflight: dict[int, Deliver] = field(default_factory=dict)
    backlog: deque[Deliver] = field(default_factory=deque)
    backlog_since: float = 0.0  # when the backlog last went from empty to not empty
    tasks: set[OpKey] = field(default_factory=set)
    rto: RtoEstimator = field(default_factory=lambda: RtoEstimator(1.0, 10.0))  # this link's
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
