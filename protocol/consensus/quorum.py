"""A quorum store (Dynamo's N/R/W): its configuration, its cells, and one storage replica.

The memory store kept on ``N`` storage replicas with no leader and no log. Each
client (an agent, ``protocol.consensus.quorumclient``) coordinates its own
operations: it reads a key from ``R`` replicas, writes it to ``W``, and repairs
what it found stale. A replica only keeps cells and answers; it never talks to
another replica.

A *cell* is one key's state on one replica: its *stamp* ``(counter, writer)``,
the store's ``version`` of the key (what ``MemReply`` reports; 0 when absent)
and the value, or a tombstone (``present`` False) once the key was deleted. A
replica keeps the cell with the highest stamp it was sent (last writer wins:
the counter first, the writer's id breaking a tie), so replicas that got the
same writes in any order, any number of times, hold the same cells. A new
write's stamp is one more than the highest counter the client read, with its
own id, so it supersedes everything its read saw.

``StorageReplica`` is sans-IO, like the coordinator: the driver calls
``receive(src, msg)`` for each message and then ``take()``, which returns the
cells to make durable and the answers to send, in that order: an answer that
says "written" leaves only once its cell is on disk, so an acknowledged write
survives the replica's crash. ``cells`` is what a restarted replica is built
from (``StorageReplica(..., cells=...)``). Tombstones are kept forever (no
compaction yet).

Requests carry the shared token; one without it, with a key outside 1..256
characters or with a value over ``max_value_bytes`` is refused (an answer with
``error`` set), changes nothing and is counted in ``refusals`` (the first
``MAX_NOTED`` noted in ``refused``); any other message gets ``Error``. The
other quotas of the coordinator's store (keys and bytes in all) are not
enforced here: a replica cannot know whether a write will be acknowledged by
enough others to count.

What it guarantees (docs/design.md, "Quorum"): with ``R + W > N`` and reads
that repair before they answer (``repair="sync"``), reads and writes of one
key by one writer at a time are linearizable (Attiya, Bar-Noy and Dolev's
register); two writers of one key at once can both be acknowledged with the
same version, and the lower stamp's write is lost (Dynamo's last writer wins),
and a compare-and-set is a read then a write, not atomic. With ``R + W <= N``,
or ``repair="async"`` (Dynamo's: answer first, repair after), a read can miss
an acknowledged write. The linearizability checker measures all of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from protocol.memory import MAX_KEY
from protocol.messages import Error, Message, QuorumCell, QuorumRead, QuorumWrite, QuorumWritten
from protocol.payload import checksum
from protocol.records import StoreSnapshot
from protocol.settings import ProtocolSettings

REPAIRS = ("sync", "async")
MAX_NOTED = 1000  # refusals kept in ``refused`` (a flood of bad requests is only counted)
Outgoing = tuple[str, Message]


class Cell(NamedTuple):
    """One key's state on one replica (see the module doc); ``EMPTY``: never written."""

    counter: int
    writer: str
    version: int
    present: bool
    value: bytes

    @property
    def stamp(self) -> tuple[int, str]:
        return (self.counter, self.writer)


EMPTY = Cell(0, "", 0, False, b"")


class StoredCell(NamedTuple):
    """A cell to make durable: the key and its new cell."""

    namespace: str
    key: str
    cell: Cell


@dataclass(frozen=True, slots=True)
class QuorumConfig:
    """``replicas`` (their node ids, N of them), ``read`` (R) and ``write`` (W)
    answers an operation waits for, ``repair`` ("sync": a read that found a cell
    on fewer than W replicas writes it back before it answers; "async": it
    answers at once and sends the repair after), and ``retry``, the seconds a
    client waits for answers before it asks the replicas that did not answer
    again."""

    replicas: tuple[str, ...]
    read: int
    write: int
    repair: str = "sync"
    retry: float = 0.05

    def __post_init__(self) -> None:
        n = len(self.replicas)
        if n < 1 or len(set(self.replicas)) != n:
            raise ValueError(f"replicas must be distinct node ids, at least one: {self.replicas}")
        for name, size in (("read", self.read), ("write", self.write)):
            if not 1 <= size <= n:
                raise ValueError(f"{name} quorum {size} is outside 1..{n} (the replicas)")
        if self.repair not in REPAIRS:
            raise ValueError(f"repair {self.repair!r} is not one of {', '.join(REPAIRS)}")
        if not self.retry > 0:
            raise ValueError(f"retry must be positive seconds, got {self.retry}")

    @property
    def overlapping(self) -> bool:
        """Whether every read quorum meets every write quorum (R + W > N)."""
        return self.read + self.write > len(self.replicas)

    def note(self) -> str:
        """One line for a run's notes: the shape, and what it guarantees."""
        n = len(self.replicas)
        if self.overlapping and self.repair == "sync":
            promise = "one writer per key at a time is linearizable; concurrent writers are not"
        elif self.overlapping:
            promise = "a read may miss what an earlier read returned (repair after answering)"
        else:
            promise = "a read may miss an acknowledged write (R + W <= N)"
        return (
            f"quorum store on {', '.join(self.replicas)}: N {n}, R {self.read}, "
            f"W {self.write}, {self.repair} read repair: {promise}"
        )


