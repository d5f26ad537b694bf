"""The bus journal: what a coordinator must persist so accepted work survives a crash.

With ``ProtocolSettings.durable_bus`` on, the coordinator answers ``Accepted``
to a publish, direct, broadcast or task submit only once the driver has
persisted the journal entries that op produced, exactly as it already holds
memory-write replies (``Coordinator.writes_persisted``). "Accepted" then
means "survives a coordinator crash".

Entries, in the order they happened:

- ``Member`` / ``Subscribed``: who is registered and what it follows, so a
  restarted coordinator routes to an agent that has not reconnected yet
  (durable subscriptions) and holds those deliveries for its return.
- ``PendingDelivery``: ``deliver`` is owed to ``node`` (one per recipient).
- ``DeliveryDone``: ``node`` acked it; the pair is no longer owed.
- ``PendingTask``: a submitted task, owed until its result reaches the submitter.
- ``TaskFinished``: the submitter acked the result.
- ``Neighbour``: in a tree, what a neighbouring coordinator last asked to be sent
  (its ``Interest``), or that it is gone; so a restarted coordinator routes to its
  neighbours' subtrees before they have rejoined, and holds those deliveries.

``BusState`` folds entries into what is still owed. A persisting driver
keeps the same fold in its database; after a restart it hands the state to
``Coordinator.restore``, which recreates every member as a failed session
(its deliveries held until it says hello again) and queues every unfinished
task for assignment. Work done twice
across a crash (a delivery sent, handled, not yet acked) is suppressed by the
receivers' de-duplication, so a crash costs duplicates, never losses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.messages import Deliver


@dataclass(frozen=True, slots=True)
class Member:
    """``node`` registered with these capabilities and subscriptions."""

    node: str
    capabilities: tuple[str, ...]
    subscriptions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Subscribed:
    """``node`` subscribed to ``pattern`` (``on``) or unsubscribed from it."""

    node: str
    pattern: str
    on: bool


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """``deliver`` is owed to ``node``."""

    node: str
    deliver: Deliver


@dataclass(frozen=True, slots=True)
class DeliveryDone:
    """``node`` acked message ``msg_id``."""

    node: str
    msg_id: int


@dataclass(frozen=True, slots=True)
class PendingTask:
    """A submitted task not yet finished."""

    origin: str
    op_id: int
    capability: str
    payload: bytes
    checksum: int


@dataclass(frozen=True, slots=True)
class TaskFinished:
    """The task's submitter acked its result."""

    origin: str
    op_id: int


@dataclass(frozen=True, slots=True)
class Neighbour:
    """Neighbour ``node`` asked for ``patterns`` and holds ``members`` below it (a
    child's; a parent's are empty), or is gone (``present`` False)."""

    node: str
    patterns: tuple[str, ...]
    members: tuple[str, ...]
    present: bool = True


BusEntry = (
    Member | Subscribed | PendingDelivery | DeliveryDone | PendingTask | TaskFinished | Neighbour
)
DeliveryKey = tuple[int, str]
TaskKey = tuple[str, int]


@dataclass(slots=True)
class BusState:
    """What is still owed after applying a sequence of ``BusEntry``."""

    members: dict[str, Member] = field(default_factory=dict)
    neighbours: dict[str, Neighbour] = field(default_factory=dict)
    deliveries: dict[DeliveryKey, Deliver] = field(default_factory=dict)
    tasks: dict[TaskKey, PendingTask] = field(default_factory=dict)
    high_water: int = 0  # the highest message id ever journaled, acked or not

    def apply(self, entries: list[BusEntry]) -> None:
        """Fold ``entries`` in, in order."""
        for entry in entries:
            if type(entry) is Member:
                self.members[entry.node] = entry
            elif type(entry) is Subscribed:
                self._subscribe(entry)
            elif type(entry) is PendingDelivery:
                self.deliveries[(entry.deliver.msg_id, entry.node)] = entry.deliver
                self.high_water = max(self.high_water, entry.deliver.msg_id)
            elif type(entry) is DeliveryDone:
                self.deliveries.pop((entry.msg_id, entry.node), None)
            elif type(entry) is PendingTask:
                self.tasks[(entry.origin, entry.op_id)] = entry
            elif type(entry) is TaskFinished:
                self.tasks.pop((entry.origin, entry.op_id), None)
            elif type(entry) is Neighbour:
                if entry.present:
                    self.neighbours[entry.node] = entry
                else:
                    self.neighbours.pop(entry.node, None)

    def _subscribe(self, entry: Subscribed) -> None:
        member = self.members.get(entry.node)
        if member is None:
            return
        patterns = [p for p in member.subscriptions if p != entry.pattern]
        if entry.on:
            patterns.append(entry.pattern)
        self.members[entry.node] = Member(entry.node, member.capabilities, tuple(patterns))

    def owed_to(self) -> dict[str, list[Deliver]]:
        """The pending deliveries per node, oldest message first."""
        parked: dict[str, list[Deliver]] = {}
        for (_, node), deliver in sorted(self.deliveries.items()):
            parked.setdefault(node, []).append(deliver)
        return parked

    def next_msg_id(self) -> int:
        """A message id above every one journaled, so a late ack for an old message
        can never be taken for a new one."""
        pending = max((msg_id for msg_id, _ in self.deliveries), default=0)
        return max(pending, self.high_water) + 1


class BusJournal:
    """The coordinator's unpersisted bus entries (a no-op when the bus is not durable)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._entries: list[BusEntry] = []

    def member(self, node: str, capabilities: tuple[str, ...], patterns: tuple[str, ...]) -> None:
        if self.enabled:
            self._entries.append(Member(node, capabilities, patterns))

    def subscribed(self, node: str, pattern: str, on: bool) -> None:
        if self.enabled:
            self._entries.append(Subscribed(node, pattern, on))

    def delivered(self, deliver: Deliver, nodes: list[str]) -> None:
        if self.enabled:
            self._entries.extend(PendingDelivery(node, deliver) for node in nodes)

    def acked(self, node: str, msg_ids: tuple[int, ...]) -> None:
        if self.enabled:
            self._entries.extend(DeliveryDone(node, msg_id) for msg_id in msg_ids)

    def neighbour(
        self, node: str, patterns: tuple[str, ...], members: tuple[str, ...], present: bool = True
    ) -> None:
        if self.enabled:
            self._entries.append(Neighbour(node, patterns, members, present))

    def task(self, entry: PendingTask) -> None:
        if self.enabled:
            self._entries.append(entry)

    def finished(self, origin: str, op_id: int) -> None:
        if self.enabled:
            self._entries.append(TaskFinished(origin, op_id))

    def take(self) -> list[BusEntry]:
        """Hand over (and forget) the entries not yet persisted."""
        entries, self._entries = self._entries, []
        return entries
