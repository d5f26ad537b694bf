"""A storage replica of a quorum store behind the tcp server, and its SQLite file.

``CoordinatorServer`` drives one core through what a ``Coordinator`` offers;
``StoreCore`` offers the same on a ``protocol.consensus.quorum.StorageReplica``,
as ``real.tcp.replicacore.ReplicaCore`` does on a Raft replica, so one server,
one admission and one outbox serve it. What differs:

- no registration: agents send ``QuorumRead`` and ``QuorumWrite`` with the
  shared token and no ``Hello`` (``knows`` says yes to every node id, so a
  worker's agents bind to its connection as they speak, and ``takes_over``
  lets a request with the token take back an id another connection bound);
- persistence: the server's flush calls ``persist``, which takes the turn's
  changed cells and writes them to the replica's SQLite file (``CellFile``) in
  one transaction, and only then lets the answers go (``drain``); a failed
  commit drops the turn's answers (the clients ask again), so nothing
  unwritten is acknowledged;
- no timers, no links to other replicas.

``CellFile`` is one table, a row per key (WAL mode, ``synchronous=FULL``)::

    cell(namespace, key, counter, writer, version, present, value,
         PRIMARY KEY (namespace, key))
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field

from protocol.consensus.quorum import Cell, StorageReplica, StoredCell
from protocol.messages import Message, QuorumRead, QuorumWrite
from protocol.records import NodeEvent
from protocol.sessions import CoordinatorStats
from protocol.settings import ProtocolSettings

SCHEMA = """CREATE TABLE IF NOT EXISTS cell (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    counter INTEGER NOT NULL,
    writer TEXT NOT NULL,
    version INTEGER NOT NULL,
    present INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
)"""
PUT = "INSERT OR REPLACE INTO cell VALUES (?, ?, ?, ?, ?, ?, ?)"


class CellFile:
    """A storage replica's cells in SQLite."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(SCHEMA)
        self.commits = 0

    def load(self) -> dict[tuple[str, str], Cell]:
        rows = self.db.execute("SELECT * FROM cell")
        return {
            (ns, key): Cell(counter, writer, version, bool(present), bytes(value))
            for ns, key, counter, writer, version, present, value in rows
        }

    def save(self, cells: list[StoredCell]) -> None:
        """Make ``cells`` durable, in one transaction."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(PUT, [(c.namespace, c.key, *c.cell) for c in cells])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.commits += 1

    def close(self) -> None:
        self.db.close()


@dataclass(slots=True)
class StorePlace:
    """Where a store server sits: its id and its file (None: in memory)."""

    node_id: str
    store_path: str | None = None
    replicas: tuple[str, ...] = ()  # no other replica to link to
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)


class StoreCore:
    """The server's coordinator, for a storage replica."""

    parent = ""  # never a tree node

    def __init__(self, place: StorePlace, settings: ProtocolSettings) -> None:
        self.place = place
        self.file = CellFile(place.store_path) if place.store_path else None
        cells = self.file.load() if self.file is not None else {}
        self.store = StorageReplica(place.node_id, settings, cells)
        self.stats = CoordinatorStats()
        self._out: list[tuple[str, Message]] = []
        self._closures: list[str] = []
        self._refusals: list[str] = []
        self._told = 0  # the store's refusals already taken
        self.failed_commits = 0

    @property
    def counts(self) -> dict[str, int]:
        """What it did, for the server's report (``protocol.records.STORE_COUNTS``)."""
        store = self.store
        commits = self.file.commits if self.file is not None else 0
        return {
            "store_reads": store.reads,
            "store_writes": store.writes,
            "store_commits": commits,
            "store_refused": store.refusals,
        }

    def start(self, now: float) -> None:
        pass

    def persist(self, now: float) -> None:
        """Write the turn's cells, then release its answers (see the module doc)."""
        durable, out = self.store.take()
        if durable and self.file is not None:
            try:
                self.file.save(durable)
            except sqlite3.Error as exc:
                self.failed_commits += 1
                self._refusals.append(f"commit failed, {len(out)} answers dropped: {exc}")
                return
        self._out.extend(out)

    def knows(self, node: str) -> bool:
        return True

    def takes_over(self, node: str, msg: Message) -> bool:
        """A request with the shared token may take its node id from another
        connection (``real.tcp.admission``): the id's agent proves itself so."""
        kind = type(msg)
        if kind is QuorumRead or kind is QuorumWrite:
            return self.store.settings.accepts(msg.token)  # type: ignore[union-attr]
        return False

    def receive(self, src: str, msg: Message, now: float) -> None:
        self.store.receive(src, msg)

    def on_timer(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def link_closed(self, node: str, now: float) -> None:
        pass

    def peer_malformed(self, node: str, reason: str) -> None:
        self._closures.append(node)

    def drain(self) -> list[tuple[str, Message]]:
        out, self._out = self._out, []
        return out

    def take_closures(self) -> list[str]:
        closures, self._closures = self._closures, []
        return closures

    def take_events(self) -> list[NodeEvent]:
        return []

    def take_refusals(self) -> list[str]:
        """What was refused since the last call: requests, and failed commits."""
        refused = self.store.refused
        new = self._refusals + refused[self._told :]
        self._told = len(refused)
        self._refusals = []
        return new

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
