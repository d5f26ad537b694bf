"""The shared memory store: namespaced keys with versions.

Each key holds ``(version, value)``. A key that was never written, or was
deleted, has version 0. ``put`` and a successful ``cas`` bump the version by
one; ``cas`` succeeds only when the caller's ``expected_version`` equals the
current one (0 means "create if absent"). ``delete`` removes the key and
reports the version it had.

A store that is ``journaled`` (the coordinator's, when its memory is
durable) also appends every mutation to ``journal`` as a ``Write``. A driver
that persists the store (SQLite in ``real/``) takes the journal, makes it
durable, and only then lets the coordinator release the replies, so an
acknowledged write survives a crash. A store that is not journaled keeps no
journal, so a driver that persists nothing has nothing to take or drop.
``load`` rebuilds the store from persisted rows.

An index of the keys of each namespace (``_spaces``, kept in step with every
write, delete and load) answers ``namespaces`` and ``keys`` for a
``ListRequest`` without scanning the store.

Quotas (``limit``; the coordinator sets them from ``ProtocolSettings``): a
value has at most ``max_value`` bytes, and a write that would take the store
past ``max_keys`` keys or ``max_bytes`` bytes (each key counts its value
plus its namespace and key text) is refused with ``ok=False``, changes
nothing and journals nothing, so it is never acknowledged as written.
Overwrites that do not grow the store, and deletes, are always allowed.
A store loaded over its quota keeps its rows and refuses growth until it
is back under.
"""

from __future__ import annotations

from typing import NamedTuple

from protocol.messages import MemReply, MemVerb

MAX_KEY = 256
UNLIMITED = 1 << 62


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
        self._spaces: dict[str, dict[str, None]] = {}  # namespace -> its keys (ordered set)
        self.journal: list[Write] = []
        self.journaled = True  # the coordinator turns it off when nothing persists
        self.applied = 0  # requests run by ``apply`` (status reporting)
        self.bytes = 0  # what the quota counts: values plus namespace and key text
        self.max_keys = self.max_bytes = self.max_value = UNLIMITED

    def limit(self, max_keys: int, max_bytes: int, max_value: int) -> None:
        """Refuse writes beyond these quotas from now on (see the module doc)."""
        self.max_keys, self.max_bytes, self.max_value = max_keys, max_bytes, max_value

    def __len__(self) -> int:
        return len(self._data)

    def load(self, rows: list[Write]) -> None:
        """Replace the contents with persisted rows (deleted rows are skipped)."""
        self._data = {
            (row.namespace, row.key): (row.version, row.value)
            for row in rows
            if row.value is not None
        }
        self.bytes = sum(_size(slot, value) for slot, (_, value) in self._data.items())
        self._spaces = {}
        for namespace, key in self._data:
            self._spaces.setdefault(namespace, {})[key] = None

    def namespaces(self, limit: int) -> tuple[list[tuple[str, int]], int]:
        """At most ``limit`` namespaces with their key counts, and how many there are."""
        found: list[tuple[str, int]] = []
        for namespace, keys in self._spaces.items():
            if len(found) >= limit:
                break
            found.append((namespace, len(keys)))
        return found, len(self._spaces)

    def keys(self, namespace: str, limit: int) -> tuple[list[tuple[str, int]], int]:
        """At most ``limit`` keys of ``namespace`` with their versions, and how many it has."""
        keys = self._spaces.get(namespace, {})
        found: list[tuple[str, int]] = []
        for key in keys:
            if len(found) >= limit:
                break
            found.append((key, self._data[(namespace, key)][0]))
        return found, len(keys)

    def snapshot(self) -> dict[tuple[str, str], tuple[int, bytes]]:
        """A copy of every live key, for integrity checks."""
        return dict(self._data)

    def apply(
        self, op_id: int, verb: int, namespace: str, key: str, value: bytes, expected: int
    ) -> MemReply:
        """Run one request and return its reply."""
        self.applied += 1
        if not namespace or not key or len(namespace) > MAX_KEY or len(key) > MAX_KEY:
            return MemReply(op_id, False, 0, b"", "namespace and key must be 1..256 chars")
        slot = (namespace, key)
        version, current = self._data.get(slot, (0, b""))
        if verb == MemVerb.GET:
            return MemReply(op_id, version > 0, version, current, "" if version else "absent")
        if verb == MemVerb.PUT or verb == MemVerb.CAS:
            if verb == MemVerb.CAS and expected != version:
                return MemReply(op_id, False, version, b"", "version mismatch")
            grows = _size(slot, value) - (_size(slot, current) if version else 0)
            refusal = self._over_quota(version, len(value), grows)
            if refusal:
                return MemReply(op_id, False, version, b"", refusal)
            self.bytes += grows
            return self._write(op_id, slot, version + 1, value)
        if verb == MemVerb.DELETE:
            if version == 0:
                return MemReply(op_id, False, 0, b"", "absent")
            del self._data[slot]
            keys = self._spaces[namespace]
            del keys[key]
            if not keys:
                del self._spaces[namespace]
            self.bytes -= _size(slot, current)
            if self.journaled:
                self.journal.append(Write(namespace, key, version, None))
            return MemReply(op_id, True, version, b"")
        return MemReply(op_id, False, 0, b"", f"unknown verb {verb}")

    def _over_quota(self, version: int, size: int, grows: int) -> str:
        """Why a write of ``size`` value bytes that grows the store by ``grows`` bytes
        (to a key now at ``version``) is refused, or "" if it fits the quotas."""
        if size > self.max_value:
            return f"quota: value of {size} bytes is over max_value_bytes {self.max_value}"
        if version == 0 and len(self._data) >= self.max_keys:
            return f"quota: the store holds max_memory_keys {self.max_keys} keys"
        if grows > 0 and self.bytes + grows > self.max_bytes:
            return f"quota: the store would pass max_memory_bytes {self.max_bytes}"
        return ""

    def _write(self, op_id: int, slot: tuple[str, str], version: int, value: bytes) -> MemReply:
        if version == 1:  # a new key
            self._spaces.setdefault(slot[0], {})[slot[1]] = None
        self._data[slot] = (version, value)
        if self.journaled:
            self.journal.append(Write(slot[0], slot[1], version, value))
        return MemReply(op_id, True, version, b"")

    def take_journal(self) -> list[Write]:
        """Hand over (and forget) the writes not yet persisted."""
        writes, self.journal = self.journal, []
        return writes


def _size(slot: tuple[str, str], value: bytes) -> int:
    """What one key counts against ``max_bytes``."""
    return len(slot[0]) + len(slot[1]) + len(value)
