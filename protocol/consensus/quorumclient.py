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
submitted (a session's order); different keys run at once, at most ``limit``
of them (the agent's ``request_window``). An operation that waited
``shed_after`` unsent (behind its key's, or for the limit) is given up: its op
id goes to ``shed``, as the request window sheds (``protocol.requests``), and
it never took effect. A replica's
refusal (an answer with ``error``: a bad token, a key or value out of bounds)
ends the operation with that refusal.
"""

from __future__ import annotations

import math
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
INFINITE = 1 << 62  # no limit on operations under way
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

    def __init__(
        self,
        node_id: str,
        config: QuorumConfig,
        token: str,
        limit: int = INFINITE,
        shed_after: float = math.inf,
        shed: list[int] | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.token = token
        self.limit = limit
        self.shed_after = shed_after
        self.replies: list[MemReply] = []
        self.shed: list[int] = shed if shed is not None else []  # op ids given up unsent
        self.retries = 0  # requests sent again to replicas that had not answered
        self.repairs = 0  # cells written back to stale replicas
        self._ops: dict[int, _Op] = {}  # op id -> the operation under way
        # key -> its operations, the running one first, each with when it was submitted
        self._keys: dict[tuple[str, str], deque[tuple[MemRequest, float]]] = {}
        self._idle: deque[tuple[str, str]] = deque()  # keys whose first waits for the limit
        self._out: list[Outgoing] = []

    def __len__(self) -> int:
        """Operations submitted and not yet answered."""
        return sum(len(queue) for queue in self._keys.values())

    def submit(self, request: MemRequest, now: float) -> None:
        """Start ``request`` now, or after the operations on its key before it, or once
        fewer than ``limit`` are under way."""
        slot = (request.namespace, request.key)
        queue = self._keys.setdefault(slot, deque())
        queue.append((request, now))
        if len(queue) == 1:
            self._idle.append(slot)
            self._pump(now)

    def _pump(self, now: float) -> None:
        """Start the first operation of waiting keys while under the limit."""
        idle = self._idle
        while idle and len(self._ops) < self.limit:
            queue = self._keys.get(idle.popleft())
            if queue and queue[0][0].op_id not in self._ops:  # (a key listed twice)
                self._start(queue[0][0], now)

    def _shed_expired(self, now: float) -> None:
        """Give up the operations that waited ``shed_after`` without being sent."""
        limit = now - self.shed_after
        running = self._ops
        expired: list[tuple[float, int]] = []
        for slot in list(self._keys):
            queue = self._keys[slot]
            kept: deque[tuple[MemRequest, float]] = deque()
            for request, at in queue:
                if request.op_id in running or at > limit:
                    kept.append((request, at))
                else:
                    expired.append((at, request.op_id))
            if len(kept) == len(queue):
                continue
            if kept:
                self._keys[slot] = kept
                if kept[0][0].op_id not in running:
                    self._idle.append(slot)
            else:
                del self._keys[slot]
        self.shed.extend(op_id for _, op_id in sorted(expired))  # in the order submitted

    def receive(self, src: str, msg: Message, now: float) -> None:
        """An answer from storage replica ``src``."""
        kind = type(msg)
        if kind is QuorumCell:
            self._on_cell(src, msg, now)  # type: ignore[arg-type]
        elif kind is QuorumWritten:
            self._on_written(src, msg, now)  # type: ignore[arg-type]

    def on_timer(self, now: float) -> None:
        """Ask again the replicas that have not answered a round that is due; shed
        what waited too long unsent."""
        for op in self._ops.values():
            if op.due <= now:
                self._ask(op, now, again=True)
        if self.shed_after < math.inf and len(self._ops) < len(self):
            self._shed_expired(now)

    def next_deadline(self) -> float | None:
        due = min((op.due for op in self._ops.values()), default=None)
        if self.shed_after == math.inf or len(self._ops) == len(self):
            return due
        waiting = min(
            (at for queue in self._keys.values() for r, at in queue if r.op_id not in self._ops),
            default=math.inf,
        )
        expiry = waiting + self.shed_after
        return expiry if due is None else min(due, expiry)

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
        slot = (request.namespace, request.key)
        queue = self._keys[slot]
        queue.popleft()
        if queue:
            self._idle.append(slot)
        else:
            del self._keys[slot]
        self._pump(now)
