"""The client side of a quorum store: one agent coordinates its own memory operations.

Sans-IO: the caller ``submit``s a ``MemRequest``, passes every ``QuorumCell`` or
``QuorumWritten`` from a storage replica to ``receive``, calls
``on_timer`` at ``next_deadline``, sends what ``drain`` returns and collects the
answers from ``replies`` (``MemReply``, as the coordinator's store would give).

Every operation starts with a read round (phase 0): a ``QuorumRead`` to all N
replicas; at ``R`` answers it takes the cell with the highest stamp (the
newest) and decides, as ``protocol.memory.MemoryStore.apply`` would on that
cell:

- a put, a cas whose expected version matches, or a delete of a present key
  writes a new cell: stamp one past the highest counter read, with the
  client's id; version one more (a put or cas) or 0 (a delete's tombstone);
- a get, a cas that does not match and a delete of an absent key write
  nothing: they *observe* the newest cell.

A write round (phase 1) sends a ``QuorumWrite`` to all N and answers at ``W``
acknowledgements. An observing operation, with ``repair="sync"``, answers at
once when at least W replicas told it the newest cell; otherwise it first
writes that cell back (phase 1, the same stamp) to the replicas that did not
have it, and answers at W holders: so no later read can see an older cell
than the one it answered (Attiya, Bar-Noy and Dolev). With ``repair="async"``
(Dynamo's read repair) it answers at once and sends the newest cell to the
stale replicas it heard, without waiting.

Replicas that have not answered a round are asked again after ``retry``
seconds, doubling to at most ``MAX_RETRY``; an operation is never given up
(a partition that heals lets it finish). Answers to an earlier round, from a
replica already counted, or after the round decided are ignored.

One client runs its operations on one key one at a time, in the order
submitted (a session's order); different keys run at once. A replica's
refusal (an answer with ``error``: a bad token, a key or value out of bounds)
ends the operation with that refusal.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from protocol.consensus.quorum import EMPTY, Cell, Outgoing, QuorumConfig
from protocol.messages import (
    MemReply,
    MemRequest,
    MemVerb,
    Message,
    QuorumCell,
    QuorumRead,
    QuorumWrite,
    QuorumWritten,
)

MAX_RETRY = 1.0  # seconds: the longest wait before asking silent replicas again
READ, WRITE = 0, 1  # the phases


@dataclass(slots=True)
class _Op:
    """One operation under way: its request, round, answers and deadline."""

    request: MemRequest
    phase: int = READ
    cells: dict[str, Cell] = field(default_factory=dict)  # phase 0: each replica's answer
    acks: set[str] = field(default_factory=set)  # phase 1: replicas that hold ``cell``
    cell: Cell = EMPTY  # phase 1: what is written
    reply: MemReply | None = None  # decided at the end of phase 0
    due: float = 0.0
    wait: float = 0.0


class QuorumClient:
    """One client's operations on a quorum store (see the module doc)."""

    def __init__(self, node_id: str, config: QuorumConfig, token: str) -> None:
        self.node_id = node_id
        self.config = config
        self.token = token
        self.replies: list[MemReply] = []
        self.retries = 0  # requests sent again to replicas that had not answered
        self.repairs = 0  # cells written back to stale replicas
        self._ops: dict[int, _Op] = {}  # op id -> the operation under way
        self._keys: dict[tuple[str, str], deque[MemRequest]] = {}  # key -> running, then queued
        self._out: list[Outgoing] = []

    def __len__(self) -> int:
        """Operations submitted and not yet answered."""
        return sum(len(queue) for queue in self._keys.values())

    def submit(self, request: MemRequest, now: float) -> None:
        """Start ``request`` now, or after the operations on its key before it."""
        queue = self._keys.setdefault((request.namespace, request.key), deque())
        queue.append(request)
        if len(queue) == 1:
            self._start(request, now)

    def receive(self, src: str, msg: Message, now: float) -> None:
        """An answer from storage replica ``src``."""
        kind = type(msg)
        if kind is QuorumCell:
            self._on_cell(src, msg, now)  # type: ignore[arg-type]
        elif kind is QuorumWritten:
            self._on_written(src, msg, now)  # type: ignore[arg-type]

    def on_timer(self, now: float) -> None:
        """Ask again the replicas that have not answered a round that is due."""
        for op in self._ops.values():
            if op.due <= now:
                self._ask(op, now, again=True)

    def next_deadline(self) -> float | None:
        return min((op.due for op in self._ops.values()), default=None)

    def drain(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    # --- rounds ------------------------------------------------------------------

    def _start(self, request: MemRequest, now: float) -> None:
        op = _Op(request, wait=self.config.retry)
        self._ops[request.op_id] = op
        self._ask(op, now, again=False)

    def _ask(self, op: _Op, now: float, again: bool) -> None:
        """Send the round's request to every replica not yet heard in it."""
        request = op.request
        heard = op.cells if op.phase == READ else op.acks
        message: Message
        if op.phase == READ:
            message = QuorumRead(request.op_id, READ, request.namespace, request.key, self.token)
        else:
            message = self._write(request, op.cell)
        for replica in self.config.replicas:
            if replica not in heard:
                self._out.append((replica, message))
                self.retries += again
        if again:
            op.wait = min(op.wait * 2, MAX_RETRY)
        op.due = now + op.wait

    def _write(self, request: MemRequest, cell: Cell) -> QuorumWrite:
        return QuorumWrite(
            request.op_id, WRITE, request.namespace, request.key, *cell, token=self.token
        )

    def _on_cell(self, src: str, msg: QuorumCell, now: float) -> None:
        op = self._ops.get(msg.op_id)
        if op is None or op.phase != READ or msg.phase != READ or src not in self.config.replicas:
            return
        if msg.error:
            self._refused(op, msg.error, now)
            return
        op.cells[src] = Cell(msg.counter, msg.writer, msg.version, msg.present, msg.value)
        if len(op.cells) >= self.config.read:
            self._decide(op, now)

    def _decide(self, op: _Op, now: float) -> None:
        """The read round is complete: write a new cell, or observe the newest one."""
        newest = max(op.cells.values(), key=lambda cell: cell.stamp)
        request = op.request
        version = newest.version if newest.present else 0
        verb = request.verb
        writes = verb == MemVerb.PUT or (
            verb == MemVerb.CAS and request.expected_version == version
        )
        if writes or (verb == MemVerb.DELETE and version > 0):
            counter = max(cell.counter for cell in op.cells.values()) + 1
            if verb == MemVerb.DELETE:
                op.cell = Cell(counter, self.node_id, 0, False, b"")
                op.reply = MemReply(request.op_id, True, version, b"")
            else:
                op.cell = Cell(counter, self.node_id, version + 1, True, request.value)
                op.reply = MemReply(request.op_id, True, version + 1, b"")
            self._round_two(op, set(), now)
            return
        if verb == MemVerb.GET:
            value = newest.value if newest.present else b""
            op.reply = MemReply(
                request.op_id, version > 0, version, value, "" if version else "absent"
            )
        elif verb == MemVerb.CAS:
            op.reply = MemReply(request.op_id, False, version, b"", "version mismatch")
        elif verb == MemVerb.DELETE:
            op.reply = MemReply(request.op_id, False, 0, b"", "absent")
        else:
            op.reply = MemReply(request.op_id, False, 0, b"", f"unknown verb {verb}")
        holders = {replica for replica, cell in op.cells.items() if cell.stamp == newest.stamp}
        stale = [replica for replica in op.cells if replica not in holders]
        if (
            self.config.repair == "async"
            or newest.counter == 0
            or len(holders) >= self.config.write
        ):
            for replica in stale if newest.counter else ():
                self._out.append((replica, self._write(request, newest)))
                self.repairs += 1
            self._finish(op, now)
            return
        op.cell = newest
        self.repairs += len(self.config.replicas) - len(holders)
        self._round_two(op, holders, now)

    def _round_two(self, op: _Op, holders: set[str], now: float) -> None:
        op.phase = WRITE
        op.acks = holders
        op.wait = self.config.retry
        self._ask(op, now, again=False)

    def _on_written(self, src: str, msg: QuorumWritten, now: float) -> None:
        op = self._ops.get(msg.op_id)
        if op is None or op.phase != WRITE or msg.phase != WRITE or src not in self.config.replicas:
            return
        if msg.error:
            self._refused(op, msg.error, now)
            return
        op.acks.add(src)
        if len(op.acks) >= self.config.write:
            self._finish(op, now)

    def _refused(self, op: _Op, why: str, now: float) -> None:
        op.reply = MemReply(op.request.op_id, False, 0, b"", why)
        self._finish(op, now)

    def _finish(self, op: _Op, now: float) -> None:
        """Answer the operation and start the next one queued on its key."""
        request = op.request
        del self._ops[request.op_id]
        assert op.reply is not None
        self.replies.append(op.reply)
        queue = self._keys[(request.namespace, request.key)]
        queue.popleft()
        if queue:
            self._start(queue[0], now)
        else:
            del self._keys[(request.namespace, request.key)]
