"""SQLite persistence for the coordinator's memory store.

One table holds the live keys::

    memory(namespace TEXT, key TEXT, version INTEGER, value BLOB,
           PRIMARY KEY (namespace, key))

``MemoryDB.load()`` returns every row as a ``protocol.memory.Write`` for
``MemoryStore.load``. ``persist(writes)`` applies a batch of journal entries
in one transaction: the last write per key wins (the store's versions only
grow, so the batch's final state is the last entry), a ``value`` of None
deletes the row, anything else is an upsert.

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
from types import TracebackType

from protocol.memory import Write

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
DURABILITY = {"full": "FULL", "normal": "NORMAL"}


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
        self.commits = 0
        self.rows_written = 0

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

    def persist(self, writes: list[Write]) -> None:
        """Apply ``writes`` in one durable transaction."""
        if not writes:
            return
        final: dict[tuple[str, str], Write] = {}
        for write in writes:
            final[(write.namespace, write.key)] = write
        upserts = [
            (w.namespace, w.key, w.version, w.value) for w in final.values() if w.value is not None
        ]
        deletes = [(w.namespace, w.key) for w in final.values() if w.value is None]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if deletes:
                db.executemany(DELETE, deletes)
            if upserts:
                db.executemany(UPSERT, upserts)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self.commits += 1
        self.rows_written += len(final)

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