def newest_cells(stores: list[dict[tuple[str, str], Cell]], at: float) -> StoreSnapshot:
    """What the store holds over all its replicas at ``at``: each key's cell with the
    highest stamp, as a read of every replica would find it (keys whose newest cell
    is a tombstone are absent), as ``(version, checksum of the value)``."""
    newest: dict[tuple[str, str], Cell] = {}
    for cells in stores:
        for slot, cell in cells.items():
            held = newest.get(slot)
            if held is None or cell.stamp > held.stamp:
                newest[slot] = cell
    entries = {
        slot: (cell.version, checksum(cell.value)) for slot, cell in newest.items() if cell.present
    }
    return StoreSnapshot(at, entries)


def default_quorums(n: int) -> tuple[int, int]:
    """Dynamo's usual choice for ``n`` replicas: majorities for R and W."""
    majority = n // 2 + 1
    return majority, majority


class StorageReplica:
    """One storage replica of a quorum store (see the module doc)."""

    def __init__(
        self,
        node_id: str,
        settings: ProtocolSettings,
        cells: dict[tuple[str, str], Cell] | None = None,
    ) -> None:
        self.node_id = node_id
        self.settings = settings
        self.cells: dict[tuple[str, str], Cell] = dict(cells or {})
        self.refused: list[str] = []  # the first ``MAX_NOTED`` refusals, with who sent them
        self.refusals = 0  # all of them
        self.reads = 0
        self.writes = 0  # writes that changed a cell
        self._out: list[Outgoing] = []
        self._durable: list[StoredCell] = []

    def receive(self, src: str, msg: Message) -> None:
        """Answer one request (the answer leaves with the next ``take``)."""
        kind = type(msg)
        if kind is QuorumRead:
            self._read(src, msg)  # type: ignore[arg-type]
        elif kind is QuorumWrite:
            self._write(src, msg)  # type: ignore[arg-type]
        else:
            self._refuse(
                src, f"a storage replica takes QuorumRead and QuorumWrite, not {kind.__name__}"
            )

    def take(self) -> tuple[list[StoredCell], list[Outgoing]]:
        """The cells to make durable, then the answers to send after them."""
        durable, out = self._durable, self._out
        self._durable, self._out = [], []
        return durable, out

    def _refusal(self, token: str, namespace: str, key: str, size: int) -> str:
        if not self.settings.accepts(token):
            return "bad token"
        if not namespace or not key or len(namespace) > MAX_KEY or len(key) > MAX_KEY:
            return "namespace and key must be 1..256 chars"
        if size > self.settings.max_value_bytes:
            return f"quota: value of {size} bytes is over max_value_bytes"
        return ""

    def _refuse(self, src: str, why: str) -> None:
        self._note(src, why)
        self._out.append((src, Error(why)))

    def _note(self, src: str, why: str) -> None:
        self.refusals += 1
        if len(self.refused) < MAX_NOTED:
            self.refused.append(f"{src}: {why}")

    def _read(self, src: str, msg: QuorumRead) -> None:
        why = self._refusal(msg.token, msg.namespace, msg.key, 0)
        if why:
            self._note(src, why)
            self._out.append((src, QuorumCell(msg.op_id, msg.phase, *EMPTY, error=why)))
            return
        self.reads += 1
        cell = self.cells.get((msg.namespace, msg.key), EMPTY)
        answer = QuorumCell(msg.op_id, msg.phase, *cell)
        self._out.append((src, answer))

    def _write(self, src: str, msg: QuorumWrite) -> None:
        why = self._refusal(msg.token, msg.namespace, msg.key, len(msg.value))
        if why:
            self._note(src, why)
            self._out.append((src, QuorumWritten(msg.op_id, msg.phase, why)))
            return
        slot = (msg.namespace, msg.key)
        cell = Cell(msg.counter, msg.writer, msg.version, msg.present, msg.value)
        if cell.stamp > self.cells.get(slot, EMPTY).stamp:
            self.cells[slot] = cell
            self._durable.append(StoredCell(msg.namespace, msg.key, cell))
            self.writes += 1
        self._out.append((src, QuorumWritten(msg.op_id, msg.phase)))
