"""SQLite persistence for the coordinator's memory store and its bus journal.

One table holds the live keys::

    memory(namespace TEXT, key TEXT, version INTEGER, value BLOB,
           PRIMARY KEY (namespace, key))

``MemoryDB.load()`` returns every row as a ``protocol.memory.Write`` for
``MemoryStore.load``. ``persist(writes, bus)`` applies a batch of journal
entries in one transaction: the last write per key wins (the store's versions
only grow, so the batch's final state is the last entry), a ``value`` of None
deletes the row, anything else is an upsert.

More tables hold who is registered and what it follows (``bus_member``,
``bus_subscription``; in a tree, ``bus_neighbour``: each neighbouring
coordinator's last interest), the highest message id ever journaled (``bus_meta``,
so a restarted coordinator never reuses one) and what the bus still owes (``protocol.journal``,
used when ``ProtocolSettings.durable_bus`` is on)::

    bus_delivery(msg_id INTEGER, node TEXT, deliver BLOB,     -- codec body
                 PRIMARY KEY (msg_id, node))
    bus_task(origin TEXT, op_id INTEGER, capability TEXT, payload BLOB,
             checksum INTEGER, PRIMARY KEY (origin, op_id))

A ``PendingDelivery`` inserts a row and its ``DeliveryDone`` deletes it; a
``PendingTask`` inserts and its ``TaskFinished`` deletes. The bus entries are
folded in order and written in the *same* transaction as the memory writes,
so one group commit covers both. ``load_bus()`` rebuilds the
``protocol.journal.BusState`` for ``Coordinator.restore``.
``mem_answer`` holds the answers to the newest memory writes of each origin
(``protocol.durable.KeptAnswers``), written in the same transaction as the
writes they answer, so that a client's retry of a write applied just before
a crash is answered as it was, not applied again::

    mem_answer(origin TEXT, op_id INTEGER, version INTEGER, seq INTEGER,
               PRIMARY KEY (origin, op_id))   -- seq: the order they were applied

``read_snapshot(path)`` reads the memory rows through a read-only connection
(the fault supervisor's view of what a restarted coordinator starts from).

Durability choice. The coordinator replies to a memory write only after
``persist`` has returned, so "acknowledged" must mean "survives a crash".
The database runs in WAL mode with ``synchronous=FULL``: every commit
fsyncs the write-ahead log before ``COMMIT`` returns, so an acknowledged
write survives a killed coordinator *and* an OS crash or power loss.
``synchronous=NORMAL`` would survive a process crash (the committed WAL
frames are in the OS page cache) but could lose the last commits on power
loss, which would break the guarantee the certification checks. The cost
of FULL is one fsync per commit; the server pays it once per event-loop
turn for every write that turn produced (group commit), so it grows with
load far slower than the write rate. (``durability="normal"`` is available
for runs that only need process-crash safety.)
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from protocol.codec import decode_body, encode_body
from protocol.durable import Answer, KeptAnswers
from protocol.journal import (
    BusEntry,
    BusState,
    DeliveryDone,
    Member,
    Neighbour,
    PendingDelivery,
    PendingTask,
    Subscribed,
    TaskFinished,
)
from protocol.memory import Write
from protocol.messages import Deliver, MemReply
from protocol.payload import checksum

SCHEMA = """
CREATE TABLE IF NOT EXISTS memory (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""
UPSERT = (
    "INSERT INTO memory (namespace, key, version, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (namespace, key) DO UPDATE SET version = excluded.version, "
    "value = excluded.value"
)
DELETE = "DELETE FROM memory WHERE namespace = ? AND key = ?"
BUS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bus_delivery (
    msg_id INTEGER NOT NULL,
    node TEXT NOT NULL,
    deliver BLOB NOT NULL,
    PRIMARY KEY (msg_id, node)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS bus_meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS bus_member (
    node TEXT PRIMARY KEY,
    capabilities TEXT NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS bus_neighbour (
    node TEXT PRIMARY KEY,
    patterns TEXT NOT NULL,
    members TEXT NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS bus_subscription (
    node TEXT NOT NULL,
    pattern TEXT NOT NULL,
    PRIMARY KEY (node, pattern)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS mem_answer (
    origin TEXT NOT NULL,
    op_id INTEGER NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (origin, op_id)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS bus_task (
    origin TEXT NOT NULL,
    op_id INTEGER NOT NULL,
    capability TEXT NOT NULL,
    payload BLOB NOT NULL,
    checksum INTEGER NOT NULL,
    PRIMARY KEY (origin, op_id)
) WITHOUT ROWID""",
)
PUT_DELIVERY = "INSERT OR REPLACE INTO bus_delivery (msg_id, node, deliver) VALUES (?, ?, ?)"
DEL_DELIVERY = "DELETE FROM bus_delivery WHERE msg_id = ? AND node = ?"
PUT_TASK = (
    "INSERT OR REPLACE INTO bus_task (origin, op_id, capability, payload, checksum) "
    "VALUES (?, ?, ?, ?, ?)"
)
DEL_TASK = "DELETE FROM bus_task WHERE origin = ? AND op_id = ?"
PUT_ANSWER = "INSERT OR REPLACE INTO mem_answer (origin, op_id, version, seq) VALUES (?, ?, ?, ?)"
DEL_ANSWER = "DELETE FROM mem_answer WHERE origin = ? AND op_id = ?"
RAISE_HIGH_WATER = (
    "INSERT INTO bus_meta (name, value) VALUES ('high_water', ?) "
    "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)"
)
PUT_MEMBER = "INSERT OR REPLACE INTO bus_member (node, capabilities) VALUES (?, ?)"
DEL_SUBSCRIPTIONS = "DELETE FROM bus_subscription WHERE node = ?"
PUT_SUBSCRIPTION = "INSERT OR IGNORE INTO bus_subscription (node, pattern) VALUES (?, ?)"
DEL_SUBSCRIPTION = "DELETE FROM bus_subscription WHERE node = ? AND pattern = ?"
PUT_NEIGHBOUR = "INSERT OR REPLACE INTO bus_neighbour (node, patterns, members) VALUES (?, ?, ?)"
DEL_NEIGHBOUR = "DELETE FROM bus_neighbour WHERE node = ?"
CAPABILITY_SEPARATOR = "\n"  # capabilities, patterns and node ids hold no newline
DeliveryRow = tuple[int, str, bytes]
TaskRow = tuple[str, int, str, bytes, int]
DURABILITY = {"full": "FULL", "normal": "NORMAL"}


@dataclass(slots=True)
class Unpersisted:
    """What a server took from its core (``take_writes``, ``take_bus_journal``,
    ``take_answers``) and has not committed yet (a failed commit keeps it)."""

    writes: list[Write] = field(default_factory=list)
    bus: list[BusEntry] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)


class MemoryDB:
    """The memory store's rows in one SQLite file (WAL mode)."""

    def __init__(self, path: str | os.PathLike[str], durability: str = "full") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {sorted(DURABILITY)}")
        self.path = os.fspath(path)
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
        self._db.execute(SCHEMA)
        for table in BUS_SCHEMA:
            self._db.execute(table)
        self.commits = 0
        self.rows_written = 0
        self._answers = KeptAnswers()  # mirrors the table: which rows a new answer evicts
        self._seq = 0
        self._load_answers()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise ValueError("MemoryDB is closed")
        return self._db

    def load(self) -> list[Write]:
        """Every persisted key, as writes to replay into a ``MemoryStore``."""
        rows = self.db.execute(
            "SELECT namespace, key, version, value FROM memory ORDER BY namespace, key"
        )
        return [Write(ns, key, version, bytes(value)) for ns, key, version, value in rows]

    def _load_answers(self) -> None:
        self._answers = KeptAnswers()
        rows = self.db.execute("SELECT origin, op_id, version FROM mem_answer ORDER BY seq")
        for origin, op_id, version in rows:
            self._answers.add(origin, MemReply(op_id, True, version, b""))
        row = self.db.execute("SELECT max(seq) FROM mem_answer").fetchone()
        self._seq = int(row[0] or 0)

    def load_answers(self) -> list[Answer]:
        """The answers kept to recent writes, for ``Coordinator.recall_answers``."""
        return self._answers.recalled()

    def load_bus(self) -> BusState:
        """What the persisted bus journal says is still owed."""
        state = BusState()
        row = self.db.execute("SELECT value FROM bus_meta WHERE name = 'high_water'").fetchone()
        state.high_water = int(row[0]) if row else 0
        patterns: dict[str, list[str]] = {}
        for node, pattern in self.db.execute("SELECT node, pattern FROM bus_subscription"):
            patterns.setdefault(node, []).append(pattern)
        for node, capabilities in self.db.execute("SELECT node, capabilities FROM bus_member"):
            caps = tuple(c for c in capabilities.split(CAPABILITY_SEPARATOR) if c)
            state.members[node] = Member(node, caps, tuple(sorted(patterns.get(node, ()))))
        for msg_id, node, body in self.db.execute("SELECT msg_id, node, deliver FROM bus_delivery"):
            deliver = decode_body(bytes(body))
            if isinstance(deliver, Deliver):
                state.deliveries[(int(msg_id), node)] = deliver
        for node, interest, members in self.db.execute(
            "SELECT node, patterns, members FROM bus_neighbour"
        ):
            state.neighbours[node] = Neighbour(node, _split(interest), _split(members))
        rows = self.db.execute("SELECT origin, op_id, capability, payload, checksum FROM bus_task")
        for origin, op_id, capability, payload, crc in rows:
            state.tasks[(origin, op_id)] = PendingTask(
                origin, op_id, capability, bytes(payload), crc
            )
        return state

    def persist(
        self, writes: list[Write], bus: Sequence[BusEntry] = (), answers: Sequence[Answer] = ()
    ) -> None:
        """Apply ``writes``, the bus journal entries ``bus`` and the ``answers`` to the
        writes in one durable transaction."""
        if not writes and not bus and not answers:
            return
        final: dict[tuple[str, str], Write] = {}
        for write in writes:
            final[(write.namespace, write.key)] = write
        upserts = [
            (w.namespace, w.key, w.version, w.value) for w in final.values() if w.value is not None
        ]
        deletes = [(w.namespace, w.key) for w in final.values() if w.value is None]
        deliveries, tasks = fold_bus(bus)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if deletes:
                db.executemany(DELETE, deletes)
            if upserts:
                db.executemany(UPSERT, upserts)
            if deliveries:
                db.executemany(DEL_DELIVERY, [k for k, row in deliveries.items() if row is None])
                db.executemany(PUT_DELIVERY, [row for row in deliveries.values() if row])
            if tasks:
                db.executemany(DEL_TASK, [k for k, row in tasks.items() if row is None])
                db.executemany(PUT_TASK, [row for row in tasks.values() if row])
            _persist_members(db, bus)
            if answers:
                self._persist_answers(answers)
            high = max((e.deliver.msg_id for e in bus if type(e) is PendingDelivery), default=0)
            if high:
                db.execute(RAISE_HIGH_WATER, (high,))
        except BaseException:
            db.execute("ROLLBACK")
            if answers:
                self._load_answers()  # the mirror as the table is again
            raise
        db.execute("COMMIT")
        self.commits += 1
        self.rows_written += len(final) + len(deliveries) + len(tasks) + len(answers)

    def _persist_answers(self, answers: Sequence[Answer]) -> None:
        kept = self._answers
        puts: list[tuple[str, int, int, int]] = []
        evicted: list[tuple[str, int]] = []
        for origin, reply in answers:
            self._seq += 1
            puts.append((origin, reply.op_id, reply.version, self._seq))
            oldest = kept.add(origin, reply)
            if oldest is not None:
                evicted.append((origin, oldest))
        self.db.executemany(PUT_ANSWER, puts)
        if evicted:
            self.db.executemany(DEL_ANSWER, evicted)

    def close(self) -> None:
        """Checkpoint the log into the main file and close (idempotent)."""
        if self._db is not None:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
                self._db = None

    def __enter__(self) -> MemoryDB:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _persist_members(db: sqlite3.Connection, bus: Sequence[BusEntry]) -> None:
    """Registrations and subscription changes, in order (they are rare)."""
    for entry in bus:
        if type(entry) is Member:
            db.execute(PUT_MEMBER, (entry.node, CAPABILITY_SEPARATOR.join(entry.capabilities)))
            db.execute(DEL_SUBSCRIPTIONS, (entry.node,))
            db.executemany(PUT_SUBSCRIPTION, [(entry.node, p) for p in entry.subscriptions])
        elif type(entry) is Subscribed:
            db.execute(
                PUT_SUBSCRIPTION if entry.on else DEL_SUBSCRIPTION, (entry.node, entry.pattern)
            )
        elif type(entry) is Neighbour:
            if entry.present:
                joined = (_join(entry.patterns), _join(entry.members))
                db.execute(PUT_NEIGHBOUR, (entry.node, *joined))
            else:
                db.execute(DEL_NEIGHBOUR, (entry.node,))


def _join(items: tuple[str, ...]) -> str:
    return CAPABILITY_SEPARATOR.join(items)


def _split(text: str) -> tuple[str, ...]:
    return tuple(item for item in text.split(CAPABILITY_SEPARATOR) if item)


def fold_bus(
    bus: Sequence[BusEntry],
) -> tuple[dict[tuple[int, str], DeliveryRow | None], dict[tuple[str, int], TaskRow | None]]:
    """The net effect of ``bus`` per row: the row to write, or None to delete it.

    A ``Deliver`` fanned out to many nodes is encoded once.
    """
    deliveries: dict[tuple[int, str], DeliveryRow | None] = {}
    tasks: dict[tuple[str, int], TaskRow | None] = {}
    bodies: dict[int, bytes] = {}  # ``bus`` keeps every Deliver alive: ids are unique here
    for entry in bus:
        if type(entry) is PendingDelivery:
            deliver = entry.deliver
            body = bodies.get(id(deliver))
            if body is None:
                body = bodies[id(deliver)] = encode_body(deliver)
            deliveries[(deliver.msg_id, entry.node)] = (deliver.msg_id, entry.node, body)
        elif type(entry) is DeliveryDone:
            deliveries[(entry.msg_id, entry.node)] = None
        elif type(entry) is PendingTask:
            key = (entry.origin, entry.op_id)
            tasks[key] = (*key, entry.capability, entry.payload, entry.checksum)
        elif type(entry) is TaskFinished:
            tasks[(entry.origin, entry.op_id)] = None
    return deliveries, tasks


def read_snapshot(path: str | os.PathLike[str]) -> dict[tuple[str, str], tuple[int, int]]:
    """``(namespace, key) -> (version, CRC-32 of the value)`` read through a read-only
    connection (missing file or table: empty). Committed WAL frames are included."""
    if not os.path.exists(path):
        return {}
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        rows = db.execute("SELECT namespace, key, version, value FROM memory").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        db.close()
    return {(ns, key): (version, checksum(bytes(value))) for ns, key, version, value in rows}
