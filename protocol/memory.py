"""The shared memory store: namespaced keys with versions.

Each key holds ``(version, value)``. A key that was never written, or was
deleted, has version 0. ``put`` and a successful ``cas`` bump the version by
one; ``cas`` succeeds only when the caller's ``expected_version`` equals the
current one (0 means "create if absent"). ``delete`` removes the key and
reports the version it had.

Every mutation is also appended to ``journal`` as a ``Write``. A driver that
persists the store (SQLite in ``real/``) takes the journal, makes it durable,
and only then lets the coordinator release the replies, so an acknowledged
write survives a crash. ``load`` rebuilds the store from persisted rows.
"""

from __future__ import annotations

from typing import NamedTuple

from protocol.messages import MemReply, MemVerb

MAX_KEY = 256


class Write(NamedTuple):
    """One mutation to persist. ``value`` None means the key was deleted."""

    namespace: str
    key: str
    version: int
    value: bytes | None


class MemoryStore:
    """In-memory state plus a journal of unpersisted writes."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.journal: list[Write] = []

    def __len__(self) -> int:
        return len(self._data)

    def load(self, rows: list[Write]) -> None:
        """Replace the contents with persisted rows (deleted rows are skipped)."""
        self._data = {
            (row.namespace, row.key): (row.version, row.value)
            for row in rows
            if row.value is not None
        }

    def snapshot(self) -> dict[tuple[str, str], tuple[int, bytes]]:
        """A copy of every live key, for integrity checks."""
        return dict(self._data)

    def apply(
        self, op_id: int, verb: int, namespace: str, key: str, value: bytes, expected: int
    ) -> MemReply:
        """Run one request and return its reply."""
        if not namespace or not key or len(namespace) > MAX_KEY or len(key) > MAX_KEY:
            return MemReply(op_id, False, 0, b"", "namespace and key must be 1..256 chars")
        slot = (namespace, key)
        version, current = self._data.get(slot, (0, b""))
        if verb == MemVerb.GET:
            return MemReply(op_id, version > 0, version, current, "" if version else "absent")
        if verb == MemVerb.PUT:
            return self._write(op_id, slot, version + 1, value)
        if verb == MemVerb.CAS:
            if expected != version:
                return MemReply(op_id, False, version, b"", "version mismatch")
            return self._write(op_id, slot, version + 1, value)
        if verb == MemVerb.DELETE:
            if version == 0:
                return MemReply(op_id, False, 0, b"", "absent")
            del self._data[slot]
            self.journal.append(Write(namespace, key, version, None))
            return MemReply(op_id, True, version, b"")
        return MemReply(op_id, False, 0, b"", f"unknown verb {verb}")

    def _write(self, op_id: int, slot: tuple[str, str], version: int, value: bytes) -> MemReply:
        self._data[slot] = (version, value)
        self.journal.append(Write(slot[0], slot[1], version, value))
        return MemReply(op_id, True, version, b"")

    def take_journal(self) -> list[Write]:
        """Hand over (and forget) the writes not yet persisted."""
        writes, self.journal = self.journal, []
        return writes
