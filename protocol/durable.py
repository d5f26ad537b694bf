"""What a durable coordinator keeps across a crash, and a coordinator restarted from it.

A coordinator with ``durable_memory`` journals, per batch of work, three things
its driver must make durable before ``writes_persisted()`` releases the replies
that depend on them: the memory writes (``take_writes``), the bus journal
entries (``take_bus_journal``, with ``durable_bus``) and the answers to the
memory writes it applied (``take_answers``). The answers are there so that a
client's retry of a write applied just before a crash, whose reply never left,
is answered as it was instead of applied a second time (a second version of
the same write is a history no single order explains: not linearizable).

``DurableState`` folds those batches: the store's live rows, the bus journal's
``BusState``, and the newest ``ANSWERS_KEPT`` answers per origin
(``KeptAnswers``; a client has at most ``request_window`` requests in flight,
so an answer it may still retry is among its origin's newest). The model, the
in-process backend and a Raft replica's state machine keep one in memory
(``persist`` is their group commit); the tcp server keeps the same three in
SQLite (``real.tcp.persistence``). ``restarted`` builds the coordinator that
takes over from it: the store loaded, the bus restored, the answers recalled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.coordinator import Coordinator, tree_node
from protocol.journal import BusEntry, BusState
from protocol.memory import MemoryStore, Write
from protocol.messages import MemReply
from protocol.settings import ProtocolSettings

ANSWERS_KEPT = 256  # write answers kept per origin: more than a client has in flight
Answer = tuple[str, MemReply]  # (origin, the reply to its write)


class KeptAnswers:
    """The newest ``ANSWERS_KEPT`` write answers of each origin, oldest first."""

    def __init__(self) -> None:
        self.by_origin: dict[str, dict[int, MemReply]] = {}

    def add(self, origin: str, reply: MemReply) -> int | None:
        """Keep ``reply``; return the op id it pushed out of its origin's window, if any."""
        kept = self.by_origin.setdefault(origin, {})
        kept[reply.op_id] = reply
        if len(kept) > ANSWERS_KEPT:
            oldest = next(iter(kept))
            del kept[oldest]
            return oldest
        return None

    def recalled(self) -> list[Answer]:
        """Every answer kept, for ``Coordinator.recall_answers``."""
        return [(o, r) for o, kept in self.by_origin.items() for r in kept.values()]

    def __len__(self) -> int:
        return sum(len(kept) for kept in self.by_origin.values())


@dataclass(slots=True)
class DurableState:
    """Memory rows, what the bus still owes, and the answers to writes."""

    rows: dict[tuple[str, str], Write] = field(default_factory=dict)
    bus: BusState = field(default_factory=BusState)
    answers: KeptAnswers = field(default_factory=KeptAnswers)
    batches: int = 0  # batches applied

    def apply(self, writes: list[Write], entries: list[BusEntry], answers: list[Answer]) -> None:
        for origin, reply in answers:
            self.answers.add(origin, reply)
        for write in writes:
            slot = (write.namespace, write.key)
            if write.value is None:
                self.rows.pop(slot, None)
            else:
                self.rows[slot] = write
        if entries:
            self.bus.apply(entries)
        self.batches += 1

    def recalled(self) -> list[Answer]:
        """Every write answer kept, for a new coordinator's ``recall_answers``."""
        return self.answers.recalled()

    def persist(self, coordinator: Coordinator) -> None:
        """Take what ``coordinator`` journaled since the last call, keep it, and release
        the replies it held for it (a group commit that cannot fail)."""
        writes = coordinator.take_writes()
        entries = coordinator.take_bus_journal()
        answers = coordinator.take_answers()
        if writes or entries or answers:
            self.apply(writes, entries, answers)
        coordinator.writes_persisted()


def restarted(
    node_id: str,
    settings: ProtocolSettings,
    chain: tuple[str, ...],
    rows: list[Write],
    bus: BusState | None,
    answers: list[Answer],
) -> Coordinator:
    """Coordinator ``node_id`` (of a tree when ``chain`` names its ancestors) taking
    over from what its predecessor made durable: ``rows`` loaded into its store, ``bus``
    (None: the bus journal is off) restored, ``answers`` recalled."""
    store = MemoryStore()
    store.load(rows)
    coordinator = tree_node(node_id, settings, chain, store, durable_memory=True)
    if bus is not None:
        coordinator.restore(bus)
    coordinator.recall_answers(answers)
    return coordinator
