"""The Raft log of one replica: a snapshot, the entries after it, and how far each is known.

The entries after the snapshot are kept in memory. ``stable`` is the last index
the driver has persisted (entries above it are handed out by ``unstable()`` and
lost by a crash); ``committed`` the last index known to be on a quorum;
``applied`` the last index the application has been given. A snapshot stands for
every entry up to its index: ``term(i)`` is known for the snapshot's index and
the entries after it, ``None`` for compacted or missing ones.

A snapshot the application takes of its own state (``compact``) drops the
entries up to its index and keeps the tail. A snapshot received from a leader
replaces a log only when the log does not hold the snapshot's last entry (same
index and term), so it empties the log; ``after_snapshot`` is that rule for a
driver's storage.
"""

from __future__ import annotations

from dataclasses import dataclass


class RaftInvariantError(AssertionError):
    """A rule of Raft would be broken (a bug, never a peer's bad input)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry: the term of the leader that made it, its index, the command."""

    term: int
    index: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The application's state after applying every entry up to ``index``."""

    index: int
    term: int
    data: bytes = b""


def after_snapshot(entries: list[Entry], snapshot: Snapshot) -> list[Entry]:
    """What storage keeps of ``entries`` once it takes a leader's ``snapshot``."""
    holds = any(e.index == snapshot.index and e.term == snapshot.term for e in entries)
    return [e for e in entries if e.index > snapshot.index] if holds else []


class RaftLog:
    """The log: ``entries`` hold indexes ``snap_index + 1`` to ``last_index()``."""

    def __init__(self, snapshot: Snapshot | None, entries: list[Entry], commit: int) -> None:
        self.snapshot = snapshot or Snapshot(0, 0)
        self.entries = [e for e in entries if e.index > self.snapshot.index]
        if self.entries and self.entries[0].index != self.snapshot.index + 1:
            raise RaftInvariantError("entries do not follow the snapshot")
        self.stable = self.last_index()  # what was given to us was persisted
        self.committed = min(max(commit, self.snapshot.index), self.last_index())
        self.applied = self.snapshot.index

    @property
    def snap_index(self) -> int:
        return self.snapshot.index

    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    def term(self, index: int) -> int | None:
        """The term of entry ``index``, or None when it is compacted or not there."""
        if index == self.snapshot.index:
            return self.snapshot.term
        if index < self.snapshot.index or index > self.last_index():
            return None
        return self.entries[index - self.snapshot.index - 1].term

    def last_term(self) -> int:
        term = self.term(self.last_index())
        assert term is not None
        return term

    def up_to_date(self, index: int, term: int) -> bool:
        """Is a log ending at (``index``, ``term``) at least as up to date as this one?"""
        last_term = self.last_term()
        return term > last_term or (term == last_term and index >= self.last_index())

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """The entries with ``lo <= index < hi`` (``lo`` must be above the snapshot)."""
        base = self.snapshot.index + 1
        return self.entries[max(lo - base, 0) : max(hi - base, 0)]

    def append(self, entry: Entry) -> None:
        if entry.index != self.last_index() + 1:
            raise RaftInvariantError(f"append at {entry.index} after {self.last_index()}")
        self.entries.append(entry)

    def try_append(self, prev: int, prev_term: int, entries: tuple[Entry, ...]) -> int | None:
        """A leader's entries after (``prev``, ``prev_term``): the last index now known
        to match the leader's log, or None when the log does not hold ``prev``."""
        if self.term(prev) != prev_term:
            return None
        for entry in entries:
            if entry.index <= self.snapshot.index:
                continue  # compacted here, hence committed, hence the same
            mine = self.term(entry.index)
            if mine == entry.term:
                continue
            if mine is not None:  # a conflict: the tail from here is replaced
                if entry.index <= self.committed:
                    raise RaftInvariantError(f"conflict at committed index {entry.index}")
                del self.entries[entry.index - self.snapshot.index - 1 :]
                self.stable = min(self.stable, entry.index - 1)
            self.entries.append(entry)
        return prev + len(entries)

    def commit_to(self, index: int) -> bool:
        index = min(index, self.last_index())
        if index <= self.committed:
            return False
        self.committed = index
        return True

    def unstable(self) -> list[Entry]:
        """The entries not yet persisted."""
        return self.slice(self.stable + 1, self.last_index() + 1)

    def to_apply(self) -> list[Entry]:
        """The committed entries the application has not been given."""
        return self.slice(self.applied + 1, self.committed + 1)

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application's state after ``index`` (applied) replaces the entries up to it."""
        term = self.term(index)
        if index > self.applied or term is None:
            raise RaftInvariantError(f"cannot compact to {index} (applied {self.applied})")
        self.snapshot = Snapshot(index, term, data)
        self.entries = [e for e in self.entries if e.index > index]
        return self.snapshot

    def restore(self, snapshot: Snapshot) -> None:
        """A leader's snapshot replaces this log, which does not hold its last entry."""
        self.snapshot = snapshot
        self.entries = []
        self.stable = self.last_index()  # the driver persists it before anything else
        self.committed = max(self.committed, snapshot.index)
        self.applied = snapshot.index
