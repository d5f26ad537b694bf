"""A Raft replica's storage in SQLite: its hard state, its snapshot, its log.

One file per replica (WAL mode; ``synchronous=FULL`` by default, so what a
replica promised in a message it sent survives a power loss, as Raft needs)::

    raft_hard(id INTEGER PRIMARY KEY CHECK (id = 0), term, vote, commit_index)
    raft_snapshot(id INTEGER PRIMARY KEY CHECK (id = 0), idx, term, data)
    raft_entry(idx INTEGER PRIMARY KEY, term, data)

``save(ready)`` writes one ``protocol.consensus.messages.Ready`` in one
transaction, with the rules ``Ready.persist`` states for the in-memory model
(a leader's snapshot replaces the log unless the log holds its last entry;
entries replace the stored tail from their first index; the application's own
snapshot drops the entries up to its index). ``load()`` returns the
``Persisted`` a replica starts again from. A test drives this store and the
in-memory rule with the same readies and compares them.

Trimming. A snapshot makes the entries up to its index obsolete, but deleting
them at once is the costliest write a replica makes: 8,192 entries of 4 KiB
took 30 ms to delete and 80-95 ms to commit on 2 cores (every b-tree page they
touched goes through the WAL), a stall of the replica's loop every
``COMPACT_EVERY`` entries that the availability probes saw as late answers
every 10 s. So the store deletes them ``TRIM_CHUNK`` at a time, oldest first,
in the transactions of the saves that follow; ``load()`` reads only the
entries above the stored snapshot, so an entry not yet deleted is never read.
"""

from __future__ import annotations

import os
import sqlite3

from protocol.consensus.log import Entry, Snapshot
from protocol.consensus.messages import HardState, Persisted, Ready

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS raft_hard (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    term INTEGER NOT NULL,
    vote TEXT NOT NULL,
    commit_index INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS raft_snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    data BLOB NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS raft_entry (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    data BLOB NOT NULL
)""",
)
DURABILITY = {"full": "FULL", "normal": "NORMAL"}
PUT_SNAPSHOT = "INSERT OR REPLACE INTO raft_snapshot (id, idx, term, data) VALUES (0, ?, ?, ?)"
PUT_HARD = "INSERT OR REPLACE INTO raft_hard (id, term, vote, commit_index) VALUES (0, ?, ?, ?)"
TRIM_CHUNK = 128  # obsolete entries deleted per save (module docstring)
TRIM = (
    "DELETE FROM raft_entry WHERE idx IN "
    "(SELECT idx FROM raft_entry WHERE idx <= ? ORDER BY idx LIMIT ?)"
)


class RaftStore:
    def __init__(self, path: str | os.PathLike[str], durability: str = "full") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {sorted(DURABILITY)}")
        self.path = os.fspath(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
        for table in SCHEMA:
            self.db.execute(table)
        self.commits = 0
        row = self.db.execute("SELECT idx FROM raft_snapshot").fetchone()
        self.trim_to = row[0] if row else 0  # entries up to here are obsolete
        self.trimmed = 0  # and up to here deleted

    def load(self) -> Persisted:
        db = self.db
        row = db.execute("SELECT term, vote, commit_index FROM raft_hard").fetchone()
        hard = HardState(*row) if row else HardState()
        row = db.execute("SELECT idx, term, data FROM raft_snapshot").fetchone()
        snapshot = Snapshot(row[0], row[1], bytes(row[2])) if row else None
        above = snapshot.index if snapshot is not None else 0
        entries = tuple(
            Entry(term, idx, bytes(data))
            for idx, term, data in db.execute(
                "SELECT idx, term, data FROM raft_entry WHERE idx > ? ORDER BY idx", (above,)
            )
        )
        return Persisted(hard, snapshot, entries)

    def save(self, ready: Ready) -> None:
        """Make ``ready``'s state durable, in one transaction."""
        if not ready.changes_storage:
            return
        db = self.db
        db.execute("BEGIN")
        try:
            snapshot = ready.snapshot
            if snapshot is not None:
                held = db.execute(
                    "SELECT 1 FROM raft_entry WHERE idx = ? AND term = ?",
                    (snapshot.index, snapshot.term),
                ).fetchone()
                if not held:
                    db.execute("DELETE FROM raft_entry")
                db.execute(PUT_SNAPSHOT, (snapshot.index, snapshot.term, snapshot.data))
                self.trim_to = max(self.trim_to, snapshot.index)
            if ready.entries:
                db.execute("DELETE FROM raft_entry WHERE idx >= ?", (ready.entries[0].index,))
                db.executemany(
                    "INSERT INTO raft_entry (idx, term, data) VALUES (?, ?, ?)",
                    [(e.index, e.term, e.data) for e in ready.entries],
                )
            compacted = ready.compacted
            if compacted is not None:
                stored = db.execute("SELECT idx FROM raft_snapshot").fetchone()
                if stored is None or stored[0] < compacted.index:
                    db.execute(PUT_SNAPSHOT, (compacted.index, compacted.term, compacted.data))
                    self.trim_to = max(self.trim_to, compacted.index)
            hard = ready.hard_state
            if hard is not None:
                db.execute(PUT_HARD, (hard.term, hard.vote, hard.commit))
            self._trim(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.commits += 1

    def _trim(self, db: sqlite3.Connection) -> None:
        """Delete up to ``TRIM_CHUNK`` obsolete entries, the oldest (module docstring)."""
        if self.trimmed < self.trim_to:
            deleted = db.execute(TRIM, (self.trim_to, TRIM_CHUNK)).rowcount
            if deleted < TRIM_CHUNK:
                self.trimmed = self.trim_to

    def close(self) -> None:
        self.db.close()
